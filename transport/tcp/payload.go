package tcp

import (
	"encoding/binary"
	"fmt"

	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
	"github.com/openmeshd/meshd/envelope"
)

// Wire constants of the handshake (docs/transports.md, "Handshake").
const (
	// ProtocolVersion is the version byte of the preamble, the handshake
	// payloads and the mDNS TXT record.
	ProtocolVersion = 1

	preambleSize = 4
	// maxHandshakeMsg bounds one handshake message. The largest one, message
	// 2 with an ML-KEM ciphertext, is 1,282 bytes.
	maxHandshakeMsg = 4096
	// minHandshakeMsg: the smallest message, 3 without PQ, is 48+114+16.
	minHandshakeMsg = 32

	flagPQ = 0x01

	sigSize = envelope.SignatureSize

	msg1Base = 2                               // version, flags
	msg2Base = 2 + envelope.PublicKeySize + 64 // + identity key, signature
	msg3Base = msg2Base
)

// preamble opens every connection in both directions: "MSH" and the version.
var preambleMagic = [3]byte{'M', 'S', 'H'}

func appendPreamble(dst []byte) []byte {
	return append(dst, preambleMagic[0], preambleMagic[1], preambleMagic[2], ProtocolVersion)
}

// checkPreamble validates the four bytes a peer opens with.
func checkPreamble(b []byte) error {
	if len(b) != preambleSize {
		return fmt.Errorf("%w: preamble is %d bytes", ErrMalformed, len(b))
	}
	if [3]byte(b[:3]) != preambleMagic {
		return fmt.Errorf("%w: not a meshd peer (preamble %x)", ErrMalformed, b)
	}
	if b[3] != ProtocolVersion {
		return fmt.Errorf("%w: peer speaks version %d, we speak %d", ErrVersion, b[3], ProtocolVersion)
	}
	return nil
}

// handshakeLen parses the 2-byte big-endian length that precedes each
// handshake message and bounds it before anything is allocated.
func handshakeLen(hdr []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(hdr))
	if n < minHandshakeMsg || n > maxHandshakeMsg {
		return 0, fmt.Errorf("%w: handshake message of %d bytes (allowed %d..%d)", ErrMalformed, n, minHandshakeMsg, maxHandshakeMsg)
	}
	return n, nil
}

// payload is the plaintext carried inside a handshake message.
//
//	message 1: version ‖ flags ‖ [ML-KEM-768 encapsulation key, 1184]
//	message 2: version ‖ flags ‖ identity key 32 ‖ signature 64 ‖ [ML-KEM-768 ciphertext, 1088]
//	message 3: version ‖ flags ‖ identity key 32 ‖ signature 64
//
// flags bit 0 (flagPQ) says the optional ML-KEM field is present (message
// 1: offered; message 2: accepted; message 3: the hybrid is in use). Other
// bits must be zero.
type payload struct {
	version byte
	pq      bool
	key     envelope.PublicKey
	sig     [sigSize]byte
	kem     []byte // encapsulation key (msg 1) or ciphertext (msg 2)
}

// appendTo encodes p as message msg's payload (1, 2 or 3).
func (p *payload) appendTo(dst []byte, msg int) []byte {
	var flags byte
	if p.pq {
		flags |= flagPQ
	}
	dst = append(dst, p.version, flags)
	if msg >= 2 {
		dst = append(dst, p.key[:]...)
		dst = append(dst, p.sig[:]...)
	}
	if p.pq && msg <= 2 {
		dst = append(dst, p.kem...)
	}
	return dst
}

// decodePayload parses message msg's payload. It checks every length and
// bit, and that the identity key is a safe curve point; it does not verify
// the signature (the handshake does, against the Noise static key).
func decodePayload(msg int, b []byte) (payload, error) {
	var p payload
	base := msg1Base
	kemSize := mlkem768.PublicKeySize
	switch msg {
	case 1:
	case 2:
		base, kemSize = msg2Base, mlkem768.CiphertextSize
	case 3:
		base, kemSize = msg3Base, 0
	default:
		return p, fmt.Errorf("%w: no handshake message %d", ErrMalformed, msg)
	}
	if len(b) < 2 {
		return p, fmt.Errorf("%w: message %d payload of %d bytes", ErrMalformed, msg, len(b))
	}
	p.version = b[0]
	if p.version != ProtocolVersion {
		return p, fmt.Errorf("%w: message %d says version %d", ErrVersion, msg, p.version)
	}
	flags := b[1]
	if flags&^flagPQ != 0 {
		return p, fmt.Errorf("%w: message %d has unknown flags %#02x", ErrMalformed, msg, flags)
	}
	p.pq = flags&flagPQ != 0
	want := base
	if p.pq {
		want += kemSize
	}
	if len(b) != want {
		return p, fmt.Errorf("%w: message %d payload is %d bytes, want %d", ErrMalformed, msg, len(b), want)
	}
	if msg >= 2 {
		k, err := envelope.ParsePublicKey(b[2 : 2+envelope.PublicKeySize])
		if err != nil {
			return p, fmt.Errorf("%w: %v", ErrIdentity, err)
		}
		p.key = k
		copy(p.sig[:], b[2+envelope.PublicKeySize:base])
	}
	if p.pq && kemSize > 0 {
		p.kem = b[base:want]
	}
	return p, nil
}
