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
// nodes, and with it once it knows more: Data bounded to three link
// rounds, Acks to five.
func TestBigMeshLinkAcked(t *testing.T) {
	for _, c := range []struct {
		peers                 int
		noAck                 bool
		dataRounds, ackRounds uint8
	}{{20, true, 0, 0}, {99, true, 0, 0}, {101, false, 3, 5}, {300, false, 3, 5}} {
		now := time.Unix(1_800_000_000, 0)
		// a sends to b, its neighbour; both know the same c.peers other
		// nodes besides each other.
		anns := testAnnounces(t, c.peers)
		var rs [2]*routing.Router
		var ids [2]*envelope.Identity
		var addrs = [2]transport.Addr{"\x00\x00\xa0\x01", "\x00\x00\xb0\x01"}
		for j := range rs {
			rs[j], ids[j] = radioRouter(t, uint64(j), anns, now)
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
		for _, w := range []struct {
			f      *routing.SendFrame
			rounds uint8
		}{{data, c.dataRounds}, {ack, c.ackRounds}} {
			if f := w.f; f.NoAck != c.noAck || f.MaxRounds != w.rounds {
				t.Errorf("%d peers, %v: NoAck %v MaxRounds %d, want %v %d", c.peers, f.Kind, f.NoAck, f.MaxRounds, c.noAck, w.rounds)
			}
		}
	}
}

// radioRouter returns a router (its identity, entropy and randomness from
// seed) on one overhearing radio link, "radio", that has received anns,
// each from a different neighbour.
func radioRouter(t testing.TB, seed uint64, anns [][]byte, now time.Time) (*routing.Router, *envelope.Identity) {
	id, _ := envelope.GenerateIdentity(newSeeded(seed + 1))
	r, err := routing.New(routing.Options{Identity: id, Entropy: newSeeded(seed + 7), Rand: rand.New(rand.NewPCG(1, seed)), VerifyPerSecond: 1000}, now)
	if err != nil {
		t.Fatal(err)
	}
	r.LinkUp(now, routing.LinkInfo{Info: transport.Info{ID: "radio", Broadcast: true, Bitrate: 5470, Cost: 100}, Overhears: true})
	for i, a := range anns {
		from := transport.Addr([]byte{byte(i), byte(i >> 8), 0, 1})
		r.Receive(now, "radio", append([]byte(nil), a...), transport.Meta{From: from, HasSignal: true, SNR: 10})
	}
	return r, id
}

// testAnnounces returns the signed announces (sequence 1) of n nodes, the
// same n for every call.
func testAnnounces(t testing.TB, n int) [][]byte { return testAnnouncesSeq(t, n, 1) }

// testAnnouncesSeq is testAnnounces with sequence seq.
func testAnnouncesSeq(t testing.TB, n int, seq uint32) [][]byte {
	var anns [][]byte
	for i := 0; i < n; i++ {
		id, err := envelope.GenerateIdentity(newSeeded(uint64(10_000 + i)))
		if err != nil {
			t.Fatal(err)
		}
		a, err := envelope.SignAnnounce(id, envelope.AnnounceOptions{Seq: seq, TTL: 8})
		if err != nil {
			t.Fatal(err)
		}
		anns = append(anns, a)
	}
	return anns
}

// TestBigMeshRefreshRelay: a relay of an announce is cancelled by a copy
// heard from a relay that offers a worse path only on a big radio mesh and
// only when the node already had a route to the announce's origin (a
// refresh round); the first announce of a node, and any announce on a
// smaller mesh, is still relayed then.
func TestBigMeshRefreshRelay(t *testing.T) {
	for _, c := range []struct {
		name    string
		peers   int
		known   bool // the origin's older announce came before
		relayed bool
	}{
		{"small mesh, refresh", 20, true, true},
		{"small mesh, first", 20, false, true},
		{"big mesh, first", 300, false, true},
		{"big mesh, refresh", 300, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			r, _ := radioRouter(t, 0, testAnnounces(t, c.peers), now)
			origin, _ := envelope.GenerateIdentity(newSeeded(99)) // not a seed radioRouter uses
			near, far := transport.Addr("\x00\x00\xc0\x01"), transport.Addr("\x00\x00\xd0\x01")
			if c.known {
				old, err := envelope.SignAnnounce(origin, envelope.AnnounceOptions{Seq: 1, TTL: 8})
				if err != nil {
					t.Fatal(err)
				}
				r.Receive(now, "radio", old, transport.Meta{From: near, HasSignal: true, SNR: 10})
			}
			// Let every relay pending so far go out (or be suppressed).
			for i := 0; i < 600; i++ {
				now = now.Add(10 * time.Second)
				r.Tick(now)
			}
			r.Actions()
			ann, err := envelope.SignAnnounce(origin, envelope.AnnounceOptions{Seq: 2, TTL: 8})
			if err != nil {
				t.Fatal(err)
			}
			r.Receive(now, "radio", append([]byte(nil), ann...), transport.Meta{From: near, HasSignal: true, SNR: 10})
			// A copy from a relay that advertises a much longer path.
			worse := append([]byte(nil), ann...)
			worse[envelope.OffsetHops] = 40
			r.Receive(now, "radio", worse, transport.Meta{From: far, HasSignal: true, SNR: 10})
			relayed := false
			for i := 0; i < 600 && !relayed; i++ {
				for _, a := range r.Actions() {
					f, ok := a.(*routing.SendFrame)
					if !ok || f.Kind != envelope.KindAnnounce {
						continue
					}
					if e, err := envelope.Parse(f.Data); err == nil && e.Key == origin.PublicKey() && e.Seq == 2 {
						relayed = true
					}
				}
				now = now.Add(10 * time.Second)
				r.Tick(now)
			}
			if relayed != c.relayed {
				t.Errorf("relayed %v, want %v", relayed, c.relayed)
			}
		})
	}
}

