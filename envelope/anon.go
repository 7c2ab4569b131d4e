package envelope

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
)

const (
	saltAnon      = "meshd/v1/anon"
	saltAnonReply = "meshd/v1/anon-reply"
)

// ReplyKey is a one-time X25519 key pair. The sender of an anonymous
// message keeps it to open the reply; an application may also publish its
// public half (in a Query body) so that answers can be sealed to it.
type ReplyKey struct {
	priv [32]byte
	pub  [32]byte
}

// NewReplyKey makes a fresh one-time key from rand.
func NewReplyKey(rand io.Reader) (*ReplyKey, error) {
	k := &ReplyKey{}
	if _, err := io.ReadFull(rand, k.priv[:]); err != nil {
		return nil, fmt.Errorf("envelope: reading randomness: %w", err)
	}
	pub, err := curve25519.X25519(k.priv[:], curve25519.Basepoint)
	if err != nil {
		return nil, err
	}
	copy(k.pub[:], pub)
	return k, nil
}

// Public returns the X25519 public key.
func (k *ReplyKey) Public() [32]byte { return k.pub }

// Destroy zeroes the private key.
func (k *ReplyKey) Destroy() { clear(k.priv[:]) }

// MarshalBinary returns the private key, for persisting a pending request.
func (k *ReplyKey) MarshalBinary() ([]byte, error) { return append([]byte(nil), k.priv[:]...), nil }

// UnmarshalBinary restores a key written by MarshalBinary.
func (k *ReplyKey) UnmarshalBinary(b []byte) error {
	if len(b) != 32 {
		return fmt.Errorf("%w: reply key is %d bytes, want 32", ErrBadKey, len(b))
	}
	copy(k.priv[:], b)
	pub, err := curve25519.X25519(k.priv[:], curve25519.Basepoint)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	copy(k.pub[:], pub)
	return nil
}

// ReplyTo is what the recipient of an anonymous message needs to answer it
// without learning who sent it.
type ReplyTo struct {
	Token Token
	Key   [32]byte // the sender's one-time X25519 key
}

// AnonOptions shape an anonymous message.
type AnonOptions struct {
	// Full writes the recipient's full address instead of its hint.
	Full bool
	// Port names the application; 0 is the default application.
	Port uint8
	TTL  uint8
}

// SealAnonymous encrypts payload to recipient from a fresh ephemeral key, so
// that nothing in the envelope identifies the sender. token is the one-time
// reply token relays route the answer back on. It returns the envelope and
// the ephemeral key, which opens the reply (OpenReply).
func SealAnonymous(rand io.Reader, recipient PublicKey, token Token, payload []byte, o AnonOptions) ([]byte, *ReplyKey, error) {
	rx, err := recipient.X25519()
	if err != nil {
		return nil, nil, err
	}
	eph, err := NewReplyKey(rand)
	if err != nil {
		return nil, nil, err
	}
	e := Envelope{Kind: KindAnon, TTL: o.TTL, Token: token, Ephemeral: eph.pub}
	if o.Full {
		e.Flags |= FlagFull
		e.Dst = FullAddr(recipient.Address())
	} else {
		e.Dst = HintAddr(recipient.Address().Hint())
	}
	out, err := sealEphemeral(&e, eph, rx, saltAnon, o.Port, payload)
	if err != nil {
		eph.Destroy()
		return nil, nil, err
	}
	return out, eph, nil
}

// OpenAnonymous decrypts an anonymous message addressed to id.
func (id *Identity) OpenAnonymous(e *Envelope) (payload []byte, port uint8, reply ReplyTo, err error) {
	if e.Kind != KindAnon {
		return nil, 0, reply, fmt.Errorf("%w: OpenAnonymous wants anon, got %s", ErrKind, e.Kind)
	}
	if !e.Dst.Matches(id.addr) {
		return nil, 0, reply, fmt.Errorf("%w: anon for %s", ErrNotForUs, e.Dst)
	}
	payload, port, err = openEphemeral(e, id.xpriv[:], id.xpub, saltAnon)
	if err != nil {
		return nil, 0, reply, err
	}
	return payload, port, ReplyTo{Token: e.Token, Key: e.Ephemeral}, nil
}

