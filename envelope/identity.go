package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/curve25519"
)

// Sizes of identity material.
const (
	PublicKeySize = ed25519.PublicKeySize // 32
	SeedSize      = ed25519.SeedSize      // 32
	AddressSize   = 16
	HintSize      = 4
	SignatureSize = ed25519.SignatureSize // 64
)

// Domain-separation tags. Every hash or KDF input in meshd starts with one, so
// a value computed for one purpose can never be replayed as another.
const (
	tagAddress     = "meshd/v1/address"
	tagFingerprint = "meshd/v1/fingerprint"
)

// PublicKey is a node's Ed25519 identity key: its whole public identity.
type PublicKey [PublicKeySize]byte

// Address is the first 16 bytes of SHA-256(tagAddress ‖ public key). It is
// self-certifying: whoever shows the key proves the address.
type Address [AddressSize]byte

// Hint is the first 4 bytes of an Address, used in place of the full address
// on constrained links. Hints collide; receivers resolve by trial decryption.
type Hint [HintSize]byte

// ParsePublicKey checks that b is a canonical encoding of an Ed25519 point
// that is not of small order, so it is safe to use for signatures and to
// convert to X25519.
func ParsePublicKey(b []byte) (PublicKey, error) {
	var k PublicKey
	if len(b) != PublicKeySize {
		return k, fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(b), PublicKeySize)
	}
	copy(k[:], b)
	if _, err := k.X25519(); err != nil {
		return PublicKey{}, err
	}
	return k, nil
}

// X25519 returns the Montgomery form of the key (the birational map
// u = (1+y)/(1−y) that libsodium and age use), for Diffie–Hellman. It fails
// for encodings that are not on the curve, not canonical, or of small order.
func (k PublicKey) X25519() ([32]byte, error) {
	var out [32]byte
	p, err := k.point()
	if err != nil {
		return out, err
	}
	copy(out[:], p.BytesMontgomery())
	return out, nil
}

// point decodes the key, refusing encodings that are not on the curve, not
// canonical, or of small order (a DH with those yields a secret the attacker
// knows; a signature by them can be valid for many messages).
func (k PublicKey) point() (*edwards25519.Point, error) {
	p, err := new(edwards25519.Point).SetBytes(k[:])
	if err != nil {
		return nil, fmt.Errorf("%w: not a point on Ed25519", ErrBadKey)
	}
	if !bytes.Equal(p.Bytes(), k[:]) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrBadKey)
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return nil, fmt.Errorf("%w: small-order point", ErrBadKey)
	}
	return p, nil
}

// Address returns the key's self-certifying address.
func (k PublicKey) Address() Address {
	h := sha256.New()
	h.Write([]byte(tagAddress))
	h.Write(k[:])
	var a Address
	copy(a[:], h.Sum(nil))
	return a
}

// String is the key in lowercase hex.
func (k PublicKey) String() string { return hex.EncodeToString(k[:]) }

// Fingerprint is the key's safety number: 30 decimal digits in six groups of
// five, about 100 bits, meant to be read aloud or compared on two screens.
// Each group is five bytes of SHA-256(tagFingerprint ‖ key) reduced mod 10^5,
// as Signal's safety numbers do.
func (k PublicKey) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(tagFingerprint))
	h.Write(k[:])
	sum := h.Sum(nil)
	var sb strings.Builder
	for i := 0; i < 6; i++ {
		var v [8]byte
		copy(v[3:], sum[i*5:i*5+5])
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%05d", binary.BigEndian.Uint64(v[:])%100000)
	}
	return sb.String()
}

// SafetyNumber is what two people compare to verify each other: both
// fingerprints in a fixed order, so it reads the same on both sides.
func SafetyNumber(a, b PublicKey) string {
	fa, fb := a.Fingerprint(), b.Fingerprint()
	if fb < fa {
		fa, fb = fb, fa
	}
	return fa + " " + fb
}

// Hint returns the address's first four bytes.
func (a Address) Hint() Hint {
	var h Hint
	copy(h[:], a[:HintSize])
	return h
}

// String is the address in lowercase hex (32 characters).
func (a Address) String() string { return hex.EncodeToString(a[:]) }

// ParseAddress reads an address written by Address.String.
func ParseAddress(s string) (Address, error) {
	var a Address
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != AddressSize {
		return a, fmt.Errorf("envelope: %q is not an address (want %d hex digits)", s, 2*AddressSize)
	}
	copy(a[:], b)
	return a, nil
}

// String is the hint in lowercase hex.
func (h Hint) String() string { return hex.EncodeToString(h[:]) }

// Identity is a node's private identity: an Ed25519 key pair and the X25519
// key derived from it. Call Destroy when done to zero the private parts.
type Identity struct {
	priv  ed25519.PrivateKey
	pub   PublicKey
	xpriv [32]byte
	xpub  [32]byte
	addr  Address
}

// GenerateIdentity makes a new identity from rand (crypto/rand.Reader in
// production).
func GenerateIdentity(rand io.Reader) (*Identity, error) {
	var seed [SeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("envelope: reading randomness: %w", err)
	}
	defer clear(seed[:])
	return IdentityFromSeed(seed[:])
}

// IdentityFromSeed rebuilds an identity from its 32-byte Ed25519 seed.
func IdentityFromSeed(seed []byte) (*Identity, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: seed is %d bytes, want %d", ErrBadKey, len(seed), SeedSize)
	}
	id := &Identity{priv: ed25519.NewKeyFromSeed(seed)}
	copy(id.pub[:], id.priv[SeedSize:])
	// The X25519 scalar is the clamped first half of SHA-512(seed), exactly
	// the scalar Ed25519 signs with, so the X25519 public key equals the
	// birational map of the Ed25519 public key.
	h := sha512.Sum512(seed)
	copy(id.xpriv[:], h[:32])
	clear(h[:])
	xpub, err := curve25519.X25519(id.xpriv[:], curve25519.Basepoint)
	if err != nil {
		id.Destroy()
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	copy(id.xpub[:], xpub)
	id.addr = id.pub.Address()
	return id, nil
}

// PublicKey returns the identity's Ed25519 public key.
func (id *Identity) PublicKey() PublicKey { return id.pub }

// Address returns the identity's address.
func (id *Identity) Address() Address { return id.addr }

// X25519Public returns the identity's X25519 public key.
func (id *Identity) X25519Public() [32]byte { return id.xpub }

// Sign signs msg with the identity key.
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.priv, msg) }

// PrivateKey returns the Ed25519 private key, for code that must hand it to
// another library (the libp2p host uses the same key as its peer identity).
func (id *Identity) PrivateKey() ed25519.PrivateKey { return id.priv }

// Seed returns a copy of the 32-byte seed the identity is built from.
func (id *Identity) Seed() []byte { return append([]byte(nil), id.priv.Seed()...) }

// dh computes X25519 with the identity's private key.
func (id *Identity) dh(peer [32]byte) ([]byte, error) {
	ss, err := curve25519.X25519(id.xpriv[:], peer[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return ss, nil
}

// Destroy zeroes the private key material. The identity is unusable after.
func (id *Identity) Destroy() {
	clear(id.priv)
	clear(id.xpriv[:])
}

// Equal reports whether two public keys are the same, in constant time.
func (k PublicKey) Equal(o PublicKey) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }
