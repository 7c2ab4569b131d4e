// Package discovery finds meshd nodes on the local links with multicast DNS
// (hashicorp/mdns) and asks a Dialer to link to them.
//
// Every node advertises the service _meshd._tcp on each of its interfaces,
// with a TXT record carrying the protocol version and its node address, so
// a browser recognises a node — itself, or one it is already linked to —
// before dialing. Browsing repeats every BrowseInterval on each interface;
// each new node heard is dialed once (the Dialer settles duplicates).
//
// # Working around hashicorp/mdns
//
// hashicorp/mdns serves one interface per Server (Config.Iface; nil means
// whatever interface the kernel picks for the default route, which for
// IPv6 link-local multicast is just one), and a Query sends on one
// interface (QueryParam.Interface). So this package runs one responder
// per interface, advertising only that interface's addresses, and queries
// each interface in turn. Two limits remain, and are handled here:
//
//   - Every responder socket is bound to the group address and port, and
//     Linux delivers a group's datagrams to every such socket whatever
//     interface they came in on (IP_MULTICAST_ALL), which the library does
//     not turn off. So a query heard on eth0 is also answered by the wlan0
//     responder, with wlan0's addresses. Responders therefore use a
//     distinct instance and host name per interface (the library's client
//     merges answers by name and keeps the first complete one, which would
//     otherwise be arbitrary), and the browser only dials an address that
//     is on the link it queried: an IPv4 address inside one of that
//     interface's subnets, or an IPv6 link-local address, which it scopes
//     to that interface itself.
//   - The library logs through a *log.Logger at every query ("Closing
//     client"); its output goes to the slog Logger at debug level.
//
// The library's goroutines end shortly after Shutdown or the end of a
// query rather than before those calls return; Run waits for its own.
package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/mdns"
	"github.com/openmeshd/meshd/envelope"
)

// Service is the DNS-SD service type meshd nodes advertise.
const Service = "_meshd._tcp"

// Version is the protocol version advertised in the TXT record; it is the
// TCP transport's handshake version.
const Version = 1

// Dialer links to discovered nodes. The TCP transport implements it.
type Dialer interface {
	// Linked reports whether a link to the node with address a is up or
	// being set up.
	Linked(a envelope.Address) bool
	// DialAddress connects to endpoint ("host:port") and expects the node
	// with address a there.
	DialAddress(ctx context.Context, endpoint string, a envelope.Address) error
}

// Options configure discovery. Zero values take the default in the comment.
type Options struct {
	// Self is this node's address: advertised, and never dialed. Required.
	Self envelope.Address
	// Port is the TCP port the transport listens on. Required to advertise;
	// zero: browse only.
	Port int
	// Dialer links to what browsing finds. Zero (nil): advertise only.
	Dialer Dialer
	// Interfaces limits discovery to these interface names (config key
	// discovery.interfaces). Zero: every interface that is up, multicast
	// capable, not loopback and has an address.
	Interfaces []string
	// BrowseInterval is how often each interface is queried; interfaces are
	// rescanned at the same pace. Zero: 30 s.
	BrowseInterval time.Duration
	// QueryTimeout is how long one query listens for answers. Zero: 1 s.
	QueryTimeout time.Duration
	// DialTimeout bounds one dial of a discovered node. Zero: 15 s.
	DialTimeout time.Duration
	// DisableIPv4 and DisableIPv6 turn off mDNS (and dialing) over that IP
	// version. Zero: both on.
	DisableIPv4, DisableIPv6 bool
	// PreferIPv6 dials a node's link-local IPv6 address when it has both.
	// Zero: IPv4 first.
	PreferIPv6 bool
	// Logger receives logs. Zero (nil): discarded.
	Logger *slog.Logger
}

// Stats is a snapshot of discovery's counters.
type Stats struct {
	Responders  int    // interfaces currently advertised on
	Queries     uint64 // queries sent (one per interface per round)
	Heard       uint64 // answers from meshd nodes (self included)
	Self        uint64 // answers that were our own
	AlreadyLink uint64 // answers from nodes already linked
	OffLink     uint64 // answers without an address on the queried link
	BadTXT      uint64 // answers whose TXT record did not parse
	Dials       uint64
	DialErrors  uint64
}

