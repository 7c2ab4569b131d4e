package envelope

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Wire constants. docs/protocol.md specifies the format byte by byte.
const (
	// Version is the only envelope version this code speaks.
	Version = 1
	// HeaderSize is the common header: version, hops, TTL, type.
	HeaderSize = 4
	// MaxSize bounds every envelope. Links with a smaller MTU fragment
	// (LoRa) or refuse.
	MaxSize = 65535
	// MaxAppData bounds the application data of an announce so that an
	// announce always fits one LoRa frame.
	MaxAppData = 96
	// TagSize is the AEAD tag and MAC length: 128 bits.
	TagSize = 16
	// TokenSize is the one-time reply token of anonymous messages.
	TokenSize = 8

	// OffsetHops and OffsetTTL locate the two mutable bytes. Relays change
	// them in place; nothing authenticates them.
	OffsetHops = 1
	OffsetTTL  = 2
)

// Kind says what an envelope is. It occupies the low four bits of the type
// byte.
type Kind uint8

// The kinds.
const (
	KindAnnounce    Kind = 0 // signed "I am here" with the node's key
	KindPathRequest Kind = 1 // "who knows the way to X?", scoped flood
	KindPathReply   Kind = 2 // carries X's signed announce back to the requester
	KindData        Kind = 3 // end-to-end encrypted unicast
	KindAnon        Kind = 4 // unicast from an ephemeral key: sender unknown
	KindAck         Kind = 5 // end-to-end acknowledgement of a Data envelope
	KindChannel     Kind = 6 // broadcast channel message (body defined by broadcast)
	KindFlood       Kind = 7 // signed flood with topic and sequence (FAPP slots)
	KindQuery       Kind = 8 // anonymous scoped flood with a reply token
	KindAnonReply   Kind = 9 // reply routed back to a reply token
	// KindHeld tells the sender of a Data envelope that a relay holds it
	// for a destination it has no route to (store-and-forward). Not
	// authenticated: informational, see NewHeld.
	KindHeld = 10
	numKinds = 11
)