// TestBootFloodPacing: a radio node that knows part of a mesh paces its
// announce relays as if the mesh were three times what it knows (up to
// 500 nodes): one that knows 100 nodes relays a burst of announces at the
// pace of a 300-node mesh, 5/3 of what one that knows 500 relays, where it
// used to relay five times as much; a node of a 20-node mesh is not
// slowed.
func TestBootFloodPacing(t *testing.T) {
	// relays counts the announce relays in one minute after newer
	// announces of burst of the peers nodes the router knows arrive at
	// once (newer announces of known nodes, so that the count of nodes
	// known does not change).
	relays := func(peers, burst int) int {
		now := time.Unix(1_800_000_000, 0)
		r, _ := radioRouter(t, 0, testAnnounces(t, peers), now)
		// The relays of what it knows go out: at 0.4 % of the airtime
		// 500 relays take seven hours.
		for i := 0; i < 1000; i++ {
			now = now.Add(time.Minute)
			r.Tick(now)
		}
		r.Actions()
		for i, a := range testAnnouncesSeq(t, burst, 2) {
			r.Receive(now, "radio", a, transport.Meta{From: transport.Addr([]byte{byte(i), 0xee, 0, 1}), HasSignal: true, SNR: 10})
		}
		n := 0
		for i := 0; i < 60; i++ {
			for _, a := range r.Actions() {
				if f, ok := a.(*routing.SendFrame); ok && f.Kind == envelope.KindAnnounce {
					n++
				}
			}
			now = now.Add(time.Second)
			r.Tick(now)
		}
		return n
	}
	small, hundred, big := relays(19, 19), relays(100, 100), relays(500, 100)
	t.Logf("announce relays in a minute: 19 known %d of 19, 100 known %d of 100, 500 known %d of 100", small, hundred, big)
	if hundred > big*5/3+2 {
		t.Errorf("knowing 100 nodes it relayed %d, knowing 500 %d: want at most 5/3 as many", hundred, big)
	}
	if small != 19 {
		t.Errorf("knowing 19 nodes it relayed %d of 19 in a minute: a small mesh's share fits them all", small)
	}
}

// TestRouteLifetimeStretches: a route learnt on a radio link lives three
// announce intervals as stretched there. On a small mesh that is the base
// lifetime (3 × 2 h); on a big one the interval stretches past it and the
// route must outlive the time until the next announce, not vanish first.
func TestRouteLifetimeStretches(t *testing.T) {
	for _, c := range []struct {
		peers            int
		minLife, maxLife time.Duration
	}{
		{20, 6 * time.Hour, 6 * time.Hour},
		// 400 nodes at this link's bit rate and the control share of a
		// 400-node mesh: an interval of about 4.9 hours.
		{400, 12 * time.Hour, 18 * time.Hour},
	} {
		now := time.Unix(1_800_000_000, 0)
		anns := testAnnounces(t, c.peers)
		r, _ := radioRouter(t, 0, anns, now)
		last, err := envelope.Parse(anns[len(anns)-1])
		if err != nil {
			t.Fatal(err)
		}
		dest := last.Key.Address()
		var got time.Duration
		for _, ri := range r.Routes(now) {
			if ri.Dest == dest {
				got = ri.Expires.Sub(now)
			}
		}
		if got < c.minLife || got > c.maxLife {
			t.Errorf("%d nodes: the last route learnt lives %v, want %v to %v", c.peers, got, c.minLife, c.maxLife)
		}
		if c.peers > 100 {
			if n := len(r.Routes(now.Add(c.minLife))); n == 0 {
				t.Errorf("%d nodes: no route left after %v", c.peers, c.minLife)
			}
		} else if n := len(r.Routes(now.Add(c.maxLife + time.Second))); n != 0 {
			t.Errorf("%d nodes: %d routes left after %v", c.peers, n, c.maxLife)
		}
	}
}
