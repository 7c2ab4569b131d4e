package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openmeshd/meshd/transport"
)

func TestEventQueueOrder(t *testing.T) {
	var q eventQueue
	r := rand.New(rand.NewPCG(1, 2))
	type key struct {
		at  int64
		tag int64
	}
	var want []key
	for i := 0; i < 2000; i++ {
		at := r.Int64N(50) // many ties
		q.push(event{at: at, arg: int64(i)})
		want = append(want, key{at, int64(i)})
	}
	// Expected: by time, ties in push order.
	for i := 1; i < len(want); i++ {
		for j := i; j > 0 && want[j].at < want[j-1].at; j-- {
			want[j], want[j-1] = want[j-1], want[j]
		}
	}
	for i, w := range want {
		e := q.pop()
		if e.at != w.at || e.arg != w.tag {
			t.Fatalf("pop %d: got (%d, %d), want (%d, %d)", i, e.at, e.arg, w.at, w.tag)
		}
	}
	if q.Len() != 0 {
		t.Fatal("queue not empty")
	}
}

func TestSeedStreamsIndependent(t *testing.T) {
	a := seeds{seed: 7}
	if a.stream("x", 1).Uint64() != a.stream("x", 1).Uint64() {
		t.Fatal("same stream differs")
	}
	if a.stream("x", 1).Uint64() == a.stream("x", 2).Uint64() || a.stream("x", 1).Uint64() == a.stream("y", 1).Uint64() {
		t.Fatal("different streams agree")
	}
	if (seeds{seed: 8}).stream("x", 1).Uint64() == a.stream("x", 1).Uint64() {
		t.Fatal("different seeds agree")
	}
	if a.shadowing(3, 9, 4) != a.shadowing(9, 3, 4) {
		t.Fatal("shadowing not symmetric")
	}
}

// probeNode sends what AppSend gives it as one broadcast frame and records
// what it receives.
type probeNode struct {
	raw    bool
	to     transport.Addr
	got    []probeRx
	links  []Link
	events []string
	starts int
}

type probeRx struct {
	at   time.Time
	data string
	meta transport.Meta
}

func (p *probeNode) RawRadio() bool        { return p.raw }
func (p *probeNode) Start(time.Time, *Out) { p.starts++ }
func (p *probeNode) LinkUp(now time.Time, l LinkID, info transport.Info, _ *Out) {
	p.events = append(p.events, fmt.Sprintf("%v up %d %s", now.Sub(clockEpoch()), l, info.Kind))
}
func (p *probeNode) LinkDown(now time.Time, l LinkID, _ *Out) {
	p.events = append(p.events, fmt.Sprintf("%v down %d", now.Sub(clockEpoch()), l))
}
func (p *probeNode) Timer(time.Time, *Out) {}
func (p *probeNode) NextWake() time.Time   { return time.Time{} }
func (p *probeNode) Close() error          { return nil }
func (p *probeNode) AppSend(now time.Time, m AppMessage, out *Out) {
	out.Send(Send{Link: 0, To: p.to, Class: ClassData, Data: m.Payload})
}
func (p *probeNode) Receive(now time.Time, l LinkID, data []byte, m transport.Meta, out *Out) {
	p.got = append(p.got, probeRx{at: now, data: string(data), meta: m})
}

// probeSim builds a simulation of nodes at the given x positions (metres on
// a line), no shadowing, fading or random loss, with probe nodes.
func probeSim(t *testing.T, xs []float64, raw bool, edit func(*Scenario)) (*Sim, []*probeNode) {
	t.Helper()
	pos := make([][2]float64, len(xs))
	for i, x := range xs {
		pos[i] = [2]float64{x, 0}
	}
	sc := &Scenario{Name: "probe", Seed: 1, Duration: Duration(time.Minute)}
	sc.Radio.PathLoss.NoShadow = true
	sc.Radio.PathLoss.NoFading = true
	sc.Groups = []GroupSpec{{Name: "g", Count: len(xs), Layout: LayoutSpec{Kind: "positions", Positions: pos}}}
	if edit != nil {
		edit(sc)
	}
	var nodes []*probeNode
	f := func(env Env) (Node, error) {
		p := &probeNode{raw: raw, links: env.Links}
		nodes = append(nodes, p)
		return p, nil
	}
	s, err := newSim(sc, "probe", f, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cleanup)
	return s, nodes
}