var kindNames = [numKinds]string{"announce", "path-request", "path-reply", "data", "anon", "ack", "channel", "flood", "query", "anon-reply", "held"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Flags occupy the high four bits of the type byte.
type Flags uint8

const (
	// FlagFull: addresses are full 16-byte addresses, not 4-byte hints.
	FlagFull Flags = 0x10
	// FlagKey: the sender's 32-byte public key follows the counter (Data),
	// for a first contact with a peer that may not know the key yet.
	FlagKey Flags = 0x20
	// FlagPQ: the pairwise keys mix in a post-quantum shared secret.
	FlagPQ Flags = 0x40
	// FlagPort: the first plaintext byte names the application (port).
	// Without it the payload belongs to the default application, direct
	// messages, and costs no byte.
	FlagPort Flags = 0x80
)

var allowedFlags = [numKinds]Flags{
	KindAnnounce:    0,
	KindPathRequest: FlagFull,
	KindPathReply:   FlagFull,
	KindData:        FlagFull | FlagKey | FlagPQ | FlagPort,
	KindAnon:        FlagFull | FlagPort,
	KindAck:         FlagFull | FlagPQ,
	KindChannel:     FlagFull,
	KindFlood:       0,
	KindQuery:       0,
	KindAnonReply:   FlagPort,
	KindHeld:        FlagFull,
}

// Token is a one-time reply token. Relays remember, for a short while, which
// neighbour a token came from, so a reply can find its way back to a sender
// whose address nobody knows.
type Token [TokenSize]byte

// Addr is an address as it appears on the wire: a full 16-byte Address or
// just its 4-byte Hint.
type Addr struct {
	b    [AddressSize]byte
	full bool
}

// FullAddr wraps a full address.
func FullAddr(a Address) Addr { return Addr{b: a, full: true} }

// HintAddr wraps a hint.
func HintAddr(h Hint) Addr {
	var a Addr
	copy(a.b[:], h[:])
	return a
}

// IsFull reports whether the full address is known.
func (a Addr) IsFull() bool { return a.full }

// Hint returns the first four bytes.
func (a Addr) Hint() Hint {
	var h Hint
	copy(h[:], a.b[:HintSize])
	return h
}

// Full returns the full address, if this Addr has it.
func (a Addr) Full() (Address, bool) {
	if !a.full {
		return Address{}, false
	}
	return a.b, true
}

// Matches reports whether x could be this address: equal when full,
// same hint otherwise.
func (a Addr) Matches(x Address) bool {
	if a.full {
		return a.b == x
	}
	return bytes.Equal(a.b[:HintSize], x[:HintSize])
}

func (a Addr) String() string {
	if a.full {
		return Address(a.b).String()
	}
	return a.Hint().String() + "…"
}

// Envelope is a decoded envelope. Which fields are meaningful depends on
// Kind, as documented per field; slices alias the bytes given to Parse.
type Envelope struct {
	// Hops is how many relays have forwarded the envelope. Mutable.
	Hops uint8
	// TTL is how many more times it may be forwarded. Mutable.
	TTL   uint8
	Kind  Kind
	Flags Flags

	// Dst: Data, Ack and Anon (recipient), PathRequest (target),
	// PathReply (requester), Channel (channel id).
	Dst Addr
	// Src: Data and Ack (sender), PathRequest (requester).
	Src Addr
	// Counter: Data (the sender's per-pair counter, also the nonce), Ack
	// (the counter being acknowledged), Held (the counter of the held Data).
	// Held uses Dst for the held Data's sender and Src for its recipient,
	// as an Ack of it would.
	Counter uint32
	// RequestID: PathRequest and PathReply.
	RequestID uint32
	// Dist: PathReply, the replier's distance in hops to the target. Mutable
	// in spirit (not authenticated): a hint for route choice only.
	Dist uint8
	// Key: Announce, PathReply and Flood (the signer), Data with FlagKey
	// (the sender).
	Key PublicKey
	// Seq: Announce, PathReply and Flood: the signer's sequence number;
	// a higher one supersedes a lower one.
	Seq uint32
	// Caps: Announce and PathReply: capability bits (CapRelay, ...).
	Caps uint8
	// Topic: Flood and Query: which application the body belongs to.
	Topic uint8
	// Token: Anon, Query and AnonReply.
	Token Token
	// Ephemeral: Anon and AnonReply: the sender's one-time X25519 key.
	Ephemeral [32]byte
	// Body: Announce and PathReply: application data (≤ MaxAppData);
	// Data, Anon and AnonReply: ciphertext including the tag; Ack: the MAC;
	// Channel, Flood and Query: the application body.
	Body []byte
	// Sig: Announce, PathReply and Flood: the Ed25519 signature.
	Sig []byte

	raw     []byte // the whole envelope as parsed or built
	bodyOff int    // offset of Body in raw
}

// Capability bits carried in announces.
const (
	// CapRelay: the node forwards for others.
	CapRelay uint8 = 1 << 0
	// CapStore: the node holds messages for offline destinations.
	CapStore uint8 = 1 << 1
	// CapGateway: the node bridges to the internet (libp2p).
	CapGateway uint8 = 1 << 2
)

// Raw returns the envelope's bytes (as given to Parse).
func (e *Envelope) Raw() []byte { return e.raw }

// authHeader returns the authenticated header: everything from the type byte
// up to the body. The version byte is bound by the key schedule instead (its
// labels name the version), hops and TTL are deliberately left out, and
// leaving both out keeps the authenticated bytes contiguous.
func (e *Envelope) authHeader() []byte { return e.raw[OffsetTTL+1 : e.bodyOff] }

func (e *Envelope) addrLen() int {
	if e.Flags&FlagFull != 0 {
		return AddressSize
	}
	return HintSize
}

// AnnounceSize is the length of an announce carrying appData bytes of
// application data, as SignAnnounce builds it: what a router needs to price
// its own announce on a radio link before it has signed one.
func AnnounceSize(appData int) int {
	return HeaderSize + fixedSize(KindAnnounce, 0, 0) + appData + SignatureSize
}

// Size of each kind's fixed part after the common header, given the address
// length al. The body and signature come on top.
func fixedSize(k Kind, f Flags, al int) int {
	switch k {
	case KindAnnounce:
		return PublicKeySize + 4 + 1
	case KindPathRequest:
		return 2*al + 4
	case KindPathReply:
		return al + 4 + 1 + PublicKeySize + 4 + 1
	case KindData:
		n := 2*al + 4
		if f&FlagKey != 0 {
			n += PublicKeySize
		}
		return n
	case KindAnon:
		return al + TokenSize + 32
	case KindAck, KindHeld:
		return 2*al + 4
	case KindChannel:
		return al
	case KindFlood:
		return 1 + PublicKeySize + 4
	case KindQuery:
		return 1 + TokenSize
	case KindAnonReply:
		return TokenSize + 32
	}
	return 0
}

// Body bounds per kind: minimum and maximum body length, and whether a
// signature follows.
func bodyBounds(k Kind, f Flags) (minBody, maxBody int, signed bool) {
	switch k {
	case KindAnnounce, KindPathReply:
		return 0, MaxAppData, true
	case KindFlood:
		return 0, MaxSize, true
	case KindData, KindAnon, KindAnonReply:
		if f&FlagPort != 0 {
			return TagSize + 1, MaxSize, false
		}
		return TagSize, MaxSize, false
	case KindAck:
		return TagSize, TagSize, false
	case KindChannel:
		return 1, MaxSize, false
	case KindQuery:
		return 0, MaxSize, false
	}
	return 0, 0, false
}

// Parse decodes one envelope. It only checks structure, which is cheap:
// signatures and ciphertexts are checked by Verify and Open. The result
// aliases b. Every malformed input yields an error wrapping one of the
// sentinel errors; Parse never panics.
func Parse(b []byte) (Envelope, error) {
	var e Envelope
	if len(b) < HeaderSize {
		return e, &FormatError{Field: "header", Err: ErrTruncated, Need: HeaderSize, Have: len(b)}
	}
	if len(b) > MaxSize {
		return e, &FormatError{Field: "envelope", Err: ErrTooLarge, Need: MaxSize, Have: len(b)}
	}
	if b[0] != Version {
		return e, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	e.Hops, e.TTL = b[OffsetHops], b[OffsetTTL]
	e.Kind, e.Flags = Kind(b[3]&0x0f), Flags(b[3]&0xf0)
	if e.Kind >= numKinds {
		return e, fmt.Errorf("%w: %d", ErrKind, uint8(e.Kind))
	}
	if bad := e.Flags &^ allowedFlags[e.Kind]; bad != 0 {
		return e, &FormatError{Kind: e.Kind, Field: fmt.Sprintf("flags %#02x", uint8(bad)), Err: ErrFlags}
	}
	al := e.addrLen()
	fixed := fixedSize(e.Kind, e.Flags, al)
	minBody, maxBody, signed := bodyBounds(e.Kind, e.Flags)
	sigLen := 0
	if signed {
		sigLen = SignatureSize
	}
	if need := HeaderSize + fixed + minBody + sigLen; len(b) < need {
		return e, &FormatError{Kind: e.Kind, Field: "fixed fields", Err: ErrTruncated, Need: need, Have: len(b)}
	}
	if bodyLen := len(b) - HeaderSize - fixed - sigLen; bodyLen > maxBody {
		return e, &FormatError{Kind: e.Kind, Field: "body", Err: ErrTooLarge, Need: maxBody, Have: bodyLen}
	}

	r := b[HeaderSize:]
	addr := func() Addr {
		var a Addr
		copy(a.b[:], r[:al])
		a.full = al == AddressSize
		r = r[al:]
		return a
	}
	u32 := func() uint32 {
		v := binary.BigEndian.Uint32(r)
		r = r[4:]
		return v
	}
	u8 := func() uint8 {
		v := r[0]
		r = r[1:]
		return v
	}
	key := func() (k PublicKey) {
		copy(k[:], r)
		r = r[PublicKeySize:]
		return k
	}
	switch e.Kind {
	case KindAnnounce:
		e.Key, e.Seq, e.Caps = key(), u32(), u8()
	case KindPathRequest:
		e.Dst, e.Src, e.RequestID = addr(), addr(), u32()
	case KindPathReply:
		e.Dst, e.RequestID, e.Dist = addr(), u32(), u8()
		e.Key, e.Seq, e.Caps = key(), u32(), u8()
	case KindData:
		e.Dst, e.Src, e.Counter = addr(), addr(), u32()
		if e.Flags&FlagKey != 0 {
			e.Key = key()
			if !e.Src.Matches(e.Key.Address()) {
				return Envelope{}, &FormatError{Kind: e.Kind, Field: "sender key", Err: ErrKeyMismatch}
			}
		}
	case KindAnon:
		e.Dst = addr()
		r = r[copy(e.Token[:], r):]
		r = r[copy(e.Ephemeral[:], r):]
	case KindAck, KindHeld:
		e.Dst, e.Src, e.Counter = addr(), addr(), u32()
	case KindChannel:
		e.Dst = addr()
	case KindFlood:
		e.Topic, e.Key, e.Seq = u8(), key(), u32()
	case KindQuery:
		e.Topic = u8()
		r = r[copy(e.Token[:], r):]
	case KindAnonReply:
		r = r[copy(e.Token[:], r):]
		r = r[copy(e.Ephemeral[:], r):]
	}
	if (e.Kind == KindData || e.Kind == KindAck || e.Kind == KindHeld) && e.Counter == 0 {
		return Envelope{}, &FormatError{Kind: e.Kind, Field: "counter", Err: ErrCounter}
	}
	e.bodyOff = len(b) - len(r)
	e.Body = r[:len(r)-sigLen]
	if signed {
		e.Sig = r[len(r)-sigLen:]
	}
	e.raw = b
	return e, nil
}

// Append encodes e after dst and returns the extended slice. Body and Sig are
// written as they are; use the Seal and Sign functions to produce them. A
// field that does not fit its kind's rules is an error and nothing is
// appended.
func (e *Envelope) Append(dst []byte) ([]byte, error) {
	if e.Kind >= numKinds {
		return dst, fmt.Errorf("%w: %d", ErrKind, uint8(e.Kind))
	}
	if bad := e.Flags &^ allowedFlags[e.Kind]; bad != 0 || e.Flags&0x0f != 0 {
		return dst, &FormatError{Kind: e.Kind, Field: "flags", Err: ErrFlags}
	}
	al := e.addrLen()
	fixed := fixedSize(e.Kind, e.Flags, al)
	minBody, maxBody, signed := bodyBounds(e.Kind, e.Flags)
	if len(e.Body) < minBody {
		return dst, &FormatError{Kind: e.Kind, Field: "body", Err: ErrTruncated, Need: minBody, Have: len(e.Body)}
	}
	if len(e.Body) > maxBody {
		return dst, &FormatError{Kind: e.Kind, Field: "body", Err: ErrTooLarge, Need: maxBody, Have: len(e.Body)}
	}
	sigLen := 0
	if signed {
		sigLen = SignatureSize
		if len(e.Sig) != SignatureSize {
			return dst, &FormatError{Kind: e.Kind, Field: "signature", Err: ErrTruncated, Need: SignatureSize, Have: len(e.Sig)}
		}
	}
	total := HeaderSize + fixed + len(e.Body) + sigLen
	if total > MaxSize {
		return dst, &FormatError{Kind: e.Kind, Field: "envelope", Err: ErrTooLarge, Need: MaxSize, Have: total}
	}
	if (e.Kind == KindData || e.Kind == KindAck || e.Kind == KindHeld) && e.Counter == 0 {
		return dst, &FormatError{Kind: e.Kind, Field: "counter", Err: ErrCounter}
	}
	for _, a := range []struct {
		used bool
		a    Addr
	}{{usesDst(e.Kind), e.Dst}, {usesSrc(e.Kind), e.Src}} {
		if a.used && al == AddressSize && !a.a.full {
			return dst, &FormatError{Kind: e.Kind, Field: "address", Err: ErrTruncated, Need: AddressSize, Have: HintSize}
		}
	}
	start := len(dst)
	out := appendHead(dst, e, al)
	out = append(out, e.Body...)
	out = append(out, e.Sig...)
	if len(out)-start != total {
		// A layout bug, not an input problem; refuse rather than emit garbage.
		return dst, fmt.Errorf("envelope: internal: %s encoded to %d bytes, expected %d", e.Kind, len(out)-start, total)
	}
	return out, nil
}

func usesDst(k Kind) bool {
	switch k {
	case KindData, KindAck, KindAnon, KindPathRequest, KindPathReply, KindChannel, KindHeld:
		return true
	}
	return false
}

func usesSrc(k Kind) bool {
	return k == KindData || k == KindAck || k == KindPathRequest || k == KindHeld
}

// appendHead writes the common header and the kind's fixed fields.
func appendHead(b []byte, e *Envelope, al int) []byte {
	b = append(b, Version, e.Hops, e.TTL, uint8(e.Kind)|uint8(e.Flags))
	addr := func(a Addr) { b = append(b, a.b[:al]...) }
	u32 := func(v uint32) { b = binary.BigEndian.AppendUint32(b, v) }
	switch e.Kind {
	case KindAnnounce:
		b = append(b, e.Key[:]...)
		u32(e.Seq)
		b = append(b, e.Caps)
	case KindPathRequest:
		addr(e.Dst)
		addr(e.Src)
		u32(e.RequestID)
	case KindPathReply:
		addr(e.Dst)
		u32(e.RequestID)
		b = append(b, e.Dist)
		b = append(b, e.Key[:]...)
		u32(e.Seq)
		b = append(b, e.Caps)
	case KindData:
		addr(e.Dst)
		addr(e.Src)
		u32(e.Counter)
		if e.Flags&FlagKey != 0 {
			b = append(b, e.Key[:]...)
		}
	case KindAnon:
		addr(e.Dst)
		b = append(b, e.Token[:]...)
		b = append(b, e.Ephemeral[:]...)
	case KindAck, KindHeld:
		addr(e.Dst)
		addr(e.Src)
		u32(e.Counter)
	case KindChannel:
		addr(e.Dst)
	case KindFlood:
		b = append(b, e.Topic)
		b = append(b, e.Key[:]...)
		u32(e.Seq)
	case KindQuery:
		b = append(b, e.Topic)
		b = append(b, e.Token[:]...)
	case KindAnonReply:
		b = append(b, e.Token[:]...)
		b = append(b, e.Ephemeral[:]...)
	}
	return b
}

// Relay prepares raw envelope bytes for forwarding, in place: it increments
// the hop count and decrements the TTL. It returns false, changing nothing,
// when the TTL is already zero or the input is too short to be an envelope:
// such an envelope must not be forwarded.
func Relay(raw []byte) bool {
	if len(raw) < HeaderSize || raw[OffsetTTL] == 0 {
		return false
	}
	raw[OffsetTTL]--
	if raw[OffsetHops] < 0xff {
		raw[OffsetHops]++
	}
	return true
}

// Immutable returns the parts of raw that no relay may change, in order, for
// hashing into a duplicate-detection key: everything but the hop count and
// TTL. Both returned slices alias raw.
func Immutable(raw []byte) (head, rest []byte) {
	if len(raw) < HeaderSize {
		return raw, nil
	}
	return raw[:OffsetHops], raw[OffsetTTL+1:]
}

// NewHeld builds the notice a relay sends back towards the sender of the
// Data envelope data when it holds it for lack of a route: the Data's
// source as destination, its destination as source and its counter, in the
// Data's addressing (hints, or full with FlagFull); no body. 16 bytes with
// hints. Nothing authenticates it (the relay shares no key with the
// sender): it proves only that some node that saw the Data says so, and
// the sender treats it as information (a state for the user, a longer
// wait before the next end-to-end retry), never as delivery.
func NewHeld(data *Envelope, ttl uint8) ([]byte, error) {
	if data.Kind != KindData {
		return nil, &FormatError{Kind: data.Kind, Field: "kind", Err: ErrKind}
	}
	h := Envelope{Kind: KindHeld, Flags: data.Flags & FlagFull, TTL: ttl, Dst: data.Src, Src: data.Dst, Counter: data.Counter}
	return h.Append(nil)
}
