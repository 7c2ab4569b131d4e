package routing

import (
	"encoding/binary"
	"math/bits"

	"github.com/openmeshd/meshd/envelope"
)

// sipKey is a SipHash-2-4 key. The router draws it from its injected
// randomness so that an attacker cannot craft envelopes whose dedup keys
// collide, while meshsim stays reproducible from its seed.
type sipKey struct{ k0, k1 uint64 }

type sipState struct {
	v0, v1, v2, v3 uint64
	tail           [8]byte
	ntail          int
	length         uint64
}

func (k sipKey) start() sipState {
	return sipState{
		v0: k.k0 ^ 0x736f6d6570736575,
		v1: k.k1 ^ 0x646f72616e646f6d,
		v2: k.k0 ^ 0x6c7967656e657261,
		v3: k.k1 ^ 0x7465646279746573,
	}
}

func (s *sipState) round() {
	s.v0 += s.v1
	s.v1 = bits.RotateLeft64(s.v1, 13)
	s.v1 ^= s.v0
	s.v0 = bits.RotateLeft64(s.v0, 32)
	s.v2 += s.v3
	s.v3 = bits.RotateLeft64(s.v3, 16)
	s.v3 ^= s.v2
	s.v0 += s.v3
	s.v3 = bits.RotateLeft64(s.v3, 21)
	s.v3 ^= s.v0
	s.v2 += s.v1
	s.v1 = bits.RotateLeft64(s.v1, 17)
	s.v1 ^= s.v2
	s.v2 = bits.RotateLeft64(s.v2, 32)
}

func (s *sipState) block(m uint64) {
	s.v3 ^= m
	s.round()
	s.round()
	s.v0 ^= m
}

func (s *sipState) write(p []byte) {
	s.length += uint64(len(p))
	if s.ntail > 0 {
		n := copy(s.tail[s.ntail:], p)
		s.ntail += n
		p = p[n:]
		if s.ntail < 8 {
			return
		}
		s.block(binary.LittleEndian.Uint64(s.tail[:]))
		s.ntail = 0
	}
	for len(p) >= 8 {
		s.block(binary.LittleEndian.Uint64(p))
		p = p[8:]
	}
	s.ntail = copy(s.tail[:], p)
}

func (s *sipState) sum() uint64 {
	var last [8]byte
	copy(last[:], s.tail[:s.ntail])
	last[7] = byte(s.length)
	s.block(binary.LittleEndian.Uint64(last[:]))
	s.v2 ^= 0xff
	for i := 0; i < 4; i++ {
		s.round()
	}
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3
}

// sum hashes the parts in sequence.
func (k sipKey) sum(parts ...[]byte) uint64 {
	s := k.start()
	for _, p := range parts {
		s.write(p)
	}
	return s.sum()
}

// envelopeKey is the dedup key of raw envelope bytes: a keyed hash of
// everything relays cannot change.
func (k sipKey) envelopeKey(raw []byte) uint64 {
	head, rest := envelope.Immutable(raw)
	s := k.start()
	s.write(head)
	s.write(rest)
	return s.sum()
}

// dedup is a bounded FIFO set of envelope keys with a small value per key.
// Memory: about 40 bytes per entry.
type dedup struct {
	m    map[uint64]dedupEntry
	ring []uint64
	next int
	max  int
}

// dedupEntry says what the router did with the envelope.
type dedupEntry struct {
	at    uint32 // when first seen (Unix seconds)
	flags uint8
	heard uint8 // copies heard (saturating)
	hops  uint8 // unicast: the hop count it first arrived with
}

const (
	seenVerified uint8 = 1 << iota // signature checked and good
	seenBad                        // signature or content refused
)

func newDedup(n int) *dedup {
	// Grown on demand: an idle node (or one of meshsim's hundreds) does not
	// pay for a full cache.
	return &dedup{m: make(map[uint64]dedupEntry), max: n}
}

// get returns the entry for k.
func (d *dedup) get(k uint64) (dedupEntry, bool) {
	e, ok := d.m[k]
	return e, ok
}

// add inserts k (or updates it), evicting the oldest key when full.
func (d *dedup) put(k uint64, e dedupEntry) {
	if _, ok := d.m[k]; ok {
		d.m[k] = e
		return
	}
	if len(d.ring) < d.max {
		d.ring = append(d.ring, k)
	} else {
		delete(d.m, d.ring[d.next])
		d.ring[d.next] = k
		d.next = (d.next + 1) % len(d.ring)
	}
	d.m[k] = e
}

// seen marks a copy heard and reports whether k was known before.
func (d *dedup) seen(k uint64) (dedupEntry, bool) {
	e, ok := d.m[k]
	if ok {
		if e.heard < 255 {
			e.heard++
		}
		d.m[k] = e
		return e, true
	}
	e = dedupEntry{heard: 1}
	d.put(k, e)
	return e, false
}

func (d *dedup) len() int { return len(d.m) }
