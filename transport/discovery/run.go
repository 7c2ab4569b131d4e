package discovery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport/discovery/mdns"
)

// IP versions, indexes of the per-version state.
const (
	v4 = 0
	v6 = 1
)

// Limits of the state kept per interface.
const (
	maxCache     = 256 // instances remembered for known answers
	maxAdvertise = 8   // addresses advertised per IP version
	queueLen     = 64  // datagrams waiting for the loop
	maxUnicast   = 20  // replies to single queriers per second, interface and IP version
	maxGather    = 64  // nodes gathered on an interface before they are dialed
)

// run is the state of one Run call, owned by its goroutine except where
// noted.
type run struct {
	d       *Discovery
	ctx     context.Context
	dials   *sync.WaitGroup
	service mdns.Name

	conns   [2]*net.UDPConn // read by the readers too; set before they start
	readers sync.WaitGroup
	pkts    chan packet
	stop    chan struct{}

	ifs        map[int]*ifState // by interface index
	nextBrowse time.Time
	logs       logEvery
}

type packet struct {
	fam     int
	ifindex int
	src     netip.AddrPort
	data    []byte
}

// ifState is discovery on one interface.
type ifState struct {
	iface
	key   string
	fams  [2]famState
	cache map[string]cacheEntry // instance name key → what it said

	gather   map[envelope.Address][]string // endpoints heard, to dial at gatherAt
	order    []envelope.Address
	gatherAt time.Time
}

// famState is one IP version on one interface.
type famState struct {
	joined     bool
	resp       *mdns.Responder // nil: not advertising
	pending    mdns.Set        // groups to multicast at pendingAt
	pendingAt  time.Time
	announceAt time.Time // the second announcement; zero: none due

	unicastSince time.Time // start of the current second of unicast replies
	unicastSent  int       // replies sent to single queriers in it
}

type cacheEntry struct {
	name    mdns.Name
	addr    envelope.Address
	ttl     uint32
	expires time.Time
}

func newRun(d *Discovery, ctx context.Context, dials *sync.WaitGroup) *run {
	svc, _ := mdns.ServiceName(Service, "local") // constant, valid
	return &run{
		d: d, ctx: ctx, dials: dials, service: svc,
		pkts: make(chan packet, queueLen),
		stop: make(chan struct{}),
		ifs:  make(map[int]*ifState),
	}
}

func (r *run) loop() error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return nil
		case p := <-r.pkts:
			r.packet(p, time.Now())
		case <-timer.C:
		}
		now := time.Now()
		if !now.Before(r.nextBrowse) {
			r.round(now)
		}
		next := r.due(now)
		timer.Reset(max(next.Sub(time.Now()), 0))
	}
}

// close says goodbye on every interface, closes the sockets and waits for
// the readers.
func (r *run) close() {
	for idx, st := range r.ifs {
		r.stopIf(st)
		delete(r.ifs, idx)
	}
	close(r.stop)
	for _, c := range r.conns {
		if c != nil {
			c.Close()
		}
	}
	r.readers.Wait()
	r.d.mu.Lock()
	r.d.responders = 0
	r.d.mu.Unlock()
}

// round rescans the interfaces, opens what is missing and queries.
func (r *run) round(now time.Time) {
	d := r.d
	for fam, off := range [2]bool{d.o.DisableIPv4, d.o.DisableIPv6} {
		if off || r.conns[fam] != nil {
			continue
		}
		c, err := listen(fam)
		if err != nil {
			if r.logs.ok("listen"+famName(fam), 10*time.Minute, now) {
				d.log.Warn("discovery: cannot open the mDNS socket", "ip", famName(fam), "err", err.Error())
			}
			continue
		}
		r.conns[fam] = c
		r.readers.Add(1)
		go r.read(fam, c)
	}
	ifaces, err := d.interfaces()
	if err != nil && r.logs.ok("interfaces", 10*time.Minute, now) {
		d.log.Warn("discovery: listing interfaces", "err", err.Error())
	}
	r.reconcile(ifaces, now)
	if d.o.Dialer != nil {
		for _, st := range r.ifs {
			r.query(st, now)
		}
	}
	// Jitter ±10% so that nodes started together do not query together.
	j := d.o.BrowseInterval / 10
	r.nextBrowse = now.Add(d.o.BrowseInterval - j + time.Duration(d.rnd.Int64N(int64(2*j)+1)))
}

