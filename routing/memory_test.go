package routing_test

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

// TestMemoryPerNode measures what one router holds once it knows a
// 500-node mesh (every announce verified, a route to each) with a full
// dedup cache: the per-node cost in a meshsim run of lora-500.
func TestMemoryPerNode(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("signs and verifies 500 announces; heap sizes differ under the race detector")
	}
	const peers, routers = 500, 4
	anns := testAnnounces(t, peers)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	now := time.Unix(1_800_000_000, 0)
	var rs []*routing.Router
	for j := 0; j < routers; j++ {
		id, _ := envelope.GenerateIdentity(newSeeded(uint64(j)))
		r, err := routing.New(routing.Options{Identity: id, Entropy: newSeeded(uint64(j) + 77), Rand: rand.New(rand.NewPCG(1, uint64(j))),
			VerifyPerSecond: 1000}, now)
		if err != nil {
			t.Fatal(err)
		}
		r.LinkUp(now, routing.LinkInfo{Info: transport.Info{ID: "radio", Broadcast: true, Bitrate: 5470, Cost: 100}})
		for i, a := range anns {
			now = now.Add(100 * time.Millisecond)
			from := transport.Addr([]byte{byte(i), byte(i >> 8), 0, 1})
			r.Receive(now, "radio", append([]byte(nil), a...), transport.Meta{From: from, HasSignal: true, SNR: 5})
		}
		// Fill the dedup cache with other traffic.
		for i := 0; i < 4096; i++ {
			e := envelope.Envelope{Kind: envelope.KindChannel, TTL: 0, Dst: envelope.HintAddr(envelope.Hint{1, 2, 3, 4}), Body: []byte{byte(i), byte(i >> 8), byte(j)}}
			raw, _ := e.Append(nil)
			r.Receive(now, "radio", raw, transport.Meta{From: "x"})
		}
		r.Actions()
		if s := r.Stats(); s.Routes < peers*9/10 {
			t.Fatalf("router %d learned %d routes", j, s.Routes)
		}
		rs = append(rs, r)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / routers
	t.Logf("one router knowing %d peers with a full dedup cache: %d KiB", peers, per>>10)
	if per > 1<<20 {
		t.Fatalf("%d bytes per router", per)
	}
	runtime.KeepAlive(rs)
}
