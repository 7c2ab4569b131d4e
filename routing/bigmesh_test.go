package routing_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

// TestBigMeshLinkAckedData: on a radio link that reports overheard frames, a
// Data envelope goes without the link's acknowledgement (the router listens
// for the neighbour passing it on) while the node knows up to 100 nodes, and
// with it, bounded to three link rounds, once it knows more.
func TestBigMeshLinkAckedData(t *testing.T) {
	for _, c := range []struct {
		peers     int
		noAck     bool
		maxRounds uint8
	}{{20, true, 0}, {100, true, 0}, {101, false, 3}, {300, false, 3}} {
		now := time.Unix(1_800_000_000, 0)
		id, _ := envelope.GenerateIdentity(newSeeded(1))
		r, err := routing.New(routing.Options{Identity: id, Entropy: newSeeded(2), Rand: rand.New(rand.NewPCG(1, 2)), VerifyPerSecond: 1000}, now)
		if err != nil {
			t.Fatal(err)
		}
		r.LinkUp(now, routing.LinkInfo{Info: transport.Info{ID: "radio", Broadcast: true, Bitrate: 5470, Cost: 100}, Overhears: true})
		var dst envelope.PublicKey
		for i := 0; i < c.peers; i++ {
			pid, err := envelope.GenerateIdentity(newSeeded(uint64(10_000 + i)))
			if err != nil {
				t.Fatal(err)
			}
			a, err := envelope.SignAnnounce(pid, envelope.AnnounceOptions{Seq: 1, TTL: 8})
			if err != nil {
				t.Fatal(err)
			}
			now = now.Add(100 * time.Millisecond)
			from := transport.Addr([]byte{byte(i), byte(i >> 8), 0, 1})
			r.Receive(now, "radio", a, transport.Meta{From: from, HasSignal: true, SNR: 10})
			dst = pid.PublicKey()
		}
		r.Actions()
		if _, err := r.Send(now, routing.Dest{Key: dst, HasKey: true}, 1, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		var data []*routing.SendFrame
		for i := 0; i < 20 && len(data) == 0; i++ {
			now = now.Add(time.Second)
			r.Tick(now)
			for _, a := range r.Actions() {
				if f, ok := a.(*routing.SendFrame); ok && f.Kind == envelope.KindData {
					data = append(data, f)
				}
			}
		}
		if len(data) != 1 {
			t.Fatalf("%d peers: %d Data frames", c.peers, len(data))
		}
		if f := data[0]; f.NoAck != c.noAck || f.MaxRounds != c.maxRounds {
			t.Errorf("%d peers: NoAck %v MaxRounds %d, want %v %d", c.peers, f.NoAck, f.MaxRounds, c.noAck, c.maxRounds)
		}
	}
}