func famName(fam int) string {
	if fam == v6 {
		return "IPv6"
	}
	return "IPv4"
}

// reconcile keeps one ifState per interface, restarting it when the
// interface's addresses (or the sockets open) change.
func (r *run) reconcile(ifaces []iface, now time.Time) {
	seen := map[int]bool{}
	for _, ifc := range ifaces {
		seen[ifc.Index] = true
		key := addrKey(ifc.nets)
		for _, c := range r.conns {
			if c == nil {
				key += "|-"
			} else {
				key += "|+"
			}
		}
		if st := r.ifs[ifc.Index]; st != nil {
			if st.key == key && st.Name == ifc.Name {
				continue
			}
			r.stopIf(st)
		}
		r.ifs[ifc.Index] = r.startIf(ifc, key, now)
	}
	for idx, st := range r.ifs {
		if !seen[idx] {
			r.stopIf(st)
			delete(r.ifs, idx)
			r.d.log.Info("discovery: interface gone", "iface", st.Name)
		}
	}
	n := 0
	for _, st := range r.ifs {
		if st.fams[v4].resp != nil || st.fams[v6].resp != nil {
			n++
		}
	}
	r.d.mu.Lock()
	r.d.responders = n
	r.d.mu.Unlock()
}

func hasFam(nets []*net.IPNet, fam int) bool {
	for _, n := range nets {
		if (n.IP.To4() != nil) == (fam == v4) {
			return true
		}
	}
	return false
}

// startIf joins the groups on ifc and starts its responders, announcing.
func (r *run) startIf(ifc iface, key string, now time.Time) *ifState {
	d := r.d
	st := &ifState{iface: ifc, key: key, cache: map[string]cacheEntry{}, gather: map[envelope.Address][]string{}}
	var svc *mdns.Service
	if d.o.Port > 0 {
		inst := d.instance(ifc)
		svc = &mdns.Service{
			Instance: inst, Service: Service, Domain: "local", Host: inst,
			Port: uint16(d.o.Port), Text: Record{Version: Version, Address: d.o.Self}.TXT(),
		}
		var n [2]int
		for _, nt := range ifc.nets {
			a, ok := netip.AddrFromSlice(nt.IP)
			fam := v6
			if nt.IP.To4() != nil {
				fam = v4
			}
			if ok && n[fam] < maxAdvertise {
				svc.Addrs = append(svc.Addrs, a.Unmap())
				n[fam]++
			}
		}
	}
	advertised := false
	for fam, c := range r.conns {
		if c == nil || !hasFam(ifc.nets, fam) {
			continue
		}
		fs := &st.fams[fam]
		if err := membership(c, fam, ifc.Index, true); err != nil {
			if r.logs.ok("join"+ifc.Name+famName(fam), 10*time.Minute, now) {
				d.log.Warn("discovery: cannot join the mDNS group", "iface", ifc.Name, "ip", famName(fam), "err", err.Error())
			}
			continue
		}
		fs.joined = true
		if svc == nil {
			continue
		}
		resp, err := mdns.NewResponder(*svc)
		if err != nil {
			d.log.Warn("discovery: building the service records", "iface", ifc.Name, "err", err.Error())
			continue
		}
		fs.resp = resp
		advertised = true
		r.announce(st, fam, now)
		fs.announceAt = now.Add(time.Second)
	}
	if advertised {
		d.log.Info("discovery: advertising", "iface", ifc.Name, "addrs", addrKey(ifc.nets), "port", d.o.Port)
	}
	return st
}

// stopIf says goodbye on st and leaves its groups.
func (r *run) stopIf(st *ifState) {
	for fam := range st.fams {
		fs := &st.fams[fam]
		if fs.resp != nil {
			if b, err := fs.resp.Goodbye(); err == nil {
				r.send(st, fam, b, netip.AddrPort{})
			}
			fs.resp = nil
		}
		if fs.joined {
			membership(r.conns[fam], fam, st.Index, false)
			fs.joined = false
		}
	}
}

func (r *run) announce(st *ifState, fam int, now time.Time) {
	b, err := st.fams[fam].resp.Announcement(now)
	if err != nil {
		return
	}
	if r.send(st, fam, b, netip.AddrPort{}) {
		r.d.count(&r.d.stats.Announcements)
	}
}

