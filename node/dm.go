package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
)

// PortDM is the application port of direct messages.
const PortDM = 0

// Errors the API maps to client errors.
var (
	ErrBadRequest       = errors.New("bad request")
	ErrTextTooLong      = errors.New("message text too long")
	ErrUnknownRecipient = errors.New("unknown recipient")
)

// SendResult is what an API send returns.
type SendResult struct {
	ID    uint64 `json:"id"`
	State string `json:"state"`
	To    string `json:"to"`
}

// resolve turns a petname, an address or a public key (hex) into a
// routing destination.
func (n *Node) resolve(to string) (routing.Dest, string, error) {
	to = strings.TrimSpace(to)
	if c, err := n.app.contact(to); err == nil {
		return destFor(c.Address, c.Key)
	}
	switch len(to) {
	case 2 * envelope.AddressSize:
		return destFor(to, "")
	case 2 * envelope.PublicKeySize:
		return destFor("", to)
	}
	return routing.Dest{}, "", fmt.Errorf("%w: %q is not a contact name, an address (32 hex digits) or a key (64 hex digits)", ErrUnknownRecipient, to)
}

func destFor(addr, key string) (routing.Dest, string, error) {
	if key != "" {
		k, err := parseKeyHex(key)
		if err != nil {
			return routing.Dest{}, "", fmt.Errorf("%w: %v", ErrUnknownRecipient, err)
		}
		return routing.ToKey(k), k.Address().String(), nil
	}
	a, err := envelope.ParseAddress(addr)
	if err != nil {
		return routing.Dest{}, "", fmt.Errorf("%w: %v", ErrUnknownRecipient, err)
	}
	return routing.ToAddress(a), a.String(), nil
}

func parseKeyHex(s string) (envelope.PublicKey, error) {
	var k envelope.PublicKey
	b := make([]byte, 0, 32)
	for i := 0; i+1 < len(s); i += 2 {
		var v byte
		if _, err := fmt.Sscanf(s[i:i+2], "%02x", &v); err != nil {
			return k, fmt.Errorf("%q is not a hex key", s)
		}
		b = append(b, v)
	}
	return envelope.ParsePublicKey(b)
}

// SendText queues a direct message and returns once it is durably stored
// (state queued), or failed.
func (n *Node) SendText(ctx context.Context, to, text string) (*SendResult, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("%w: text is not valid UTF-8", ErrBadRequest)
	}
	if text == "" {
		return nil, fmt.Errorf("%w: empty message", ErrBadRequest)
	}
	if len(text) > n.cfg.Messages.MaxText {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d (messages.max_text)", ErrTextTooLong, len(text), n.cfg.Messages.MaxText)
	}
	dst, addr, err := n.resolve(to)
	if err != nil {
		return nil, err
	}
	var id routing.MsgID
	var sendErr error
	durable := make(chan routing.Status, 1)
	err = n.call(ctx, func(now time.Time) {
		id, sendErr = n.router.Send(now, dst, PortDM, []byte(text))
		if sendErr != nil {
			return
		}
		m := &OutMessage{ID: uint64(id), To: addr, ToName: n.app.contactByAddress(addr), Text: text,
			State: StateAccepted, Created: now, Updated: now}
		if err := n.app.putOut(m); err != nil {
			sendErr = fmt.Errorf("storing the message: %w", err)
			return
		}
		n.pending[id] = durable
	})
	if err != nil {
		return nil, err
	}
	if sendErr != nil {
		if errors.Is(sendErr, routing.ErrSelf) || errors.Is(sendErr, envelope.ErrBadKey) {
			return nil, fmt.Errorf("%w: %v", ErrUnknownRecipient, sendErr)
		}
		return nil, sendErr
	}
	select {
	case st := <-durable:
		return &SendResult{ID: uint64(id), State: stateName(st), To: addr}, nil
	case <-ctx.Done():
		return &SendResult{ID: uint64(id), State: StateAccepted, To: addr}, nil
	}
}

func stateName(st routing.Status) string {
	switch st.State {
	case routing.StateQueued:
		return StateQueued
	case routing.StateSent:
		return StateSent
	case routing.StateDelivered:
		return StateDelivered
	case routing.StateExpired:
		return StateExpired
	case routing.StateFailed:
		return StateFailed
	case routing.StateHeld:
		return StateHeld
	}
	return st.State.String()
}

// status applies a router Status to the stored message (on the loop).
func (n *Node) status(now time.Time, st *routing.Status) {
	if c, ok := n.pending[st.ID]; ok {
		c <- *st
		delete(n.pending, st.ID)
	}
	state := stateName(*st)
	m, err := n.app.updateOut(uint64(st.ID), func(m *OutMessage) {
		if finalState(m.State) {
			return
		}
		// Queued may arrive after Sent (durability is reported after the
		// commit): never go backwards.
		if state == StateQueued && m.State != StateAccepted {
			return
		}
		m.State, m.Attempts, m.Updated = state, st.Attempts, now
		if st.Err != nil {
			m.Reason = st.Err.Error()
		}
		if state == StateDelivered {
			m.Delivered = now
		}
	})
	if errors.Is(err, ErrNotFound) {
		return // not a direct message (another application's port)
	}
	if err != nil {
		n.log.Error("updating message state", "id", st.ID, "err", err)
		return
	}
	if state == StateDelivered {
		n.stats.delivered.Add(1)
	}
	n.hub.publish("status", now, m)
}

// deliver handles a message the router hands up (on the loop).
func (n *Node) deliver(now time.Time, d *routing.Deliver) {
	switch d.Port {
	case PortDM:
		if d.Anonymous {
			return // direct messages are never anonymous; ignore
		}
		from := d.From.Address()
		m := &InMessage{From: from.String(), FromKey: d.From.String(), FromName: n.app.contactByAddress(from.String()),
			Claimed: n.claimedName(from), Text: strings.ToValidUTF8(string(d.Payload), "\uFFFD"), Received: now, Counter: d.ID.Counter}
		added, err := n.app.addIn(m, from)
		if err != nil {
			// Not acknowledged: the router delivers it again after a restart.
			n.log.Error("storing a received message", "from", from, "err", err)
			return
		}
		n.router.AppAck(now, d.ID)
		if added {
			n.stats.received.Add(1)
			n.hub.publish("message", now, m)
		}
	default:
		if a := n.appByPort[d.Port]; a != nil {
			a.Deliver(now, d)
			return
		}
		// No application on this port: acknowledge so the router does not
		// keep delivering it.
		n.log.Debug("message for a port no application serves", "port", d.Port)
		if !d.Anonymous {
			n.router.AppAck(now, d.ID)
		}
	}
}

// claimedName is the display name a peer announces about itself.
func (n *Node) claimedName(a envelope.Address) string {
	if info, ok := n.router.Peer(a); ok {
		return sanitizeName(string(info.AppData))
	}
	return ""
}

// sanitizeName keeps a claimed name printable and short.
func sanitizeName(s string) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}
