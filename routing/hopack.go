package routing

import (
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Hop acknowledgements. On a shared medium whose link reports overheard
// frames (LinkInfo.Overhears), a node that hands a Data or Ack envelope to
// a neighbour expects to hear that neighbour pass it on (or, when the
// neighbour is the destination of a Data envelope, to receive its Ack). If
// it hears nothing it sends the frame again, up to maxHopTries times, and
// counts the failure against the neighbour, whose routes then cost more.
// Nothing is added on the wire.

// hopWait is a unicast frame waiting for its passive acknowledgement.
type hopWait struct {
	key      uint64
	link     *link
	nb       transport.Addr
	data     []byte
	kind     envelope.Kind
	prio     transport.Priority
	src, dst envelope.Hint // of the envelope, to match the Ack of a Data
	counter  uint32
	dstAddr  envelope.Addr
	deadline time.Time
	sent     time.Time
	tries    uint8
	last     bool // to the destination itself: its Ack confirms
}

const (
	maxHopTries = 2   // passively watched transmissions of one frame
	maxHopWaits = 256 // frames waiting at once
)

// sendHop sends an envelope to the next hop of rt. When the link reports
// overheard frames and the neighbour's next move can be heard (it passes a
// Data or Ack envelope on, or, as the destination of a Data envelope,
// acknowledges it), the frame goes without a link acknowledgement (NoAck)
// and the router watches for the passive one instead.
func (r *Router) sendHop(now time.Time, rt *route, data []byte, e *envelope.Envelope, prio transport.Priority) {
	r.sendHopC(now, rt, data, e, prio, false)
}

// sendHopC is sendHop for control frames too (path replies), counted as
// such.
func (r *Router) sendHopC(now time.Time, rt *route, data []byte, e *envelope.Envelope, prio transport.Priority, control bool) {
	l := rt.link
	watch := r.hopWatchable(rt, e)
	// The last hop of an Ack goes unacknowledged too: if it is lost, the
	// sender's end-to-end retry meets a relay that has the Ack already
	// and answers with it (replayAck), or the destination, which
	// acknowledges again.
	noAck := watch || (r.passive(l) && (e.Kind == envelope.KindAck || e.Kind == envelope.KindPathReply) && !r.linkAcked(l, e.Kind))
	r.emitFrame(now, l, SendFrame{Link: l.id, To: rt.nb, Priority: prio, Data: data, Kind: e.Kind, NoAck: noAck}, control)
	if watch {
		r.addWait(now, rt, data, e, prio, 1)
	}
}

// passive reports whether frames on l are acknowledged passively: a shared
// medium that reports frames addressed to other neighbours.
func (r *Router) passive(l *link) bool { return l.info.Overhears && l.info.Broadcast }

// linkAcked reports whether Data and Ack envelopes (kind k) on the shared
// medium l go with the link's own acknowledgement instead of a passive
// one: on a big radio mesh (more than bigRadioMesh known nodes). There
// hidden senders fill the channel, and the confirmation a passive
// acknowledgement waits for — the neighbour's own forward of the frame,
// sent later — is lost about as often as the frame itself (lora-500: a
// quarter of Data frames lost to collisions at their addressee), so hops
// that had worked were sent again, and hops that failed twice went into
// custody whose retries the retry budget held back. The link's SACK is a
// quarter of a Data frame's airtime and follows it at once: lora-500
// delivered 57 % instead of 49 % with Data acknowledged so, and with Acks
// too their senders learnt of 46 % of the messages instead of 38 %
// (docs/routing.md).
func (r *Router) linkAcked(l *link, k envelope.Kind) bool {
	return r.passive(l) && len(r.peers) > bigRadioMesh && (k == envelope.KindData || k == envelope.KindAck)
}

// bigMeshLinkRounds bounds the link's retransmission rounds of a Data
// envelope on a big radio mesh: a neighbour that did not answer three
// rounds is not helped by five more on a busy channel (lora-500: 57 %
// delivered with 3, 53 % with 2, and 8 rounds cost 4.7x the ideal airtime;
// 4 rounds buy a point or so for a fifth more airtime).
const bigMeshLinkRounds = 3

// bigMeshAckRounds bounds them for an Ack envelope. An Ack is worth more
// than a Data hop: it carries a delivery the whole path paid for, and when
// it is lost the sender sends the Data over every hop again (its retries
// wait for the retry budget) and learns of the delivery late or never.
// Its frame is about half a Data frame. lora-500, seeds 1–3: senders
// learnt of 59.6 / 59.1 / 60.0 % of their messages instead of 53.7 / 52.2
// / 53.7 %, delivery the same (63.7 / 63.4 / 63.7 % against 64.3 / 63.0 /
// 64.1 %), for 3.5 % more airtime (docs/routing.md).
const bigMeshAckRounds = 5

// linkRounds is SendFrame.MaxRounds for an envelope of kind k on l
// (emitFrame sets it on every frame that asks for the link's
// acknowledgement).
func (r *Router) linkRounds(l *link, k envelope.Kind) uint8 {
	switch {
	case !r.linkAcked(l, k):
		return 0
	case k == envelope.KindAck:
		return bigMeshAckRounds
	}
	return bigMeshLinkRounds
}

// hopWatchable reports whether a passive acknowledgement can confirm e sent
// over rt: only on a broadcast link that reports overheard frames, only for
// Data (the next hop forwards it, or the destination acknowledges it) and
// for an Ack or path reply that still has hops to go (nothing confirms
// their last hop), and not for what the link acknowledges (linkAcked).
func (r *Router) hopWatchable(rt *route, e *envelope.Envelope) bool {
	if !r.passive(rt.link) || rt.nb == transport.Broadcast {
		return false
	}
	switch e.Kind {
	case envelope.KindData:
		return !r.linkAcked(rt.link, e.Kind)
	case envelope.KindAck, envelope.KindPathReply:
		if r.linkAcked(rt.link, e.Kind) {
			return false
		}
		h := e.Dst.Hint()
		return rt.hops > 0 && string(rt.nb) != string(h[:])
	}
	return false
}

func (r *Router) addWait(now time.Time, rt *route, data []byte, e *envelope.Envelope, prio transport.Priority, tries uint8) {
	if len(r.waits) >= maxHopWaits {
		r.waits = r.waits[1:]
	}
	w := &hopWait{key: r.sip.envelopeKey(data), link: rt.link, nb: rt.nb, data: data, kind: e.Kind, prio: prio,
		dstAddr: e.Dst, counter: e.Counter, src: e.Src.Hint(), dst: e.Dst.Hint(), tries: tries}
	h := e.Dst.Hint()
	w.last = string(rt.nb) == string(h[:])
	// Each try waits twice as long: what keeps a frame from getting
	// through (a hidden neighbour's traffic, a busy next hop) tends to
	// last a while.
	w.deadline = now.Add(r.hopTimeout(rt.link, len(data)) << (tries - 1))
	if w.last {
		// The destination acknowledges once its store committed.
		w.deadline = w.deadline.Add(r.o.CommitDelay)
	}
	w.sent = now
	r.waits = append(r.waits, w)
}

// hopTimeout allows the neighbour to queue, contend for the channel and
// send the frame on (or its Ack back). It adapts to what the link measures
// (a smoothed time from handing a frame over to hearing it passed on, and
// its variation, as TCP's retransmission timer: RFC 6298), at least a
// second, two seconds until measured.
func (r *Router) hopTimeout(l *link, n int) time.Duration {
	base := 2 * time.Second
	if l.hopSRTT > 0 {
		base = max(time.Second, l.hopSRTT+4*l.hopVar)
	}
	return base + 2*l.airtime(n) + time.Duration(r.rnd.Int64N(int64(250*time.Millisecond)))
}

// hopSample feeds the link's hop timer with the delay of a passive
// acknowledgement of a first transmission (Karn's rule).
func (l *link) hopSample(d time.Duration) {
	if l.hopSRTT == 0 {
		l.hopSRTT, l.hopVar = d, d/2
		return
	}
	diff := d - l.hopSRTT
	if diff < 0 {
		diff = -diff
	}
	l.hopVar += (diff - l.hopVar) / 4
	l.hopSRTT += (d - l.hopSRTT) / 8
}

// hopConfirm settles waits for the envelope with key k heard from nb on l,
// and for Data envelopes that an Ack e (received) answers.
func (r *Router) hopConfirm(l *link, nb transport.Addr, k uint64, e *envelope.Envelope) {
	for i := 0; i < len(r.waits); {
		w := r.waits[i]
		ok := w.link == l && w.key == k && w.nb == nb
		// The Ack of a Data envelope, or the next hop's held notice for
		// it (the Data reached a node that keeps it; not a notice we or
		// others pass on), settles its waits.
		if !ok && e != nil && (e.Kind == envelope.KindAck || (e.Kind == envelope.KindHeld && nb == w.nb)) && w.kind == envelope.KindData && w.link == l &&
			w.counter == e.Counter && w.src == e.Dst.Hint() && w.dst == e.Src.Hint() {
			ok = true
		}
		if !ok {
			i++
			continue
		}
		if n := l.neighbours[w.nb]; n != nil {
			n.outcome(false)
		}
		if w.tries == 1 && !w.last {
			l.hopSample(r.now.Sub(w.sent))
		}
		r.waits = append(r.waits[:i], r.waits[i+1:]...)
		if len(r.held) > 0 {
			r.heldConfirmed(r.now, w.key)
		}
	}
}

// tickHops retransmits frames whose acknowledgement is overdue, to the best
// route now (the missing acknowledgement made the neighbour costlier, so
// it may be another one), watched again. A neighbour that did pass the
// frame on, unheard, answers the copy (answerDuplicate).
func (r *Router) tickHops(now time.Time) {
	var due []*hopWait
	keep := r.waits[:0]
	for _, w := range r.waits {
		if now.Before(w.deadline) {
			keep = append(keep, w)
		} else {
			due = append(due, w)
		}
	}
	clear(r.waits[len(keep):])
	r.waits = keep
	for _, w := range due {
		if r.linkByID[w.link.id] != w.link {
			continue
		}
		n := w.link.neighbours[w.nb]
		if n != nil {
			n.outcome(true)
		}
		if r.debug {
			r.trace("hop ack missing", "kind", w.kind, "nb", []byte(w.nb), "try", w.tries, "dst", w.dstAddr)
		}
		r.rerouteVia(now, w.link, w.nb)
		e, err := envelope.Parse(w.data)
		if err != nil {
			continue
		}
		if w.tries >= maxHopTries {
			r.stats.HopGiveUps++
			r.holdGivenUp(now, w.data, &e, w.key)
			continue
		}
		var rt *route
		for _, p := range r.lookup(w.dstAddr) {
			// The best route now, without flap damping: the miss just
			// made this neighbour costlier, and a retry should not wait
			// for it to fail again to go another way.
			r.reselect(now, p, true)
			if x := p.best(now); x != nil {
				rt = x
				break
			}
		}
		if rt == nil {
			r.stats.HopGiveUps++
			r.holdGivenUp(now, w.data, &e, w.key)
			continue
		}
		r.stats.HopRetries++
		data := clone(w.data)
		if !r.hopWatchable(rt, &e) {
			r.emitFrame(now, rt.link, SendFrame{Link: rt.link.id, To: rt.nb, Priority: w.prio, Data: data, Kind: e.Kind}, false)
			continue
		}
		r.emitFrame(now, rt.link, SendFrame{Link: rt.link.id, To: rt.nb, Priority: w.prio, Data: data, Kind: e.Kind, NoAck: true}, false)
		r.addWait(now, rt, data, &e, w.prio, w.tries+1)
	}
}

// rerouteVia reconsiders the routes that go through a neighbour whose
// quality dropped.
func (r *Router) rerouteVia(now time.Time, l *link, nb transport.Addr) {
	for _, p := range r.peers {
		if p.cur >= 0 && p.routes[p.cur].link == l && p.routes[p.cur].nb == nb {
			r.reselect(now, p, false)
		}
	}
}

// answerDuplicate answers a neighbour that sent us, within the dedup
// window, a Data or Ack envelope we have passed on already: it did not hear
// us do so and will try again and again. When we carried the destination's
// Ack back already, the Ack answers a Data envelope (and goes on towards
// the sender if the neighbour lacks it); otherwise our copy goes back to
// the neighbour with TTL 0: it matches the frame the neighbour waits for,
// and a TTL-0 duplicate is never answered in turn. At most twice per
// envelope.
func (r *Router) answerDuplicate(now time.Time, l *link, m transport.Meta, raw []byte, e *envelope.Envelope, k uint64, ent dedupEntry) {
	if !r.passive(l) || m.From == transport.Broadcast || raw[envelope.OffsetTTL] == 0 {
		return
	}
	if e.Kind != envelope.KindData && e.Kind != envelope.KindAck {
		return
	}
	if ent.heard >= 3 {
		return
	}
	ent.heard++
	r.dedup.put(k, ent)
	if e.Kind == envelope.KindData {
		if c, ok := r.crumbs[r.flowToken(e.Src.Hint(), e.Dst.Hint(), e.Counter)]; ok && c.ack != nil && now.Before(c.expires) {
			r.replayAck(now, l, m.From, c.ack)
			return
		}
	}
	if r.linkAcked(l, e.Kind) {
		// The neighbour's link acknowledged it; nobody waits for an
		// echo.
		return
	}
	data := clone(raw)
	data[envelope.OffsetTTL] = 0
	r.stats.Echoes++
	r.emitFrame(now, l, SendFrame{Link: l.id, To: m.From, Priority: transport.PriorityRelay, Data: data, Kind: e.Kind, NoAck: true}, false)
}

// replayAck answers neighbour nb on l, which sent us a Data envelope whose
// Ack we carried back already (the crumb's ack), with a copy of that Ack.
func (r *Router) replayAck(now time.Time, l *link, nb transport.Addr, ack []byte) {
	r.stats.AckReplays++
	r.emitFrame(now, l, SendFrame{Link: l.id, To: nb, Priority: transport.PriorityRelay, Data: clone(ack), Kind: envelope.KindAck, NoAck: r.passive(l) && !r.linkAcked(l, envelope.KindAck)}, false)
}
