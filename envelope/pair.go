package envelope

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Key schedule labels (see docs/protocol.md, "Unicast keys").
const (
	saltUnicast   = "meshd/v1/unicast"
	saltUnicastPQ = "meshd/v1/unicast+pq"
	infoData      = "meshd/v1/data"
	infoAck       = "meshd/v1/ack"
	// PQSecretSize is the size of a pairwise post-quantum secret.
	PQSecretSize = 32
)

// Pair holds the keys two nodes share for unicast: one AEAD key and one ack
// MAC key per direction, derived from static–static X25519 and, when the two
// met over an IP link, a post-quantum secret. Build it once per peer and keep
// it: it is the expensive part. A Pair is immutable and safe for concurrent
// use. The caller owns the per-pair send counter and the replay window.
type Pair struct {
	local, remote Address
	localKey      PublicKey
	remoteKey     PublicKey
	pq            bool
	send, recv    cipher.AEAD
	ackSend       [32]byte
	ackRecv       [32]byte
}

// NewPair derives the keys local shares with remote. pqSecret is nil or
// PQSecretSize bytes; when given, every key depends on it as well as on
// X25519, and envelopes carry FlagPQ so the receiver picks the same keys.
func NewPair(local *Identity, remote PublicKey, pqSecret []byte) (*Pair, error) {
	if pqSecret != nil && len(pqSecret) != PQSecretSize {
		return nil, fmt.Errorf("envelope: post-quantum secret is %d bytes, want %d", len(pqSecret), PQSecretSize)
	}
	rx, err := remote.X25519()
	if err != nil {
		return nil, err
	}
	ss, err := local.dh(rx)
	if err != nil {
		return nil, err
	}
	salt := saltUnicast
	if pqSecret != nil {
		salt = saltUnicastPQ
		ss = append(ss, pqSecret...)
	}
	prk, err := hkdf.Extract(sha256.New, ss, []byte(salt))
	clear(ss)
	if err != nil {
		return nil, err
	}
	defer clear(prk)
	p := &Pair{local: local.addr, remote: remote.Address(), localKey: local.pub, remoteKey: remote, pq: pqSecret != nil}
	derive := func(label string, from, to Address) ([]byte, error) {
		return hkdf.Expand(sha256.New, prk, label+"\x00"+string(from[:])+string(to[:]), 32)
	}
	ks, err := derive(infoData, p.local, p.remote)
	if err != nil {
		return nil, err
	}
	kr, err := derive(infoData, p.remote, p.local)
	if err != nil {
		return nil, err
	}
	as, err := derive(infoAck, p.local, p.remote)
	if err != nil {
		return nil, err
	}
	ar, err := derive(infoAck, p.remote, p.local)
	if err != nil {
		return nil, err
	}
	copy(p.ackSend[:], as)
	copy(p.ackRecv[:], ar)
	// chacha20poly1305.New copies the key into its own state.
	if p.send, err = chacha20poly1305.New(ks); err == nil {
		p.recv, err = chacha20poly1305.New(kr)
	}
	clear(ks)
	clear(kr)
	clear(as)
	clear(ar)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Remote returns the peer's key.
func (p *Pair) Remote() PublicKey { return p.remoteKey }

// RemoteAddress returns the peer's address.
func (p *Pair) RemoteAddress() Address { return p.remote }

// PQ reports whether the pair's keys mix in a post-quantum secret.
func (p *Pair) PQ() bool { return p.pq }

// SealOptions shape a Data or Ack envelope.
type SealOptions struct {
	// Full writes full 16-byte addresses instead of 4-byte hints.
	Full bool
	// IncludeKey carries the sender's public key (first contact).
	IncludeKey bool
	// Port names the application; 0 is the default application (direct
	// messages) and costs no byte on the wire.
	Port uint8
	// TTL is how many times relays may forward the envelope.
	TTL uint8
}

func nonceFor(counter uint32) [chacha20poly1305.NonceSize]byte {
	var n [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint32(n[8:], counter)
	return n
}

// Seal encrypts payload from local to remote under counter and appends the
// Data envelope to dst. counter must be non-zero and must never repeat for
// this pair (the caller persists it). To retry, resend the returned bytes:
// sealing again with the same counter and different options or payload
// would reuse a nonce.
func (p *Pair) Seal(dst []byte, counter uint32, payload []byte, o SealOptions) ([]byte, error) {
	e := Envelope{Kind: KindData, TTL: o.TTL, Counter: counter}
	e.Dst, e.Src = p.addrs(p.remote, p.local, o.Full)
	if o.Full {
		e.Flags |= FlagFull
	}
	if o.IncludeKey {
		e.Flags |= FlagKey
		e.Key = p.localKey
	}
	if p.pq {
		e.Flags |= FlagPQ
	}
	ptLen := len(payload)
	if o.Port != 0 {
		e.Flags |= FlagPort
		ptLen++
	}
	if counter == 0 {
		return dst, &FormatError{Kind: KindData, Field: "counter", Err: ErrCounter}
	}
	al := e.addrLen()
	headLen := HeaderSize + fixedSize(KindData, e.Flags, al)
	if total := headLen + ptLen + TagSize; total > MaxSize {
		return dst, &FormatError{Kind: KindData, Field: "payload", Err: ErrTooLarge, Need: MaxSize, Have: total}
	}
	start := len(dst)
	out := appendHead(dst, &e, al)
	ptOff := len(out)
	if o.Port != 0 {
		out = append(out, o.Port)
	}
	out = append(out, payload...)
	nonce := nonceFor(counter)
	// Seal in place: output overwrites the plaintext just appended.
	out = p.send.Seal(out[:ptOff], nonce[:], out[ptOff:], out[start+OffsetTTL+1:ptOff])
	return out, nil
}

// Open authenticates and decrypts a Data envelope from the pair's peer to
// the pair's local node, appending the payload to dst. It does not check
// replay: feed e.Counter to the peer's ReplayWindow after Open succeeds.
func (p *Pair) Open(dst []byte, e *Envelope) (payload []byte, port uint8, err error) {
	if e.Kind != KindData {
		return dst, 0, fmt.Errorf("%w: Open wants data, got %s", ErrKind, e.Kind)
	}
	if err := p.check(e); err != nil {
		return dst, 0, err
	}
	nonce := nonceFor(e.Counter)
	out, err := p.recv.Open(dst, nonce[:], e.Body, e.authHeader())
	if err != nil {
		return dst, 0, fmt.Errorf("%w: data from %s counter %d", ErrAuth, p.remote, e.Counter)
	}
	if e.Flags&FlagPort != 0 {
		port = out[len(dst)]
		out = append(out[:len(dst)], out[len(dst)+1:]...)
	}
	return out, port, nil
}

// Ack builds the end-to-end acknowledgement of the Data envelope with the
// given counter that the pair's peer sent. Acks are deterministic MACs, not
// nonce-based encryption, so resending or rebuilding one is always safe.
func (p *Pair) Ack(counter uint32, o SealOptions) ([]byte, error) {
	e := Envelope{Kind: KindAck, TTL: o.TTL, Counter: counter}
	e.Dst, e.Src = p.addrs(p.remote, p.local, o.Full)
	if o.Full {
		e.Flags |= FlagFull
	}
	if p.pq {
		e.Flags |= FlagPQ
	}
	if counter == 0 {
		return nil, &FormatError{Kind: KindAck, Field: "counter", Err: ErrCounter}
	}
	out := appendHead(make([]byte, 0, HeaderSize+fixedSize(KindAck, e.Flags, e.addrLen())+TagSize), &e, e.addrLen())
	return append(out, ackMAC(&p.ackSend, out[OffsetTTL+1:])...), nil
}

// VerifyAck checks that e acknowledges, on behalf of the pair's peer, a Data
// envelope the local node sent; e.Counter is then the acknowledged counter.
func (p *Pair) VerifyAck(e *Envelope) error {
	if e.Kind != KindAck {
		return fmt.Errorf("%w: VerifyAck wants ack, got %s", ErrKind, e.Kind)
	}
	if err := p.check(e); err != nil {
		return err
	}
	if !hmac.Equal(ackMAC(&p.ackRecv, e.authHeader()), e.Body) {
		return fmt.Errorf("%w: ack from %s counter %d", ErrAuth, p.remote, e.Counter)
	}
	return nil
}

func ackMAC(key *[32]byte, header []byte) []byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(header)
	return m.Sum(nil)[:TagSize]
}

// check refuses envelopes that were not sent by the peer to us with these
// keys, before spending a decryption on them.
func (p *Pair) check(e *Envelope) error {
	if !e.Dst.Matches(p.local) || !e.Src.Matches(p.remote) {
		return fmt.Errorf("%w: %s→%s is not %s→%s", ErrNotForUs, e.Src, e.Dst, p.remote, p.local)
	}
	if (e.Flags&FlagPQ != 0) != p.pq {
		return fmt.Errorf("%w: post-quantum flag %v, pair has %v", ErrNotForUs, e.Flags&FlagPQ != 0, p.pq)
	}
	return nil
}

func (p *Pair) addrs(dst, src Address, full bool) (Addr, Addr) {
	if full {
		return FullAddr(dst), FullAddr(src)
	}
	return HintAddr(dst.Hint()), HintAddr(src.Hint())
}
