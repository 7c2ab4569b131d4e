package routing

import (
	"encoding/binary"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Receive handles one frame received on a link. data becomes the router's
// (it may be kept).
func (r *Router) Receive(now time.Time, id LinkID, data []byte, m transport.Meta) {
	if m.Overheard {
		r.Overhear(now, id, data, m)
		return
	}
	r.begin(now)
	defer r.end()
	l := r.linkByID[id]
	if l == nil {
		r.drop(DropUnknownLink)
		return
	}
	e, err := envelope.Parse(data)
	if err != nil {
		r.stats.BytesIn += uint64(len(data))
		r.drop(DropMalformed)
		return
	}
	r.stats.in(e.Kind, len(data))
	if !l.info.Broadcast {
		m.From = transport.Broadcast
	}
	r.hear(now, l, m)
	k := r.sip.envelopeKey(data)
	if len(r.waits) > 0 {
		r.hopConfirm(l, m.From, k, &e)
	}
	switch e.Kind {
	case envelope.KindAnnounce:
		r.onAnnounce(now, l, data, &e, m, k)
	case envelope.KindPathRequest:
		r.onPathRequest(now, l, data, &e, m, k)
	case envelope.KindPathReply:
		r.onPathReply(now, l, data, &e, m, k)
	case envelope.KindData, envelope.KindAck, envelope.KindAnon:
		r.onUnicast(now, l, data, &e, m, k)
	case envelope.KindAnonReply:
		r.onAnonReply(now, l, data, &e, m, k)
	case envelope.KindHeld:
		r.onHeld(now, l, data, &e, m, k)
	case envelope.KindChannel, envelope.KindFlood, envelope.KindQuery:
		r.onFlood(now, l, data, &e, m, k)
	}
}

// Overhear handles a frame the link heard that was addressed to another
// neighbour (LinkInfo.Overhears). The router never forwards it; it only
// learns that the frame was relayed (flood suppression) and who is near.
func (r *Router) Overhear(now time.Time, id LinkID, data []byte, m transport.Meta) {
	r.begin(now)
	defer r.end()
	l := r.linkByID[id]
	if l == nil {
		return
	}
	e, err := envelope.Parse(data)
	if err != nil {
		return
	}
	r.stats.Overheard++
	r.hear(now, l, m)
	k := r.sip.envelopeKey(data)
	r.hopConfirm(l, m.From, k, &e)
	if (e.Kind == envelope.KindData || e.Kind == envelope.KindAck) && m.From != transport.Broadcast {
		// The neighbour passing it on is e.Hops relays from its source
		// (the sender of a Data, the acknowledging node of an Ack): a
		// route to learn at no airtime.
		r.learnReverse(now, e.Src, l, m.From, e.Hops)
	}
	if _, ok := r.dedup.get(k); ok {
		r.heardRelay(l, k)
	}
}

// secs is a coarse clock for dedup entries.
func (r *Router) secs(now time.Time) uint32 { return uint32(now.Unix()) }

func holdable(k envelope.Kind) bool {
	return k == envelope.KindData || k == envelope.KindAck || k == envelope.KindAnon
}

func srcHint(e *envelope.Envelope) envelope.Hint {
	if e.Kind == envelope.KindData || e.Kind == envelope.KindAck {
		return e.Src.Hint()
	}
	return envelope.Hint{}
}

func (r *Router) onUnicast(now time.Time, l *link, raw []byte, e *envelope.Envelope, m transport.Meta, k uint64) {
	ent, dup := r.dedup.get(k)
	recent := dup && r.secs(now)-ent.at < uint32(unicastDedupWindow/time.Second)
	if e.Dst.Matches(r.addr) {
		var done bool
		switch e.Kind {
		case envelope.KindData:
			done = r.receiveData(now, l, m, e)
		case envelope.KindAck:
			done = r.receiveAck(now, l, m, e)
		case envelope.KindAnon:
			if recent {
				r.drop(DropDuplicate)
				return
			}
			done = r.receiveAnon(now, l, m, e)
		}
		if done {
			r.dedup.put(k, dedupEntry{at: r.secs(now), heard: 1})
			return
		}
		if e.Kind == envelope.KindData && e.Flags&envelope.FlagKey == 0 && !r.knowsKeyFor(e.Src) {
			// From a sender we do not know: ask for its announce; its
			// retry will open.
			r.pathRequestHint(now, e.Src)
		}
		if e.Dst.IsFull() || len(r.hints[e.Dst.Hint()]) == 0 {
			r.drop(DropUndecryptable)
			return
		}
	}
	if recent {
		if r.debug {
			r.trace("unicast duplicate", "kind", e.Kind, "from", []byte(m.From), "dst", e.Dst)
		}
		if raw[envelope.OffsetTTL] > 0 && e.Hops > ent.hops+1 {
			// Back after going further than we sent it: a routing loop
			// (routes learned from traffic are not bound by the
			// feasibility condition). Drop the route it left us by.
			r.loopDetected(now, e)
		}
		r.answerDuplicate(now, l, m, raw, e, k, ent)
		r.drop(DropDuplicate)
		return
	}
	r.dedup.put(k, dedupEntry{at: r.secs(now), heard: 1, hops: e.Hops})
	switch e.Kind {
	case envelope.KindAnon:
		r.addCrumb(now, e.Token, l, m.From)
	case envelope.KindData:
		if e.Flags&envelope.FlagKey != 0 && (r.peers[e.Key.Address()] != nil || r.roomForStrangers()) {
			// A first contact names its sender: learn who it is, so the
			// Ack finds its way back even if the sender's announce never
			// reached us (never at the expense of peers learned from
			// announces: unverified keys only fill spare room).
			r.peerForKey(e.Key, now)
		}
		r.learnReverse(now, e.Src, l, m.From, e.Hops)
		t := r.flowToken(e.Src.Hint(), e.Dst.Hint(), e.Counter)
		if c, ok := r.crumbs[t]; ok && c.ack != nil && now.Before(c.expires) {
			// The destination acknowledged this message through us
			// already: this is an end-to-end retry after the Ack was lost
			// nearer the sender. The Ack answers it; the Data need not
			// cross the rest of the path again.
			r.replayAck(now, l, m.From, c.ack)
			return
		}
		// The Ack will come back the way the Data went.
		r.addCrumb(now, t, l, m.From)
	default:
		r.learnReverse(now, e.Src, l, m.From, e.Hops)
	}
	if raw[envelope.OffsetTTL] == 0 {
		r.drop(DropTTL)
		return
	}
	if e.Kind == envelope.KindAck {
		// Follow the breadcrumb the Data left, if any: the reverse of a
		// path that just worked.
		t := r.flowToken(e.Dst.Hint(), e.Src.Hint(), e.Counter)
		c, ok := r.crumbs[t]
		if ok && now.Before(c.expires) && r.linkByID[c.link.id] == c.link && !(c.link == l && c.nb == m.From) {
			data := clone(raw)
			envelope.Relay(data)
			r.stats.Relayed++
			c.ack = data
			r.crumbs[t] = c
			r.sendHop(now, &route{link: c.link, nb: c.nb, hops: 1}, data, e, transport.PriorityRelay) // hops unknown: the next hop's address says whether it is the last
			return
		}
	}
	r.forwardUnicast(now, l, m, raw, e, k, true)
}

// loopDetected forgets the selected routes towards e's destination.
func (r *Router) loopDetected(now time.Time, e *envelope.Envelope) {
	r.stats.Loops++
	for _, p := range r.lookup(e.Dst) {
		if p.cur >= 0 {
			p.routes[p.cur].expires = now
			r.reselect(now, p, true)
		}
	}
}

// flowToken names the breadcrumb of a Data envelope (sender, recipient,
// counter) in the breadcrumb table.
func (r *Router) flowToken(src, dst envelope.Hint, counter uint32) envelope.Token {
	var b [12]byte
	copy(b[:4], src[:])
	copy(b[4:8], dst[:])
	binary.BigEndian.PutUint32(b[8:], counter)
	var t envelope.Token
	binary.LittleEndian.PutUint64(t[:], r.sip.sum([]byte("flow"), b[:]))
	return t
}

// forwardUnicast sends raw on towards e.Dst: to the selected route of each
// known peer the address (or hint) may name, at most two distinct next hops,
// never back to the neighbour it came from. With no route it is held.
func (r *Router) forwardUnicast(now time.Time, from *link, m transport.Meta, raw []byte, e *envelope.Envelope, k uint64, hold bool) {
	if raw[envelope.OffsetTTL] == 0 {
		r.drop(DropTTL)
		return
	}
	if hold && e.Kind == envelope.KindData && len(r.held) > 0 {
		if h := r.heldByKey(k); h != nil {
			// An end-to-end retry of what we hold: we forward it
			// ourselves when the destination can be reached; tell the
			// sender again instead.
			r.noticeHeld(now, h, e)
			r.drop(DropDuplicate)
			return
		}
	}
	type hop struct {
		l  *link
		nb transport.Addr
	}
	var used [2]hop
	n := 0
	for _, p := range r.lookup(e.Dst) {
		if p.addr == r.addr {
			continue
		}
		rt := r.route(now, p)
		if rt != nil && from != nil && rt.link == from && rt.nb == m.From {
			rt = r.alternative(now, p, from, m.From)
		}
		if rt == nil {
			continue
		}
		h := hop{rt.link, rt.nb}
		if (n > 0 && used[0] == h) || (n > 1 && used[1] == h) {
			continue
		}
		data := clone(raw)
		envelope.Relay(data)
		if r.debug {
			r.trace("forward", "kind", e.Kind, "dst", e.Dst, "to", []byte(rt.nb), "hops", rt.hops)
		}
		r.sendHopC(now, rt, data, e, transport.PriorityRelay, e.Kind == envelope.KindPathReply)
		p.lastUsed = now
		used[n] = h
		n++
		if n == len(used) {
			break
		}
	}
	if n > 0 {
		r.stats.Relayed++
		return
	}
	if r.debug {
		r.trace("no route", "kind", e.Kind, "dst", e.Dst, "cands", len(r.lookup(e.Dst)))
	}
	if hold && holdable(e.Kind) {
		r.hold(now, raw, e, k)
		return
	}
	r.drop(DropNoRoute)
}

func (r *Router) addCrumb(now time.Time, t envelope.Token, l *link, nb transport.Addr) {
	if _, ok := r.crumbs[t]; !ok {
		if len(r.crumbs) >= maxCrumbs {
			r.gc(now.Add(crumbLife)) // forget all that would expire within a lifetime
			for len(r.crumbs) >= maxCrumbs && len(r.crumbQ) > 0 {
				delete(r.crumbs, r.crumbQ[0])
				r.crumbQ = r.crumbQ[1:]
			}
		}
		r.crumbQ = append(r.crumbQ, t)
	}
	r.crumbs[t] = crumb{link: l, nb: nb, expires: now.Add(crumbLife)}
}

func (r *Router) receiveAnon(now time.Time, l *link, m transport.Meta, e *envelope.Envelope) bool {
	payload, port, reply, err := r.id.OpenAnonymous(e)
	if err != nil {
		return false
	}
	r.addCrumb(now, e.Token, l, m.From)
	r.stats.Delivered++
	r.actions = append(r.actions, &Deliver{Port: port, Payload: payload, Anonymous: true, ReplyTo: reply})
	return true
}

func (r *Router) onAnonReply(now time.Time, l *link, raw []byte, e *envelope.Envelope, m transport.Meta, k uint64) {
	if ent, dup := r.dedup.seen(k); dup {
		r.heardRelay(l, k)
		if r.secs(now)-ent.at < uint32(crumbLife/time.Second) {
			r.drop(DropDuplicate)
			return
		}
	}
	r.dedup.put(k, dedupEntry{at: r.secs(now), heard: 1})
	if exp, ok := r.ownToks[e.Token]; ok && now.Before(exp) {
		r.actions = append(r.actions, &AnonReplyReceived{Token: e.Token, Data: clone(raw)})
		return
	}
	if raw[envelope.OffsetTTL] == 0 {
		r.drop(DropTTL)
		return
	}
	if c, ok := r.crumbs[e.Token]; ok && now.Before(c.expires) && r.linkByID[c.link.id] == c.link {
		data := clone(raw)
		envelope.Relay(data)
		r.stats.Relayed++
		r.emit(now, c.link, c.nb, transport.PriorityRelay, data, envelope.KindAnonReply, false)
		return
	}
	// No breadcrumb: a flood scoped to a few hops.
	data := clone(raw)
	data[envelope.OffsetTTL] = min(data[envelope.OffsetTTL], 3)
	r.floodRelay(now, l, m, data, k, envelope.KindAnonReply)
}

func (r *Router) onFlood(now time.Time, l *link, raw []byte, e *envelope.Envelope, m transport.Meta, k uint64) {
	if _, dup := r.dedup.seen(k); dup {
		r.heardRelay(l, k)
		r.drop(DropDuplicate)
		return
	}
	if e.Kind == envelope.KindQuery {
		if _, own := r.ownToks[e.Token]; own {
			r.drop(DropOwn)
			return
		}
		r.addCrumb(now, e.Token, l, m.From)
	}
	v := FloodRelay
	if r.o.FloodFilter != nil {
		v = r.o.FloodFilter(now, l.id, m.From, e)
	}
	if v == FloodDrop {
		r.drop(DropFiltered)
		return
	}
	r.actions = append(r.actions, &FloodReceived{Link: l.id, Kind: e.Kind, Data: clone(raw), Meta: m})
	if v == FloodRelay {
		if e.Hops >= r.o.MaxHops {
			r.drop(DropHops)
			return
		}
		r.floodRelay(now, l, m, raw, k, e.Kind)
	}
}

// Originate sends a Channel, Flood or Query envelope built by a layer above
// on every link.
func (r *Router) Originate(now time.Time, raw []byte) error {
	r.begin(now)
	defer r.end()
	e, err := envelope.Parse(raw)
	if err != nil {
		return err
	}
	switch e.Kind {
	case envelope.KindChannel, envelope.KindFlood, envelope.KindQuery:
	default:
		return ErrNotFlood
	}
	if e.Kind == envelope.KindQuery {
		r.ownToks[e.Token] = now.Add(crumbLife)
	}
	r.dedup.put(r.sip.envelopeKey(raw), dedupEntry{at: r.secs(now), heard: 1})
	for _, l := range r.links {
		r.spendControl(now, l, len(raw), true)
		r.emit(now, l, transport.Broadcast, transport.PriorityOwn, clone(raw), e.Kind, true)
	}
	return nil
}

// heldMsg is another node's envelope (or an own anonymous one) waiting for
// a route.
type heldMsg struct {
	key   uint64
	rec   heldRecord
	dst   envelope.Addr
	src   envelope.Hint
	kind  envelope.Kind
	retry time.Time
	// noticed: when the sender was last told (held notice).
	noticed time.Time
	// tries counts forwarding attempts that were not confirmed (custody:
	// the envelope stays held until the next hop is heard passing it on).
	tries uint8
	// probing: a copy is out, its hop acknowledgement awaited.
	probing bool
}

func (r *Router) addHeld(h *heldMsg) {
	r.held = append(r.held, h)
	r.heldBytes += len(h.rec.Raw)
}

func heldKey(k uint64) []byte { return binary.BigEndian.AppendUint64(nil, k) }

// hold keeps raw for store-and-forward under the quotas.
func (r *Router) hold(now time.Time, raw []byte, e *envelope.Envelope, k uint64) {
	r.holdAsk(now, raw, e, k, true)
}

// holdAsk is hold; ask: send a path request for the destination (not when
// a route exists and only its next hop failed).
func (r *Router) holdAsk(now time.Time, raw []byte, e *envelope.Envelope, k uint64, ask bool) {
	size := len(raw)
	if r.heldBytes+size > r.o.HeldBytes {
		r.drop(DropHeldQuota)
		return
	}
	quota := r.o.HeldBytes / 4
	dstH, srcH := e.Dst.Hint(), srcHint(e)
	perDst, perSrc := size, size
	for _, h := range r.held {
		if h.key == k {
			// Already held. (An end-to-end retry of a held Data
			// envelope is answered before it gets here: forwardUnicast.)
			return
		}
		if h.dst.Hint() == dstH {
			perDst += len(h.rec.Raw)
		}
		if srcH != (envelope.Hint{}) && h.src == srcH {
			perSrc += len(h.rec.Raw)
		}
	}
	if perDst > quota || perSrc > quota {
		r.drop(DropHeldQuota)
		return
	}
	h := &heldMsg{key: k, rec: heldRecord{Received: now, Expires: now.Add(r.o.MessageTTL), Raw: clone(raw)},
		dst: e.Dst, src: srcH, kind: e.Kind, retry: now.Add(time.Minute)}
	r.addHeld(h)
	if r.debug {
		r.trace("hold", "kind", e.Kind, "dst", e.Dst, "counter", e.Counter, "key", k)
	}
	r.batch.Put(BucketHeld, heldKey(k), h.rec.marshal())
	r.noticeHeld(now, h, e)
	if ask {
		r.pathRequestFor(now, e.Dst)
	}
}

// pathRequestFor asks for a route to a, by full address when one known
// peer matches.
func (r *Router) pathRequestFor(now time.Time, a envelope.Addr) {
	if !a.IsFull() {
		if c := r.hints[a.Hint()]; len(c) == 1 {
			a = envelope.FullAddr(c[0].addr)
		} else {
			return // unknown hint: wait for an announce
		}
	}
	r.pathRequest(now, a)
}

func (r *Router) removeHeld(i int) {
	h := r.held[i]
	r.heldBytes -= len(h.rec.Raw)
	r.batch.Delete(BucketHeld, heldKey(h.key))
	r.held = append(r.held[:i], r.held[i+1:]...)
}

func (r *Router) tickHeld(now time.Time) {
	for i := 0; i < len(r.held); {
		h := r.held[i]
		if !now.Before(h.rec.Expires) {
			r.drop(DropExpired)
			r.removeHeld(i)
			continue
		}
		if !h.retry.IsZero() && !now.Before(h.retry) {
			e, err := envelope.Parse(h.rec.Raw)
			if err == nil && r.hasRoute(now, e.Dst) {
				if h.tries >= maxHeldTries {
					// Custody ends: the next hop never took it. The
					// sender's own retries (at most RetryMax/2 after
					// our last notice) try other ways.
					r.drop(DropHeldGivenUp)
					r.removeHeld(i)
					continue
				}
				if r.probingFor(h) {
					// One copy per destination at a time: when it is
					// confirmed the others follow (heldConfirmed).
					h.retry = now.Add(heldBackoff(h.tries))
					i++
					continue
				}
				if h.tries > 0 && r.hasRadio() {
					if ok, wait := r.spendRetry(now); !ok {
						h.retry = now.Add(wait)
						i++
						continue
					}
				}
				if r.debug {
					r.trace("held forward", "dst", e.Dst, "counter", e.Counter, "key", h.key, "tries", h.tries)
				}
				r.forwardUnicast(now, nil, transport.Meta{}, h.rec.Raw, &e, h.key, false)
				if !r.waitingFor(h.key) {
					// Handed to a link that acknowledges itself.
					r.removeHeld(i)
					continue
				}
				// Custody: keep it until the next hop is heard passing
				// it on (heldConfirmed), and try again later if not.
				h.probing = true
				h.retry = now.Add(heldBackoff(h.tries))
				if h.tries < 0xff {
					h.tries++
				}
				i++
				continue
			}
			h.probing = false
			h.retry = now.Add(5 * time.Minute)
			r.pathRequestFor(now, h.dst)
		}
		i++
	}
}

// maxHeldTries bounds the unconfirmed forwarding attempts of a held
// envelope whose destination has a route (about half an hour with
// heldBackoff).
const maxHeldTries = 7

// heldBackoff is the wait before forwarding a held envelope again after
// tries unconfirmed attempts: 15 seconds (a busy channel that ate the hop
// tries may be free again), doubling, at most 16 minutes.
func heldBackoff(tries uint8) time.Duration {
	return 15 * time.Second << min(tries, 6)
}

func (r *Router) heldByKey(k uint64) *heldMsg {
	for _, h := range r.held {
		if h.key == k {
			return h
		}
	}
	return nil
}

// probingFor reports whether another envelope held for h's destination has
// a copy out awaiting its hop acknowledgement.
func (r *Router) probingFor(h *heldMsg) bool {
	for _, x := range r.held {
		if x != h && x.probing && x.dst.Hint() == h.dst.Hint() {
			return true
		}
	}
	return false
}

func (r *Router) waitingFor(k uint64) bool {
	for _, w := range r.waits {
		if w.key == k {
			return true
		}
	}
	return false
}

// heldConfirmed releases the held envelope with key k, whose copy the next
// hop was heard passing on (or acknowledged): custody moved on. What waits
// for the same destination follows at once.
func (r *Router) heldConfirmed(now time.Time, k uint64) {
	for i, h := range r.held {
		if h.key != k {
			continue
		}
		if r.debug {
			r.trace("held confirmed", "dst", h.dst, "key", k)
		}
		r.removeHeld(i)
		for _, x := range r.held {
			if x.dst.Hint() == h.dst.Hint() && !x.probing {
				x.retry = now
			}
		}
		return
	}
}

// holdGivenUp takes custody of a relayed Data envelope whose next hop never
// passed it on (hop tries exhausted): a destination that went away is
// waited for here, near it, rather than by the sender's end-to-end retries
// over the whole path.
func (r *Router) holdGivenUp(now time.Time, data []byte, e *envelope.Envelope, k uint64) {
	if e.Kind != envelope.KindData || e.Src.Matches(r.addr) {
		return // own messages are retried from the outbox
	}
	if h := r.heldByKey(k); h != nil {
		// A probe that failed: the others for its destination wait for
		// its next attempt rather than failing one by one.
		h.probing = false
		for _, x := range r.held {
			if x != h && x.dst.Hint() == h.dst.Hint() && x.retry.Before(h.retry) {
				x.retry = h.retry
			}
		}
		return
	}
	raw := clone(data)
	// Undo this node's relay increment: forwarding it again adds it.
	if raw[envelope.OffsetHops] > 0 && raw[envelope.OffsetHops] < 0xff {
		raw[envelope.OffsetHops]--
	}
	raw[envelope.OffsetTTL]++
	r.holdAsk(now, raw, e, k, false)
	if h := r.heldByKey(k); h != nil {
		h.tries = 1
		h.retry = now.Add(heldBackoff(1))
	}
}

func (r *Router) hasRoute(now time.Time, a envelope.Addr) bool {
	for _, p := range r.lookup(a) {
		if p.addr != r.addr && p.best(now) != nil {
			return true
		}
	}
	return false
}

func (r *Router) knowsKeyFor(a envelope.Addr) bool {
	for _, p := range r.lookup(a) {
		if p.hasKey {
			return true
		}
	}
	return false
}

// pathRequestHint asks who has the key (announce) behind a hint, at most
// once a minute per hint.
func (r *Router) pathRequestHint(now time.Time, a envelope.Addr) {
	h := a.Hint()
	if t, ok := r.hintReqs[h]; ok && now.Sub(t) < time.Minute {
		return
	}
	if len(r.hintReqs) >= 64 {
		clear(r.hintReqs)
	}
	r.hintReqs[h] = now
	r.pathRequest(now, envelope.HintAddr(h))
}
