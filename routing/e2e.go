package routing

import (
	"errors"
	"fmt"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// outMsg is an own message in the outbox.
type outMsg struct {
	rec  outRecord
	next time.Time // next (re)transmission
	// inFlightCommit: sealed, waiting for the counter and bytes to be
	// durable before the first transmission.
	inFlightCommit bool
	// waiting: the last attempt found no key or no route.
	waiting bool
	done    bool
	held    bool // StateHeld reported
	// heldWait: the attempt whose retry a held notice postponed already
	// (an unauthenticated notice postpones each attempt's retry once).
	heldWait uint16
	first    time.Time // first transmission, for round-trip samples
	hops     uint8     // route length then
}

// Send queues payload for dst's application port and returns the message
// id. The message is stored (Status StateQueued once durable), sent when a
// key and a route are known, retried with backoff until the end-to-end
// acknowledgement (StateDelivered) or Options.MessageTTL (StateExpired).
func (r *Router) Send(now time.Time, dst Dest, port uint8, payload []byte) (MsgID, error) {
	r.begin(now)
	defer r.end()
	if dst.HasKey {
		dst.Address = dst.Key.Address()
		if _, err := dst.Key.X25519(); err != nil {
			return 0, err
		}
	}
	if dst.Address == r.addr {
		return 0, ErrSelf
	}
	// Header, key, port byte and tag on top of the payload.
	if len(payload) > envelope.MaxSize-128 {
		return 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(payload))
	}
	perDst := 0
	for _, m := range r.outbox {
		if m.rec.Dst == dst.Address {
			perDst++
		}
	}
	if len(r.outbox) >= r.o.MaxOutbox || perDst >= max(1, r.o.MaxOutbox/4) {
		return 0, ErrOutboxFull
	}
	if !dst.HasKey {
		if p := r.peers[dst.Address]; p != nil && p.hasKey {
			dst.Key, dst.HasKey = p.key, true
		}
	}
	r.nextID++
	id := r.nextID
	if id >= r.idRsv {
		r.idRsv = id + idBlock
		r.batch.Put(BucketMeta, metaMsgID, msgKey(r.idRsv))
	}
	m := &outMsg{rec: outRecord{ID: id, Created: now, Expires: now.Add(r.o.MessageTTL), Dst: dst.Address,
		Key: dst.Key, HasKey: dst.HasKey, Port: port, Payload: clone(payload)}, next: now}
	r.outbox = append(r.outbox, m)
	r.saveOut(m)
	r.after(func(time.Time) {
		if !m.done {
			r.status(m, StateQueued, nil)
		}
	})
	r.peerForAddr(dst.Address, now).lastUsed = now
	r.trySend(now, m)
	return id, nil
}

func (r *Router) saveOut(m *outMsg) {
	r.batch.Put(BucketOutbox, msgKey(m.rec.ID), m.rec.marshal())
}

func (r *Router) status(m *outMsg, s MsgState, err error) {
	r.actions = append(r.actions, &Status{ID: m.rec.ID, State: s, To: m.rec.Dst, Attempts: int(m.rec.Attempts), Err: err})
}

func (r *Router) finish(m *outMsg, s MsgState, err error) {
	m.done = true
	for i, x := range r.outbox {
		if x == m {
			r.outbox = append(r.outbox[:i], r.outbox[i+1:]...)
			break
		}
	}
	if m.rec.Counter != 0 {
		delete(r.outByAck, ackKey{m.rec.Dst, m.rec.Counter})
	}
	r.batch.Delete(BucketOutbox, msgKey(m.rec.ID))
	r.status(m, s, err)
}

// trySend seals (once) and transmits an own message, or waits for what is
// missing.
func (r *Router) trySend(now time.Time, m *outMsg) {
	p := r.peerForAddr(m.rec.Dst, now)
	if !m.rec.HasKey {
		if !p.hasKey {
			m.waiting = true
			r.pathRequest(now, envelope.FullAddr(m.rec.Dst))
			m.next = now.Add(max(r.o.RetryMin, pathReqBackoff(p.pathReqN)))
			return
		}
		m.rec.Key, m.rec.HasKey = p.key, true
	}
	if !p.hasKey {
		p.key, p.hasKey = m.rec.Key, true
	}
	if m.rec.Sealed == nil {
		pair := r.pairFor(p, p.e2eState().pq != nil, false)
		if pair == nil {
			r.finish(m, StateFailed, ErrNoKey)
			return
		}
		c := r.allocCounter(p)
		withKey := !p.e2e.acked && (r.o.AlwaysSendKey || p.ann == nil)
		sealed, err := pair.Seal(nil, c, m.rec.Payload, envelope.SealOptions{IncludeKey: withKey, Port: m.rec.Port, TTL: r.o.MaxHops})
		if err != nil {
			r.finish(m, StateFailed, err)
			return
		}
		m.rec.Sealed, m.rec.Counter, m.rec.Payload = sealed, c, nil
		r.outByAck[ackKey{m.rec.Dst, c}] = m
		r.saveOut(m)
		m.inFlightCommit = true
		r.after(func(now time.Time) {
			m.inFlightCommit = false
			if !m.done {
				r.transmitOwn(now, m)
			}
		})
		return
	}
	r.transmitOwn(now, m)
}

