package fapp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Proof of work: a hashcash-style stamp. The sender searches a 64-bit nonce
// such that SHA-256(tag ‖ purpose ‖ bound bytes ‖ nonce) starts with at
// least D zero bits; checking costs one hash. Network queries carry it in
// clear so every relay checks it before answering or relaying; reservations
// carry it inside the sealed payload, bound to the therapist's key, and the
// therapist checks it. docs/fapp.md, "Abuse", has the measured costs.

const tagPoW = "meshd/v1/fapp/pow\x00"

// Purposes, so a stamp made for one use is worthless for the other.
const (
	powQuery   = 'q'
	powReserve = 'r'
)

// Default difficulties, in leading zero bits (see docs/fapp.md for the
// measured cost on router-class CPUs).
const (
	DefaultQueryBits   = 16
	DefaultReserveBits = 18
	// MaxBits bounds a configured difficulty: 2^28 hashes take minutes on
	// a router.
	MaxBits = 28
)

// powInput returns the bytes a stamp hashes, with room for the nonce at
// the end.
func powInput(purpose byte, parts ...[]byte) []byte {
	n := len(tagPoW) + 1 + 8
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, tagPoW...)
	b = append(b, purpose)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// stampBits returns the leading zero bits of the stamp of in with nonce.
// in must have 8 bytes of spare capacity (powInput).
func stampBits(in []byte, nonce uint64) int {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(in, nonce))
	n := 0
	for i := 0; i < len(h); i += 8 {
		w := binary.BigEndian.Uint64(h[i:])
		n += bits.LeadingZeros64(w)
		if w != 0 {
			break
		}
	}
	return n
}

// solve finds a nonce, starting at start, whose stamp has at least want
// leading zero bits. It checks ctx every 4096 attempts.
func solve(ctx context.Context, in []byte, want int, start uint64) (uint64, error) {
	for n := start; ; n++ {
		if stampBits(in, n) >= want {
			return n, nil
		}
		if n&0xfff == 0 && ctx != nil {
			if err := ctx.Err(); err != nil {
				return 0, fmt.Errorf("fapp: proof of work interrupted: %w", err)
			}
		}
	}
}
