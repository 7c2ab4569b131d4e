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
	tries    uint8
}

const (
	maxHopTries = 3  // transmissions of one frame to one neighbour
	maxHopWaits = 64 // frames waiting at once
)

// sendHop sends an envelope to the next hop of rt, watching for its
// passive acknowledgement when the link allows.
func (r *Router) sendHop(now time.Time, rt *route, data []byte, e *envelope.Envelope, prio transport.Priority) {
	l := rt.link
	r.emit(now, l, rt.nb, prio, data, e.Kind, false)
	if !l.info.Overhears || !l.info.Broadcast || rt.nb == transport.Broadcast {
		return
	}
	if e.Kind != envelope.KindData && !(e.Kind == envelope.KindAck && rt.hops > 0) {
		return // only the destination's Ack confirms a last hop, and only for Data
	}
	if len(r.waits) >= maxHopWaits {
		r.waits = r.waits[1:]
	}
	w := &hopWait{key: r.sip.envelopeKey(data), link: l, nb: rt.nb, data: data, kind: e.Kind, prio: prio,
		dstAddr: e.Dst, counter: e.Counter, src: e.Src.Hint(), dst: e.Dst.Hint(), tries: 1}
	w.deadline = now.Add(r.hopTimeout(l, len(data)))
	r.waits = append(r.waits, w)
}

// hopTimeout allows the neighbour to queue, contend for the channel and
// send the frame on (or its Ack back).
func (r *Router) hopTimeout(l *link, n int) time.Duration {
	return 3*l.airtime(n) + 6*time.Second + time.Duration(r.rnd.Int64N(int64(500*time.Millisecond)))
}

// hopConfirm settles waits for the envelope with key k heard from nb on l,
// and for Data envelopes that an Ack e (received) answers.
func (r *Router) hopConfirm(l *link, nb transport.Addr, k uint64, e *envelope.Envelope) {
	for i := 0; i < len(r.waits); {
		w := r.waits[i]
		ok := w.link == l && w.key == k && w.nb == nb
		if !ok && e != nil && e.Kind == envelope.KindAck && w.kind == envelope.KindData && w.link == l &&
			w.counter == e.Counter && w.src == e.Dst.Hint() && w.dst == e.Src.Hint() {
			ok = true
		}
		if !ok {
			i++
			continue
		}
		if n := l.neighbours[w.nb]; n != nil {
			n.fail *= 0.8
		}
		r.waits = append(r.waits[:i], r.waits[i+1:]...)
	}
}

// tickHops retransmits frames whose acknowledgement is overdue.
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
			n.fail = n.fail*0.8 + 0.2
		}
		if r.debug {
			r.trace("hop ack missing", "kind", w.kind, "nb", []byte(w.nb), "try", w.tries, "dst", w.dstAddr)
		}
		r.rerouteVia(now, w.link, w.nb)
		if w.tries >= maxHopTries {
			continue
		}
		// Send again, to the best route now (it may have moved away from
		// the neighbour that failed).
		e, err := envelope.Parse(w.data)
		if err != nil {
			continue
		}
		var rt *route
		for _, p := range r.lookup(w.dstAddr) {
			if x := p.best(now); x != nil {
				rt = x
				break
			}
		}
		if rt == nil {
			continue
		}
		r.stats.HopRetries++
		r.emit(now, rt.link, rt.nb, w.prio, clone(w.data), e.Kind, false)
		nw := *w
		nw.link, nw.nb, nw.tries = rt.link, rt.nb, w.tries+1
		nw.deadline = now.Add(r.hopTimeout(rt.link, len(w.data)))
		if rt.link.info.Overhears && len(r.waits) < maxHopWaits {
			r.waits = append(r.waits, &nw)
		}
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
