// Package transport is the contract between the things that move bytes (TCP,
// LoRa radios, libp2p) and the router that decides where bytes go.
//
// A Transport brings Links up and down and hands every received frame to a
// Handler. A Link is one way of reaching one neighbour (point-to-point) or all
// neighbours in range (a shared broadcast medium such as a LoRa channel). The
// router never sees sockets or serial ports, only Links and frames; the
// conformance suite in transport/transporttest holds every implementation to
// the semantics written down here.
//
// Transports depend on this package and on envelope, never on routing.
package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/openmeshd/meshd/envelope"
)

// Addr is the link-layer address of a neighbour on a shared medium, as the
// transport spells it (for LoRa: the neighbour's 4-byte address hint as raw
// bytes). It is opaque to the router, comparable, and usable as a map key.
// On point-to-point links it is always empty. The empty Addr in Frame.To means
// "every neighbour on this link" (broadcast) on a shared medium.
type Addr string

// Broadcast addresses every neighbour on a shared medium.
const Broadcast Addr = ""

// Priority orders frames competing for a scarce link (radio airtime, a full
// queue). Lower values go first.
type Priority uint8

const (
	// PriorityOwn is traffic this node originates for its own user.
	PriorityOwn Priority = iota
	// PriorityRelay is traffic forwarded for others.
	PriorityRelay
	// PriorityBackground is announces, path finding and other control floods
	// that can wait or be dropped when the link is saturated.
	PriorityBackground
)

func (p Priority) String() string {
	switch p {
	case PriorityOwn:
		return "own"
	case PriorityRelay:
		return "relay"
	case PriorityBackground:
		return "background"
	}
	return fmt.Sprintf("priority(%d)", uint8(p))
}

// Info describes a Link. It does not change for the lifetime of the link.
type Info struct {
	// ID is unique within the process for the lifetime of the process (a link
	// that goes down and comes back gets a new ID). Used in logs and metrics.
	ID string
	// Kind names the transport: "tcp", "lora", "libp2p".
	Kind string
	// MTU is the largest frame Send accepts, in bytes.
	MTU int
	// Bitrate is the link's usable rate in bits per second, an estimate.
	Bitrate int
	// Cost is the routing cost of one hop over this link relative to a wired
	// TCP hop (1). A LoRa hop costs far more: airtime is scarce and shared.
	Cost int
	// Broadcast is true for a shared medium where one Send reaches every
	// neighbour in range and frames arrive from many neighbours.
	Broadcast bool
	// Ordered is true when frames sent on this link arrive in the order they
	// were sent (or not at all). The promise covers frames of one Priority
	// whose Send calls did not overlap (each returned before the next began);
	// a frame of a more urgent Priority may overtake less urgent ones.
	Ordered bool
	// Peer is the neighbour's authenticated identity key on point-to-point
	// links whose handshake proves it (TCP with Noise, libp2p). HasPeer says
	// whether it is set.
	Peer    envelope.PublicKey
	HasPeer bool
}

// Frame is one unit handed to Link.Send.
type Frame struct {
	// To is the neighbour on a shared medium, or Broadcast. Ignored on
	// point-to-point links.
	To Addr
	// Priority decides the order of frames competing for the link.
	Priority Priority
	// Data is the frame's bytes. The link does not keep a reference after
	// Send returns.
	Data []byte
	// NoAck tells a link that acknowledges unicast frames itself (LoRa:
	// a SACK per message, and retransmissions) that the sender needs no
	// link acknowledgement for this frame, because it has one of its own
	// (the router hears the neighbour pass the envelope on). Such a link
	// then sends the frame once, without asking for an acknowledgement,
	// when it fits one radio frame. Other links ignore it; the zero value
	// keeps the link's usual reliability.
	NoAck bool
	// MaxRounds, when not zero, lowers the number of retransmission rounds
	// a link that acknowledges unicast frames itself spends on this frame
	// (LoRa: rounds without progress, Options.MaxRounds otherwise). On a
	// busy shared channel the router would rather retry later, end to
	// end, than have a hop hammer a neighbour that does not answer. Other
	// links ignore it.
	MaxRounds uint8
}

