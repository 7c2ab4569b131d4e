package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
)

// seeds derives independent PRNG streams from the scenario seed. Each source
// of randomness (layout, shadowing, each node's protocol, each traffic
// source, frame loss, ...) gets its own stream named by a label and an index,
// so changing how one source draws numbers never perturbs another: the
// flooding baseline and the router see the same layout, the same shadowing
// and the same traffic for the same seed.
type seeds struct{ seed uint64 }

// key returns 32 bytes of SHA-256(seed ‖ label ‖ index).
func (s seeds) key(label string, idx int) [32]byte {
	b := make([]byte, 0, 8+len(label)+24)
	b = binary.BigEndian.AppendUint64(b, s.seed)
	b = append(b, label...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(idx), 10)
	return sha256.Sum256(b)
}

// stream returns a fresh PRNG for (label, idx).
func (s seeds) stream(label string, idx int) *rand.Rand {
	k := s.key(label, idx)
	return rand.New(rand.NewPCG(binary.BigEndian.Uint64(k[0:8]), binary.BigEndian.Uint64(k[8:16])))
}

// bytes32 returns 32 derived bytes for (label, idx), e.g. an identity seed.
func (s seeds) bytes32(label string, idx int) []byte {
	k := s.key(label, idx)
	return k[:]
}
