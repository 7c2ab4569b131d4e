// Package discovery finds meshd nodes on the local links with multicast DNS
// and asks a Dialer to link to them.
//
// Every node advertises the service _meshd._tcp on each of its interfaces,
// with a TXT record carrying the protocol version and its node address, so
// a browser recognises a node — itself, or one it is already linked to —
// before dialing. Browsing repeats every BrowseInterval on each interface;
// each new node heard is dialed once (the Dialer settles duplicates).
//
// # Wire behaviour
//
// The mDNS slice is this module's own (package mdns below this one), not a
// library: hashicorp/mdns, with miekg/dns and golang.org/x/net under it,
// cost 772 KB of the MIPS router build (whose budget is 8 MB) against 194 KB
// now, and 1,442 KB of a small binary (measured; see docs/transports.md).
// Per interface and IP version discovery runs a responder for one instance
// of _meshd._tcp.local. that
//
//   - announces its records twice, a second apart, when it starts
//     (RFC 6762 §8.3), and withdraws them with a goodbye (TTL 0) when it
//     stops or its interface's addresses change;
//   - answers PTR queries for _meshd._tcp.local. and
//     _services._dns-sd._udp.local., SRV/TXT/ANY queries for its instance
//     and A/AAAA queries for its host name, with that interface's own
//     addresses only; NSEC for what the names do not have;
//   - answers to the group after 20–120 ms when shared records are asked
//     for, at most once a second per record group; to the querier alone for
//     a legacy querier (source port not 5353: query ID and question echoed,
//     TTL ≤ 10 s) and for QU questions when it multicast the records within
//     a quarter of their TTL; not at all for records the query lists as
//     known answers with half their TTL left.
//
// A querier sends a PTR query for _meshd._tcp.local. on each interface
// every BrowseInterval, from port 5353, listing as known answers its own
// instance and the instances of nodes it is linked to. Every response heard
// on an interface — answers to anyone's query, announcements — is read for
// instances, so a new node is dialed as soon as it announces itself.
//
// # Sockets
//
// One UDP socket per IP version, bound to port 5353 with SO_REUSEADDR and
// joined to 224.0.0.251 / ff02::fb on each interface. IP_PKTINFO /
// IPV6_PKTINFO tell which interface a datagram came in on and choose the
// one a reply leaves by, so each interface's responder and querier see only
// their link (hashicorp/mdns's sockets heard every interface and answered
// with the wrong addresses). Datagrams from sources not on the link
// (outside the interface's subnets, not link-local) are ignored. No route
// for 224.0.0.0/4 is needed. Linux only (the package builds elsewhere; Run
// then logs that it cannot open its sockets).
package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport/discovery/mdns"
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
	// Dialer links to what browsing finds. Zero (nil): advertise only (no
	// queries are sent).
	Dialer Dialer
	// Interfaces limits discovery to these interface names (config key
	// discovery.interfaces). Zero: every interface that is up, multicast
	// capable, not loopback and has an address.
	Interfaces []string
	// BrowseInterval is how often each interface is queried; interfaces are
	// rescanned at the same pace. Zero: 30 s.
	BrowseInterval time.Duration
	// QueryTimeout is how long answers are gathered, from the first one
	// heard on an interface, before the nodes heard are dialed (a node heard
	// several times is dialed once, at one endpoint). Zero: 1 s.
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

	Answers       uint64 // responses sent to queries (multicast or unicast)
	Suppressed    uint64 // queries from other hosts (or parts) not answered: the querier listed the answer as known
	Announcements uint64 // unsolicited announcements sent (per interface and IP version)
	Goodbyes      uint64 // goodbyes (TTL 0) heard for instances of the service
	Malformed     uint64 // datagrams that did not decode
	Ignored       uint64 // datagrams from off-link sources or other interfaces, dropped when busy; replies over the unicast rate limit; nodes over the gather limit
}

// Discovery advertises this node and dials the nodes it hears.
type Discovery struct {
	o   Options
	log *slog.Logger
	tag string // random, distinguishes our instance names across restarts

	mu         sync.Mutex
	responders int
	dialing    map[envelope.Address]bool
	failed     map[string]time.Time // endpoint → when a dial to it failed
	stats      Stats
	rnd        *mrand.Rand // used by Run's goroutine only
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
		tag:     hex.EncodeToString(seed[:2]),
		dialing: make(map[envelope.Address]bool),
		failed:  make(map[string]time.Time),
		rnd:     mrand.New(mrand.NewChaCha8(seed)),
	}, nil
}

// Stats returns a snapshot of the counters.
func (d *Discovery) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Responders = d.responders
	return s
}

func (d *Discovery) count(f *uint64) {
	d.mu.Lock()
	*f++
	d.mu.Unlock()
}