func (r *Router) transmitOwn(now time.Time, m *outMsg) {
	p := r.peerForAddr(m.rec.Dst, now)
	rt := r.route(now, p)
	if rt == nil {
		m.waiting = true
		r.pathRequest(now, envelope.FullAddr(m.rec.Dst))
		m.next = now.Add(max(r.o.RetryMin, pathReqBackoff(p.pathReqN)))
		return
	}
	m.waiting = false
	if m.rec.Attempts > 0 && rt.link.radio {
		if ok, wait := r.spendRetry(now); !ok {
			m.next = now.Add(wait)
			return
		}
	}
	data := clone(m.rec.Sealed)
	if e, err := envelope.Parse(data); err == nil {
		// Remembered like a relayed copy, so that one coming back to us
		// reveals a loop.
		r.dedup.put(r.sip.envelopeKey(data), dedupEntry{at: r.secs(now), heard: 1})
		r.sendHop(now, rt, data, &e, transport.PriorityOwn)
	}
	if m.rec.Attempts == 0 {
		m.first, m.hops = now, rt.hops
		r.status(m, StateSent, nil)
	} else {
		r.stats.Retries++
	}
	if m.rec.Attempts < 0xffff {
		m.rec.Attempts++
	}
	m.next = now.Add(r.rto(rt, len(m.rec.Sealed), int(m.rec.Attempts)))
}

// rto is the wait for an acknowledgement before the attempt-th retry:
// RetryMin plus three times the expected round trip over the route's hops
// (a smoothed per-hop round trip measured from acknowledgements of first
// transmissions, as TCP does with Karn's rule), doubled per attempt,
// capped at RetryMax.
func (r *Router) rto(rt *route, n int, attempt int) time.Duration {
	perHop := r.rttHopFast
	if rt.link.radio {
		perHop = max(r.rttHopRadio, 2*rt.link.airtime(n))
	}
	d := r.o.RetryMin + 3*time.Duration(int(rt.hops)+1)*perHop
	if rt.link.info.Overhears {
		// Relays retransmit a hop whose passive acknowledgement is
		// missing; leave time for that before retrying the whole path.
		d += (1<<maxHopTries - 1) * r.hopTimeout(rt.link, n)
	}
	// Relays drop a copy seen within unicastDedupWindow as a duplicate.
	d = max(d, unicastDedupWindow+5*time.Second)
	for i := 1; i < attempt && d < r.o.RetryMax; i++ {
		d *= 2
	}
	return min(d, r.o.RetryMax)
}

func (r *Router) tickOutbox(now time.Time) {
	for i := 0; i < len(r.outbox); {
		m := r.outbox[i]
		if !now.Before(m.rec.Expires) {
			r.stats.Expired++
			r.finish(m, StateExpired, ErrExpired)
			continue
		}
		if !m.inFlightCommit && !now.Before(m.next) {
			r.trySend(now, m)
		}
		if i < len(r.outbox) && r.outbox[i] == m {
			i++
		}
	}
}

// pairFor returns the pair to use with p: with the post-quantum secret
// when pq (nil if none is known), the previous secret when old.
func (r *Router) pairFor(p *peer, pq, old bool) *envelope.Pair {
	if !p.hasKey {
		return nil
	}
	s := p.e2eState()
	var err error
	switch {
	case pq && old:
		if s.pqOld == nil {
			return nil
		}
		if s.pairPQOld == nil {
			s.pairPQOld, err = envelope.NewPair(r.id, p.key, s.pqOld)
		}
		return nilOnErr(s.pairPQOld, err)
	case pq:
		if s.pq == nil {
			return nil
		}
		if s.pairPQ == nil {
			s.pairPQ, err = envelope.NewPair(r.id, p.key, s.pq)
		}
		return nilOnErr(s.pairPQ, err)
	}
	if s.pair == nil {
		s.pair, err = envelope.NewPair(r.id, p.key, nil)
	}
	return nilOnErr(s.pair, err)
}

func nilOnErr(p *envelope.Pair, err error) *envelope.Pair {
	if err != nil {
		return nil
	}
	return p
}

