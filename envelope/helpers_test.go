package envelope

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// detRand is a deterministic byte stream (SHA-256 in counter mode over a
// label) so that vectors and tests are reproducible.
type detRand struct {
	label []byte
	ctr   uint64
	buf   []byte
}

func newDetRand(label string) *detRand { return &detRand{label: []byte(label)} }

func (r *detRand) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], r.ctr)
			r.ctr++
			s := sha256.Sum256(append(append([]byte(nil), r.label...), c[:]...))
			r.buf = s[:]
		}
		k := copy(p[n:], r.buf)
		r.buf = r.buf[k:]
		n += k
	}
	return n, nil
}

func mustIdentity(t testing.TB, label string) *Identity {
	t.Helper()
	id, err := GenerateIdentity(newDetRand(label))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustPair(t testing.TB, a, b *Identity, pq []byte) *Pair {
	t.Helper()
	p, err := NewPair(a, b.PublicKey(), pq)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t testing.TB, b []byte) Envelope {
	t.Helper()
	e, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return e
}