// Run advertises and browses until ctx is done, then sends its goodbyes,
// closes its sockets and waits for the dials it started.
func (d *Discovery) Run(ctx context.Context) error {
	var dials sync.WaitGroup
	defer dials.Wait()
	r := newRun(d, ctx, &dials)
	defer r.close()
	return r.loop()
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

// consider checks one instance heard on ifc. It returns the node's record
// when its TXT record parsed (ok), and the endpoint to dial, if any.
func (d *Discovery) consider(ifc iface, in *mdns.Instance) (rec Record, endpoint string, ok bool) {
	d.count(&d.stats.Heard)
	d.log.Debug("discovery: heard", "iface", ifc.Name, "name", in.Name.String(), "addrs", in.Addrs, "port", in.Port, "txt", in.Text)
	rec, err := ParseTXT(in.Text, Version)
	if err != nil {
		d.count(&d.stats.BadTXT)
		d.log.Debug("discovery: ignoring a service", "name", in.Name.String(), "err", err.Error())
		return rec, "", false
	}
	if rec.Address == d.o.Self {
		d.count(&d.stats.Self)
		return rec, "", true
	}
	v4, v6 := chooseAddrs(ifc.nets, in.Addrs)
	endpoint, found := pickEndpoint(ifc.Name, ifc.nets, v4, v6, int(in.Port), d.o.PreferIPv6)
	if !found {
		d.count(&d.stats.OffLink)
		d.log.Debug("discovery: ignoring an answer with no address on this link", "iface", ifc.Name, "name", in.Name.String())
		return rec, "", true
	}
	if d.o.Dialer == nil {
		return rec, "", true
	}
	if d.o.Dialer.Linked(rec.Address) {
		d.count(&d.stats.AlreadyLink)
		return rec, "", true
	}
	return rec, endpoint, true
}

// chooseAddrs picks, among the addresses an instance advertised, the IPv4
// address to judge (the first inside one of nets, else the first) and the
// IPv6 one (the first link-local, else the first inside one of nets, else
// the first).
func chooseAddrs(nets []*net.IPNet, addrs []netip.Addr) (v4, v6 net.IP) {
	in := func(ip net.IP) bool {
		for _, n := range nets {
			if n.Contains(ip) {
				return true
			}
		}
		return false
	}
	var v6in, v6any net.IP
	for _, a := range addrs {
		ip := net.IP(a.AsSlice())
		switch {
		case a.Is4():
			if v4 == nil || (!in(v4) && in(ip)) {
				v4 = ip
			}
		case a.IsLinkLocalUnicast():
			if v6 == nil {
				v6 = ip
			}
		case in(ip):
			if v6in == nil {
				v6in = ip
			}
		default:
			if v6any == nil {
				v6any = ip
			}
		}
	}
	if v6 == nil {
		v6 = v6in
	}
	if v6 == nil {
		v6 = v6any
	}
	return v4, v6
}

// dial links to node a at one of its endpoints: the first that has not
// failed recently (a node with several IPv6-only interfaces advertises
// link-local addresses that cannot be told apart; a wrong one fails and the
// next round tries another).
func (d *Discovery) dial(ctx context.Context, wg *sync.WaitGroup, a envelope.Address, endpoints []string) {
	d.mu.Lock()
	if d.dialing[a] || ctx.Err() != nil || len(d.dialing) >= maxDialing {
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

// maxFailed bounds the memory of endpoints that failed; maxDialing the
// dials under way (a node heard while it is reached is dialed when next
// heard).
const (
	maxFailed  = 256
	maxDialing = 32
)

// pickEndpoint chooses which advertised address to dial for a node heard
// on interface ifname with networks nets: an IPv4 address inside one of
// them, or a link-local IPv6 address scoped to ifname, or a global IPv6
// address inside one of them. An answer whose IPv4 address is outside our
// IPv4 networks on this interface came from a responder of another link
// (responders built on hashicorp/mdns, as meshd's were, answer queries
// heard on every interface) and is refused whole. When we have no IPv4 on
// this interface, IPv4 addresses cannot be judged and only IPv6 counts.
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

// logEvery rate-limits a repeated log line by key.
type logEvery struct {
	last map[string]time.Time
}

func (l *logEvery) ok(key string, every time.Duration, now time.Time) bool {
	if l.last == nil {
		l.last = make(map[string]time.Time)
	}
	if t, seen := l.last[key]; seen && now.Sub(t) < every {
		return false
	}
	if len(l.last) > 256 {
		clear(l.last)
	}
	l.last[key] = now
	return true
}

// addrKey is the list of addresses of an interface, to notice changes.
func addrKey(nets []*net.IPNet) string {
	names := make([]string, 0, len(nets))
	for _, n := range nets {
		names = append(names, n.IP.String())
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}
