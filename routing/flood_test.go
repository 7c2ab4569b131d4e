package routing_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

// junkAnnounce builds an announce that parses but does not verify: a
// random key (or a known victim's key) and a random signature.
func junkAnnounce(rnd *rand.Rand, victim *envelope.PublicKey, seq uint32) []byte {
	var k envelope.PublicKey
	if victim != nil {
		k = *victim
	} else {
		for i := range k {
			k[i] = byte(rnd.Uint32())
		}
	}
	b := []byte{envelope.Version, byte(rnd.IntN(3)), 8, byte(envelope.KindAnnounce)}
	b = append(b, k[:]...)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = append(b, 1)
	for i := 0; i < envelope.SignatureSize; i++ {
		b = append(b, byte(rnd.Uint32()))
	}
	return b
}

// TestInvalidAnnounceFlood: 10,000 invalid announces a second at one node
// for 10 simulated seconds; its memory stays bounded, the CPU spent on
// signatures is capped, and messages through it keep flowing.
func TestInvalidAnnounceFlood(t *testing.T) {
	n, nodes := line(t, 3, true, nil)
	n.run(10 * time.Minute)
	a, b, c := nodes[0], nodes[1], nodes[2]
	rnd := rand.New(rand.NewPCG(9, 9))
	victim := a.id.PublicKey()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	statsBefore := b.r.Stats()

	const perSecond, seconds = 10_000, 10
	evil := transport.Meta{From: "evil", HasSignal: true, SNR: 9}
	sent := 0
	var heapPeak uint64
	for s := 0; s < seconds; s++ {
		if _, err := a.r.Send(n.now(), routing.ToKey(c.id.PublicKey()), 0, []byte(fmt.Sprint("during flood ", s))); err != nil {
			t.Fatal(err)
		}
		n.collect(a)
		for ms := 0; ms < 1000; ms += 10 {
			for i := 0; i < perSecond/100; i++ {
				var junk []byte
				switch i % 4 {
				case 0: // garbage
					junk = make([]byte, 1+rnd.IntN(120))
					for j := range junk {
						junk[j] = byte(rnd.Uint32())
					}
				case 1: // claims a known node's key, newer sequence, bad signature
					junk = junkAnnounce(rnd, &victim, uint32(1<<31)+uint32(sent))
				default: // random keys, bad signatures
					junk = junkAnnounce(rnd, nil, rnd.Uint32())
				}
				sent++
				b.r.Receive(n.now(), "radio", junk, evil)
			}
			n.collect(b)
			n.run(10 * time.Millisecond)
		}
		if s%2 == 1 {
			runtime.GC() // live heap, not garbage
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heapPeak = max(heapPeak, ms.HeapAlloc)
		}
	}
	n.run(2 * time.Minute)
	st := b.r.Stats()
	verif := st.Verifications - statsBefore.Verifications
	t.Logf("junk frames %d: verifications %d, dropped verify-budget %d, malformed %d, signature %d; peers %d dedup %d; heap %d → peak %d KiB",
		sent, verif, st.Drops[routing.DropVerifyBudget], st.Drops[routing.DropMalformed], st.Drops[routing.DropSignature],
		st.Peers, st.DedupEntries, before.HeapAlloc>>10, heapPeak>>10)
	if len(c.delivered) != seconds {
		t.Fatalf("delivered %d of %d messages during the flood", len(c.delivered), seconds)
	}
	if st.Peers > 4 {
		t.Fatalf("junk created peers: %d", st.Peers)
	}
	// 50/s for unknown keys plus 200/s for known ones, plus bursts.
	if verif > seconds*260+1000 {
		t.Fatalf("%d signature verifications in %d s", verif, seconds)
	}
	if heapPeak > before.HeapAlloc+4<<20 {
		t.Fatalf("heap grew from %d to %d bytes", before.HeapAlloc, heapPeak)
	}
}

// TestQueryFloodBounded: unsigned flood kinds cost no signature, so a flood
// of distinct queries must still not pile up relays in memory.
func TestQueryFloodBounded(t *testing.T) {
	n, nodes := line(t, 2, true, nil)
	n.run(time.Minute)
	b := nodes[1]
	rnd := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 4000; i++ {
		e := envelope.Envelope{Kind: envelope.KindQuery, TTL: 5, Topic: 1, Body: []byte{byte(i), byte(i >> 8)}}
		for j := range e.Token {
			e.Token[j] = byte(rnd.Uint32())
		}
		raw, err := e.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		b.r.Receive(n.now(), "radio", raw, transport.Meta{From: "evil"})
		b.r.Actions()
	}
	s := b.r.Stats()
	if s.Drops[routing.DropBudget] < 3000 || s.Breadcrumbs > 2048 {
		t.Fatalf("budget drops %d, breadcrumbs %d", s.Drops[routing.DropBudget], s.Breadcrumbs)
	}
}