// query sends the browse query on st, listing what needs no answer: our
// own instance and the nodes we are linked to.
func (r *run) query(st *ifState, now time.Time) {
	var known []mdns.Record
	for key, ce := range st.cache {
		left := ce.expires.Sub(now)
		if left <= 0 {
			delete(st.cache, key)
			continue
		}
		ttl := uint32(left / time.Second)
		if ttl >= ce.ttl/2 && r.d.o.Dialer.Linked(ce.addr) {
			known = append(known, mdns.Record{Name: r.service, Type: mdns.TypePTR, Class: mdns.ClassIN, TTL: ttl, Target: ce.name})
		}
	}
	sent := false
	for fam := range st.fams {
		fs := &st.fams[fam]
		if !fs.joined {
			continue
		}
		k := known
		if fs.resp != nil {
			k = append(fs.resp.Records(mdns.SetPTR), known...)
		}
		b, err := mdns.Query(r.service, k)
		if err != nil {
			continue
		}
		sent = r.send(st, fam, b, netip.AddrPort{}) || sent
	}
	if sent {
		r.d.count(&r.d.stats.Queries)
	}
}

// send writes b out of st's interface, to dst or (zero dst) to the group.
func (r *run) send(st *ifState, fam int, b []byte, dst netip.AddrPort) bool {
	c := r.conns[fam]
	if c == nil {
		return false
	}
	if !dst.IsValid() {
		g := mdns.Group4()
		if fam == v6 {
			g = mdns.Group6().WithZone(st.Name)
		}
		dst = netip.AddrPortFrom(g, mdns.Port)
	}
	if _, _, err := c.WriteMsgUDPAddrPort(b, pktinfo(fam, st.Index), dst); err != nil {
		if r.logs.ok("send"+st.Name+famName(fam), time.Minute, time.Now()) {
			r.d.log.Debug("discovery: sending", "iface", st.Name, "ip", famName(fam), "to", dst.String(), "err", err.Error())
		}
		return false
	}
	return true
}

// read hands the datagrams of c to the loop until c is closed.
func (r *run) read(fam int, c *net.UDPConn) {
	defer r.readers.Done()
	buf := make([]byte, mdns.MaxMessage+1)
	oob := make([]byte, 256)
	for {
		n, oobn, flags, src, err := c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-r.stop:
				return
			case <-time.After(10 * time.Millisecond): // do not spin on a persistent error
			}
			continue
		}
		if n > mdns.MaxMessage || truncated(flags) {
			r.d.count(&r.d.stats.Malformed)
			continue
		}
		ifindex, _ := arrival(fam, oob[:oobn])
		p := packet{fam: fam, ifindex: ifindex, src: src, data: append([]byte(nil), buf[:n]...)}
		select {
		case r.pkts <- p:
		case <-r.stop:
			return
		default:
			r.d.count(&r.d.stats.Ignored)
		}
	}
}

