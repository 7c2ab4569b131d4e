package fapp

import (
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// BenchmarkStamp is one proof-of-work attempt (a SHA-256 over the query's
// 81 bound bytes plus the nonce): the unit the difficulty multiplies. On a
// router, 2^bits attempts is the expected cost of a stamp; docs/fapp.md
// lists what qemu and real CPUs do.
func BenchmarkStamp(b *testing.B) {
	raw := makeQuery(b, networkFilter(Filter{PLZPrefix: "803"}), t0, 0, "bench")
	e, _ := envelope.Parse(raw)
	in := queryPoWInput(e.Token, e.Body)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stampBits(in, uint64(i))
	}
}

// BenchmarkSolve finds real stamps at a few difficulties (expected 2^bits
// attempts; the spread is geometric).
func BenchmarkSolve(b *testing.B) {
	for _, bits := range []int{8, 12, 16} {
		b.Run(fmt.Sprintf("bits=%d", bits), func(b *testing.B) {
			raw := makeQuery(b, networkFilter(Filter{PLZPrefix: "803"}), t0, 0, "bench")
			e, _ := envelope.Parse(raw)
			in := queryPoWInput(e.Token, e.Body)
			var start uint64
			for i := 0; i < b.N; i++ {
				n, _ := solve(nil, in, bits, start)
				start = n + 1
			}
		})
	}
}

// BenchmarkOnFloodAnnounce: checking and caching one announce (dominated
// by the Ed25519 verification).
func BenchmarkOnFloodAnnounce(b *testing.B) {
	w := newWorld(b)
	id := mustIdentity(b, "t")
	var raws [][]byte
	for i := 0; i < 64; i++ {
		a := sampleAnnounce(b, w, id, true, 7)
		a.Seq = uint32(i + 1)
		raw, _ := SignAnnounce(id, a, 8)
		raws = append(raws, raw)
	}
	c, _ := New(Options{Anchors: w.anchors, AnnounceRate: Rate{Burst: 1 << 30, Every: time.Hour}}, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%64 == 0 {
			b.StopTimer()
			c, _ = New(Options{Anchors: w.anchors, AnnounceRate: Rate{Burst: 1 << 30, Every: time.Hour}}, nil)
			b.StartTimer()
		}
		if _, err := c.OnFlood(t0, "n", raws[i%64]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocalSearch: a filtered search over 200 cached therapists with 5
// slots each.
func BenchmarkLocalSearch(b *testing.B) {
	w := newWorld(b)
	c, _ := New(Options{Anchors: w.anchors, CacheEntries: 4096, CacheBytes: 8 << 20}, nil)
	for i := 0; i < 200; i++ {
		id := mustIdentity(b, fmt.Sprint("t", i))
		p := testProfile()
		p.PLZ = fmt.Sprintf("%05d", 10000+i*397)
		a := sampleAnnounce(b, w, id, false, 5)
		a.Profile = p
		raw, _ := SignAnnounce(id, a, 8)
		if _, err := c.OnFlood(t0, "n", raw); err != nil {
			b.Fatal(err)
		}
	}
	f := Filter{PLZPrefix: "8", Verfahren: Verhaltenstherapie}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Search(t0, f)
	}
}
