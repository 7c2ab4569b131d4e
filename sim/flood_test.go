package sim

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestFloodFrameSizes(t *testing.T) {
	f := &floodNode{self: 0x01020304}
	data := f.encode(&floodPkt{to: 9, from: 0x01020304, id: 77, hopLimit: 3, hopStart: 3, wantAck: true, pki: true,
		port: floodPortText, payload: bytes.Repeat([]byte{'a'}, 50)})
	// Meshtastic: 16-byte header + protobuf Data (50 + 6) + PKI (12).
	if len(data) != 84 {
		t.Fatalf("data frame %d bytes, want 84", len(data))
	}
	p, err := decodeFlood(data)
	if err != nil || p.to != 9 || p.from != 0x01020304 || p.id != 77 || p.hopLimit != 3 || p.hopStart != 3 ||
		!p.wantAck || !p.pki || string(p.payload) != string(bytes.Repeat([]byte{'a'}, 50)) {
		t.Fatalf("decoded %+v, %v", p, err)
	}
	ack := f.encode(&floodPkt{to: 5, from: 0x01020304, id: 78, hopLimit: 2, hopStart: 2, port: floodPortRouting, requestID: 77})
	if len(ack) != 29 {
		t.Fatalf("ack frame %d bytes, want 29", len(ack))
	}
	if p, err := decodeFlood(ack); err != nil || p.requestID != 77 || p.port != floodPortRouting {
		t.Fatalf("decoded ack %+v, %v", p, err)
	}
	for n := 0; n < len(data); n++ {
		_, _ = decodeFlood(data[:n]) // never panics
	}
}

func TestFloodRebroadcastDelayBySNR(t *testing.T) {
	sc := lineScenario(2, 1000, nil)
	s, err := newSim(sc, "flood", NewFlood, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.cleanup()
	f := s.nodes[0].node.(*floodNode)
	var weak, strong time.Duration
	for i := 0; i < 2000; i++ {
		weak = max(weak, f.rebroadcastDelay(-15, true))
		strong = max(strong, f.rebroadcastDelay(8, true))
	}
	if weak >= strong {
		t.Fatalf("weak receivers wait up to %v, strong ones %v: weaker must go sooner", weak, strong)
	}
	if min := time.Duration(2*floodCWMax) * f.slot; weak < min {
		t.Fatalf("client delay %v below the routers' window %v", weak, min)
	}
}

// lineScenario: n nodes on a line, spacing metres apart, no shadowing,
// fading or loss, one message from node 0 to the last at a random time in the first 10 minutes.
func lineScenario(n int, spacing float64, flood map[string]any) *Scenario {
	sc := &Scenario{Name: "line", Seed: 1, Duration: Duration(10 * time.Minute), Drain: Duration(5 * time.Minute)}
	sc.Radio.PathLoss.NoShadow = true
	sc.Radio.PathLoss.NoFading = true
	sc.Groups = []GroupSpec{{Name: "g", Count: n, Layout: LayoutSpec{Kind: "line", Spacing: spacing}}}
	sc.Traffic = []TrafficSpec{{Kind: "pairs", Pairs: [][2]NodeRef{{{Index: 0}, {Index: n - 1}}}, Interval: Duration(10 * time.Minute), Size: 50}}
	if flood != nil {
		b, _ := json.Marshal(flood)
		sc.Protocols = map[string]json.RawMessage{"flood": b}
	}
	return sc
}

func TestFloodHopLimit(t *testing.T) {
	// 1.9 km apart: each node hears only its neighbours. 5 nodes: 4 hops.
	for _, tc := range []struct {
		hops int
		want int
	}{{1, 0}, {2, 0}, {3, 1}, {7, 1}} {
		sc := lineScenario(5, 1900, map[string]any{"hop_limit": tc.hops})
		r, err := Run(sc, "flood", NewFlood, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Delivered != tc.want {
			t.Errorf("hop limit %d: delivered %d, want %d (reach is hop limit + 1 hops)", tc.hops, r.Delivered, tc.want)
		}
		if tc.want == 1 && r.Events.Acked != 1 {
			t.Errorf("hop limit %d: %d acks reached the sender", tc.hops, r.Events.Acked)
		}
	}
}

func TestFloodImplicitAckAndRetransmission(t *testing.T) {
	// Two nodes in range: the recipient answers, the sender hears the ack.
	r, err := Run(lineScenario(2, 1000, nil), "flood", NewFlood, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Delivered != 1 || r.Events.Acked != 1 || r.RadioFramesByClass["data"] != 1 {
		t.Fatalf("delivered %d acked %d data frames %d", r.Delivered, r.Events.Acked, r.RadioFramesByClass["data"])
	}
	// Three in a line: the middle one relays, the sender hears the relay
	// (implicit ack) and does not retransmit.
	r, err = Run(lineScenario(3, 1900, nil), "flood", NewFlood, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Delivered != 1 || r.Events.ImplicitAcks != 1 || r.RadioFramesByClass["data"] != 2 {
		t.Fatalf("delivered %d implicit acks %d data frames %d", r.Delivered, r.Events.ImplicitAcks, r.RadioFramesByClass["data"])
	}
	// Out of range of everyone: three attempts, then failure.
	r, err = Run(lineScenario(2, 10000, nil), "flood", NewFlood, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Delivered != 0 || r.Events.Failed != 1 || r.RadioFramesByClass["data"] != 3 {
		t.Fatalf("delivered %d failed %d data frames %d", r.Delivered, r.Events.Failed, r.RadioFramesByClass["data"])
	}
}

func TestFloodCancelOnOverhear(t *testing.T) {
	// Ten nodes within 100 m of each other, a message to a node out of the
	// cluster's range that nobody reaches: without cancellation all nine
	// others would rebroadcast; with it only the first few do.
	sc := lineScenario(11, 10, map[string]any{"attempts": 1})
	sc.Groups[0].Layout = LayoutSpec{Kind: "positions"}
	for i := 0; i < 10; i++ {
		sc.Groups[0].Layout.Positions = append(sc.Groups[0].Layout.Positions, [2]float64{float64(i) * 10, 0})
	}
	sc.Groups[0].Layout.Positions = append(sc.Groups[0].Layout.Positions, [2]float64{50000, 0})
	r, err := Run(sc, "flood", NewFlood, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.RadioFramesByClass["data"]; n < 2 || n > 5 {
		t.Fatalf("%d data frames: want the original and a few rebroadcasts", n)
	}
	sc.Protocols = map[string]json.RawMessage{"flood": []byte(`{"attempts":1,"router":true}`)}
	r, err = Run(sc, "flood", NewFlood, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.RadioFramesByClass["data"]; n != 10 {
		t.Fatalf("router role: %d data frames, want 10 (routers never cancel)", n)
	}
}

func TestReplies(t *testing.T) {
	sc := lineScenario(3, 1500, nil)
	sc.Traffic[0].ReplyProb = 1
	sc.Traffic[0].ReplyDelay = Duration(time.Second)
	r, err := Run(sc, "flood", NewFlood, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Messages != 2 || r.Delivered != 2 {
		t.Fatalf("%d messages, %d delivered: want the message and its reply", r.Messages, r.Delivered)
	}
}
