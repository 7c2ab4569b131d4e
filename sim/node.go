// Package sim is meshsim: a deterministic discrete-event simulator that drives
// meshd's sans-IO protocol cores (and a Meshtastic-like managed-flooding
// baseline) over simulated links in virtual time.
//
// One run is fully determined by its scenario file and seed: every source of
// randomness is its own seeded PRNG derived from the scenario seed, events at
// the same instant are ordered by the order in which they were scheduled, and
// the simulator runs on one goroutine. docs/meshsim.md describes the models,
// the scenario schema and the metrics.
//
// # How a protocol plugs in
//
// A protocol implements Node. The simulator calls one input method at a time
// (Start, LinkUp, LinkDown, Receive, Timer, AppSend); each call appends the
// node's reactions to *Out. After every call the simulator reads NextWake and
// calls Timer at that instant (a wake-up that is no longer needed is
// harmless: Timer is then a no-op). This is the same shape the daemon uses to
// drive the router core with goroutines and a real clock.
package sim

import (
	"math/rand/v2"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/transport"
)

// LinkID names one link of one node. IDs are small integers, stable for a
// node's lifetime: a link that goes down and comes back up keeps its LinkID
// (its transport.Info.ID changes, as the transport contract says).
type LinkID int

// Class labels a frame for airtime accounting. The simulator never parses
// protocol bytes: it believes the label.
type Class uint8

// The frame classes.
const (
	ClassOther    Class = iota // anything else (link-layer control, keepalives)
	ClassData                  // carries (a fragment of) an application message
	ClassAck                   // acknowledges an application message (end to end or per hop)
	ClassAnnounce              // announces, relayed or originated
	ClassPath                  // path requests and replies, route discovery
	numClasses
)

var classNames = [numClasses]string{"other", "data", "ack", "announce", "path"}

func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return "class?"
}

// Send asks the simulator to transmit one frame on one of the node's links.
type Send struct {
	// Link is the link to send on.
	Link LinkID
	// To is the neighbour's link address on a shared medium, or
	// transport.Broadcast. Ignored on point-to-point links.
	To transport.Addr
	// Priority orders frames competing for the link (radio queue).
	Priority transport.Priority
	// Class labels the frame for the metrics.
	Class Class
	// Flow is the protocol's end-to-end key of the application message this
	// frame carries or acknowledges, the same at every hop (for meshd: derived
	// from source, destination and counter; for the baseline: origin and
	// packet id). 0 means none. The originator binds a flow to the
	// application message with an EventAccepted; every frame labelled with
	// that flow, at any node, is then charged to the message.
	Flow uint64
	// Data is the frame. The simulator copies it before the call returns.
	Data []byte
	// NoAck is transport.Frame.NoAck: on meshd's LoRa link layer a
	// one-fragment unicast message is sent once, without a SACK.
	NoAck bool
	// MaxRounds is transport.Frame.MaxRounds (meshd's LoRa link layer).
	MaxRounds uint8
}

// Deliver hands an application message to the node's user.
type Deliver struct {
	// From is the sender's address as the protocol authenticated it.
	From envelope.Address
	// Payload is exactly what the sender's AppMessage.Payload was. The
	// simulator identifies the message from the payload it generated itself.
	Payload []byte
}

// EventKind says what a status Event reports.
type EventKind uint8

// The event kinds.
const (
	// EventAccepted: the node took AppMessage MsgID and will carry it under
	// Flow. Required for airtime attribution.
	EventAccepted EventKind = iota
	// EventAcked: the originator learned that MsgID was delivered (an end to
	// end acknowledgement).
	EventAcked
	// EventImplicitAck: the originator heard its message relayed and stopped
	// retransmitting (the baseline's implicit acknowledgement).
	EventImplicitAck
	// EventFailed: the originator gave up on MsgID.
	EventFailed
	// EventDropped: the node dropped something it was carrying (queue full,
	// expired, no route and no store); Detail says why.
	EventDropped
	// EventInfo: anything worth a line in a trace.
	EventInfo
	// EventHeld: the originator learned that a relay holds MsgID for
	// its offline destination (the router's StateHeld).
	EventHeld
	numEventKinds
)

var eventNames = [numEventKinds]string{"accepted", "acked", "implicit-ack", "failed", "dropped", "info", "held"}

func (k EventKind) String() string {
	if k < numEventKinds {
		return eventNames[k]
	}
	return "event?"
}

// Event is a status report from a node.
type Event struct {
	Kind   EventKind
	MsgID  uint64
	Flow   uint64
	Detail string
}

// Out collects a node's reactions to one input. The simulator resets it
// before each call and acts on it right after.
type Out struct {
	Sends      []Send
	Deliveries []Deliver
	Events     []Event
}

