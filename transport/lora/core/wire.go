// Package core is the sans-IO heart of the LoRa transport: the on-air frame
// format, fragmentation and reassembly, selective acknowledgement with
// bounded retransmission rounds, and the scheduler that paces frames by
// airtime within the duty-cycle budget, by priority.
//
// An Engine is a state machine: the caller feeds it messages to send,
// frames received and the current time, and asks it for the next frame to
// put on the air and when to call again. No goroutines, clocks or I/O, so
// meshsim can run hundreds of engines in virtual time. The wire format is in
// docs/lora.md.
package core

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants.
const (
	// Magic is the first byte of every meshd LoRa frame.
	Magic = 0xE5
	// Version is the format version, in the high nibble of byte 1.
	Version = 1
	// MaxFrame is the largest frame the host hands an RNode (the firmware
	// adds one header byte on air, 255 in all).
	MaxFrame = 254
	// HintSize is the link-layer address size (envelope.HintSize).
	HintSize = 4
	// MACSize is the truncated network-key MAC appended to keyed frames.
	MACSize = 4
	// MaxFragments is the most fragments one message may have.
	MaxFragments = 256

	bcastHeader = 2 + HintSize + 2 + 2
	ucastHeader = 2 + HintSize + HintSize + 2 + 2
	sackHeader  = 2 + HintSize + HintSize + 2 + 1
)

// Kind is the frame type (bits 0-1 of byte 1).
type Kind uint8

// Frame kinds.
const (
	KindBroadcast Kind = 1 // a fragment of a broadcast message
	KindUnicast   Kind = 2 // a fragment of a unicast message
	KindSACK      Kind = 3 // a selective acknowledgement
)

const (
	flagBit = 0x04 // ACK requested (fragments) / complete (SACK)
	macBit  = 0x08 // frame ends with a MAC
)

// Errors from Parse. ErrForeign means "not a meshd frame"; the others mean
// a meshd frame that is malformed or not for this network.
var (
	ErrForeign   = errors.New("lora: not a meshd frame")
	ErrMalformed = errors.New("lora: malformed frame")
	ErrBadMAC    = errors.New("lora: bad or missing network MAC")
)

// Hint is a 4-byte link-layer address.
type Hint [HintSize]byte

// Frame is a parsed frame. Payload and Bitmap alias the parsed buffer.
type Frame struct {
	Kind Kind
	// Flag is "acknowledge now" on a unicast fragment and "complete" on a
	// SACK.
	Flag     bool
	Src, Dst Hint // Dst is zero for broadcast
	ID       uint16
	// Index and Count place a fragment (Count 1..256). On a SACK, Count is
	// the message's fragment count.
	Index int
	Count int
	// Bitmap on a SACK has bit i set (LSB first) when fragment i arrived.
	// Empty when Flag (complete).
	Bitmap  []byte
	Payload []byte
}

// Key is a network key for frame MACs. The zero Key means none.
type Key struct {
	k   [32]byte
	set bool
}

// NewKey derives a MAC key from a network secret. An empty secret gives the
// zero Key (no MAC).
func NewKey(secret []byte) Key {
	if len(secret) == 0 {
		return Key{}
	}
	h := hmac.New(sha256.New, []byte("meshd lora network key v1"))
	h.Write(secret)
	var k Key
	copy(k.k[:], h.Sum(nil))
	k.set = true
	return k
}

// Set reports whether the key is set.
func (k Key) Set() bool { return k.set }

func (k *Key) mac(b []byte) [MACSize]byte {
	h := hmac.New(sha256.New, k.k[:])
	h.Write(b)
	var out [MACSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Overhead returns the bytes a fragment of kind k spends on framing.
func Overhead(k Kind, key Key) int {
	n := bcastHeader
	switch k {
	case KindUnicast:
		n = ucastHeader
	case KindSACK:
		n = sackHeader
	}
	if key.set {
		n += MACSize
	}
	return n
}

// AppendFrame appends the encoding of f to dst (with a MAC when key is set).
func AppendFrame(dst []byte, f *Frame, key *Key) []byte {
	start := len(dst)
	b1 := byte(Version<<4) | byte(f.Kind)
	if f.Flag {
		b1 |= flagBit
	}
	if key != nil && key.set {
		b1 |= macBit
	}
	dst = append(dst, Magic, b1)
	dst = append(dst, f.Src[:]...)
	if f.Kind != KindBroadcast {
		dst = append(dst, f.Dst[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, f.ID)
	if f.Kind == KindSACK {
		dst = append(dst, byte(f.Count-1))
		if !f.Flag {
			dst = append(dst, f.Bitmap...)
		}
	} else {
		dst = append(dst, byte(f.Index), byte(f.Count-1))
		dst = append(dst, f.Payload...)
	}
	if key != nil && key.set {
		m := key.mac(dst[start:])
		dst = append(dst, m[:]...)
	}
	return dst
}

// Parse decodes one frame. With a key set, the MAC is checked before
// anything past the first two bytes is looked at; without one, keyed frames
// are ErrBadMAC too (not our network).
func Parse(b []byte, key *Key) (Frame, error) {
	var f Frame
	if len(b) < 2 || b[0] != Magic || b[1]>>4 != Version {
		return f, ErrForeign
	}
	if len(b) > MaxFrame {
		return f, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	keyed := key != nil && key.set
	if (b[1]&macBit != 0) != keyed {
		return f, ErrBadMAC
	}
	if keyed {
		if len(b) < 2+MACSize {
			return f, ErrBadMAC
		}
		n := len(b) - MACSize
		m := key.mac(b[:n])
		if !hmac.Equal(m[:], b[n:]) {
			return f, ErrBadMAC
		}
		b = b[:n]
	}
	f.Kind = Kind(b[1] & 3)
	f.Flag = b[1]&flagBit != 0
	p := b[2:]
	need := func(n int) bool { return len(p) >= n }
	switch f.Kind {
	case KindBroadcast:
		if !need(bcastHeader - 2) {
			return f, fmt.Errorf("%w: short broadcast fragment", ErrMalformed)
		}
		copy(f.Src[:], p)
		p = p[HintSize:]
	case KindUnicast, KindSACK:
		if !need(HintSize*2 + 3) {
			return f, fmt.Errorf("%w: short frame", ErrMalformed)
		}
		copy(f.Src[:], p)
		copy(f.Dst[:], p[HintSize:])
		p = p[2*HintSize:]
	default:
		return f, fmt.Errorf("%w: kind %d", ErrMalformed, f.Kind)
	}
	f.ID = binary.BigEndian.Uint16(p)
	p = p[2:]
	if f.Kind == KindSACK {
		f.Count = int(p[0]) + 1
		p = p[1:]
		if f.Flag {
			if len(p) != 0 {
				return f, fmt.Errorf("%w: complete SACK with bitmap", ErrMalformed)
			}
			return f, nil
		}
		if len(p) != (f.Count+7)/8 {
			return f, fmt.Errorf("%w: SACK bitmap of %d bytes for %d fragments", ErrMalformed, len(p), f.Count)
		}
		f.Bitmap = p
		return f, nil
	}
	if len(p) < 2 {
		return f, fmt.Errorf("%w: short fragment", ErrMalformed)
	}
	f.Index, f.Count = int(p[0]), int(p[1])+1
	if f.Index >= f.Count {
		return f, fmt.Errorf("%w: fragment %d of %d", ErrMalformed, f.Index, f.Count)
	}
	f.Payload = p[2:]
	if len(f.Payload) == 0 && f.Count > 1 {
		return f, fmt.Errorf("%w: empty fragment", ErrMalformed)
	}
	return f, nil
}