func (r *Router) allocCounter(p *peer) uint32 {
	s := p.e2eState()
	s.next++
	if s.next > s.reserved || s.reserved == 0 {
		s.reserved = s.next + counterBlock - 1
		r.savePeer(p)
	}
	return s.next
}

func (r *Router) savePeer(p *peer) {
	s := p.e2eState()
	rec := peerRecord{Key: p.key, Acked: s.acked, Reserved: s.reserved, Window: s.window, HasWindow: s.hasWindow, PQ: s.pq}
	r.batch.Put(BucketPeers, p.addr[:], rec.marshal())
}

// openData finds the peer whose keys open e.
func (r *Router) openData(now time.Time, e *envelope.Envelope) (*peer, []byte, uint8, bool, bool) {
	var cands []*peer
	if e.Flags&envelope.FlagKey != 0 {
		if _, err := e.Key.X25519(); err != nil {
			return nil, nil, 0, false, false
		}
		p := r.peers[e.Key.Address()]
		if p == nil || !p.hasKey {
			// A stranger: try its keys on a scratch peer and remember it
			// only if the envelope opens, so junk cannot fill the table.
			p = &peer{addr: e.Key.Address(), key: e.Key, hasKey: true, cur: -1}
		}
		cands = []*peer{p}
	} else {
		cands = r.lookup(e.Src)
	}
	pq := e.Flags&envelope.FlagPQ != 0
	for _, p := range cands {
		for _, old := range []bool{false, true} {
			if old && !pq {
				break
			}
			pair := r.pairFor(p, pq, old)
			if pair == nil {
				continue
			}
			ok := false
			var payload []byte
			var port uint8
			if e.Kind == envelope.KindAck {
				ok = pair.VerifyAck(e) == nil
			} else {
				var err error
				payload, port, err = pair.Open(nil, e)
				ok = err == nil
			}
			if !ok {
				continue
			}
			if r.peers[p.addr] != p {
				// The scratch peer proved itself: keep it, with its pair.
				q := r.peerForKey(p.key, now)
				if q.e2e == nil {
					q.e2e = p.e2e
				}
				p = q
			}
			return p, payload, port, pq, true
		}
	}
	return nil, nil, 0, false, false
}

// receiveData opens a Data envelope addressed to us, delivers it exactly
// once and acknowledges it (again, if it is a duplicate). It reports false
// when no known key opens it.
func (r *Router) receiveData(now time.Time, l *link, m transport.Meta, e *envelope.Envelope) bool {
	p, payload, port, pq, ok := r.openData(now, e)
	if !ok {
		return false
	}
	p.lastUsed = now
	r.considerRoute(now, p, l, m.From, e.Hops, 0, false, m)
	s := p.e2eState()
	full := e.Flags&envelope.FlagFull != 0
	c := e.Counter
	if err := s.window.Check(c); err != nil {
		if errors.Is(err, envelope.ErrReplay) {
			r.stats.Duplicates++
			r.after(func(now time.Time) { r.sendAck(now, p, c, pq, full, l, m.From) })
		} else {
			r.drop(DropReplayStale)
		}
		return true
	}
	_ = s.window.Accept(c)
	s.hasWindow = true
	r.savePeer(p)
	id := InboundID{From: p.addr, Counter: c}
	rec := inboxRecord{From: p.key, Port: port, Payload: payload}
	r.batch.Put(BucketInbox, inboxKey(id), rec.marshal())
	from := p.key
	r.stats.DeliveredHops += uint64(e.Hops)
	r.after(func(now time.Time) {
		r.stats.Delivered++
		r.actions = append(r.actions, &Deliver{ID: id, From: from, Port: port, Payload: payload})
		r.sendAck(now, p, c, pq, full, l, m.From)
	})
	return true
}

// sendAck acknowledges p's message counter. The Ack goes back to the
// neighbour the Data came from (nb on l), the reverse of a path that just
// worked, whose relays left breadcrumbs and will cache the Ack; else along
// the route to p.
func (r *Router) sendAck(now time.Time, p *peer, counter uint32, pq, full bool, l *link, nb transport.Addr) {
	pair := r.pairFor(p, pq, false)
	if pair == nil {
		return
	}
	ack, err := pair.Ack(counter, envelope.SealOptions{Full: full, TTL: r.o.MaxHops})
	if err != nil {
		return
	}
	e, err := envelope.Parse(ack)
	if err != nil {
		return
	}
	if l != nil && r.linkByID[l.id] == l {
		// hops unknown: the neighbour's address says whether it is p.
		r.sendHop(now, &route{link: l, nb: nb, hops: 1}, ack, &e, transport.PriorityOwn)
		return
	}
	if rt := r.route(now, p); rt != nil {
		r.sendHop(now, rt, ack, &e, transport.PriorityOwn)
		return
	}
	r.hold(now, ack, &e, r.sip.envelopeKey(ack))
}

