package tcp

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
	"github.com/flynn/noise"
	"github.com/openmeshd/meshd/envelope"
)

// Labels. Every signature, KDF and prologue input starts with its own, so a
// value made for one purpose is never accepted for another.
const (
	// tagStatic prefixes what an identity key signs: its Noise static key.
	tagStatic = "meshd/v1/tcp/noise-static\x00"
	// prologueLabel is the Noise prologue, followed by the preamble bytes.
	prologueLabel = "meshd/v1/tcp\x00"
	// infoNetPSK derives the psk0 value from the configured network key.
	infoNetPSK = "meshd/v1/tcp/network-psk"
	// infoPQSecret derives the exported per-link post-quantum secret.
	infoPQSecret = "meshd/v1/tcp/pq-secret"

	// NetworkKeySize is the size of a private mesh's network key.
	NetworkKeySize = 32
	// NoiseProtocol is the full Noise protocol name this transport speaks.
	NoiseProtocol = "Noise_XXpsk0+psk3_25519_ChaChaPoly_BLAKE2s"
)

// noiseConfig builds the flynn/noise configuration for one side.
//
// The pattern is XX with two psk tokens: psk0 in front of message 1 carries
// the network key (an all-zero, public value when the mesh is open), psk3 at
// the end of message 3 carries the ML-KEM-768 shared secret (all zero when
// either side has the hybrid off). flynn/noise appends the psk3 token
// itself (PresharedKeyPlacement 3 with the psk set late through
// SetPresharedKey) and names the protocol "XXpsk0+" + "psk3"; the psk0 token
// is spelt out in the pattern below and mixes whatever psk is set at the
// time, which is the network psk because the late psk is only set after
// message 2.
func noiseConfig(static noise.DHKey, initiator bool, psk [32]byte, rnd io.Reader) noise.Config {
	return noise.Config{
		CipherSuite: noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s),
		Random:      rnd,
		Pattern: noise.HandshakePattern{
			Name: "XXpsk0+",
			Messages: [][]noise.MessagePattern{
				{noise.MessagePatternPSK, noise.MessagePatternE},
				{noise.MessagePatternE, noise.MessagePatternDHEE, noise.MessagePatternS, noise.MessagePatternDHES},
				{noise.MessagePatternS, noise.MessagePatternDHSE},
			},
		},
		Initiator:             initiator,
		Prologue:              appendPreamble([]byte(prologueLabel)),
		PresharedKey:          psk[:],
		PresharedKeyPlacement: 3,
		StaticKeypair:         static,
	}
}

// localKeys is what one node brings to every handshake.
type localKeys struct {
	id     *envelope.Identity
	static noise.DHKey
	sig    [sigSize]byte // id's signature over tagStatic ‖ static.Public
	netPSK [32]byte      // zero when the mesh is open
	netKey bool
	pq     bool
	rand   io.Reader
}