// Meta is what a link knows about a received frame beyond its bytes.
type Meta struct {
	// From is the sending neighbour's link-layer address on a shared medium;
	// empty on point-to-point links.
	From Addr
	// HasSignal says whether RSSI and SNR are set (radio links).
	HasSignal bool
	// RSSI in dBm and SNR in dB of the received frame.
	RSSI float32
	SNR  float32
	// Overheard is set on a frame addressed to another neighbour that the
	// link reports because overhearing was turned on (Overhearer). It is
	// never set otherwise, so handlers that do not turn overhearing on
	// see only frames addressed to them or to everyone.
	Overheard bool
}

// Overhearer is implemented by links on a shared medium that can also
// report unicast frames addressed to other neighbours (LoRa). Off by
// default; when turned on, such frames reach Handler.Receive with
// Meta.Overheard set, so that a router can take a neighbour passing a frame
// on as its acknowledgement. Only frames the link can hand over whole are
// reported (LoRa: messages of one radio frame).
type Overhearer interface {
	// Overhear turns the reporting of overheard frames on or off.
	Overhear(on bool)
}

// Link reaches one neighbour (point-to-point) or every neighbour in range
// (Info().Broadcast). All methods are safe for concurrent use.
type Link interface {
	// Info describes the link.
	Info() Info
	// Send queues f for transmission. It returns once the link has accepted
	// the frame, which is not a promise of delivery. It blocks while the link's
	// bounded queue is full (backpressure) until ctx is done. Errors:
	// ErrFrameTooLarge (nothing sent), ErrClosed, ctx.Err(), or a transport
	// specific error that wraps ErrRefused when the link will not transmit at
	// all (for example a radio with no regulatory region configured).
	Send(ctx context.Context, f Frame) error
	// Close takes the link down. The Handler's LinkDown is called once (with
	// a nil error unless the link had already failed), possibly after Close
	// has returned: Close may be called from inside a Handler callback, so
	// it must not wait for one. Frames still queued may be dropped. Close is
	// idempotent: later calls return nil. Info keeps working after Close.
	Close() error
}

// PQSecreter is implemented by links whose handshake established a
// post-quantum shared secret with the peer (TCP with the ML-KEM-768 hybrid).
// The envelope key schedule mixes it into pairwise unicast keys.
type PQSecreter interface {
	// PQSecret returns a 32-byte secret both ends of the link derived, or nil.
	PQSecret() []byte
}

// Handler receives everything a Transport has to say. Calls for one link are
// made one at a time and in order (LinkUp, then Receive..., then LinkDown);
// calls for different links may be concurrent. A Handler must not block for
// long: it should queue the event and return.
type Handler interface {
	// LinkUp announces a new link, ready to Send.
	LinkUp(l Link)
	// Receive hands over one received frame. The handler owns data.
	Receive(l Link, data []byte, m Meta)
	// LinkDown announces that l is gone; err says why (nil on local Close).
	LinkDown(l Link, err error)
}

// Transport brings links up and down.
type Transport interface {
	// Run operates the transport, reporting to h, until ctx is done or an
	// unrecoverable error occurs. When Run returns, every link it brought up
	// has been reported down and every goroutine it started has ended.
	Run(ctx context.Context, h Handler) error
}

var (
	// ErrClosed is returned by Send on a link that is down.
	ErrClosed = errors.New("transport: link closed")
	// ErrFrameTooLarge is returned by Send for a frame above the link's MTU.
	ErrFrameTooLarge = errors.New("transport: frame larger than link MTU")
	// ErrRefused is wrapped by errors of links that will not transmit at all
	// in their current configuration.
	ErrRefused = errors.New("transport: link refuses to transmit")
)

// FrameTooLargeError reports the size and the limit. It matches
// ErrFrameTooLarge with errors.Is.
type FrameTooLargeError struct {
	Size, MTU int
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("transport: frame of %d bytes exceeds link MTU of %d", e.Size, e.MTU)
}

// Is makes errors.Is(err, ErrFrameTooLarge) true.
func (e *FrameTooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }

// CheckMTU returns a *FrameTooLargeError when data does not fit mtu.
func CheckMTU(data []byte, mtu int) error {
	if len(data) > mtu {
		return &FrameTooLargeError{Size: len(data), MTU: mtu}
	}
	return nil
}
