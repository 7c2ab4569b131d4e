package tcp

import (
	"errors"
	"fmt"
)

// Errors a caller can tell apart with errors.Is. Handshake failures arrive
// wrapped in a *HandshakeError that also names the Reason; link failures
// arrive as the err of Handler.LinkDown.
var (
	// ErrNetworkKey: the two sides do not hold the same network key (one of
	// them is not in this private mesh, or is in a different one).
	ErrNetworkKey = errors.New("tcp: network key mismatch")
	// ErrPinMismatch: the peer proved an identity other than the one
	// configured or pinned for it. Never accepted; always logged loudly.
	ErrPinMismatch = errors.New("tcp: peer identity does not match its pin")
	// ErrIdentity: the peer's identity proof is invalid (bad key, bad
	// signature over its Noise static key).
	ErrIdentity = errors.New("tcp: invalid identity proof")
	// ErrVersion: the peer speaks a protocol version this code does not.
	ErrVersion = errors.New("tcp: unsupported protocol version")
	// ErrMalformed: the peer sent bytes that are not a meshd handshake.
	ErrMalformed = errors.New("tcp: malformed handshake")
	// ErrSelf: the connection reached this node itself.
	ErrSelf = errors.New("tcp: connected to self")
	// ErrHandshakeTimeout: the handshake did not finish in time.
	ErrHandshakeTimeout = errors.New("tcp: handshake timed out")
	// ErrLimit: a resource limit (half-open handshakes, links) refused the
	// connection.
	ErrLimit = errors.New("tcp: connection limit reached")
	// ErrDuplicate: another link to the same peer won the tie-break.
	ErrDuplicate = errors.New("tcp: duplicate link to peer")
	// ErrDeadPeer: nothing arrived from the peer (not even a keepalive)
	// within the dead-peer timeout, or it stopped reading what we send.
	ErrDeadPeer = errors.New("tcp: peer is silent (dead-peer timeout)")
	// ErrStalled: the peer began a record and did not finish it in time
	// (slowloris).
	ErrStalled = errors.New("tcp: peer stalled in the middle of a record")
	// ErrProtocol: an established session carried a record that does not
	// authenticate or does not parse.
	ErrProtocol = errors.New("tcp: protocol violation")
	// ErrNotRunning: Dial was called while Run is not running.
	ErrNotRunning = errors.New("tcp: transport is not running")
)

// Reason classifies handshake failures for Stats and logs.
type Reason string

// Reasons a handshake fails.
const (
	ReasonTimeout    Reason = "timeout"
	ReasonNetworkKey Reason = "network-key"
	ReasonPin        Reason = "pin"
	ReasonIdentity   Reason = "identity"
	ReasonVersion    Reason = "version"
	ReasonMalformed  Reason = "malformed"
	ReasonSelf       Reason = "self"
	ReasonDuplicate  Reason = "duplicate"
	ReasonLimit      Reason = "limit"
	ReasonIO         Reason = "io"
)

// HandshakeError reports why a connection did not become a link.
type HandshakeError struct {
	Reason   Reason
	Remote   string // the peer's network address
	Outbound bool   // we dialed
	Err      error
}

func (e *HandshakeError) Error() string {
	dir := "inbound"
	if e.Outbound {
		dir = "outbound"
	}
	return fmt.Sprintf("tcp: %s handshake with %s failed (%s): %v", dir, e.Remote, e.Reason, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// reasonOf maps an error to its Reason.
func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, ErrHandshakeTimeout):
		return ReasonTimeout
	case errors.Is(err, ErrNetworkKey):
		return ReasonNetworkKey
	case errors.Is(err, ErrPinMismatch):
		return ReasonPin
	case errors.Is(err, ErrIdentity):
		return ReasonIdentity
	case errors.Is(err, ErrVersion):
		return ReasonVersion
	case errors.Is(err, ErrMalformed):
		return ReasonMalformed
	case errors.Is(err, ErrSelf):
		return ReasonSelf
	case errors.Is(err, ErrDuplicate):
		return ReasonDuplicate
	case errors.Is(err, ErrLimit):
		return ReasonLimit
	}
	return ReasonIO
}