// Discovery advertises this node and dials the nodes it hears.
type Discovery struct {
	o   Options
	log *slog.Logger
	tag string // random, distinguishes our instance names across restarts

	mu         sync.Mutex
	responders map[int]*responder // by interface index
	dialing    map[envelope.Address]bool
	failed     map[string]time.Time // endpoint → when a dial to it failed
	stats      Stats
	rnd        *mrand.Rand
}

type responder struct {
	ifname string
	ips    string // the advertised addresses, to notice changes
	srv    *mdns.Server
}

// New checks o.
func New(o Options) (*Discovery, error) {
	if o.BrowseInterval <= 0 {
		o.BrowseInterval = 30 * time.Second
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DisableIPv4 && o.DisableIPv6 {
		return nil, errors.New("discovery: both IPv4 and IPv6 disabled")
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("discovery: port %d", o.Port)
	}
	var seed [32]byte
	if _, err := io.ReadFull(rand.Reader, seed[:]); err != nil {
		return nil, err
	}
	return &Discovery{
		o: o, log: o.Logger,
		tag:        hex.EncodeToString(seed[:2]),
		responders: make(map[int]*responder),
		dialing:    make(map[envelope.Address]bool),
		failed:     make(map[string]time.Time),
		rnd:        mrand.New(mrand.NewChaCha8(seed)),
	}, nil
}

// Stats returns a snapshot of the counters.
func (d *Discovery) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Responders = len(d.responders)
	return s
}

