package routing

import (
	"math"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// peer is one known node: its key (once known), its latest announce, the
// routes towards it, and the end-to-end state of our conversation with it.
type peer struct {
	addr   envelope.Address
	key    envelope.PublicKey
	hasKey bool

	ann    []byte // latest verified announce or path reply, for path replies
	seq    uint32 // its sequence
	hasSeq bool

	routes [maxCandidates]route
	cur    int8 // index of the selected route, -1 none
	// Feasibility distance: the smallest distance (hops) we have had to
	// the peer for sequence fdSeq.
	fd      uint8
	fdSeq   uint32
	fdSet   bool
	changes uint8
	changed time.Time

	lastUsed  time.Time
	pathReqAt time.Time
	pathReqN  uint8

	e2e *e2eState
}

// maxCandidates bounds the next hops remembered per destination.
const maxCandidates = 5

// route is one way to reach a peer: a neighbour on a link.
type route struct {
	link    *link
	nb      transport.Addr
	hops    uint8  // hops after the neighbour
	seq     uint32 // announce sequence that taught it
	expires time.Time
}

func (rt *route) valid(now time.Time) bool { return rt.link != nil && now.Before(rt.expires) }

// e2eState is our end-to-end conversation with a peer.
type e2eState struct {
	pair, pairPQ, pairPQOld *envelope.Pair
	pq, pqOld               []byte
	next, reserved          uint32 // last send counter used, reserved up to
	window                  envelope.ReplayWindow
	hasWindow               bool
	acked                   bool // the peer acknowledged us once: it knows our key
}

func (p *peer) e2eState() *e2eState {
	if p.e2e == nil {
		p.e2e = &e2eState{}
	}
	return p.e2e
}

// best returns the selected route if it is still valid.
func (p *peer) best(now time.Time) *route {
	if p.cur < 0 {
		return nil
	}
	rt := &p.routes[p.cur]
	if !rt.valid(now) {
		return nil
	}
	return rt
}

// route reselects p's route with what is known now (neighbours' losses
// change as frames are heard and hop acknowledgements come or do not) and
// returns it, or nil.
func (r *Router) route(now time.Time, p *peer) *route {
	r.reselect(now, p, false)
	return p.best(now)
}

// alternative returns a valid route whose next hop is not (l, nb).
func (r *Router) alternative(now time.Time, p *peer, l *link, nb transport.Addr) *route {
	var best *route
	var bm uint32
	for i := range p.routes {
		rt := &p.routes[i]
		if !rt.valid(now) || (rt.link == l && rt.nb == nb) {
			continue
		}
		if m := r.metric(rt); best == nil || m < bm {
			best, bm = rt, m
		}
	}
	return best
}

func (r *Router) dropLink(p *peer, l *link) {
	for i := range p.routes {
		if p.routes[i].link == l {
			p.routes[i] = route{}
		}
	}
	if p.cur >= 0 && p.routes[p.cur].link == nil {
		p.cur = -1
		r.reselect(r.now, p, true)
	}
}

// metric prices a route: every hop costs its link's Cost (a LoRa hop far
// more than a wired one; hops after the neighbour are priced like the
// first), and the first hop costs more when frames to the neighbour get
// lost: its expected transmissions beyond the first, up to three hops'
// worth (see neighbour.loss).
func (r *Router) metric(rt *route) uint32 {
	l := rt.link
	c := l.cost * 8
	m := c * (1 + uint32(rt.hops))
	if !l.info.Broadcast {
		return m
	}
	nb := l.neighbours[rt.nb]
	if nb == nil {
		return m + c
	}
	return m + uint32(float32(c)*nb.penalty(l, float32(r.o.SNRMargin)))
}

// penalty is the extra cost of a hop to this neighbour, in hops (0..3):
// the expected transmissions beyond the first, 1/(1-loss) - 1, plus the
// chance that all maxHopTries fail (loss³) times the cost of what follows
// (the sender's end-to-end retry over the whole path: some four hops).
func (nb *neighbour) penalty(l *link, want float32) float32 {
	loss := nb.loss(l, want)
	if loss >= 0.75 {
		return 3
	}
	return min(3, 1/(1-loss)-1+4*loss*loss*loss)
}

// loss estimates the share of frames to this neighbour that need sending
// again: measured by passive hop acknowledgements where the link allows
// (frames not heard passed on, decayed so recent ones count most), starting
// from a prior given by the signal margin: the neighbour's smoothed SNR
// above the weakest frame ever decoded on the link (about the
// demodulator's limit). Near that limit fading loses frames, and a weak
// frame survives no interference (a LoRa receiver needs the wanted frame
// some 6 dB above the others). The prior, 0.05 + 0.8·exp(-margin/(want/4)),
// is 85% at no margin, 46% at 1.5 dB and 26% at 3 dB for want = 6, close to
// what lora-100 measured (84%, 48%, 27% of first transmissions unconfirmed
// below 1, 2, 3 dB); it counts for four observations.
func (nb *neighbour) loss(l *link, want float32) float32 {
	prior := float32(0.1)
	if nb.hasSNR && l.hasFloor {
		margin := max(nb.snr-l.snrFloor, 0)
		prior = 0.05 + 0.8*float32(math.Exp(float64(-margin/(want/4))))
	}
	const weight = 4
	return (prior*weight + nb.miss) / (weight + nb.obs)
}

// outcome records whether a frame handed to the neighbour went unconfirmed.
func (nb *neighbour) outcome(missed bool) {
	const decay = 0.95 // about the last twenty frames count
	nb.obs = nb.obs*decay + 1
	nb.miss *= decay
	if missed {
		nb.miss++
	}
}

// considerRoute offers a route to p via neighbour nb on l whose advertised
// cost (hop units after the neighbour) is hops. hasSeq says the offer comes
// from an announce or path reply with sequence seq; otherwise it was
// learned from traffic and only fills in for a missing route or refreshes
// the route the traffic came along. Among the feasible candidates of the
// newest sequence the lowest metric wins; a switch must beat the current
// route by a margin that grows with recent switches (flap damping).
func (r *Router) considerRoute(now time.Time, p *peer, l *link, nb transport.Addr, hops uint8, seq uint32, hasSeq bool, m transport.Meta) {
	if p.addr == r.addr {
		return
	}
	// Feasibility, as in Babel: within one sequence a neighbour is a next
	// hop only if the distance it advertised (the announce's cost byte) is
	// below the distance we advertised ourselves (fd, set when we relay
	// the announce). Along any chain of next hops advertised distances
	// strictly shrink, so routes cannot loop. A newer sequence starts
	// afresh; before we advertise, nobody depends on us and every
	// neighbour is feasible.
	if hasSeq && (!p.fdSet || seqOlder(p.fdSeq, seq)) {
		p.fdSeq, p.fd, p.fdSet = seq, 255, true
	}
	if !p.fdSet {
		p.fdSeq, p.fd, p.fdSet = p.seq, 255, true
	}
	if !hasSeq {
		// Learned from traffic (received, or overheard on its way): the
		// neighbour carried a frame from p over hops relays, so it has a
		// path to p that long. It refreshes the route it came along, and
		// competes with the others under the same feasibility rule.
		seq = p.fdSeq
		for i := range p.routes {
			rt := &p.routes[i]
			if rt.valid(now) && rt.link == l && rt.nb == nb {
				rt.expires = now.Add(r.routeLife(l))
				return
			}
		}
		if hops >= p.fd && p.best(now) != nil {
			return
		}
	} else if seqOlder(seq, p.fdSeq) {
		return
	} else if hops >= p.fd {
		return
	}
	cand := route{link: l, nb: nb, hops: hops, seq: seq}
	metric := r.metric(&cand)
	life := r.routeLife(l)
	slot := -1
	for i := range p.routes {
		if p.routes[i].link == l && p.routes[i].nb == nb {
			slot = i
			break
		}
	}
	if slot < 0 {
		// Take an empty or expired slot, else the worst one if we beat it.
		worst := -1
		for i := range p.routes {
			rt := &p.routes[i]
			if !rt.valid(now) {
				slot = i
				break
			}
			if worst < 0 || r.routeWorse(rt, &p.routes[worst]) {
				worst = i
			}
		}
		if slot < 0 {
			w := &p.routes[worst]
			if metric >= r.metric(w) || int8(worst) == p.cur {
				return
			}
			slot = worst
		}
	} else if old := &p.routes[slot]; !hasSeq && old.valid(now) && old.hops < hops {
		// Traffic refreshes a route without making it look worse.
		old.expires = now.Add(life)
		return
	}
	had := p.best(now) != nil
	cand.expires = now.Add(life)
	p.routes[slot] = cand
	r.reselect(now, p, false)
	if !had && p.best(now) != nil {
		r.routeAppeared(now, p)
	}
}

func (r *Router) routeWorse(a, b *route) bool {
	ma, mb := r.metric(a), r.metric(b)
	if ma != mb {
		return ma > mb
	}
	return seqOlder(a.seq, b.seq)
}

// seqOlder reports whether a is older than b (serial number arithmetic).
func seqOlder(a, b uint32) bool { return a != b && int32(a-b) < 0 }

// reselect picks the route to use: the lowest metric among the valid
// candidates, whatever announce round taught them. Each was feasible when
// it arrived (see considerRoute); with counter-based suppression only some
// neighbours relay each round, so insisting on the newest round's
// candidates would throw good next hops away for the first copy heard,
// often a weak one (lora-100: 25% longer paths, 2.3× the ideal airtime
// instead of 1.8×). Route lifetime bounds how stale a candidate gets, and
// a neighbour that stops passing frames on is priced out (hop acks).
func (r *Router) reselect(now time.Time, p *peer, force bool) {
	bestI := -1
	var bestM uint32
	for i := range p.routes {
		rt := &p.routes[i]
		if !rt.valid(now) {
			continue
		}
		m := r.metric(rt)
		if bestI < 0 || m < bestM || (m == bestM && seqOlder(p.routes[bestI].seq, rt.seq)) {
			bestI, bestM = i, m
		}
	}
	if bestI < 0 {
		p.cur = -1
		return
	}
	if p.cur >= 0 && int(p.cur) != bestI && !force {
		cur := &p.routes[p.cur]
		if cur.valid(now) {
			// Damping: switch only for a clear improvement, and a clearer
			// one after recent changes.
			if now.Sub(p.changed) > 10*time.Minute {
				p.changes = 0
			}
			cm := r.metric(cur)
			margin := cm / 8 * uint32(1+p.changes)
			if bestM+margin >= cm {
				return
			}
		}
	}
	if int(p.cur) != bestI {
		if p.cur >= 0 && p.changes < 8 {
			p.changes++
		}
		p.changed = now
		p.cur = int8(bestI)
	}
}

// peerForKey returns the peer with key k, creating it.
func (r *Router) peerForKey(k envelope.PublicKey, now time.Time) *peer {
	a := k.Address()
	p := r.peerForAddr(a, now)
	if !p.hasKey {
		p.key, p.hasKey = k, true
	}
	return p
}

// peerForAddr returns the peer at address a, creating it (without a key).
func (r *Router) peerForAddr(a envelope.Address, now time.Time) *peer {
	if p := r.peers[a]; p != nil {
		return p
	}
	if len(r.peers) >= r.o.MaxPeers {
		r.evictPeer(now)
	}
	p := &peer{addr: a, cur: -1, lastUsed: now}
	r.peers[a] = p
	h := a.Hint()
	r.hints[h] = append(r.hints[h], p)
	return p
}

// evictPeer forgets the least recently useful peer that has no
// conversation state with us.
func (r *Router) evictPeer(now time.Time) {
	var victim *peer
	for _, p := range r.peers {
		if p.e2e != nil {
			continue
		}
		if victim == nil || p.lastUsed.Before(victim.lastUsed) ||
			(p.lastUsed.Equal(victim.lastUsed) && string(p.addr[:]) < string(victim.addr[:])) {
			victim = p
		}
	}
	if victim == nil {
		return
	}
	delete(r.peers, victim.addr)
	h := victim.addr.Hint()
	list := r.hints[h]
	for i, q := range list {
		if q == victim {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.hints, h)
	} else {
		r.hints[h] = list
	}
}

// lookup returns the known peers an on-wire address may name.
func (r *Router) lookup(a envelope.Addr) []*peer {
	if full, ok := a.Full(); ok {
		if p := r.peers[full]; p != nil {
			return []*peer{p}
		}
		return nil
	}
	return r.hints[a.Hint()]
}

// routeAppeared sends what waited for a route to p.
func (r *Router) routeAppeared(now time.Time, p *peer) {
	p.pathReqN = 0 // a later loss of the route starts the ring afresh
	for _, m := range r.outbox {
		if m.rec.Dst == p.addr && !m.inFlightCommit && (m.rec.Attempts == 0 || m.waiting) {
			m.next = now
		}
	}
	for _, h := range r.held {
		if h.dst.Matches(p.addr) {
			h.retry = now
		}
	}
}

// learnReverse learns a route to the sender of traffic that arrived from
// neighbour nb on l after hops relays.
func (r *Router) learnReverse(now time.Time, a envelope.Addr, l *link, nb transport.Addr, hops uint8) {
	var p *peer
	if full, ok := a.Full(); ok {
		if full == r.addr {
			return
		}
		p = r.peers[full]
		if p == nil {
			if !r.roomForStrangers() {
				return
			}
			p = r.peerForAddr(full, now)
		}
	} else {
		c := r.hints[a.Hint()]
		if len(c) != 1 {
			return // unknown or ambiguous: learn nothing
		}
		p = c[0]
	}
	r.considerRoute(now, p, l, nb, hops, 0, false, transport.Meta{})
}

// linkWeight is what one hop over neighbour nb on l adds to an announce's
// cost byte: 1 for a good hop, up to 4 for a weak or lossy radio neighbour.
func (r *Router) linkWeight(l *link, nb transport.Addr) uint8 {
	if !l.info.Broadcast {
		return 1
	}
	n := l.neighbours[nb]
	if n == nil {
		return 2
	}
	return 1 + uint8(n.penalty(l, float32(r.o.SNRMargin))+0.5)
}

// advertise returns the cost byte to put in our relay of p's announce (our
// own distance over the selected route) and records it as the feasibility
// distance. ok is false when we have no route to advertise.
func (r *Router) advertise(now time.Time, p *peer, seq uint32) (uint8, bool) {
	d, ok := r.advertiseCost(now, p)
	if ok && p.fdSet && p.fdSeq == seq {
		p.fd = min(p.fd, d)
	}
	return d, ok
}

// advertiseCost is our distance to p over the selected route, in path-cost
// units.
func (r *Router) advertiseCost(now time.Time, p *peer) (uint8, bool) {
	rt := r.route(now, p)
	if rt == nil {
		return 0, false
	}
	return uint8(min(255, int(rt.hops)+int(r.linkWeight(rt.link, rt.nb)))), true
}

// roomForStrangers reports whether peers learned from unverified traffic
// may be added: only while the table is less than three quarters full, so
// such traffic never evicts a peer learned from a signed announce.
func (r *Router) roomForStrangers() bool { return len(r.peers) < r.o.MaxPeers*3/4 }
