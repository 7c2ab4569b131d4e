package routing

import (
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Held notices (envelope.KindHeld). A relay that stores another node's Data
// envelope for lack of a route tells the sender, back along the breadcrumb
// the Data left (the way its Ack would go). The notice is not authenticated
// (the relay shares no key with the sender), so the sender only reports
// StateHeld and waits longer before its next end-to-end retry: the relay
// forwards the Data itself when a route appears (custody), and the sender's
// retries, at most RetryMax apart, cover a relay that loses it.

// heldNoticeEvery bounds the notices a relay sends for one held envelope: a
// retry reaching it within this time is not answered again.
const heldNoticeEvery = time.Minute

// noticeHeld sends the held notice for the Data envelope e, which this node
// holds (h).
func (r *Router) noticeHeld(now time.Time, h *heldMsg, e *envelope.Envelope) {
	if e.Kind != envelope.KindData || (!h.noticed.IsZero() && now.Sub(h.noticed) < heldNoticeEvery) {
		return
	}
	raw, err := envelope.NewHeld(e, r.o.MaxHops)
	if err != nil {
		return
	}
	n, err := envelope.Parse(raw)
	if err != nil {
		return
	}
	h.noticed = now
	r.stats.HeldNotices++
	k := r.sip.envelopeKey(raw)
	r.dedup.put(k, dedupEntry{at: r.secs(now), heard: 1})
	if r.heldAlongCrumb(now, nil, "", raw, &n, false) {
		return
	}
	r.forwardUnicast(now, nil, transport.Meta{}, raw, &n, k, false)
}

// heldAlongCrumb sends a held notice to the neighbour the Data it names
// came from (its breadcrumb), unless that is where the notice came from.
// relay: raw is someone else's notice (hop count and TTL change).
func (r *Router) heldAlongCrumb(now time.Time, from *link, fromNb transport.Addr, raw []byte, e *envelope.Envelope, relay bool) bool {
	c, ok := r.crumbs[r.flowToken(e.Dst.Hint(), e.Src.Hint(), e.Counter)]
	if !ok || !now.Before(c.expires) || r.linkByID[c.link.id] != c.link || (c.link == from && c.nb == fromNb) {
		return false
	}
	data := clone(raw)
	if relay {
		envelope.Relay(data)
		r.stats.Relayed++
	}
	// Informational: a lost notice costs only the sender's earlier retry,
	// so it never asks for a link acknowledgement on a shared medium.
	prio := transport.PriorityOwn
	if relay {
		prio = transport.PriorityRelay
	}
	r.emitFrame(now, c.link, SendFrame{Link: c.link.id, To: c.nb, Priority: prio, Data: data, Kind: envelope.KindHeld, NoAck: r.passive(c.link)}, false)
	return true
}

// onHeld handles a held notice: for one of our messages it is a state and
// a longer wait; otherwise it goes on towards the sender.
func (r *Router) onHeld(now time.Time, l *link, raw []byte, e *envelope.Envelope, m transport.Meta, k uint64) {
	if ent, dup := r.dedup.get(k); dup && r.secs(now)-ent.at < uint32(unicastDedupWindow/time.Second) {
		r.drop(DropDuplicate)
		return
	}
	r.dedup.put(k, dedupEntry{at: r.secs(now), heard: 1, hops: e.Hops})
	if e.Dst.Matches(r.addr) {
		if r.ownHeld(now, e) || e.Dst.IsFull() || len(r.hints[e.Dst.Hint()]) == 0 {
			return
		}
	}
	if raw[envelope.OffsetTTL] == 0 {
		r.drop(DropTTL)
		return
	}
	if r.heldAlongCrumb(now, l, m.From, raw, e, true) {
		return
	}
	r.forwardUnicast(now, l, m, raw, e, k, false)
}

// ownHeld applies a held notice to the outbox message it names, if any.
func (r *Router) ownHeld(now time.Time, e *envelope.Envelope) bool {
	for _, om := range r.outbox {
		if om.done || om.rec.Counter != e.Counter || om.rec.Attempts == 0 || !e.Src.Matches(om.rec.Dst) {
			continue
		}
		r.stats.HeldNoticed++
		if !om.held {
			om.held = true
			r.status(om, StateHeld, nil)
		}
		// Custody: the holder forwards the message when it finds a
		// route, so the next end-to-end retry can wait long; it still
		// comes, in case the holder loses it or gives up. Once per
		// attempt: a forged or replayed notice must not put the retry
		// off again and again.
		if om.heldWait == om.rec.Attempts {
			return true
		}
		om.heldWait = om.rec.Attempts
		if next := now.Add(r.o.RetryMax / 2); om.next.Before(next) {
			om.next = next
		}
		return true
	}
	return false
}
