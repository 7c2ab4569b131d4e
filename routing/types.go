package routing

import (
	"errors"
	"fmt"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// LinkID names a link: its transport.Info.ID.
type LinkID string

// LinkInfo is what the router needs to know about a link when it comes up.
type LinkInfo struct {
	transport.Info
	// PQSecret is the post-quantum secret the link's handshake established
	// with Info.Peer (transport.PQSecreter), or nil.
	PQSecret []byte
	// Airtime estimates the time on air of a frame of n bytes on a radio
	// link (the LoRa transport passes its airtime calculator). Nil: derived
	// from Info.Bitrate.
	Airtime func(n int) time.Duration
	// DutyCycle is the share of a rolling hour this node may transmit on the
	// link (0.1 for the EU868 10% sub-band). The router paces its own sends
	// to stay below it. Zero: no limit known to the router (the link
	// enforces its own, or has none).
	DutyCycle float64
	// Overhears is true when the driver reports frames addressed to other
	// neighbours through Router.Overhear. The router then uses them as
	// passive hop acknowledgements and retransmits a unicast frame whose
	// relay it did not hear.
	Overhears bool
}

// Dest names a destination for Send: a public key, or an address whose key
// the router will learn from an announce or path reply.
type Dest struct {
	Key     envelope.PublicKey
	HasKey  bool
	Address envelope.Address
}

// ToKey returns the Dest for a key.
func ToKey(k envelope.PublicKey) Dest { return Dest{Key: k, HasKey: true, Address: k.Address()} }

// ToAddress returns the Dest for an address.
func ToAddress(a envelope.Address) Dest { return Dest{Address: a} }

// MsgID identifies one of this node's own messages, from Send until its
// final Status. IDs grow and are never reused, across restarts too.
type MsgID uint64

func (id MsgID) String() string { return fmt.Sprintf("msg-%d", uint64(id)) }

// InboundID identifies a received message: the sender and its counter.
type InboundID struct {
	From    envelope.Address
	Counter uint32
}

// Action is an output of the router. The driver type-switches on it:
// *SendFrame, *Deliver, *Status, *FloodReceived, *AnonReplyReceived.
type Action interface{ action() }

// SendFrame asks the driver to send Data on Link to the neighbour To.
type SendFrame struct {
	Link     LinkID
	To       transport.Addr
	Priority transport.Priority
	Data     []byte
	// Kind is the envelope kind, for the driver's counters.
	Kind envelope.Kind
	// NoAck: the router acknowledges this frame itself (it listens for the
	// neighbour passing it on, see LinkInfo.Overhears), so the link need
	// not: the driver sets transport.Frame.NoAck.
	NoAck bool
	// MaxRounds is transport.Frame.MaxRounds: the link retransmits this
	// frame at most that many rounds (0: the link's own limit).
	MaxRounds uint8
}

// Deliver hands a received message to the application.
type Deliver struct {
	// ID identifies the message for AppAck. Zero for anonymous messages,
	// which are not stored.
	ID   InboundID
	From envelope.PublicKey // zero for anonymous messages
	Port uint8
	// Payload is owned by the receiver of the action.
	Payload []byte
	// Anonymous messages carry the way to answer them (Router.Reply).
	Anonymous bool
	ReplyTo   envelope.ReplyTo
	// Redelivery is true when the message was delivered before a restart
	// but not acknowledged by the application (AppAck).
	Redelivery bool
}

// MsgState is the life of an own message.
type MsgState uint8

// The states a Status reports.
const (
	// StateQueued: accepted and stored; waiting for a key or a route.
	StateQueued MsgState = iota
	// StateSent: transmitted (the first time) towards the destination.
	StateSent
	// StateDelivered: the destination's end-to-end acknowledgement arrived.
	// Final.
	StateDelivered
	// StateExpired: not acknowledged before Options.MessageTTL. Final.
	StateExpired
	// StateFailed: cannot be sent at all (Err says why). Final.
	StateFailed
	// StateHeld: a relay says it holds the message for a destination it
	// has no route to (store-and-forward) and will forward it; reported
	// once, after StateSent. Informational: the notice is not
	// authenticated (docs/protocol.md, kind 10), only StateDelivered means
	// delivered.
	StateHeld
)

var stateNames = [...]string{"queued", "sent", "delivered", "expired", "failed", "held"}

func (s MsgState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state?"
}

// Status reports a change in an own message's life.
type Status struct {
	ID    MsgID
	State MsgState
	To    envelope.Address
	// Attempts is how many times the message was transmitted.
	Attempts int
	// Err says why a message expired or failed.
	Err error
}

// FloodReceived shows a Channel, Flood or Query envelope to the layers
// above (broadcast, FAPP). Data is a copy owned by the receiver.
type FloodReceived struct {
	Link LinkID
	Kind envelope.Kind
	Data []byte
	Meta transport.Meta
}

// AnonReplyReceived carries an AnonReply addressed to a token this node
// issued (SendAnonymous or Originate of a Query). The application opens it
// with the ReplyKey it kept.
type AnonReplyReceived struct {
	Token envelope.Token
	Data  []byte
}

func (*SendFrame) action()         {}
func (*Deliver) action()           {}
func (*Status) action()            {}
func (*FloodReceived) action()     {}
func (*AnonReplyReceived) action() {}

// FloodVerdict is what Options.FloodFilter decides for a flood envelope.
type FloodVerdict uint8

// Verdicts.
const (
	// FloodRelay: show it to the application and relay it (under budget).
	FloodRelay FloodVerdict = iota
	// FloodKeep: show it to the application, do not relay.
	FloodKeep
	// FloodDrop: neither.
	FloodDrop
)

// Errors.
var (
	// ErrUnknownLink: an event names a link that is not up.
	ErrUnknownLink = errors.New("routing: unknown link")
	// ErrTooLarge: the payload does not fit an envelope.
	ErrTooLarge = errors.New("routing: payload too large")
	// ErrOutboxFull: the outbox quota is reached.
	ErrOutboxFull = errors.New("routing: outbox full")
	// ErrExpired: the message was not acknowledged in time.
	ErrExpired = errors.New("routing: message expired")
	// ErrNoKey: the destination's key never became known.
	ErrNoKey = errors.New("routing: destination key unknown")
	// ErrSelf: a message to this node itself.
	ErrSelf = errors.New("routing: destination is this node")
	// ErrNotFlood: Originate got an envelope that is not a flood kind.
	ErrNotFlood = errors.New("routing: not a channel, flood or query envelope")
	// ErrCorrupt: a stored record does not decode.
	ErrCorrupt = errors.New("routing: corrupt store record")
)