// SealAnonReply answers an anonymous message or query: payload is sealed to
// to.Key from a fresh ephemeral key and addressed to to.Token.
func SealAnonReply(rand io.Reader, to ReplyTo, payload []byte, port uint8, ttl uint8) ([]byte, error) {
	eph, err := NewReplyKey(rand)
	if err != nil {
		return nil, err
	}
	defer eph.Destroy()
	e := Envelope{Kind: KindAnonReply, TTL: ttl, Token: to.Token, Ephemeral: eph.pub}
	return sealEphemeral(&e, eph, to.Key, saltAnonReply, port, payload)
}

// OpenReply decrypts an AnonReply sealed to k.
func (k *ReplyKey) OpenReply(e *Envelope) (payload []byte, port uint8, err error) {
	if e.Kind != KindAnonReply {
		return nil, 0, fmt.Errorf("%w: OpenReply wants anon-reply, got %s", ErrKind, e.Kind)
	}
	return openEphemeral(e, k.priv[:], k.pub, saltAnonReply)
}

// ephemeralKey derives the one-time AEAD key: HKDF-SHA256 over the X25519
// shared secret, salted by purpose, bound to both public keys.
func ephemeralKey(shared []byte, ephPub, recipientPub [32]byte, salt string) ([]byte, error) {
	prk, err := hkdf.Extract(sha256.New, shared, []byte(salt))
	if err != nil {
		return nil, err
	}
	defer clear(prk)
	return hkdf.Expand(sha256.New, prk, string(ephPub[:])+string(recipientPub[:]), chacha20poly1305.KeySize)
}

func sealEphemeral(e *Envelope, eph *ReplyKey, recipientX [32]byte, salt string, port uint8, payload []byte) ([]byte, error) {
	shared, err := curve25519.X25519(eph.priv[:], recipientX[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	key, err := ephemeralKey(shared, eph.pub, recipientX, salt)
	clear(shared)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	if port != 0 {
		e.Flags |= FlagPort
	}
	al := e.addrLen()
	headLen := HeaderSize + fixedSize(e.Kind, e.Flags, al)
	ptLen := len(payload)
	if port != 0 {
		ptLen++
	}
	if total := headLen + ptLen + TagSize; total > MaxSize {
		return nil, &FormatError{Kind: e.Kind, Field: "payload", Err: ErrTooLarge, Need: MaxSize, Have: total}
	}
	out := appendHead(make([]byte, 0, headLen+ptLen+TagSize), e, al)
	if port != 0 {
		out = append(out, port)
	}
	out = append(out, payload...)
	// The key is used for this one message, so the all-zero nonce is safe.
	var nonce [chacha20poly1305.NonceSize]byte
	return aead.Seal(out[:headLen], nonce[:], out[headLen:], out[OffsetTTL+1:headLen]), nil
}

func openEphemeral(e *Envelope, priv []byte, pub [32]byte, salt string) ([]byte, uint8, error) {
	shared, err := curve25519.X25519(priv, e.Ephemeral[:])
	if err != nil {
		return nil, 0, fmt.Errorf("%w: ephemeral key: %v", ErrBadKey, err)
	}
	key, err := ephemeralKey(shared, e.Ephemeral, pub, salt)
	clear(shared)
	if err != nil {
		return nil, 0, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, 0, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	out, err := aead.Open(nil, nonce[:], e.Body, e.authHeader())
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s", ErrAuth, e.Kind)
	}
	var port uint8
	if e.Flags&FlagPort != 0 {
		port, out = out[0], out[1:]
	}
	return out, port, nil
}