// Send appends a frame to transmit.
func (o *Out) Send(s Send) { o.Sends = append(o.Sends, s) }

// Deliver appends an application delivery.
func (o *Out) Deliver(d Deliver) { o.Deliveries = append(o.Deliveries, d) }

// Event appends a status event.
func (o *Out) Event(e Event) { o.Events = append(o.Events, e) }

func (o *Out) reset() {
	clear(o.Sends)
	o.Sends = o.Sends[:0]
	clear(o.Deliveries)
	o.Deliveries = o.Deliveries[:0]
	o.Events = o.Events[:0]
}

// AppMessage is what a node's user asks it to send.
type AppMessage struct {
	// ID is the simulator's identifier of the message (never 0). Protocols
	// only echo it in events; they must not put it on the wire.
	ID uint64
	// To and ToKey name the recipient: its user knows the recipient's public
	// key, as a contact.
	To    envelope.Address
	ToKey envelope.PublicKey
	// Payload is opaque application data.
	Payload []byte
}

// Link describes one of a node's links as the node first sees it.
type Link struct {
	ID   LinkID
	Info transport.Info
	// Addr is the node's own link-layer address on a shared medium (its
	// 4-byte address hint on LoRa); empty on point-to-point links.
	Addr transport.Addr
	// DutyCycle is the share of a rolling hour the node may transmit on a
	// radio link (0.1 in the EU868 g3 sub-band); 0 on other links. The link
	// enforces it; a protocol may pace itself to stay below.
	DutyCycle float64
	// Airtime returns the time on air of a frame of n bytes (link header
	// included) on a radio link; nil on other links.
	Airtime func(n int) time.Duration
	// SymbolTime is the LoRa symbol time on a radio link; 0 on others.
	SymbolTime time.Duration
	// Overhears is true when the simulator will call Overhear (Overhearer)
	// with unicast frames addressed to other neighbours on this link: on
	// meshd's LoRa link layer for nodes that implement Overhearer (as the
	// LoRa transport reports them once the node turns overhearing on)
	// unless the scenario sets radio.no_overhear; on a raw link when the
	// scenario sets radio.overhear. Set before the node's first LinkUp.
	Overhears bool
}

// Env is everything a node is given when it is built.
type Env struct {
	// Index is the node's index in the scenario (0-based).
	Index int
	// Identity is the node's long-term identity, derived from the seed.
	Identity *envelope.Identity
	// Clock reads virtual time. Inputs carry the time too.
	Clock clock.Clock
	// Rand is the node's own seeded PRNG (for jitter, ids, backoff).
	Rand *rand.Rand
	// DataDir is an empty directory the node may keep its store in; it
	// survives a restart of the node within the run. "" means keep state in
	// memory.
	DataDir string
	// Links are the node's links; each comes up with a LinkUp call after
	// Start.
	Links []Link
	// Contacts are the public keys of every node in the scenario, in index
	// order: the user's address book. The baseline uses it as Meshtastic's
	// node database (whose NodeInfo broadcasts are not simulated); meshd's
	// router learns routes from announces regardless.
	Contacts []envelope.PublicKey
	// Params are protocol parameters from the scenario file
	// ("protocols": {"name": {...}}), raw JSON or nil.
	Params []byte
}

// Node is a protocol core as the simulator drives it. Calls are made one at a
// time, never concurrently, with non-decreasing now.
//
// Ownership: data passed to Receive is only valid during the call (the
// simulator reuses the buffer): copy what you keep. Slices in Out are copied
// by the simulator before the next call, so the node may reuse its buffers.
type Node interface {
	// Start boots the node. LinkUp calls for its links follow.
	Start(now time.Time, out *Out)
	// LinkUp reports that a link is usable.
	LinkUp(now time.Time, l LinkID, info transport.Info, out *Out)
	// LinkDown reports that a link is gone (point-to-point peer unreachable).
	LinkDown(now time.Time, l LinkID, out *Out)
	// Receive hands over one received frame with what the link knows of it.
	Receive(now time.Time, l LinkID, data []byte, m transport.Meta, out *Out)
	// Timer is called at (or after) the instant NextWake last returned.
	Timer(now time.Time, out *Out)
	// AppSend asks the node to send an application message.
	AppSend(now time.Time, m AppMessage, out *Out)
	// NextWake returns when the node next needs Timer; the zero time means
	// never. Called after every input.
	NextWake() time.Time
	// Close releases the node's resources (its store) at the end of the run
	// or before a restart.
	Close() error
}

// Factory builds a node. It is called once per node at the start of a run
// and again when churn restarts a node (same Identity and DataDir).
type Factory func(env Env) (Node, error)