// sendAt makes node i send payload at virtual time at.
func sendAt(s *Sim, i int, at time.Duration, payload string) {
	s.q.push(event{at: int64(at), kind: evFunc, ptr: func() {
		s.callAppSend(s.nodes[i], AppMessage{ID: 1, Payload: []byte(payload)})
	}})
}

func TestRadioPhysics(t *testing.T) {
	// At 14 dBm, SF7/BW125 (-123 dBm) reaches about 2.2 km on average.
	ms := time.Millisecond
	cases := []struct {
		name  string
		xs    []float64
		csma  bool
		sends []struct {
			node int
			at   time.Duration
			data string
		}
		// want[i] is what node i receives, in order.
		want [][]string
	}{
		{
			name: "in range", xs: []float64{0, 1000, 5000},
			sends: []struct {
				node int
				at   time.Duration
				data string
			}{{0, 10 * ms, "hello"}},
			want: [][]string{nil, {"hello"}, nil},
		},
		{
			name: "hidden terminals collide", xs: []float64{0, 1500, 3000}, csma: true,
			sends: []struct {
				node int
				at   time.Duration
				data string
			}{{0, 10 * ms, "from-a"}, {2, 20 * ms, "from-c"}},
			want: [][]string{nil, nil, nil},
		},
		{
			name: "capture: the much stronger frame survives", xs: []float64{0, 200, 2000},
			sends: []struct {
				node int
				at   time.Duration
				data string
			}{{0, 10 * ms, "near"}, {2, 20 * ms, "far"}},
			// B decodes the near frame through the far one (22 dB apart);
			// A and C are both transmitting, so they hear nothing.
			want: [][]string{nil, {"near"}, nil},
		},
		{
			name: "half duplex: a transmitting radio hears nothing", xs: []float64{0, 1000},
			sends: []struct {
				node int
				at   time.Duration
				data string
			}{{0, 10 * ms, "a"}, {1, 20 * ms, "b"}},
			want: [][]string{nil, nil},
		},
		{
			name: "CSMA cannot separate starts within two symbols", xs: []float64{0, 1000, 2000}, csma: true,
			sends: []struct {
				node int
				at   time.Duration
				data string
			}{{0, 10 * ms, "a"}, {2, 10*ms + ms/2, "c"}},
			want: [][]string{nil, nil, nil},
		},
		{
			name: "CSMA: a node that hears the channel busy waits", xs: []float64{0, 1000}, csma: true,
			sends: []struct {
				node int
				at   time.Duration
				data string
			}{{0, 10 * ms, "a"}, {1, 20 * ms, "b"}},
			want: [][]string{{"b"}, {"a"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, nodes := probeSim(t, tc.xs, true, func(sc *Scenario) { sc.Radio.NoCSMA = !tc.csma })
			for _, sd := range tc.sends {
				sendAt(s, sd.node, sd.at, sd.data)
			}
			if err := s.run(); err != nil {
				t.Fatal(err)
			}
			for i, n := range nodes {
				var got []string
				for _, r := range n.got {
					got = append(got, r.data)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want[i]) {
					t.Errorf("node %d got %q, want %q", i, got, tc.want[i])
				}
			}
		})
	}
}

func TestRadioMeta(t *testing.T) {
	s, nodes := probeSim(t, []float64{0, 1000}, true, nil)
	sendAt(s, 0, time.Second, "x")
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	if len(nodes[1].got) != 1 {
		t.Fatalf("got %d frames", len(nodes[1].got))
	}
	m := nodes[1].got[0].meta
	wantRSSI := 14 - 128.95 // 1 km: PL(d0)
	if !m.HasSignal || m.From != s.nodes[0].hint || abs(float64(m.RSSI)-wantRSSI) > 0.01 {
		t.Fatalf("meta %+v, want From %x RSSI %.2f", m, s.nodes[0].hint, wantRSSI)
	}
	if snr := float64(m.SNR); abs(snr-(wantRSSI-s.rm.noiseFloor)) > 0.01 {
		t.Fatalf("SNR %.2f", snr)
	}
	// Arrival: hand-over latency plus the frame's airtime.
	air := time.Duration(s.rm.airtime(1))
	if got, want := nodes[1].got[0].at.Sub(s.epoch), time.Second+10*time.Millisecond+air; got != want {
		t.Fatalf("arrived at %v, want %v", got, want)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestLinkLayerUnicast drives meshd's LoRa link layer: a large unicast
// message is fragmented, acknowledged and reassembled.
func TestLinkLayerUnicast(t *testing.T) {
	s, nodes := probeSim(t, []float64{0, 1000}, false, nil)
	nodes[0].to = s.nodes[1].hint
	big := bytes.Repeat([]byte("0123456789"), 100)
	sendAt(s, 0, time.Second, string(big))
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	if len(nodes[1].got) != 1 || nodes[1].got[0].data != string(big) {
		t.Fatalf("got %d deliveries", len(nodes[1].got))
	}
	if st := s.nodes[0].radio.eng.Stats(); st.MessagesDone != 1 || st.SACKsReceived == 0 {
		t.Fatalf("sender link stats %+v", st)
	}
	if s.m.txByClass[ClassData] < 5 {
		t.Fatalf("%d data frames for a 1000-byte message", s.m.txByClass[ClassData])
	}
}

func TestDutyCycleRawRefuses(t *testing.T) {
	// A 1% band and frames sent back to back: the budget defers, then
	// refuses what it cannot carry within max_queue_delay.
	s, _ := probeSim(t, []float64{0, 1000}, true, func(sc *Scenario) {
		sc.Radio.FrequencyMHz = 868.1 // EU868 g1: 1%
		sc.Radio.MaxQueueDelay = Duration(time.Minute)
		sc.Radio.MaxQueue = 1000
		sc.Radio.Audit = true
	})
	payload := string(bytes.Repeat([]byte("x"), 200))
	for i := 0; i < 200; i++ {
		sendAt(s, 0, time.Duration(i)*100*time.Millisecond, payload)
	}
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	r := s.result()
	if r.DutyCycleViolations == 0 {
		t.Fatal("no violation counted")
	}
	if r.Radio.DutyCycleAudit != 0 {
		t.Fatalf("the radio exceeded the legal limit: %d audit violations", r.Radio.DutyCycleAudit)
	}
	// 1% of an hour is 36 s; a minute of traffic may use at most that.
	if air := s.nodes[0].radio.airtime; time.Duration(air) > 36*time.Second {
		t.Fatalf("sent %v of airtime", time.Duration(air))
	}
}

func TestIPLinkLatencyAndBandwidth(t *testing.T) {
	s, nodes := probeSim(t, []float64{0, 100000}, true, func(sc *Scenario) {
		sc.Groups[0].NoRadio = true
		sc.IPLinks = []IPLinkSpec{{A: NodeRef{Index: 0}, B: NodeRef{Index: 1}, Latency: Duration(50 * time.Millisecond), BandwidthBps: 8000}}
	})
	// 956 bytes + 44 of headers = 1000 bytes = 1 s at 8 kbit/s.
	p := string(bytes.Repeat([]byte("y"), 956))
	sendAt(s, 0, time.Second, p)
	sendAt(s, 0, time.Second, p)
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	if len(nodes[1].got) != 2 {
		t.Fatalf("got %d", len(nodes[1].got))
	}
	for i, want := range []time.Duration{2050 * time.Millisecond, 3050 * time.Millisecond} {
		if got := nodes[1].got[i].at.Sub(s.epoch); got != want {
			t.Errorf("frame %d arrived at %v, want %v", i, got, want)
		}
	}
}

func TestScenarioParseErrors(t *testing.T) {
	for _, bad := range []string{
		`{}`,
		`{"duration":"1h"}`,
		`{"duration":"1h","groups":[{"count":3,"layout":{"kind":"moon"}}]}`,
		`{"duration":"1h","groups":[{"count":3,"layout":{"kind":"line","spacing_m":10}}],"typo":1}`,
		`{"duration":"banana","groups":[{"count":3,"layout":{"kind":"line","spacing_m":10}}]}`,
		`{"duration":"1h","groups":[{"count":3,"layout":{"kind":"line","spacing_m":10}}],"traffic":[{"kind":"random","interval":"0s"}]}`,
		`{"duration":"1h","groups":[{"count":3,"layout":{"kind":"line","spacing_m":10}}],"events":[{"at":"1m","kind":"offline"}]}`,
	} {
		if _, err := ParseScenario([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// TestDeterministic: the same scenario and seed give the same result, bit
// for bit (performance fields aside); another seed gives another.
func TestDeterministic(t *testing.T) {
	sc, err := LoadScenario("scenarios/ci-lora-20.json")
	if err != nil {
		t.Fatal(err)
	}
	run := func(seed uint64) string {
		r, err := Run(sc, "flood", NewFlood, RunOptions{Seed: seed, HasSeed: true, Duration: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		r.Perf = Result{}.Perf
		b, _ := json.Marshal(r)
		return string(b)
	}
	a, b := run(3), run(3)
	if a != b {
		t.Fatalf("same seed, different results:\n%s\n%s", a, b)
	}
	if c := run(4); c == a {
		t.Fatal("different seeds, same result")
	}
}

func clockEpoch() time.Time { return time.Unix(1767225600, 0).UTC() }

func TestOfflinePartitionLinks(t *testing.T) {
	s, nodes := probeSim(t, []float64{0, 1000}, true, func(sc *Scenario) {
		sc.Duration = Duration(time.Hour)
		sc.IPLinks = []IPLinkSpec{{A: NodeRef{Index: 0}, B: NodeRef{Index: 1}}}
		sc.Events = []EventSpec{
			{At: Duration(10 * time.Minute), Kind: "offline", Nodes: NodeSet{Refs: []NodeRef{{Index: 1}}, isSet: true}, For: Duration(5 * time.Minute)},
			{At: Duration(20 * time.Minute), Kind: "partition", SplitXM: 500},
			{At: Duration(30 * time.Minute), Kind: "heal"},
			{At: Duration(40 * time.Minute), Kind: "offline", Nodes: NodeSet{Refs: []NodeRef{{Index: 1}}, isSet: true}, For: Duration(5 * time.Minute), Restart: true},
		}
	})
	// Radio frames: one while node 1 is away, one during the partition,
	// one after the heal.
	sendAt(s, 0, 12*time.Minute, "away")
	sendAt(s, 0, 25*time.Minute, "cut")
	sendAt(s, 0, 35*time.Minute, "healed")
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	want0 := []string{"0s up 0 lora", "0s up 1 tcp", "10m0s down 1", "15m0s up 1 tcp", "20m0s down 1", "30m0s up 1 tcp", "40m0s down 1", "45m0s up 1 tcp"}
	want1 := []string{"0s up 0 lora", "0s up 1 tcp", "15m0s down 1", "15m0s up 1 tcp", "20m0s down 1", "30m0s up 1 tcp",
		"45m0s up 0 lora", "45m0s up 1 tcp"}
	if fmt.Sprint(nodes[0].events) != fmt.Sprint(want0) {
		t.Errorf("node 0 link events\n got %q\nwant %q", nodes[0].events, want0)
	}
	// Node 1 was rebuilt at 45m: its events are on the new core.
	reborn := s.nodes[1].node.(*probeNode)
	if reborn == nodes[1] || reborn.starts != 1 {
		t.Fatal("the restart did not build a new core")
	}
	got1 := append(append([]string{}, nodes[1].events...), reborn.events...)
	if fmt.Sprint(got1) != fmt.Sprint(want1) {
		t.Errorf("node 1 link events\n got %q\nwant %q", got1, want1)
	}
	var heard []string
	for _, r := range append(nodes[1].got, reborn.got...) {
		heard = append(heard, r.data)
	}
	if fmt.Sprint(heard) != "[healed]" {
		t.Errorf("node 1 heard %q, want only [healed]", heard)
	}
}

// overProbe is a probeNode that also overhears.
type overProbe struct {
	probeNode
	over []string
}

func (p *overProbe) Overhear(now time.Time, l LinkID, to transport.Addr, data []byte, m transport.Meta, out *Out) {
	p.over = append(p.over, string(data))
}

// TestOverhear: on meshd's link layer a node that implements Overhearer
// is shown one-fragment messages for others unless radio.no_overhear (as
// the LoRa transport once the daemon turns overhearing on); on a raw link
// only with radio.overhear.
func TestOverhear(t *testing.T) {
	for _, raw := range []bool{false, true} {
		for _, on := range []bool{false, true} {
			sc := &Scenario{Name: "over", Seed: 1, Duration: Duration(time.Minute)}
			sc.Radio.PathLoss.NoShadow, sc.Radio.PathLoss.NoFading = true, true
			if raw {
				sc.Radio.Overhear = on
			} else {
				sc.Radio.NoOverhear = !on
			}
			sc.Groups = []GroupSpec{{Count: 3, Layout: LayoutSpec{Kind: "positions", Positions: [][2]float64{{0, 0}, {500, 0}, {0, 500}}}}}
			var nodes []*overProbe
			s, err := newSim(sc, "probe", func(env Env) (Node, error) {
				p := &overProbe{probeNode: probeNode{raw: raw, links: env.Links}}
				nodes = append(nodes, p)
				return p, nil
			}, RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			nodes[0].to = s.nodes[1].hint
			sendAt(s, 0, time.Second, "for-1")
			if err := s.run(); err != nil {
				t.Fatal(err)
			}
			s.cleanup()
			if len(nodes[1].got) != 1 || nodes[1].got[0].data != "for-1" {
				t.Errorf("raw %v overhear %v: addressee got %v", raw, on, nodes[1].got)
			}
			want := 0
			if on {
				want = 1
			}
			if len(nodes[2].over) != want || len(nodes[2].got) != 0 || (want == 1 && nodes[2].over[0] != "for-1") {
				t.Errorf("raw %v overhear %v: third node overheard %q, received %d", raw, on, nodes[2].over, len(nodes[2].got))
			}
			if nodes[2].links[0].Overhears != on {
				t.Errorf("raw %v overhear %v: Link.Overhears %v", raw, on, nodes[2].links[0].Overhears)
			}
		}
	}
}

// TestDataByMargin: radio.data_by_margin_db splits the Data frames of
// unicast_by_class by the margin of their link, so its bins add up to the
// class; a frame on a link 5 dB above sensitivity or more cannot be lost
// to fading (σ 1 dB) in a run without churn.
func TestDataByMargin(t *testing.T) {
	_, r := runCILoRa(t, 20*time.Minute)
	rd := r.Radio
	var sum UnicastOutcomes
	for bin, u := range rd.DataByMarginDB {
		sum.Received += u.Received
		sum.Collision += u.Collision
		sum.HalfDuplex += u.HalfDuplex
		sum.Random += u.Random
		sum.Unreachable += u.Unreachable
		if b, err := strconv.Atoi(strings.TrimSuffix(bin, "+")); err == nil && b >= 5 && u.Unreachable > 0 {
			t.Errorf("bin %s: %d frames unreachable", bin, u.Unreachable)
		}
	}
	if want := rd.UnicastByClass["data"]; sum != want || sum.Received == 0 {
		t.Fatalf("margin bins add up to %+v, data class is %+v", sum, want)
	}
}

// TestAirtimeByHour: the hourly airtime adds up, class by class, to the
// run's airtime, one entry per started hour of the run.
func TestAirtimeByHour(t *testing.T) {
	sc, r := runCILoRa(t, 70*time.Minute)
	run := time.Duration(sc.Warmup) + 70*time.Minute + time.Duration(sc.Drain)
	if want := int((run + time.Hour - 1) / time.Hour); len(r.AirtimeByHour) != want {
		t.Fatalf("%d hours of airtime for a run of %v, want %d", len(r.AirtimeByHour), run, want)
	}
	for class, total := range r.AirtimeByClass {
		var sum float64
		for _, h := range r.AirtimeByHour {
			sum += h[class]
		}
		if math.Abs(sum-total) > 1e-3 {
			t.Errorf("%s: the hours add up to %.6f s, the run's total is %.6f s", class, sum, total)
		}
	}
	if r.AirtimeByClass["data"] == 0 || r.AirtimeByHour[1]["data"] == 0 {
		t.Errorf("no data airtime in the second hour: %v", r.AirtimeByHour)
	}
}

// runCILoRa runs the router on the 20-node LoRa CI scenario with traffic
// for d.
func runCILoRa(t *testing.T, d time.Duration) (*Scenario, *Result) {
	t.Helper()
	sc, err := LoadScenario("scenarios/ci-lora-20.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(sc, "router", NewRouterFactory(), RunOptions{Duration: d})
	if err != nil {
		t.Fatal(err)
	}
	return sc, r
}
