package routing

import (
	"encoding/binary"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// ownAnnounce returns this node's current announce, building a new one (with
// a higher sequence) when the last is older than half an interval.
func (r *Router) ownAnnounce(now time.Time) []byte {
	if r.annRaw != nil && now.Sub(r.annAt) < r.o.AnnounceInterval/2 && now.Sub(r.annAt) >= 0 {
		return r.annRaw
	}
	// Sequence: seconds since 2020 or one more than the last, whichever is
	// higher, so it grows across restarts even without the store.
	seq := uint32(max(now.Unix()-1577836800, 1))
	if !seqOlder(r.annSeq, seq) {
		seq = r.annSeq + 1
	}
	raw, err := envelope.SignAnnounce(r.id, envelope.AnnounceOptions{Seq: seq, Caps: r.o.Caps, AppData: r.o.AppData, TTL: r.o.MaxHops})
	if err != nil {
		r.logOnce("routing: cannot sign announce", "err", err)
		return r.annRaw
	}
	r.annSeq, r.annRaw, r.annAt = seq, raw, now
	r.batch.Put(BucketMeta, metaSeq, binary.BigEndian.AppendUint32(nil, seq))
	r.dedup.put(r.sip.envelopeKey(raw), dedupEntry{flags: seenVerified, heard: 1})
	return raw
}

// announceInterval is the interval on l: the base interval, stretched on
// radio links so that relaying every known node's announce once per
// interval stays within the control share. Every node of a mesh computes
// about the same, so it is also how often the others' announces come.
func (r *Router) announceInterval(l *link) time.Duration {
	iv := r.o.AnnounceInterval
	if l.radio {
		size := len(r.annRaw)
		if size == 0 {
			size = envelope.AnnounceSize(len(r.o.AppData))
		}
		need := time.Duration(float64(l.airtime(size)) * float64(len(r.peers)+1) / r.controlShare(l) * 1.25)
		iv = max(iv, need)
	}
	return iv
}

// routeLife is how long a route over l lives without a refresh:
// RouteLifetime, but on a radio link at least three announce intervals as
// stretched there, so that a route outlives two lost refreshes as it does
// on a small mesh. On a big radio mesh the interval stretches past the
// base lifetime (lora-500: about 8.3 h against 6 h), and routes ran out
// hours before the next announce came, unless traffic refreshed them: in
// an 18-hour lora-500 run 1.4 to 5 points more of the messages sent in
// its hours 11 to 16 arrived within 60 s (docs/routing.md, "Long runs").
func (r *Router) routeLife(l *link) time.Duration {
	if !l.radio {
		return r.o.RouteLifetime
	}
	return max(r.o.RouteLifetime, 3*r.announceInterval(l))
}

// announceSuppressAfter is how many relays offering a path as good cancel
// a pending announce relay: SuppressAfter, but one on a big radio mesh,
// where announces are most of the airtime (lora-500: a third less announce
// airtime; on smaller meshes one lost messages whose receivers then lacked
// the sender's key: docs/routing.md).
func (r *Router) announceSuppressAfter() int {
	if r.bigRadio() {
		return 1
	}
	return r.o.SuppressAfter
}

// controlShare is the share of a radio link's airtime this node's
// announces, path requests and flood relays may use: AnnounceShare, divided
// on a big radio mesh by the known nodes over bigRadioMesh. Every node's
// share is its own, but what it sends is heard by everyone within
// interference range (about 120 nodes in lora-500), so the channel load
// grows with the mesh's density and size: lora-500 (seed 1) delivered 35 %
// with 2 %, 41 % with this (0.4 % there), with a third less announce
// airtime (docs/routing.md).
func (r *Router) controlShare(l *link) float64 {
	if !l.radio {
		return r.o.AnnounceShare
	}
	return r.shareOf(len(r.peers))
}

// shareOf is the control share on a radio link in a mesh of n nodes.
func (r *Router) shareOf(n int) float64 {
	s := r.o.AnnounceShare
	if n > bigRadioMesh {
		s *= float64(bigRadioMesh) / float64(n)
	}
	return s
}

// meshEstimate is the mesh size announce relays are paced for: three
// times the nodes known, up to five times bigRadioMesh, and the nodes
// known beyond that. Meshes of up to 34 nodes are not affected.
func meshEstimate(known int) int {
	return max(known, min(3*known, 5*bigRadioMesh))
}

// announceWait is how long an announce relay that costs cost seconds of
// airtime on radio link l must wait for l.announces (0: it may go now).
//
// Announce relays on a radio link are paced twice: by the control budget
// they share with path requests and flood relays, and by a budget of their
// own whose rate is the control share of a mesh of meshEstimate nodes.
// While it is learning the mesh a node has heard of only part of it, so a
// mesh that boots at once flooded its announces at several times the
// share it settles at: in lora-500 the boot round used
// 15,000 s of airtime in its first hour, left 33 % of routes unknown, and
// the round two hours later had to repair them. Paced like this the two
// rounds merge into one of 27,800 s instead of 34,700 s, and delivery
// rose from 59.2 / 56.5 / 59.1 % to 64.3 / 63.0 / 64.1 % on seeds 1–3
// (docs/routing.md). Five times the nodes known did as well on lora-500
// but slowed fapp-200's floods of slots below their bound on one seed;
// twice, 62.5 %. Flood relays (channels, FAPP) keep the control share of
// the nodes known: paced as announces are, fapp-200's searches found 55 %
// of matching slots instead of all.
func (r *Router) announceWait(now time.Time, l *link, cost float64) time.Duration {
	l.announces.setShare(r.shareOf(meshEstimate(len(r.peers))))
	if l.announces.at.IsZero() {
		// It starts with the first relay, not with the link: what a
		// link saved up before the boot flood reached it would go out
		// as a burst.
		l.announces.start(now)
	}
	l.announces.fill(now)
	return l.announces.wait(cost)
}

func (r *Router) announceOn(now time.Time, l *link) {
	raw := r.ownAnnounce(now)
	iv := r.announceInterval(l)
	// ±10% jitter keeps nodes from synchronising.
	l.nextAnnounce = now.Add(iv - iv/10 + time.Duration(r.rnd.Int64N(int64(iv/5)+1)))
	if raw == nil {
		return
	}
	r.spendControl(now, l, len(raw), true)
	r.emit(now, l, transport.Broadcast, transport.PriorityBackground, clone(raw), envelope.KindAnnounce, true)
}

// Announce makes the node announce itself on every link now (for example
// after its application data changed).
func (r *Router) Announce(now time.Time) {
	r.begin(now)
	defer r.end()
	r.annRaw = nil
	for _, l := range r.links {
		r.announceOn(now, l)
	}
}

// verifyAllowed rate-limits signature checks: VerifyPerSecond for unknown
// signers and four times that for known ones, each with a burst of four
// seconds' worth, so a flood of junk cannot eat the CPU and junk claiming
// strangers' keys cannot starve the announces of nodes we know.
func (r *Router) verifyAllowed(now time.Time, known bool) bool {
	if el := now.Sub(r.verifyAt).Seconds(); el > 0 {
		rate := float64(r.o.VerifyPerSecond)
		r.verifyTokens = min(4*rate, r.verifyTokens+el*rate)
		r.verifyKnown = min(16*rate, r.verifyKnown+el*4*rate)
		r.verifyAt = now
	}
	tok := &r.verifyTokens
	if known {
		tok = &r.verifyKnown
	}
	if *tok < 1 {
		return false
	}
	*tok--
	return true
}

// onSigned handles Announce and PathReply envelopes: cheap checks and dedup
// first, the signature last. It returns the peer the announce is from (or
// nil), whether the announce is newer than what we knew, and whether it is a
// newer announce of a peer we already had a route to (renewal).
func (r *Router) onSigned(now time.Time, l *link, e *envelope.Envelope, m transport.Meta, k uint64, extraHops uint8) (p *peer, newer, renewal bool) {
	if e.Key == r.id.PublicKey() {
		r.drop(DropOwn)
		return nil, false, false
	}
	ent, dup := r.dedup.get(k)
	if dup && ent.flags&seenBad != 0 {
		r.drop(DropSignature)
		return nil, false, false
	}
	addr := e.Key.Address()
	p = r.peers[addr]
	if p != nil && p.hasSeq && seqOlder(e.Seq, p.seq) {
		r.drop(DropStale)
		return nil, false, false
	}
	if !dup || ent.flags&seenVerified == 0 {
		if !r.verifyAllowed(now, p != nil && p.hasKey) {
			r.drop(DropVerifyBudget)
			return nil, false, false
		}
		r.stats.Verifications++
		if err := e.Verify(); err != nil {
			r.dedup.put(k, dedupEntry{flags: seenBad})
			r.drop(DropSignature)
			return nil, false, false
		}
		ent.flags |= seenVerified
		r.dedup.put(k, ent)
	}
	// Before this announce's route counts: did we have one already?
	renewal = p != nil && p.best(now) != nil
	if p == nil {
		p = r.peerForKey(e.Key, now)
	} else if !p.hasKey {
		p.key, p.hasKey = e.Key, true
	}
	newer = !p.hasSeq || seqOlder(p.seq, e.Seq)
	if newer {
		p.seq, p.hasSeq = e.Seq, true
		if e.Kind == envelope.KindAnnounce {
			p.ann = clone(e.Raw())
		} else if b, err := envelope.NewPathReply(e, envelope.PathReplyOptions{To: e.Dst, TTL: 0}); err == nil {
			p.ann = b
		}
	}
	hops := e.Hops
	if int(hops)+int(extraHops) < 255 {
		hops += extraHops
	}
	r.considerRoute(now, p, l, m.From, hops, e.Seq, true, m)
	return p, newer, renewal && newer
}

func (r *Router) onAnnounce(now time.Time, l *link, raw []byte, e *envelope.Envelope, m transport.Meta, k uint64) {
	if _, dup := r.dedup.get(k); dup {
		r.dedup.seen(k)
		r.heardAnnounce(l, k, e.Hops)
	}
	p, newer, refresh := r.onSigned(now, l, e, m, k, 0)
	if p == nil || !newer {
		if p != nil {
			r.drop(DropDuplicate)
		}
		return
	}
	r.floodRelay(now, l, m, raw, k, envelope.KindAnnounce)
	for _, pr := range r.relays[max(0, len(r.relays)-len(r.links)):] {
		if pr.key == k {
			pr.origin, pr.seq, pr.refresh = p, e.Seq, refresh
		}
	}
}

// floodRelay schedules relays of a flood envelope on every link it should
// go out on: the same broadcast link (others in range may not have heard
// it) and every other link.
func (r *Router) floodRelay(now time.Time, from *link, m transport.Meta, raw []byte, k uint64, kind envelope.Kind) {
	if raw[envelope.OffsetTTL] == 0 {
		r.drop(DropTTL)
		return
	}
	for _, l := range r.links {
		if l == from && !l.info.Broadcast {
			continue
		}
		if len(r.relays) >= maxPendingRelays {
			// A flood of floods: the budget would drop them anyway; do not
			// hold them in memory first.
			r.drop(DropBudget)
			return
		}
		data := clone(raw)
		envelope.Relay(data)
		at := l.airtime(len(data))
		var delay time.Duration
		if l.radio {
			// A contention window that grows with the neighbours that may
			// contend. Nodes that heard the frame well go first: the relays
			// that survive suppression then form routes over strong links
			// (Meshtastic lets weak receivers go first to cover ground fast;
			// for routes that lose fewer frames we prefer the opposite).
			w := max(2*time.Second, at*time.Duration(4+r.activeNeighbours(now, l)))
			delay = time.Duration(r.rnd.Int64N(int64(w)))
			if l == from && m.HasSignal && l.hasFloor {
				margin := m.SNR - l.snrFloor
				f := 1 - min(max(margin/(2*float32(r.o.SNRMargin)), 0), 1)
				delay += time.Duration(float32(w) * f)
			}
		} else {
			delay = time.Duration(r.rnd.Int64N(int64(50 * time.Millisecond)))
		}
		r.relays = append(r.relays, &pendingRelay{due: now.Add(delay), link: l, key: k, data: data, kind: kind,
			prio: transport.PriorityBackground, control: true, suppress: l == from && l.info.Broadcast})
	}
}

// heardAnnounce counts a copy of an announce we have a relay pending for,
// with the path cost its relay advertised.
func (r *Router) heardAnnounce(l *link, k uint64, cost uint8) {
	for _, pr := range r.relays {
		if pr.key == k && pr.link == l {
			pr.heard++
			if len(pr.costs) < 8 {
				pr.costs = append(pr.costs, cost)
			}
		}
	}
}

// heardRelay counts a copy of a flood we have a relay pending for.
func (r *Router) heardRelay(l *link, k uint64) {
	for _, pr := range r.relays {
		if pr.key == k && pr.link == l {
			pr.heard++
		}
	}
}

func (r *Router) fireRelay(now time.Time, pr *pendingRelay) {
	if pr.origin != nil {
		// An announce carries our own distance over the best route we have
		// now (not the first copy's), in path-cost units. It is suppressed
		// only by relays heard that offered a path as good: a node that
		// would advertise a better path than every relay around it still
		// relays, so suppression does not hide short paths.
		d, ok := r.advertiseCost(now, pr.origin)
		if !ok {
			r.drop(DropNoRoute)
			return
		}
		if pr.suppress {
			n := 0
			for _, c := range pr.costs {
				if c <= d {
					n++
				}
			}
			if pr.refresh && r.bigRadio() {
				// A later round on a big radio mesh (we had a route to
				// the origin already) mostly renews routes: any copy
				// heard cancels the relay, as good or not; a shorter
				// path we would have offered waits for the next round
				// or for traffic. The boot round keeps the stricter
				// rule. lora-500: that round cost 21,600 s of the
				// run's 37,600 s of announce airtime (the boot round,
				// paced by the control share, 16,000 s: its relays
				// wait and hear more copies); with this delivery was
				// 59.2 / 56.5 / 59.1 % on seeds 1–3 against 58.1 /
				// 56.2 / 57.4 % (docs/routing.md).
				n = pr.heard
			}
			if n >= r.announceSuppressAfter() {
				r.drop(DropSuppressed)
				return
			}
		}
		d, _ = r.advertise(now, pr.origin, pr.seq)
		pr.data[envelope.OffsetHops] = d
	} else if pr.suppress && pr.heard >= r.o.SuppressAfter {
		r.drop(DropSuppressed)
		return
	}
	// An announce relay waits for its budgets instead of being lost:
	// meanwhile other relays may make it unnecessary (suppression).
	cost := pr.link.controlCost(len(pr.data))
	paced := pr.origin != nil && pr.link.radio
	if paced {
		if wait := r.announceWait(now, pr.link, cost); wait > 0 {
			r.relayLater(now, pr, wait)
			return
		}
	}
	if pr.control && !r.spendControl(now, pr.link, len(pr.data), false) {
		if pr.origin != nil {
			r.relayLater(now, pr, pr.link.control.wait(cost))
			return
		}
		r.drop(DropBudget)
		return
	}
	if paced {
		pr.link.announces.level -= cost
	}
	r.stats.Relayed++
	r.emit(now, pr.link, pr.to, pr.prio, pr.data, pr.kind, pr.control)
}

// relayLater puts an announce relay back to wait for a budget, or drops it
// when maxPendingRelays wait already.
func (r *Router) relayLater(now time.Time, pr *pendingRelay, wait time.Duration) {
	if len(r.relays) >= maxPendingRelays {
		r.drop(DropBudget)
		return
	}
	pr.due = now.Add(wait + time.Duration(r.rnd.Int64N(int64(time.Second))))
	r.relays = append(r.relays, pr)
}

// pathRequest asks the mesh for a route to a, with backoff per destination.
func (r *Router) pathRequest(now time.Time, a envelope.Addr) {
	var p *peer
	if full, ok := a.Full(); ok {
		p = r.peerForAddr(full, now)
		if !p.pathReqAt.IsZero() && now.Sub(p.pathReqAt) < pathReqBackoff(p.pathReqN) {
			return
		}
	}
	// Expanding ring: on a radio mesh first the neighbours only (TTL 0:
	// once announces have spread nearly every node knows a route to
	// nearly every other, so a neighbour usually answers, for one frame
	// and its replies), then two hops around, then the whole scope.
	ttl := r.o.PathRequestTTL
	if p != nil {
		n := p.pathReqN
		if !r.hasRadio() {
			n++ // no radio here: start at two hops
		}
		ttl = min(ttl, pathRingTTL(n))
	}
	// Requests that reach beyond two hops are floods and cost the mesh
	// about as much as an announce: a node sends at most one every
	// PathRequestEvery, stretched on radio with the square of the mesh's
	// size beyond 50 nodes (the network-wide load of these floods grows
	// with nodes × nodes reached; in a 500-node LoRa mesh one a minute per
	// node saturates the channel: docs/routing.md). Near requests have a
	// bucket of their own, one a minute, stretched linearly with the mesh
	// size beyond 50 nodes on radio. What waits is sent when a route
	// appears.
	if el := now.Sub(r.pathReqAt).Seconds(); el > 0 {
		every, near := r.o.PathRequestEvery, r.o.PathRequestEvery
		for _, l := range r.links {
			if l.radio {
				if f := float64(len(r.peers)) / 50; f > 1 {
					every = time.Duration(float64(every) * f * f)
					near = time.Duration(float64(near) * f)
				}
				break
			}
		}
		r.pathTokens = min(2, r.pathTokens+el/every.Seconds())
		r.nearTokens = min(2, r.nearTokens+el/near.Seconds())
		r.pathReqAt = now
	}
	if ttl > 2 && r.pathTokens < 1 {
		ttl = 2 // no flood now: ask nearby instead
	}
	if r.bigRadio() {
		// A big radio mesh: announces have taught nearly every node a
		// route to nearly every other, so the neighbours answer; a flood
		// would cost hundreds of frames on a channel that is the
		// bottleneck (lora-500: path finding took 37 % of all airtime,
		// asking only the neighbours raised delivery; docs/routing.md).
		ttl = 0
	}
	switch {
	case ttl > 2:
		r.pathTokens--
	case r.nearTokens >= 1:
		r.nearTokens--
	default:
		return
	}
	if p != nil {
		p.pathReqAt = now
		if p.pathReqN < 16 {
			p.pathReqN++
		}
	}
	var id [4]byte
	if r.readEntropy(id[:]) != nil {
		return
	}
	e := envelope.Envelope{Kind: envelope.KindPathRequest, TTL: ttl, Dst: a,
		RequestID: binary.BigEndian.Uint32(id[:])}
	if a.IsFull() {
		e.Flags = envelope.FlagFull
		e.Src = envelope.FullAddr(r.addr)
	} else {
		e.Src = envelope.HintAddr(r.addr.Hint())
	}
	raw, err := e.Append(nil)
	if err != nil {
		return
	}
	r.stats.PathRequests++
	if r.debug {
		r.trace("path request", "dst", a)
	}
	r.dedup.put(r.sip.envelopeKey(raw), dedupEntry{heard: 1})
	for _, l := range r.links {
		r.spendControl(now, l, len(raw), true)
		r.emit(now, l, transport.Broadcast, transport.PriorityBackground, clone(raw), envelope.KindPathRequest, true)
	}
}

// bigRadioMesh is the number of known nodes beyond which a node with a
// radio link asks only its neighbours for a path, and relays, retries and
// hop acknowledgements follow the rules of a big radio mesh (bigRadio).
const bigRadioMesh = 100

// bigRadio reports whether this node has a radio link and knows more than
// bigRadioMesh nodes.
func (r *Router) bigRadio() bool { return len(r.peers) > bigRadioMesh && r.hasRadio() }

// pathRingTTL is the TTL of the (n+1)-th path request for a destination:
// 0 (neighbours only), 2, then 255 (capped by PathRequestTTL).
func pathRingTTL(n uint8) uint8 {
	switch n {
	case 0:
		return 0
	case 1:
		return 2
	}
	return 255
}

// hasRadio reports whether a radio link is up.
func (r *Router) hasRadio() bool {
	for _, l := range r.links {
		if l.radio {
			return true
		}
	}
	return false
}

func pathReqBackoff(n uint8) time.Duration {
	d := 20 * time.Second << min(n, 6)
	return min(d, 30*time.Minute)
}

func (r *Router) onPathRequest(now time.Time, l *link, raw []byte, e *envelope.Envelope, m transport.Meta, k uint64) {
	if e.Src.Matches(r.addr) && e.Src.IsFull() {
		r.drop(DropOwn)
		return
	}
	if _, dup := r.dedup.seen(k); dup {
		r.heardRelay(l, k)
		r.drop(DropDuplicate)
		return
	}
	r.learnReverse(now, e.Src, l, m.From, e.Hops)
	var ann []byte
	var dist uint8
	if e.Dst.Matches(r.addr) {
		ann = r.ownAnnounce(now)
	} else {
		for _, p := range r.lookup(e.Dst) {
			if rt := p.best(now); rt != nil && p.ann != nil && !(rt.link == l && rt.nb == m.From) {
				ann, dist = p.ann, rt.hops+1
				break
			}
		}
	}
	if ann == nil {
		r.floodRelay(now, l, m, raw, k, envelope.KindPathRequest)
		return
	}
	if dist > 0 && l.info.Broadcast {
		// Every neighbour that knows a route could answer; on a shared
		// medium only a few do, at random (the others stay silent: the
		// requester asks again if all kept quiet).
		if nb := r.activeNeighbours(now, l); nb > 3 && r.rnd.IntN(nb) >= 3 {
			r.drop(DropSuppressed)
			return
		}
	}
	ae, err := envelope.Parse(ann)
	if err != nil {
		return
	}
	reply, err := envelope.NewPathReply(&ae, envelope.PathReplyOptions{To: e.Src, RequestID: e.RequestID, Dist: dist, TTL: r.o.MaxHops})
	if err != nil {
		return
	}
	r.stats.PathReplies++
	r.dedup.put(r.sip.envelopeKey(reply), dedupEntry{flags: seenVerified, heard: 1})
	r.spendControl(now, l, len(reply), true)
	re, err := envelope.Parse(reply)
	if err != nil {
		return
	}
	// hops: the requester's distance is unknown here; the neighbour's
	// address says whether it is the requester itself.
	r.sendHopC(now, &route{link: l, nb: m.From, hops: 1}, reply, &re, transport.PriorityRelay, true)
}

func (r *Router) onPathReply(now time.Time, l *link, raw []byte, e *envelope.Envelope, m transport.Meta, k uint64) {
	if _, dup := r.dedup.seen(k); dup {
		r.drop(DropDuplicate)
		return
	}
	p, _, _ := r.onSigned(now, l, e, m, k, e.Dist)
	if p == nil {
		return
	}
	if e.Dst.Matches(r.addr) {
		return // our request answered: onSigned installed the route
	}
	r.forwardUnicast(now, l, m, raw, e, k, false)
}

// maxPendingRelays bounds the flood relays waiting for their moment.
const maxPendingRelays = 512

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// activeNeighbours counts the neighbours heard on l within the last
// announce interval (capped: it only scales contention windows).
func (r *Router) activeNeighbours(now time.Time, l *link) int {
	n := 0
	for _, nb := range l.neighbours {
		if now.Sub(nb.lastHeard) < r.o.AnnounceInterval {
			n++
		}
	}
	return min(n, 64)
}
