package envelope

import (
	"crypto/ed25519"
	"fmt"
)

// Signature contexts. The signed message is the context followed by the
// signed bytes straight from the wire, so a signature made for one purpose is
// never valid for another.
const (
	ctxAnnounce = "meshd/v1/announce\x00"
	ctxFlood    = "meshd/v1/flood\x00"
)

// AnnounceOptions shape an announce.
type AnnounceOptions struct {
	// Seq must grow with every announce the node makes; receivers ignore an
	// announce whose Seq is not above the last one they accepted.
	Seq uint32
	// Caps are capability bits (CapRelay, ...).
	Caps uint8
	// AppData is up to MaxAppData bytes for applications (a display name).
	AppData []byte
	// TTL is how many times relays may forward it.
	TTL uint8
}

// SignAnnounce builds a signed announce for id.
func SignAnnounce(id *Identity, o AnnounceOptions) ([]byte, error) {
	e := Envelope{Kind: KindAnnounce, TTL: o.TTL, Key: id.pub, Seq: o.Seq, Caps: o.Caps, Body: o.AppData}
	return signAndAppend(id, &e, ctxAnnounce, HeaderSize)
}

// FloodOptions shape a signed flood.
type FloodOptions struct {
	Topic uint8
	Seq   uint32
	Body  []byte
	TTL   uint8
}

// SignFlood builds a signed flood for id.
func SignFlood(id *Identity, o FloodOptions) ([]byte, error) {
	e := Envelope{Kind: KindFlood, TTL: o.TTL, Topic: o.Topic, Key: id.pub, Seq: o.Seq, Body: o.Body}
	return signAndAppend(id, &e, ctxFlood, HeaderSize)
}

// signAndAppend encodes e with a placeholder signature, then signs the bytes
// from signedOff to the signature and fills it in.
func signAndAppend(id *Identity, e *Envelope, ctx string, signedOff int) ([]byte, error) {
	var zero [SignatureSize]byte
	e.Sig = zero[:]
	b, err := e.Append(nil)
	if err != nil {
		return nil, err
	}
	sigOff := len(b) - SignatureSize
	msg := make([]byte, 0, len(ctx)+sigOff-signedOff)
	msg = append(append(msg, ctx...), b[signedOff:sigOff]...)
	copy(b[sigOff:], ed25519.Sign(id.priv, msg))
	e.Sig = b[sigOff:]
	return b, nil
}

// PathReplyOptions shape a path reply.
type PathReplyOptions struct {
	// To is the requester (from the path request's Src).
	To Addr
	// RequestID echoes the request's.
	RequestID uint32
	// Dist is the replier's distance in hops to the announce's origin.
	Dist uint8
	TTL  uint8
}

// NewPathReply wraps a verified announce (Kind Announce or PathReply) in a
// path reply. The announce's signature travels unchanged, so the requester
// trusts the origin's key and sequence, not the replier.
func NewPathReply(announce *Envelope, o PathReplyOptions) ([]byte, error) {
	if announce.Kind != KindAnnounce && announce.Kind != KindPathReply {
		return nil, fmt.Errorf("envelope: path reply must carry an announce, not %s", announce.Kind)
	}
	e := Envelope{Kind: KindPathReply, TTL: o.TTL, Dst: o.To, RequestID: o.RequestID, Dist: o.Dist,
		Key: announce.Key, Seq: announce.Seq, Caps: announce.Caps, Body: announce.Body, Sig: announce.Sig}
	if o.To.IsFull() {
		e.Flags |= FlagFull
	}
	return e.Append(nil)
}

// Verify checks the signature of an Announce, PathReply or Flood, and that
// the signer's key is a safe curve point. It returns ErrSignature or
// ErrBadKey on failure.
func (e *Envelope) Verify() error {
	var ctx string
	var signedOff int
	switch e.Kind {
	case KindAnnounce:
		ctx, signedOff = ctxAnnounce, HeaderSize
	case KindFlood:
		ctx, signedOff = ctxFlood, HeaderSize
	case KindPathReply:
		ctx, signedOff = ctxAnnounce, HeaderSize+e.addrLen()+4+1
	default:
		return fmt.Errorf("%w: %s envelopes are not signed", ErrKind, e.Kind)
	}
	if len(e.raw) < signedOff+SignatureSize || len(e.Sig) != SignatureSize {
		return &FormatError{Kind: e.Kind, Field: "signature", Err: ErrTruncated}
	}
	if _, err := e.Key.point(); err != nil {
		return err
	}
	sigOff := len(e.raw) - SignatureSize
	var buf [256]byte
	msg := append(append(buf[:0], ctx...), e.raw[signedOff:sigOff]...)
	if !ed25519.Verify(e.Key[:], msg, e.Sig) {
		return fmt.Errorf("%w: %s from %s", ErrSignature, e.Kind, e.Key.Address())
	}
	return nil
}