// Run advertises and browses until ctx is done, then shuts every responder
// down and waits for the dials it started.
func (d *Discovery) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer func() {
		d.mu.Lock()
		for idx, r := range d.responders {
			r.srv.Shutdown()
			delete(d.responders, idx)
		}
		d.mu.Unlock()
		wg.Wait()
	}()
	for {
		ifaces, err := d.interfaces()
		if err != nil {
			d.log.Warn("discovery: listing interfaces", "err", err.Error())
		}
		if d.o.Port > 0 {
			d.reconcile(ifaces)
		}
		for _, ifc := range ifaces {
			if ctx.Err() != nil {
				return nil
			}
			d.browse(ctx, &wg, ifc)
		}
		// Jitter ±10% so that nodes started together do not query together.
		j := d.o.BrowseInterval / 10
		wait := d.o.BrowseInterval - j + time.Duration(d.rnd.Int64N(int64(2*j)+1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// iface is an interface and the networks on it.
type iface struct {
	net.Interface
	nets []*net.IPNet
}

// interfaces lists the interfaces discovery runs on.
func (d *Discovery) interfaces() ([]iface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []iface
	for _, ifc := range all {
		if len(d.o.Interfaces) > 0 && !slices.Contains(d.o.Interfaces, ifc.Name) {
			continue
		}
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagMulticast == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		x := iface{Interface: ifc}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && d.ipAllowed(n.IP) {
				x.nets = append(x.nets, n)
			}
		}
		if len(x.nets) > 0 {
			out = append(out, x)
		}
	}
	return out, nil
}

func (d *Discovery) ipAllowed(ip net.IP) bool {
	if ip.To4() != nil {
		return !d.o.DisableIPv4
	}
	return !d.o.DisableIPv6
}

// instance is the per-interface instance (and host) name.
func (d *Discovery) instance(ifc iface) string {
	return "meshd-" + d.o.Self.String()[:16] + "-" + d.tag + "-" + strconv.Itoa(ifc.Index)
}

// reconcile runs one responder per interface, restarting it when the
// interface's addresses change and stopping it when the interface goes.
func (d *Discovery) reconcile(ifaces []iface) {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := map[int]bool{}
	for _, ifc := range ifaces {
		seen[ifc.Index] = true
		var ips []net.IP
		var names []string
		for _, n := range ifc.nets {
			ips = append(ips, n.IP)
			names = append(names, n.IP.String())
		}
		key := strings.Join(names, ",")
		if r := d.responders[ifc.Index]; r != nil {
			if r.ips == key {
				continue
			}
			r.srv.Shutdown()
			delete(d.responders, ifc.Index)
		}
		inst := d.instance(ifc)
		rec := Record{Version: Version, Address: d.o.Self}
		svc, err := mdns.NewMDNSService(inst, Service, "local.", inst+".local.", d.o.Port, ips, rec.TXT())
		if err != nil {
			d.log.Warn("discovery: building the service record", "iface", ifc.Name, "err", err.Error())
			continue
		}
		ifcCopy := ifc.Interface
		srv, err := mdns.NewServer(&mdns.Config{Zone: svc, Iface: &ifcCopy, Logger: d.libLogger()})
		if err != nil {
			d.log.Warn("discovery: cannot answer on interface", "iface", ifc.Name, "err", err.Error())
			continue
		}
		d.responders[ifc.Index] = &responder{ifname: ifc.Name, ips: key, srv: srv}
		d.log.Info("discovery: advertising", "iface", ifc.Name, "addrs", key, "port", d.o.Port)
	}
	for idx, r := range d.responders {
		if !seen[idx] {
			r.srv.Shutdown()
			delete(d.responders, idx)
			d.log.Info("discovery: interface gone", "iface", r.ifname)
		}
	}
}

// browse queries one interface and dials the new nodes it hears.
func (d *Discovery) browse(ctx context.Context, wg *sync.WaitGroup, ifc iface) {
	entries := make(chan *mdns.ServiceEntry, 256)
	ifcCopy := ifc.Interface
	d.mu.Lock()
	d.stats.Queries++
	d.mu.Unlock()
	err := mdns.QueryContext(ctx, &mdns.QueryParam{
		Service:     Service,
		Domain:      "local",
		Timeout:     d.o.QueryTimeout,
		Interface:   &ifcCopy,
		Entries:     entries,
		DisableIPv4: d.o.DisableIPv4,
		DisableIPv6: d.o.DisableIPv6,
		Logger:      d.libLogger(),
	})
	close(entries)
	if err != nil && ctx.Err() == nil {
		d.log.Debug("discovery: query failed", "iface", ifc.Name, "err", err.Error())
	}
	// One node may answer several times (one responder per interface, each
	// heard everywhere): gather its usable endpoints, then dial one.
	found := map[envelope.Address][]string{}
	var order []envelope.Address
	for e := range entries {
		a, endpoint, ok := d.consider(ifc, e)
		if !ok {
			continue
		}
		if _, seen := found[a]; !seen {
			order = append(order, a)
		}
		if !slices.Contains(found[a], endpoint) {
			found[a] = append(found[a], endpoint)
		}
	}
	for _, a := range order {
		d.dial(ctx, wg, a, found[a])
	}
}

// consider checks one answer and returns the node and the endpoint to dial.
func (d *Discovery) consider(ifc iface, e *mdns.ServiceEntry) (envelope.Address, string, bool) {
	if !strings.Contains(e.Name, Service) {
		return envelope.Address{}, "", false
	}
	d.mu.Lock()
	d.stats.Heard++
	d.mu.Unlock()
	d.log.Debug("discovery: heard", "iface", ifc.Name, "name", e.Name, "v4", e.AddrV4, "v6", e.AddrV6IPAddr, "port", e.Port, "txt", e.InfoFields)
	count := func(f *uint64) {
		d.mu.Lock()
		*f++
		d.mu.Unlock()
	}
	rec, err := ParseTXT(e.InfoFields, Version)
	if err != nil {
		count(&d.stats.BadTXT)
		d.log.Debug("discovery: ignoring a service", "name", e.Name, "err", err.Error())
		return rec.Address, "", false
	}
	if rec.Address == d.o.Self {
		count(&d.stats.Self)
		return rec.Address, "", false
	}
	var v6 net.IP
	if e.AddrV6IPAddr != nil {
		v6 = e.AddrV6IPAddr.IP
	}
	endpoint, ok := pickEndpoint(ifc.Name, ifc.nets, e.AddrV4, v6, e.Port, d.o.PreferIPv6)
	if !ok {
		count(&d.stats.OffLink)
		d.log.Debug("discovery: ignoring an answer with no address on this link", "iface", ifc.Name, "name", e.Name)
		return rec.Address, "", false
	}
	if d.o.Dialer == nil {
		return rec.Address, "", false
	}
	if d.o.Dialer.Linked(rec.Address) {
		count(&d.stats.AlreadyLink)
		return rec.Address, "", false
	}
	return rec.Address, endpoint, true
}

// dial links to node a at one of its endpoints: the first that has not
// failed recently (a node with several IPv6-only interfaces advertises
// link-local addresses that cannot be told apart; a wrong one fails and the
// next round tries another).
func (d *Discovery) dial(ctx context.Context, wg *sync.WaitGroup, a envelope.Address, endpoints []string) {
	d.mu.Lock()
	if d.dialing[a] || ctx.Err() != nil {
		d.mu.Unlock()
		return
	}
	endpoint := endpoints[0]
	oldest := time.Time{}
	for i, ep := range endpoints {
		at, failed := d.failed[ep]
		if !failed {
			endpoint = ep
			break
		}
		if i == 0 || at.Before(oldest) {
			endpoint, oldest = ep, at
		}
	}
	d.dialing[a] = true
	d.stats.Dials++
	d.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		dctx, cancel := context.WithTimeout(ctx, d.o.DialTimeout)
		err := d.o.Dialer.DialAddress(dctx, endpoint, a)
		cancel()
		d.mu.Lock()
		delete(d.dialing, a)
		if err != nil {
			d.stats.DialErrors++
			if len(d.failed) >= maxFailed {
				clear(d.failed)
			}
			d.failed[endpoint] = time.Now()
		} else {
			delete(d.failed, endpoint)
		}
		d.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			d.log.Info("discovery: dialing a discovered node failed", "address", a.String(), "endpoint", endpoint, "err", err.Error())
		} else if err == nil {
			d.log.Info("discovery: linked to a discovered node", "address", a.String(), "endpoint", endpoint)
		}
	}()
}