// newLocalKeys makes a fresh Noise static key and binds it to id.
// networkKey is nil (open mesh) or NetworkKeySize bytes.
func newLocalKeys(id *envelope.Identity, networkKey []byte, pq bool, rnd io.Reader) (*localKeys, error) {
	if id == nil {
		return nil, errors.New("tcp: no identity")
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	k := &localKeys{id: id, pq: pq, rand: rnd}
	if networkKey != nil {
		if len(networkKey) != NetworkKeySize {
			return nil, fmt.Errorf("tcp: network key is %d bytes, want %d", len(networkKey), NetworkKeySize)
		}
		psk, err := hkdf.Key(sha256.New, networkKey, nil, infoNetPSK, 32)
		if err != nil {
			return nil, err
		}
		copy(k.netPSK[:], psk)
		clear(psk)
		k.netKey = true
	}
	s, err := noise.DH25519.GenerateKeypair(rnd)
	if err != nil {
		return nil, fmt.Errorf("tcp: noise static key: %w", err)
	}
	k.static = s
	copy(k.sig[:], id.Sign(staticMessage(s.Public)))
	return k, nil
}

func staticMessage(static []byte) []byte {
	return append([]byte(tagStatic), static...)
}

// session is what a completed handshake yields.
type session struct {
	send, recv *noise.CipherState
	peer       envelope.PublicKey
	pq         bool
	pqSecret   []byte // PQSecretSize bytes when pq
}

// handshake is the sans-IO handshake state machine: feed it the peer's
// messages, send what it returns. It never touches a socket or a clock.
type handshake struct {
	k         *localKeys
	initiator bool
	hs        *noise.HandshakeState
	step      int
	kemSK     *mlkem768.PrivateKey // initiator, when offering PQ
	kemSS     []byte
	pq        bool // negotiated
	// accept vets the peer's proven identity (pins, expected address,
	// duplicates) before the handshake completes. nil accepts anyone.
	accept func(envelope.PublicKey) error
	sess   *session
}

func newHandshake(k *localKeys, initiator bool, accept func(envelope.PublicKey) error) (*handshake, error) {
	hs, err := noise.NewHandshakeState(noiseConfig(k.static, initiator, k.netPSK, k.rand))
	if err != nil {
		return nil, fmt.Errorf("tcp: noise: %w", err)
	}
	return &handshake{k: k, initiator: initiator, hs: hs, accept: accept}, nil
}

// Step consumes the peer's next message (nil for the initiator's first
// call) and returns the message to send next, if any. done is true once the
// session is established; Session then returns it.
func (h *handshake) Step(in []byte) (out []byte, done bool, err error) {
	defer func() { h.step++ }()
	switch {
	case h.initiator && h.step == 0:
		return h.writeMsg1()
	case h.initiator && h.step == 1:
		return h.readMsg2WriteMsg3(in)
	case !h.initiator && h.step == 0:
		return h.readMsg1WriteMsg2(in)
	case !h.initiator && h.step == 1:
		return nil, true, h.readMsg3(in)
	}
	return nil, false, errors.New("tcp: handshake already finished")
}

// Session returns the established session, or nil before done.
func (h *handshake) Session() *session { return h.sess }

func (h *handshake) writeMsg1() ([]byte, bool, error) {
	p := payload{version: ProtocolVersion, pq: h.k.pq}
	if h.k.pq {
		pk, sk, err := mlkem768.GenerateKeyPair(h.k.rand)
		if err != nil {
			return nil, false, fmt.Errorf("tcp: ml-kem key: %w", err)
		}
		h.kemSK = sk
		p.kem = make([]byte, mlkem768.PublicKeySize)
		pk.Pack(p.kem)
	}
	out, _, _, err := h.hs.WriteMessage(nil, p.appendTo(nil, 1))
	return out, false, err
}

func (h *handshake) readMsg1WriteMsg2(in []byte) ([]byte, bool, error) {
	pt, _, _, err := h.hs.ReadMessage(nil, in)
	if err != nil {
		return nil, false, h.diagnoseMsg1(in)
	}
	p, err := decodePayload(1, pt)
	if err != nil {
		return nil, false, err
	}
	reply := payload{version: ProtocolVersion, key: h.k.id.PublicKey(), sig: h.k.sig}
	late := [32]byte{}
	if p.pq && h.k.pq {
		var pk mlkem768.PublicKey
		if err := pk.Unpack(p.kem); err != nil {
			return nil, false, fmt.Errorf("%w: ML-KEM encapsulation key: %v", ErrMalformed, err)
		}
		seed := make([]byte, mlkem768.EncapsulationSeedSize)
		if _, err := io.ReadFull(h.k.rand, seed); err != nil {
			return nil, false, fmt.Errorf("tcp: randomness: %w", err)
		}
		ct := make([]byte, mlkem768.CiphertextSize)
		h.kemSS = make([]byte, mlkem768.SharedKeySize)
		pk.EncapsulateTo(ct, h.kemSS, seed)
		clear(seed)
		h.pq, reply.pq, reply.kem = true, true, ct
		copy(late[:], h.kemSS)
	}
	out, _, _, err := h.hs.WriteMessage(nil, reply.appendTo(nil, 2))
	if err != nil {
		return nil, false, err
	}
	if err := h.hs.SetPresharedKey(late[:]); err != nil {
		return nil, false, err
	}
	clear(late[:])
	return out, false, nil
}

func (h *handshake) readMsg2WriteMsg3(in []byte) ([]byte, bool, error) {
	pt, _, _, err := h.hs.ReadMessage(nil, in)
	if err != nil {
		return nil, false, fmt.Errorf("%w: message 2 does not authenticate: %v", ErrMalformed, err)
	}
	p, err := decodePayload(2, pt)
	if err != nil {
		return nil, false, err
	}
	if p.pq && !h.k.pq {
		return nil, false, fmt.Errorf("%w: message 2 carries an ML-KEM ciphertext we did not ask for", ErrMalformed)
	}
	if err := h.vet(p); err != nil {
		return nil, false, err
	}
	late := [32]byte{}
	if p.pq {
		h.pq = true
		h.kemSS = make([]byte, mlkem768.SharedKeySize)
		h.kemSK.DecapsulateTo(h.kemSS, p.kem)
		copy(late[:], h.kemSS)
	}
	h.kemSK = nil
	if err := h.hs.SetPresharedKey(late[:]); err != nil {
		return nil, false, err
	}
	clear(late[:])
	reply := payload{version: ProtocolVersion, pq: h.pq, key: h.k.id.PublicKey(), sig: h.k.sig}
	out, cs1, cs2, err := h.hs.WriteMessage(nil, reply.appendTo(nil, 3))
	if err != nil {
		return nil, false, err
	}
	if err := h.finish(p.key, cs1, cs2); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

func (h *handshake) readMsg3(in []byte) error {
	pt, cs1, cs2, err := h.hs.ReadMessage(nil, in)
	if err != nil {
		return fmt.Errorf("%w: message 3 does not authenticate: %v", ErrMalformed, err)
	}
	p, err := decodePayload(3, pt)
	if err != nil {
		return err
	}
	if p.pq != h.pq {
		return fmt.Errorf("%w: message 3 says hybrid=%v, negotiated %v", ErrMalformed, p.pq, h.pq)
	}
	if err := h.vet(p); err != nil {
		return err
	}
	return h.finish(p.key, cs1, cs2)
}

// vet checks the identity proof: the identity key signed the Noise static
// key this handshake just authenticated by Diffie–Hellman.
func (h *handshake) vet(p payload) error {
	if !ed25519.Verify(p.key[:], staticMessage(h.hs.PeerStatic()), p.sig[:]) {
		return fmt.Errorf("%w: signature over the Noise static key does not verify for %s", ErrIdentity, p.key.Address())
	}
	if p.key.Equal(h.k.id.PublicKey()) {
		return ErrSelf
	}
	if h.accept != nil {
		return h.accept(p.key)
	}
	return nil
}

func (h *handshake) finish(peer envelope.PublicKey, cs1, cs2 *noise.CipherState) error {
	s := &session{peer: peer, pq: h.pq, send: cs1, recv: cs2}
	if !h.initiator {
		s.send, s.recv = cs2, cs1
	}
	if h.pq {
		sec, err := hkdf.Key(sha256.New, h.kemSS, h.hs.ChannelBinding(), infoPQSecret, envelope.PQSecretSize)
		if err != nil {
			return err
		}
		s.pqSecret = sec
	}
	clear(h.kemSS)
	h.kemSS = nil
	h.sess = s
	return nil
}

// diagnoseMsg1 explains why message 1 did not decrypt. Its payload is
// encrypted under a key derived from psk0, so a failure almost always
// means the two sides hold different network keys; trying the open-mesh
// psk tells "has none" from "has another".
func (h *handshake) diagnoseMsg1(msg []byte) error {
	opens := func(psk [32]byte) bool {
		hs, err := noise.NewHandshakeState(noiseConfig(h.k.static, false, psk, h.k.rand))
		if err != nil {
			return false
		}
		_, _, _, err = hs.ReadMessage(nil, msg)
		return err == nil
	}
	if h.k.netKey {
		if opens([32]byte{}) {
			return fmt.Errorf("%w: the peer has no network key: it is not a member of this private mesh", ErrNetworkKey)
		}
		return fmt.Errorf("%w: the peer's first message does not authenticate under our network key: it holds a different one (or the bytes are corrupt)", ErrNetworkKey)
	}
	return fmt.Errorf("%w: the peer's first message does not authenticate without a network key: it belongs to a private mesh (or the bytes are corrupt)", ErrNetworkKey)
}
