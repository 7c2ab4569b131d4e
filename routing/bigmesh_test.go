package routing_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

// TestBigMeshLinkAcked: on a radio link that reports overheard frames, Data
// and Ack envelopes go without the link's acknowledgement (the router
// listens for the neighbour passing them on) while a node knows up to 100
// nodes, and with it, bounded to three link rounds, once it knows more.
func TestBigMeshLinkAcked(t *testing.T) {
	for _, c := range []struct {
		peers     int
		noAck     bool
		maxRounds uint8
	}{{20, true, 0}, {99, true, 0}, {101, false, 3}, {300, false, 3}} {
		now := time.Unix(1_800_000_000, 0)
		// a sends to b, its neighbour; both know the same c.peers other
		// nodes besides each other.
		anns := testAnnounces(t, c.peers)
		var rs [2]*routing.Router
		var ids [2]*envelope.Identity
		var addrs = [2]transport.Addr{"\x00\x00\xa0\x01", "\x00\x00\xb0\x01"}
		for j := range rs {
			id, _ := envelope.GenerateIdentity(newSeeded(uint64(j + 1)))
			r, err := routing.New(routing.Options{Identity: id, Entropy: newSeeded(uint64(j + 7)), Rand: rand.New(rand.NewPCG(1, uint64(j))), VerifyPerSecond: 1000}, now)
			if err != nil {
				t.Fatal(err)
			}
			r.LinkUp(now, routing.LinkInfo{Info: transport.Info{ID: "radio", Broadcast: true, Bitrate: 5470, Cost: 100}, Overhears: true})
			for i, a := range anns {
				from := transport.Addr([]byte{byte(i), byte(i >> 8), 0, 1})
				r.Receive(now, "radio", append([]byte(nil), a...), transport.Meta{From: from, HasSignal: true, SNR: 10})
			}
			rs[j], ids[j] = r, id
		}
		for j := range rs {
			a, err := envelope.SignAnnounce(ids[1-j], envelope.AnnounceOptions{Seq: 1, TTL: 8})
			if err != nil {
				t.Fatal(err)
			}
			rs[j].Receive(now, "radio", a, transport.Meta{From: addrs[1-j], HasSignal: true, SNR: 10})
			rs[j].Actions()
		}
		if _, err := rs[0].Send(now, routing.Dest{Key: ids[1].PublicKey(), HasKey: true}, 1, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		first := func(r *routing.Router, k envelope.Kind) *routing.SendFrame {
			for i := 0; i < 20; i++ {
				for _, a := range r.Actions() {
					if f, ok := a.(*routing.SendFrame); ok && f.Kind == k {
						return f
					}
				}
				now = now.Add(time.Second)
				r.Tick(now)
			}
			t.Fatalf("%d peers: no %v frame", c.peers, k)
			return nil
		}
		data := first(rs[0], envelope.KindData)
		rs[1].Receive(now, "radio", data.Data, transport.Meta{From: addrs[0], HasSignal: true, SNR: 10})
		ack := first(rs[1], envelope.KindAck)
		for _, f := range []*routing.SendFrame{data, ack} {
			if f.NoAck != c.noAck || f.MaxRounds != c.maxRounds {
				t.Errorf("%d peers, %v: NoAck %v MaxRounds %d, want %v %d", c.peers, f.Kind, f.NoAck, f.MaxRounds, c.noAck, c.maxRounds)
			}
		}
	}
}

// testAnnounces returns the signed announces (sequence 1) of n nodes, the
// same n for every call.
func testAnnounces(t testing.TB, n int) [][]byte {
	var anns [][]byte
	for i := 0; i < n; i++ {
		id, err := envelope.GenerateIdentity(newSeeded(uint64(10_000 + i)))
		if err != nil {
			t.Fatal(err)
		}
		a, err := envelope.SignAnnounce(id, envelope.AnnounceOptions{Seq: 1, TTL: 8})
		if err != nil {
			t.Fatal(err)
		}
		anns = append(anns, a)
	}
	return anns
}