// maxFailed bounds the memory of endpoints that failed.
const maxFailed = 256

// pickEndpoint chooses which advertised address to dial for a node heard
// on interface ifname with networks nets: an IPv4 address inside one of
// them, or a link-local IPv6 address scoped to ifname, or a global IPv6
// address inside one of them. An answer whose IPv4 address is outside our
// IPv4 networks on this interface came from a responder of another link
// (hashicorp/mdns responders hear queries from every interface) and is
// refused whole. When we have no IPv4 on this interface, IPv4 addresses
// cannot be judged and only IPv6 counts.
func pickEndpoint(ifname string, nets []*net.IPNet, v4, v6 net.IP, port int, preferV6 bool) (string, bool) {
	if port <= 0 || port > 65535 {
		return "", false
	}
	p := strconv.Itoa(port)
	var c4, c6 string
	haveV4 := false
	for _, n := range nets {
		haveV4 = haveV4 || n.IP.To4() != nil
	}
	if v4 = v4.To4(); v4 != nil && haveV4 {
		for _, n := range nets {
			if n.IP.To4() != nil && n.Contains(v4) && !v4.IsLoopback() && !v4.IsMulticast() && !v4.IsUnspecified() {
				c4 = net.JoinHostPort(v4.String(), p)
				break
			}
		}
		if c4 == "" {
			// An IPv4 address of another link: the answer came from the
			// node's responder on another interface (it hears our query
			// too); its IPv6 link-local address is of that link as well.
			return "", false
		}
	}
	if v6 != nil && v6.To4() == nil && len(v6) == net.IPv6len {
		switch {
		case v6.IsLinkLocalUnicast():
			c6 = net.JoinHostPort(v6.String()+"%"+ifname, p)
		case v6.IsGlobalUnicast():
			for _, n := range nets {
				if n.IP.To4() == nil && n.Contains(v6) {
					c6 = net.JoinHostPort(v6.String(), p)
					break
				}
			}
		}
	}
	first, second := c4, c6
	if preferV6 {
		first, second = c6, c4
	}
	if first != "" {
		return first, true
	}
	return second, second != ""
}

// libLogger adapts the library's *log.Logger to slog at debug level.
func (d *Discovery) libLogger() *log.Logger {
	return log.New(slogWriter{d.log}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("discovery: mdns", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}