// onLink reports whether a is an address of st's link: inside one of its
// networks, or link-local.
func (st *ifState) onLink(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLinkLocalUnicast() {
		return true
	}
	ip := net.IP(a.AsSlice())
	for _, n := range st.nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// own reports whether a is one of st's own addresses.
func (st *ifState) own(a netip.Addr) bool {
	ip := net.IP(a.Unmap().AsSlice())
	for _, n := range st.nets {
		if n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// packet handles one datagram.
func (r *run) packet(p packet, now time.Time) {
	d := r.d
	st := r.ifs[p.ifindex]
	if st == nil || !st.fams[p.fam].joined || !st.onLink(p.src.Addr()) {
		d.count(&d.stats.Ignored)
		if r.logs.ok("ignored", time.Minute, now) {
			d.log.Debug("discovery: ignoring a datagram from another interface or from off the link (logged once a minute)", "ifindex", p.ifindex, "from", p.src.String())
		}
		return
	}
	m, err := mdns.Parse(p.data)
	if err != nil {
		d.count(&d.stats.Malformed)
		if r.logs.ok("malformed", time.Minute, now) {
			d.log.Debug("discovery: malformed mDNS datagram (logged once a minute)", "iface", st.Name, "from", p.src.String(), "err", err.Error())
		}
		return
	}
	if !m.Standard() {
		return
	}
	if m.Response() {
		if p.src.Port() != mdns.Port { // RFC 6762 §6: not from a responder
			d.count(&d.stats.Ignored)
			return
		}
		r.heard(st, m, now)
		return
	}
	fs := &st.fams[p.fam]
	if fs.resp == nil {
		return
	}
	rep := fs.resp.Answer(m, p.src.Port(), now)
	if rep.Suppressed != 0 && !st.own(p.src.Addr()) { // our own queries list our instance
		d.count(&d.stats.Suppressed)
	}
	if rep.Answers == 0 {
		return
	}
	if rep.Unicast {
		// Queriers on the link can make us send a reply per query to any
		// address on it: bound the rate.
		if now.Sub(fs.unicastSince) >= time.Second || now.Before(fs.unicastSince) {
			fs.unicastSince, fs.unicastSent = now, 0
		}
		if fs.unicastSent >= maxUnicast {
			d.count(&d.stats.Ignored)
			return
		}
		fs.unicastSent++
		if b, err := fs.resp.Unicast(rep, m); err == nil && r.send(st, p.fam, b, p.src) {
			d.count(&d.stats.Answers)
		}
		return
	}
	fs.pending |= rep.Answers
	at := now
	switch rep.Wait {
	case mdns.WaitShort:
		at = now.Add(20*time.Millisecond + time.Duration(d.rnd.Int64N(int64(100*time.Millisecond))))
	case mdns.WaitLong:
		at = now.Add(400*time.Millisecond + time.Duration(d.rnd.Int64N(int64(100*time.Millisecond))))
	}
	if fs.pendingAt.IsZero() || at.Before(fs.pendingAt) {
		fs.pendingAt = at
	}
}

// heard reads the instances of a response heard on st.
func (r *run) heard(st *ifState, m *mdns.Message, now time.Time) {
	d := r.d
	for _, in := range mdns.Instances(m, r.service) {
		key := in.Name.Key()
		if in.TTL == 0 {
			delete(st.cache, key)
			d.count(&d.stats.Goodbyes)
			continue
		}
		if !in.HaveSRV || !in.HaveTXT || len(in.Addrs) == 0 {
			continue // records of one instance come in one message (RFC 6763 §12.1)
		}
		rec, endpoint, ok := d.consider(st.iface, &in)
		if ok && rec.Address != d.o.Self {
			if _, cached := st.cache[key]; cached || len(st.cache) < maxCache {
				st.cache[key] = cacheEntry{name: in.Name, addr: rec.Address, ttl: in.TTL, expires: now.Add(time.Duration(in.TTL) * time.Second)}
			}
		}
		if endpoint == "" {
			continue
		}
		if _, seen := st.gather[rec.Address]; !seen {
			if len(st.order) >= maxGather {
				d.count(&d.stats.Ignored)
				continue
			}
			st.order = append(st.order, rec.Address)
		}
		if !contains(st.gather[rec.Address], endpoint) {
			st.gather[rec.Address] = append(st.gather[rec.Address], endpoint)
		}
		if st.gatherAt.IsZero() {
			st.gatherAt = now.Add(d.o.QueryTimeout)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// due does what is due at now and returns when the next thing is.
func (r *run) due(now time.Time) time.Time {
	next := r.nextBrowse
	soon := func(t time.Time) bool {
		if t.IsZero() {
			return false
		}
		if now.Before(t) {
			if t.Before(next) {
				next = t
			}
			return false
		}
		return true
	}
	for _, st := range r.ifs {
		for fam := range st.fams {
			fs := &st.fams[fam]
			if soon(fs.pendingAt) {
				if b, err := fs.resp.Multicast(fs.pending, now); err == nil && r.send(st, fam, b, netip.AddrPort{}) {
					r.d.count(&r.d.stats.Answers)
				}
				fs.pending, fs.pendingAt = 0, time.Time{}
			}
			if soon(fs.announceAt) {
				r.announce(st, fam, now)
				fs.announceAt = time.Time{}
			}
		}
		if soon(st.gatherAt) {
			for _, a := range st.order {
				r.d.dial(r.ctx, r.dials, a, st.gather[a])
			}
			clear(st.gather)
			st.order, st.gatherAt = st.order[:0], time.Time{}
		}
	}
	return next
}