// receiveAck matches an end-to-end acknowledgement to the outbox.
func (r *Router) receiveAck(now time.Time, l *link, m transport.Meta, e *envelope.Envelope) bool {
	p, _, _, _, ok := r.openData(now, e)
	if !ok {
		return false
	}
	p.lastUsed = now
	r.considerRoute(now, p, l, m.From, e.Hops, 0, false, m)
	s := p.e2eState()
	if !s.acked {
		s.acked = true
		r.savePeer(p)
	}
	om := r.outByAck[ackKey{p.addr, e.Counter}]
	if om == nil || om.done {
		return true // a duplicate ack
	}
	r.stats.Acked++
	if om.rec.Attempts == 1 && !om.first.IsZero() {
		// One round-trip sample per hop, smoothed with gain 1/8.
		sample := now.Sub(om.first) / time.Duration(int(om.hops)+1)
		if l.radio {
			r.rttHopRadio += (sample - r.rttHopRadio) / 8
		} else {
			r.rttHopFast += (sample - r.rttHopFast) / 8
		}
	}
	r.finish(om, StateDelivered, nil)
	return true
}

// AppAck tells the router the application has safely consumed a delivered
// message; it is then forgotten (until then a restart delivers it again).
func (r *Router) AppAck(now time.Time, id InboundID) {
	r.begin(now)
	defer r.end()
	r.batch.Delete(BucketInbox, inboxKey(id))
}

// SendAnonymous seals payload to key from a one-time key, so nothing in it
// names this node, and sends it. The reply (if any) arrives as an
// AnonReplyReceived for the returned token; open it with the returned key.
// Anonymous messages are not acknowledged or retried; with no route they
// are held like relayed traffic.
func (r *Router) SendAnonymous(now time.Time, key envelope.PublicKey, port uint8, payload []byte) (envelope.Token, *envelope.ReplyKey, error) {
	r.begin(now)
	defer r.end()
	var t envelope.Token
	if err := r.readEntropy(t[:]); err != nil {
		return t, nil, err
	}
	raw, rk, err := envelope.SealAnonymous(r.entropy, key, t, payload, envelope.AnonOptions{Port: port, TTL: r.o.MaxHops})
	if err != nil {
		return t, nil, err
	}
	r.ownToks[t] = now.Add(crumbLife)
	k := r.sip.envelopeKey(raw)
	r.dedup.put(k, dedupEntry{at: r.secs(now), heard: 1})
	p := r.peerForKey(key, now)
	p.lastUsed = now
	e, err := envelope.Parse(raw)
	if err != nil {
		return t, nil, err
	}
	if rt := p.best(now); rt != nil {
		r.emit(now, rt.link, rt.nb, transport.PriorityOwn, raw, envelope.KindAnon, false)
	} else {
		r.hold(now, raw, &e, k)
	}
	return t, rk, nil
}

// Reply answers an anonymous message or query: it follows the breadcrumb
// the request left, or floods a few hops when there is none.
func (r *Router) Reply(now time.Time, to envelope.ReplyTo, port uint8, payload []byte) error {
	r.begin(now)
	defer r.end()
	raw, err := envelope.SealAnonReply(r.entropy, to, payload, port, r.o.MaxHops)
	if err != nil {
		return err
	}
	r.replyAlong(now, to.Token, raw)
	return nil
}

// replyAlong sends an anon-reply back along the token's breadcrumb, or as
// a flood scoped to a few hops when there is none.
func (r *Router) replyAlong(now time.Time, token envelope.Token, raw []byte) {
	k := r.sip.envelopeKey(raw)
	r.dedup.put(k, dedupEntry{at: r.secs(now), heard: 1})
	if c, ok := r.crumbs[token]; ok && now.Before(c.expires) && r.linkByID[c.link.id] == c.link {
		r.emit(now, c.link, c.nb, transport.PriorityOwn, raw, envelope.KindAnonReply, false)
		return
	}
	raw[envelope.OffsetTTL] = 3
	for _, l := range r.links {
		r.spendControl(now, l, len(raw), true)
		r.emit(now, l, transport.Broadcast, transport.PriorityOwn, clone(raw), envelope.KindAnonReply, true)
	}
}

// Counter returns the send counter an own message was sealed with (the
// nonce, which with the two addresses identifies it on the wire), once it
// has been sealed.
func (r *Router) Counter(id MsgID) (uint32, bool) {
	for _, m := range r.outbox {
		if m.rec.ID == id {
			return m.rec.Counter, m.rec.Counter != 0
		}
	}
	return 0, false
}
