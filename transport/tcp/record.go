package tcp

import (
	"encoding/binary"
	"fmt"
)

// Session records (docs/transports.md, "Records"). After the handshake the
// stream is a sequence of records:
//
//	record    = length:u16be ‖ ciphertext[length]
//	plaintext = type:u8 ‖ body
//
// ciphertext is the plaintext sealed by the session's ChaCha20-Poly1305
// cipher state (16-byte tag, nonce = record counter), so length is at most
// the Noise maximum of 65535 and at least 17. A frame travels in one
// recFrame record, or, when larger than maxPiece, in a recMore record
// followed by a recFrame record carrying the rest.
const (
	// MaxFrameSize is the hard maximum frame size and every TCP link's MTU:
	// 64 KiB, one byte above envelope.MaxSize.
	MaxFrameSize = 64 << 10

	recordHeader   = 2
	tagSize        = 16
	maxRecord      = 65535
	minRecord      = 1 + tagSize
	maxPlain       = maxRecord - tagSize // 65519
	maxPiece       = maxPlain - 1        // 65518 frame bytes per record
	maxWireOverhd  = 2 * (recordHeader + 1 + tagSize)
	recFrame       = 0x00 // the last (or only) piece of a frame
	recMore        = 0x01 // a piece of a frame with more to follow
	recKeepalive   = 0x02 // no body; proves the peer is alive
	maxRecordsFrag = (MaxFrameSize + maxPiece - 1) / maxPiece
)

// sealer and opener are the halves of a noise.CipherState the codec needs;
// tests substitute a plaintext cipher to fuzz the record layer.
type sealer interface {
	Encrypt(out, ad, plaintext []byte) ([]byte, error)
}
type opener interface {
	Decrypt(out, ad, ciphertext []byte) ([]byte, error)
}

// appendRecord seals one record of type typ and body onto dst.
func appendRecord(dst []byte, s sealer, typ byte, body []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, typ)
	dst = append(dst, body...)
	out, err := s.Encrypt(dst[:start+recordHeader], nil, dst[start+recordHeader:])
	if err != nil {
		return dst[:start], err
	}
	binary.BigEndian.PutUint16(out[start:], uint16(len(out)-start-recordHeader))
	return out, nil
}

// appendFrame seals frame as one or two records onto dst.
func appendFrame(dst []byte, s sealer, frame []byte) ([]byte, error) {
	if len(frame) > MaxFrameSize {
		return dst, fmt.Errorf("tcp: frame of %d bytes above %d", len(frame), MaxFrameSize)
	}
	var err error
	for len(frame) > maxPiece {
		if dst, err = appendRecord(dst, s, recMore, frame[:maxPiece]); err != nil {
			return dst, err
		}
		frame = frame[maxPiece:]
	}
	return appendRecord(dst, s, recFrame, frame)
}

// recordLen parses and bounds a record's length prefix.
func recordLen(hdr []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(hdr))
	if n < minRecord {
		return 0, fmt.Errorf("%w: record of %d bytes, below the minimum %d", ErrProtocol, n, minRecord)
	}
	return n, nil
}

// decoder reassembles frames from opened records. It is sans-IO: the
// caller reads each record's bytes and hands them over.
type decoder struct {
	open opener
	frag []byte // frame being reassembled from recMore pieces
}

// record opens one record's ciphertext (in place: ct is consumed) and
// returns a complete frame, if this record finished one. The frame aliases
// ct or the reassembly buffer and is handed over to the caller.
func (d *decoder) record(ct []byte) (frame []byte, keepalive bool, err error) {
	pt, err := d.open.Decrypt(ct[:0], nil, ct)
	if err != nil {
		return nil, false, fmt.Errorf("%w: record does not authenticate", ErrProtocol)
	}
	return d.plaintext(pt)
}

// plaintext interprets one opened record.
func (d *decoder) plaintext(pt []byte) (frame []byte, keepalive bool, err error) {
	if len(pt) < 1 {
		return nil, false, fmt.Errorf("%w: empty record", ErrProtocol)
	}
	typ, body := pt[0], pt[1:]
	switch typ {
	case recKeepalive:
		if len(body) != 0 || d.frag != nil {
			return nil, false, fmt.Errorf("%w: keepalive with body or inside a frame", ErrProtocol)
		}
		return nil, true, nil
	case recMore:
		if len(body) == 0 {
			return nil, false, fmt.Errorf("%w: empty frame piece", ErrProtocol)
		}
		if len(d.frag)+len(body) >= MaxFrameSize {
			d.frag = nil
			return nil, false, fmt.Errorf("%w: frame pieces exceed %d bytes", ErrProtocol, MaxFrameSize)
		}
		if d.frag == nil {
			d.frag = make([]byte, 0, MaxFrameSize)
		}
		d.frag = append(d.frag, body...)
		return nil, false, nil
	case recFrame:
		if d.frag == nil {
			return body, false, nil
		}
		if len(d.frag)+len(body) > MaxFrameSize {
			d.frag = nil
			return nil, false, fmt.Errorf("%w: frame exceeds %d bytes", ErrProtocol, MaxFrameSize)
		}
		f := append(d.frag, body...)
		d.frag = nil
		return f, false, nil
	}
	return nil, false, fmt.Errorf("%w: unknown record type %#02x", ErrProtocol, typ)
}
