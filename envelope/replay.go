package envelope

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// ReplayWindowSize is how far below the highest accepted counter a late
// counter is still accepted. Store-and-forward and multiple paths reorder
// messages; a sender never has this many unacknowledged messages to one
// peer in flight (the outbox quota is far lower), so a legitimate message
// never falls out of the window.
const ReplayWindowSize = 1024

// replayWords is the bitmap size in 64-bit words.
const replayWords = ReplayWindowSize / 64

// replayWindowBinarySize is the length of MarshalBinary's output.
const replayWindowBinarySize = 1 + 4 + replayWords*8

// ReplayWindow remembers which counters from one sender were accepted, as a
// sliding bitmap below the highest counter seen (the scheme of IPsec and
// WireGuard). The zero value has seen nothing. It is not safe for concurrent
// use. Persist it (MarshalBinary) in the same transaction that records the
// delivery, so exactly-once survives restarts.
type ReplayWindow struct {
	top  uint32              // highest accepted counter, 0 = none
	seen [replayWords]uint64 // bit i of the window: counter top-i accepted
}

// Check reports whether counter c would be accepted, without recording it:
// nil, ErrCounter (zero), ErrReplay (already accepted) or ErrStale (too old
// to tell).
func (w *ReplayWindow) Check(c uint32) error {
	switch {
	case c == 0:
		return ErrCounter
	case c > w.top:
		return nil
	case w.top-c >= ReplayWindowSize:
		return fmt.Errorf("%w: counter %d, window starts at %d", ErrStale, c, w.top-ReplayWindowSize+1)
	}
	d := w.top - c
	if w.seen[d/64]&(1<<(d%64)) != 0 {
		return fmt.Errorf("%w: counter %d", ErrReplay, c)
	}
	return nil
}

// Accept records counter c, returning the same errors as Check (in which
// case nothing is recorded).
func (w *ReplayWindow) Accept(c uint32) error {
	if err := w.Check(c); err != nil {
		return err
	}
	if c > w.top {
		w.shift(c - w.top)
		w.top = c
	}
	d := w.top - c
	w.seen[d/64] |= 1 << (d % 64)
	return nil
}

// shift moves the window up by n counters.
func (w *ReplayWindow) shift(n uint32) {
	if n >= ReplayWindowSize {
		w.seen = [replayWords]uint64{}
		return
	}
	words, rem := int(n/64), n%64
	for i := replayWords - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w.seen[j] << rem
			if rem != 0 && j > 0 {
				v |= w.seen[j-1] >> (64 - rem)
			}
		}
		w.seen[i] = v
	}
}

// Top returns the highest accepted counter (0 when none).
func (w *ReplayWindow) Top() uint32 { return w.top }

// Count returns how many counters inside the window were accepted.
func (w *ReplayWindow) Count() int {
	n := 0
	for _, v := range w.seen {
		n += bits.OnesCount64(v)
	}
	return n
}

// MarshalBinary encodes the window: a version byte (1), the top counter and
// the bitmap, big-endian.
func (w *ReplayWindow) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, replayWindowBinarySize)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint32(b, w.top)
	for _, v := range w.seen {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b, nil
}

// UnmarshalBinary restores a window written by MarshalBinary. On error the
// window is unchanged.
func (w *ReplayWindow) UnmarshalBinary(b []byte) error {
	if len(b) != replayWindowBinarySize {
		return fmt.Errorf("%w: replay window is %d bytes, want %d", ErrTruncated, len(b), replayWindowBinarySize)
	}
	if b[0] != 1 {
		return fmt.Errorf("%w: replay window version %d", ErrVersion, b[0])
	}
	var n ReplayWindow
	n.top = binary.BigEndian.Uint32(b[1:])
	for i := range n.seen {
		n.seen[i] = binary.BigEndian.Uint64(b[5+8*i:])
	}
	if n.top == 0 && n.Count() != 0 {
		return fmt.Errorf("%w: replay window marks counters below zero", ErrCounter)
	}
	// Counters below 1 cannot have been accepted.
	if n.top < ReplayWindowSize {
		for d := uint32(n.top); d < ReplayWindowSize; d++ {
			if n.seen[d/64]&(1<<(d%64)) != 0 {
				return fmt.Errorf("%w: replay window marks counter %d", ErrCounter, int64(n.top)-int64(d))
			}
		}
	}
	*w = n
	return nil
}
