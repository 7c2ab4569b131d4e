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
		var anns [][]byte
		for i := 0; i < c.peers; i++ {
			pid, err := envelope.GenerateIdentity(newSeeded(uint64(10_000 + i)))
			if err != nil {
				t.Fatal(err)
			}
			a, err := envelope.SignAnnounce(pid, envelope.AnnounceOptions{Seq: 1, TTL: 8})
			if err != nil {
				t.Fatal(err)
			}
			anns = append(anns, a)
		}
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

// TestSecondAnnounceSpread: nodes that boot together announce again after
// half to one and a half intervals, not all within ±10 % of one interval
// (which replayed the whole boot flood at once); later intervals keep the
// ±10 %.
func TestSecondAnnounceSpread(t *testing.T) {
	const iv = 2 * time.Hour
	var gaps [2][]time.Duration
	for seed := uint64(0); seed < 40; seed++ {
		now := time.Unix(1_800_000_000, 0)
		id, _ := envelope.GenerateIdentity(newSeeded(seed + 100))
		r, err := routing.New(routing.Options{Identity: id, Entropy: newSeeded(seed), Rand: rand.New(rand.NewPCG(seed, 9)), AnnounceInterval: iv}, now)
		if err != nil {
			t.Fatal(err)
		}
		r.LinkUp(now, routing.LinkInfo{Info: transport.Info{ID: "radio", Broadcast: true, Bitrate: 5470, Cost: 100}})
		var at []time.Time
		for end := now.Add(6 * iv); now.Before(end) && len(at) < 3; now = now.Add(10 * time.Second) {
			r.Tick(now)
			for _, a := range r.Actions() {
				if f, ok := a.(*routing.SendFrame); ok && f.Kind == envelope.KindAnnounce {
					at = append(at, now)
				}
			}
		}
		if len(at) < 3 {
			t.Fatalf("seed %d: %d announces", seed, len(at))
		}
		gaps[0] = append(gaps[0], at[1].Sub(at[0]))
		gaps[1] = append(gaps[1], at[2].Sub(at[1]))
	}
	within := func(ds []time.Duration, lo, hi time.Duration) bool {
		for _, d := range ds {
			if d < lo-10*time.Second || d > hi+10*time.Second {
				return false
			}
		}
		return true
	}
	if !within(gaps[0], iv/2, iv*3/2) || within(gaps[0], iv*9/10, iv*11/10) {
		t.Errorf("first gaps %v: want spread over [0.5, 1.5] intervals, beyond ±10 %%", gaps[0])
	}
	if !within(gaps[1], iv*9/10, iv*11/10) {
		t.Errorf("second gaps %v: want within ±10 %% of an interval", gaps[1])
	}
}
