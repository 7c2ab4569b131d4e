package routing

import (
	"fmt"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// SendAnonRaw sends an anonymous envelope the application sealed itself
// (FAPP seals its own reservations: it keeps the one-time keys and chooses
// the hop jitter). raw must be a KindAnon envelope addressed to key; its
// reply token becomes one of this node's own, so the answer is handed up as
// AnonReplyReceived. The router keeps no copy beyond forwarding needs.
func (r *Router) SendAnonRaw(now time.Time, key envelope.PublicKey, raw []byte) error {
	r.begin(now)
	defer r.end()
	e, err := envelope.Parse(raw)
	if err != nil {
		return err
	}
	if e.Kind != envelope.KindAnon {
		return fmt.Errorf("%w: SendAnonRaw wants anon, got %s", envelope.ErrKind, e.Kind)
	}
	if !e.Dst.Matches(key.Address()) {
		return fmt.Errorf("%w: anon envelope is not addressed to %s", envelope.ErrNotForUs, key.Address())
	}
	raw = clone(raw)
	r.ownToks[e.Token] = now.Add(crumbLife)
	k := r.sip.envelopeKey(raw)
	r.dedup.put(k, dedupEntry{at: r.secs(now), heard: 1})
	p := r.peerForKey(key, now)
	p.lastUsed = now
	if rt := p.best(now); rt != nil {
		r.emit(now, rt.link, rt.nb, transport.PriorityOwn, raw, envelope.KindAnon, false)
		return nil
	}
	e, _ = envelope.Parse(raw)
	r.hold(now, raw, &e, k)
	return nil
}

// ReplyRaw sends an anon-reply envelope the application sealed itself,
// back along the breadcrumb its token left (or as a flood scoped to a few
// hops when the breadcrumb is gone).
func (r *Router) ReplyRaw(now time.Time, raw []byte) error {
	r.begin(now)
	defer r.end()
	e, err := envelope.Parse(raw)
	if err != nil {
		return err
	}
	if e.Kind != envelope.KindAnonReply {
		return fmt.Errorf("%w: ReplyRaw wants anon-reply, got %s", envelope.ErrKind, e.Kind)
	}
	r.replyAlong(now, e.Token, clone(raw))
	return nil
}
