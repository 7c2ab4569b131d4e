package sim

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport/lora/core"
)

// counters are the run's running totals.
type counters struct {
	airByHour    [][numClasses]int64 // radio airtime per hour of the run, ns (air sums it)
	txByClass    [numClasses]uint64
	ipByClass    [numClasses]uint64
	unattributed [numClasses]int64 // data/ack airtime with no known message

	// meshd's link layer: SACKs and retransmitted fragments by the class
	// of the message they belong to.
	linkSACKByClass, linkRetxByClass [numClasses]uint64

	// Unicast radio frames by class and what became of them at the
	// neighbour they were addressed to (uniReceived...).
	unicast [numClasses][numUniOutcomes]uint64
	// Data unicast frames by the mean margin of their link over the
	// receiver's sensitivity, in dB bins (numMarginBins-1: that or more;
	// marginNoLink: the addressee is no radio neighbour at all).
	dataByMargin [numMarginBins + 1][numUniOutcomes]uint64

	rxFrames       uint64
	lostCollision  uint64
	lostHalfDuplex uint64
	lostRandom     uint64
	csmaBackoffs   uint64

	dutyViolations uint64
	dutyDeferred   uint64
	queueDrops     uint64
	framesTooLarge uint64
	linkQueueFull  uint64
	linkErrors     uint64
	ipFrames       uint64
	ipDrops        uint64

	acked             uint64
	implicitAcks      uint64
	held              uint64
	failed            uint64
	dropped           uint64
	misdelivered      uint64
	wrongSender       uint64
	foreignDeliveries uint64
	skippedOffline    uint64
	offlineEvents     uint64
}

// air is the radio airtime of class c so far, ns.
func (m *counters) air(c Class) int64 {
	var t int64
	for _, h := range m.airByHour {
		t += h[c]
	}
	return t
}

// Result is what one run measured. docs/meshsim.md defines every field.
type Result struct {
	Scenario string `json:"scenario"`
	Protocol string `json:"protocol"`
	Seed     uint64 `json:"seed"`
	Nodes    int    `json:"nodes"`

	Messages            int     `json:"messages"`
	Delivered           int     `json:"delivered"`
	DeliveryRatio       float64 `json:"delivery_ratio"`
	LatencyP50          float64 `json:"latency_p50_s"`
	LatencyP95          float64 `json:"latency_p95_s"`
	LatencyMax          float64 `json:"latency_max_s"`
	AirtimePerDelivered float64 `json:"airtime_per_delivered_s"`
	AirtimeRatioToIdeal float64 `json:"airtime_ratio_to_ideal"`
	TxPerDelivered      float64 `json:"tx_per_delivered"`
	AnnounceShare       float64 `json:"announce_airtime_share"`
	DutyCycleViolations uint64  `json:"duty_cycle_violations"`
	DuplicatesDelivered uint64  `json:"duplicates_delivered"`

	// Ideal is the mean ideal airtime of a delivered message (data and
	// ack once per radio hop of a shortest path).
	IdealAirtimePerDelivered float64 `json:"ideal_airtime_per_delivered_s"`
	// Whole-network totals.
	AirtimeTotal             float64            `json:"airtime_total_s"`
	AirtimeTotalPerDelivered float64            `json:"airtime_total_per_delivered_s"`
	AirtimeByClass           map[string]float64 `json:"airtime_by_class_s"`
	RadioFramesByClass       map[string]uint64  `json:"radio_frames_by_class"`
	IPFramesByClass          map[string]uint64  `json:"ip_frames_by_class"`
	UnattributedAirtime      float64            `json:"unattributed_data_ack_airtime_s"`
	ChannelUtilisationMax    float64            `json:"node_airtime_share_max"`
	AckedRatio               float64            `json:"acked_ratio"`

	// Traffic breaks delivery down by traffic source (scenario "traffic"
	// entries, in order; replies count with the source that prompted them).
	Traffic []TrafficResult `json:"traffic,omitempty"`
	// ByHour breaks delivery down by the hour of traffic a message was
	// sent in (0: the first hour after the warm-up), to tell losses at
	// boot and at announce rounds from the steady state.
	ByHour []HourResult `json:"delivery_by_sent_hour,omitempty"`
	// AirtimeByHour is airtime_by_class_s per hour of the run (0: the
	// first hour from the start, warm-up included): shows when announce
	// rounds load the channel.
	AirtimeByHour []map[string]float64 `json:"airtime_by_hour_s,omitempty"`

	Radio struct {
		FramesReceived      uint64 `json:"frames_received"`
		LostCollision       uint64 `json:"lost_collision"`
		LostHalfDuplex      uint64 `json:"lost_half_duplex"`
		LostRandom          uint64 `json:"lost_random"`
		CSMABackoffs        uint64 `json:"csma_backoffs"`
		DutyCycleDeferred   uint64 `json:"duty_cycle_deferred"`
		DutyCycleAudit      uint64 `json:"duty_cycle_audit_violations"`
		QueueDrops          uint64 `json:"queue_drops"`
		FramesTooLarge      uint64 `json:"frames_too_large"`
		LinkQueueFull       uint64 `json:"link_queue_full"`
		LinkErrors          uint64 `json:"link_errors"`
		LinkRetransmissions uint64 `json:"link_retransmissions"`
		LinkSACKs           uint64 `json:"link_sacks"`
		LinkFailed          uint64 `json:"link_messages_failed"`
		// By the class of the message a SACK acknowledges or a
		// retransmitted fragment belongs to (meshd's link layer).
		LinkSACKsByClass           map[string]uint64 `json:"link_sacks_by_class,omitempty"`
		LinkRetransmissionsByClass map[string]uint64 `json:"link_retransmissions_by_class,omitempty"`
		// UnicastByClass says what became of unicast frames at the
		// neighbour they were addressed to: received, lost to a collision,
		// to half duplex (it was sending), to random frame loss, or out of
		// its reach (fading, or it was offline).
		UnicastByClass map[string]UnicastOutcomes `json:"unicast_by_class,omitempty"`
		// DataByMarginDB is unicast_by_class's "data" by the mean margin
		// of the link (path loss and shadowing, not the frame's fading)
		// over the receiver's sensitivity: "0" is 0 to 1 dB, "8+" 8 dB
		// or more, "none" an addressee out of radio range altogether.
		// Says whether routes use links at the edge of range.
		DataByMarginDB    map[string]UnicastOutcomes `json:"data_by_margin_db,omitempty"`
		Modulation        string                     `json:"modulation"`
		SubBand           string                     `json:"sub_band"`
		DutyCycle         float64                    `json:"duty_cycle"`
		SensitivityDBm    float64                    `json:"sensitivity_dbm"`
		RangeM            float64                    `json:"range_m"`
		MeanDegree        float64                    `json:"mean_degree"`
		Diameter          int                        `json:"diameter_hops"`
		DataFrameAirtimeS float64                    `json:"data_frame_airtime_s"`
		AckFrameAirtimeS  float64                    `json:"ack_frame_airtime_s"`
	} `json:"radio"`

	Events struct {
		Acked             uint64 `json:"acked"`
		ImplicitAcks      uint64 `json:"implicit_acks"`
		Held              uint64 `json:"held,omitempty"`
		Failed            uint64 `json:"failed"`
		Dropped           uint64 `json:"dropped"`
		Misdelivered      uint64 `json:"misdelivered"`
		WrongSender       uint64 `json:"wrong_sender"`
		ForeignDeliveries uint64 `json:"foreign_deliveries"`
		SkippedOffline    uint64 `json:"skipped_sender_offline"`
		IPFrames          uint64 `json:"ip_frames"`
		IPDrops           uint64 `json:"ip_drops"`
	} `json:"events"`

	Perf struct {
		SimulatedS              float64 `json:"simulated_s"`
		WallSeconds             float64 `json:"wall_s"`
		SimSecondsPerWallSecond float64 `json:"sim_s_per_wall_s"`
		// CPUSeconds and SimSecondsPerCPUSecond are filled in by meshsim when
		// it runs one protocol at a time (immune to other load on the host).
		CPUSeconds             float64 `json:"cpu_s,omitempty"`
		SimSecondsPerCPUSecond float64 `json:"sim_s_per_cpu_s,omitempty"`
		Events                 uint64  `json:"events"`
		HeapBytesPerNode       float64 `json:"heap_bytes_per_node"`
	} `json:"perf"`

	Baseline *Result `json:"baseline,omitempty"`
}

// HourResult is the delivery of the messages sent in one hour: how many,
// and the shares of them delivered by the end of the run and within 60 s.
type HourResult struct {
	Messages  int     `json:"messages"`
	Delivered float64 `json:"delivered"`
	Within60s float64 `json:"delivered_within_60s"`
}

// TrafficResult is the delivery of one traffic source.
type TrafficResult struct {
	Messages      int     `json:"messages"`
	Delivered     int     `json:"delivered"`
	DeliveryRatio float64 `json:"delivery_ratio"`
	Duplicates    uint64  `json:"duplicates_delivered"`
	LatencyP50    float64 `json:"latency_p50_s"`
	LatencyP95    float64 `json:"latency_p95_s"`
}

// The ideal's frames: meshd's envelopes with 4-byte hints (envelope/wire.go:
// a Data envelope adds 32 bytes to its payload - 4 header, 2x4 hints, 4
// counter, 16 tag - and an Ack is 32 bytes), each in one unicast frame of
// meshd's LoRa link layer (transport/lora/core: 14 bytes of framing); the
// radio's own header is added by the airtime. The same yardstick serves
// every protocol.
var (
	idealFraming      = core.Overhead(core.KindUnicast, core.Key{})
	idealDataOverhead = envelope.HeaderSize + 2*envelope.HintSize + 4 + envelope.TagSize + idealFraming
	idealAckSize      = envelope.HeaderSize + 2*envelope.HintSize + 4 + envelope.TagSize + idealFraming
)

// idealCache holds shortest-path distances from sources for one topology
// generation.
type idealCache struct {
	gen  uint64
	dist map[int32][]int32
}

// idealHops returns the radio hops of the path from src to dst that uses
// the fewest radio hops (IP hops are free) over the ideal graph as it is now:
// nodes online, same side of any partition, IP links up. -1: no path.
func (s *Sim) idealHops(src, dst int32) int {
	if s.ideal.dist == nil || s.ideal.gen != s.topoGen {
		s.ideal = idealCache{gen: s.topoGen, dist: make(map[int32][]int32)}
	}
	d, ok := s.ideal.dist[src]
	if !ok {
		d = s.bfs01(src)
		s.ideal.dist[src] = d
	}
	return int(d[dst])
}

// bfs01 is a 0-1 breadth-first search: radio edges weigh 1, IP edges 0.
func (s *Sim) bfs01(src int32) []int32 {
	n := len(s.nodes)
	dist := make([]int32, n)
	for i := range dist {
		dist[i] = -1
	}
	if !s.nodes[src].online {
		return dist
	}
	// Deque as a ring-free slice pair.
	front := []int32{src}
	var back []int32
	dist[src] = 0
	ipAdj := func(a int32, visit func(b int32)) {
		for _, ref := range s.nodes[a].links {
			if ref.ip != nil && ref.ip.up {
				b := ref.ip.a
				if b == a {
					b = ref.ip.b
				}
				visit(b)
			}
		}
	}
	done := make([]bool, n)
	for len(front) > 0 || len(back) > 0 {
		var a int32
		if len(front) > 0 {
			a = front[len(front)-1]
			front = front[:len(front)-1]
		} else {
			a = back[0]
			back = back[1:]
		}
		if done[a] {
			continue
		}
		done[a] = true
		ipAdj(a, func(b int32) {
			if !done[b] && (dist[b] < 0 || dist[b] > dist[a]) {
				dist[b] = dist[a]
				front = append(front, b)
			}
		})
		sa := s.nodes[a]
		for _, b := range s.topo.idealAdj[a] {
			nb := s.nodes[b]
			if done[b] || !nb.online || nb.side != sa.side {
				continue
			}
			if dist[b] < 0 || dist[b] > dist[a]+1 {
				dist[b] = dist[a] + 1
				back = append(back, b)
			}
		}
	}
	return dist
}

// result computes the metrics at the end of a run.
func (s *Sim) result() *Result {
	r := &Result{Scenario: s.sc.Name, Protocol: s.proto, Seed: s.sd.seed, Nodes: len(s.nodes)}
	var lat []float64
	var air, ideal int64
	var frames int64
	r.Traffic = make([]TrafficResult, len(s.sc.Traffic))
	specLat := make([][]float64, len(s.sc.Traffic))
	for _, m := range s.msgs {
		tr := &r.Traffic[m.spec]
		tr.Messages++
		tr.Duplicates += uint64(m.dups)
		if m.delivered >= 0 {
			tr.Delivered++
			specLat[m.spec] = append(specLat[m.spec], float64(m.delivered-m.sent)/1e9)
		}
	}
	var hours [][3]int // sent, delivered, delivered within 60 s
	for _, m := range s.msgs {
		h := max(int((m.sent-int64(s.sc.Warmup))/int64(time.Hour)), 0)
		for h >= len(hours) {
			hours = append(hours, [3]int{})
		}
		hours[h][0]++
		if m.delivered >= 0 {
			hours[h][1]++
			if m.delivered-m.sent <= int64(time.Minute) {
				hours[h][2]++
			}
		}
	}
	for _, c := range hours {
		hr := HourResult{Messages: c[0]}
		if c[0] > 0 {
			hr.Delivered = round6(float64(c[1]) / float64(c[0]))
			hr.Within60s = round6(float64(c[2]) / float64(c[0]))
		}
		r.ByHour = append(r.ByHour, hr)
	}
	for i := range r.Traffic {
		tr := &r.Traffic[i]
		if tr.Messages > 0 {
			tr.DeliveryRatio = round6(float64(tr.Delivered) / float64(tr.Messages))
		}
		sort.Float64s(specLat[i])
		tr.LatencyP50 = round6(quantile(specLat[i], 0.5))
		tr.LatencyP95 = round6(quantile(specLat[i], 0.95))
	}
	for _, m := range s.msgs {
		r.Messages++
		r.DuplicatesDelivered += uint64(m.dups)
		if m.acked >= 0 {
			r.AckedRatio++
		}
		if m.delivered < 0 {
			continue
		}
		r.Delivered++
		lat = append(lat, float64(m.delivered-m.sent)/1e9)
		air += m.airtime
		frames += int64(m.frames)
		if m.idealKnown {
			perHop := s.rm.airtime(int(m.size)+idealDataOverhead) + s.rm.airtime(idealAckSize)
			ideal += int64(m.idealHops) * perHop
		}
	}
	if r.Messages > 0 {
		r.DeliveryRatio = float64(r.Delivered) / float64(r.Messages)
		r.AckedRatio /= float64(r.Messages)
	}
	sort.Float64s(lat)
	r.LatencyP50 = quantile(lat, 0.50)
	r.LatencyP95 = quantile(lat, 0.95)
	if len(lat) > 0 {
		r.LatencyMax = lat[len(lat)-1]
	}
	var total int64
	r.AirtimeByClass = map[string]float64{}
	r.RadioFramesByClass = map[string]uint64{}
	r.IPFramesByClass = map[string]uint64{}
	for c := Class(0); c < numClasses; c++ {
		total += s.m.air(c)
		r.AirtimeByClass[c.String()] = round6(float64(s.m.air(c)) / 1e9)
		r.RadioFramesByClass[c.String()] = s.m.txByClass[c]
		r.IPFramesByClass[c.String()] = s.m.ipByClass[c]
		r.UnattributedAirtime += float64(s.m.unattributed[c]) / 1e9
	}
	r.UnattributedAirtime = round6(r.UnattributedAirtime)
	for _, h := range s.m.airByHour {
		hm := map[string]float64{}
		for c := Class(0); c < numClasses; c++ {
			hm[c.String()] = round6(float64(h[c]) / 1e9)
		}
		r.AirtimeByHour = append(r.AirtimeByHour, hm)
	}
	r.AirtimeTotal = round6(float64(total) / 1e9)
	if r.Delivered > 0 {
		r.AirtimePerDelivered = round6(float64(air) / 1e9 / float64(r.Delivered))
		r.TxPerDelivered = round6(float64(frames) / float64(r.Delivered))
		r.AirtimeTotalPerDelivered = round6(float64(total) / 1e9 / float64(r.Delivered))
		r.IdealAirtimePerDelivered = round6(float64(ideal) / 1e9 / float64(r.Delivered))
	}
	if ideal > 0 {
		r.AirtimeRatioToIdeal = round6(float64(air) / float64(ideal))
	}
	if total > 0 {
		r.AnnounceShare = round6(float64(s.m.air(ClassAnnounce)+s.m.air(ClassPath)) / float64(total))
	}
	r.DutyCycleViolations = s.m.dutyViolations
	var maxAir int64
	for _, n := range s.nodes {
		if n.radio != nil && n.radio.airtime > maxAir {
			maxAir = n.radio.airtime
		}
	}
	if s.end > 0 {
		r.ChannelUtilisationMax = round6(float64(maxAir) / float64(s.end))
	}

	rd := &r.Radio
	rd.FramesReceived = s.m.rxFrames
	rd.LostCollision = s.m.lostCollision
	rd.LostHalfDuplex = s.m.lostHalfDuplex
	rd.LostRandom = s.m.lostRandom
	rd.CSMABackoffs = s.m.csmaBackoffs
	rd.DutyCycleDeferred = s.m.dutyDeferred
	for _, n := range s.nodes {
		if n.radio != nil && n.radio.audit != nil {
			rd.DutyCycleAudit += n.radio.audit.Flush().Violations
		}
	}
	rd.QueueDrops = s.m.queueDrops
	rd.FramesTooLarge = s.m.framesTooLarge
	rd.LinkQueueFull = s.m.linkQueueFull
	rd.LinkErrors = s.m.linkErrors
	for c := Class(0); c < numClasses; c++ {
		u := s.m.unicast[c]
		if u == [numUniOutcomes]uint64{} {
			continue
		}
		if rd.UnicastByClass == nil {
			rd.UnicastByClass = map[string]UnicastOutcomes{}
		}
		rd.UnicastByClass[c.String()] = outcomesOf(u)
	}
	for b, u := range s.m.dataByMargin {
		if u == [numUniOutcomes]uint64{} {
			continue
		}
		if rd.DataByMarginDB == nil {
			rd.DataByMarginDB = map[string]UnicastOutcomes{}
		}
		rd.DataByMarginDB[marginBinName(b)] = outcomesOf(u)
	}
	for _, n := range s.nodes {
		if n.radio != nil && n.radio.eng != nil {
			st := n.radio.eng.Stats()
			rd.LinkRetransmissions += st.Retransmissions
			rd.LinkSACKs += st.SACKsSent
			rd.LinkFailed += st.MessagesFailed
			rd.DutyCycleDeferred += st.BudgetWaits
		}
	}
	for c := Class(0); c < numClasses; c++ {
		if v := s.m.linkSACKByClass[c]; v > 0 {
			if rd.LinkSACKsByClass == nil {
				rd.LinkSACKsByClass = map[string]uint64{}
			}
			rd.LinkSACKsByClass[c.String()] = v
		}
		if v := s.m.linkRetxByClass[c]; v > 0 {
			if rd.LinkRetransmissionsByClass == nil {
				rd.LinkRetransmissionsByClass = map[string]uint64{}
			}
			rd.LinkRetransmissionsByClass[c.String()] = v
		}
	}
	rd.Modulation = s.rm.mod.String()
	rd.SubBand = s.rm.region + " " + s.rm.band.Name
	rd.DutyCycle = s.rm.band.DutyCycle
	rd.SensitivityDBm = s.rm.sens
	rd.RangeM = math.Round(s.rm.rangeM(0))
	rd.MeanDegree, rd.Diameter = s.topo.graphStats()
	rd.MeanDegree = math.Round(rd.MeanDegree*100) / 100
	rd.DataFrameAirtimeS = round6(float64(s.rm.airtime(50+idealDataOverhead)) / 1e9)
	rd.AckFrameAirtimeS = round6(float64(s.rm.airtime(idealAckSize)) / 1e9)

	ev := &r.Events
	ev.Acked = s.m.acked
	ev.ImplicitAcks = s.m.implicitAcks
	ev.Held = s.m.held
	ev.Failed = s.m.failed
	ev.Dropped = s.m.dropped
	ev.Misdelivered = s.m.misdelivered
	ev.WrongSender = s.m.wrongSender
	ev.ForeignDeliveries = s.m.foreignDeliveries
	ev.SkippedOffline = s.m.skippedOffline
	ev.IPFrames = s.m.ipFrames
	ev.IPDrops = s.m.ipDrops

	r.Perf.SimulatedS = float64(s.end) / 1e9
	r.Perf.Events = s.events
	if s.opt.MeasureMemory {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if len(s.nodes) > 0 && ms.HeapAlloc > s.startMem {
			r.Perf.HeapBytesPerNode = math.Round(float64(ms.HeapAlloc-s.startMem) / float64(len(s.nodes)))
		}
	}
	r.LatencyP50, r.LatencyP95, r.LatencyMax = round6(r.LatencyP50), round6(r.LatencyP95), round6(r.LatencyMax)
	r.DeliveryRatio, r.AckedRatio = round6(r.DeliveryRatio), round6(r.AckedRatio)
	return r
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// quantile of sorted xs by the nearest-rank method; 0 for none.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	k := int(math.Ceil(q*float64(len(xs)))) - 1
	k = max(0, min(k, len(xs)-1))
	return xs[k]
}

// Check compares a result with the scenario's bounds for its protocol and
// returns one line per violated bound.
func (sc *Scenario) Check(r *Result) []string {
	bounds := sc.Expect[r.Protocol]
	vals := r.metricMap()
	var bad []string
	keys := make([]string, 0, len(bounds))
	for k := range bounds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b := bounds[k]
		v, ok := vals[k]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: unknown metric %q in expect", r.Protocol, k))
			continue
		}
		if b.Min != nil && v < *b.Min {
			bad = append(bad, fmt.Sprintf("%s: %s = %g, want >= %g", r.Protocol, k, v, *b.Min))
		}
		if b.Max != nil && v > *b.Max {
			bad = append(bad, fmt.Sprintf("%s: %s = %g, want <= %g", r.Protocol, k, v, *b.Max))
		}
	}
	return bad
}

// metricMap names the headline metrics for bounds and tables.
func (r *Result) metricMap() map[string]float64 {
	m := map[string]float64{
		"delivery_ratio":                r.DeliveryRatio,
		"latency_p50_s":                 r.LatencyP50,
		"latency_p95_s":                 r.LatencyP95,
		"airtime_per_delivered_s":       r.AirtimePerDelivered,
		"airtime_ratio_to_ideal":        r.AirtimeRatioToIdeal,
		"tx_per_delivered":              r.TxPerDelivered,
		"announce_airtime_share":        r.AnnounceShare,
		"duty_cycle_violations":         float64(r.DutyCycleViolations),
		"duplicates_delivered":          float64(r.DuplicatesDelivered),
		"airtime_total_per_delivered_s": r.AirtimeTotalPerDelivered,
		"messages":                      float64(r.Messages),
		"acked_ratio":                   r.AckedRatio,
		"misdelivered":                  float64(r.Events.Misdelivered),
		"duty_cycle_audit_violations":   float64(r.Radio.DutyCycleAudit),
	}
	for i, t := range r.Traffic {
		p := fmt.Sprintf("traffic%d.", i)
		m[p+"messages"] = float64(t.Messages)
		m[p+"delivery_ratio"] = t.DeliveryRatio
		m[p+"duplicates_delivered"] = float64(t.Duplicates)
		m[p+"latency_p95_s"] = t.LatencyP95
	}
	return m
}

// WriteTable prints results side by side.
func WriteTable(w io.Writer, rs ...*Result) error {
	if len(rs) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, f func(r *Result) string) {
		cells := []string{name}
		for _, r := range rs {
			cells = append(cells, f(r))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	r0 := rs[0]
	fmt.Fprintf(w, "scenario %s, seed %d, %d nodes, %s simulated, %s %s (%.0f%%), range %.0f m, mean degree %.1f, diameter %d hops\n",
		r0.Scenario, r0.Seed, r0.Nodes, time.Duration(r0.Perf.SimulatedS*1e9), r0.Radio.Modulation, r0.Radio.SubBand,
		r0.Radio.DutyCycle*100, r0.Radio.RangeM, r0.Radio.MeanDegree, r0.Radio.Diameter)
	row("", func(r *Result) string { return r.Protocol })
	f3 := func(v float64) string { return fmt.Sprintf("%.3f", v) }
	row("messages", func(r *Result) string { return fmt.Sprint(r.Messages) })
	row("delivery_ratio", func(r *Result) string { return fmt.Sprintf("%.4f", r.DeliveryRatio) })
	row("latency_p50_s", func(r *Result) string { return f3(r.LatencyP50) })
	row("latency_p95_s", func(r *Result) string { return f3(r.LatencyP95) })
	row("airtime_per_delivered_s", func(r *Result) string { return f3(r.AirtimePerDelivered) })
	row("ideal_airtime_per_delivered_s", func(r *Result) string { return f3(r.IdealAirtimePerDelivered) })
	row("airtime_ratio_to_ideal", func(r *Result) string { return fmt.Sprintf("%.2f", r.AirtimeRatioToIdeal) })
	row("tx_per_delivered", func(r *Result) string { return fmt.Sprintf("%.2f", r.TxPerDelivered) })
	row("airtime_total_per_delivered_s", func(r *Result) string { return f3(r.AirtimeTotalPerDelivered) })
	row("announce_airtime_share", func(r *Result) string { return fmt.Sprintf("%.3f", r.AnnounceShare) })
	row("duty_cycle_violations", func(r *Result) string { return fmt.Sprint(r.DutyCycleViolations) })
	row("duplicates_delivered", func(r *Result) string { return fmt.Sprint(r.DuplicatesDelivered) })
	row("acked_ratio", func(r *Result) string { return fmt.Sprintf("%.4f", r.AckedRatio) })
	if len(r0.Traffic) > 1 {
		for i := range r0.Traffic {
			row(fmt.Sprintf("traffic%d.delivery_ratio", i), func(r *Result) string {
				if i >= len(r.Traffic) {
					return "-"
				}
				return fmt.Sprintf("%.4f (%d)", r.Traffic[i].DeliveryRatio, r.Traffic[i].Messages)
			})
		}
	}
	row("airtime_total_s", func(r *Result) string { return fmt.Sprintf("%.1f", r.AirtimeTotal) })
	row("node_airtime_share_max", func(r *Result) string { return fmt.Sprintf("%.4f", r.ChannelUtilisationMax) })
	row("lost_collision", func(r *Result) string { return fmt.Sprint(r.Radio.LostCollision) })
	row("lost_half_duplex", func(r *Result) string { return fmt.Sprint(r.Radio.LostHalfDuplex) })
	row("duty_cycle_deferred", func(r *Result) string { return fmt.Sprint(r.Radio.DutyCycleDeferred) })
	row("queue_drops", func(r *Result) string { return fmt.Sprint(r.Radio.QueueDrops) })
	row("sim_s_per_wall_s", func(r *Result) string { return fmt.Sprintf("%.0f", r.Perf.SimSecondsPerWallSecond) })
	opt := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", v)
	}
	row("sim_s_per_cpu_s", func(r *Result) string { return opt(r.Perf.SimSecondsPerCPUSecond) })
	row("heap_bytes_per_node", func(r *Result) string { return opt(r.Perf.HeapBytesPerNode) })
	return tw.Flush()
}

// What became of a unicast frame at the neighbour it was addressed to.
const (
	uniReceived = iota
	uniCollision
	uniHalfDuplex
	uniRandom
	uniUnreachable
	numUniOutcomes
)

// numMarginBins is the number of 1 dB bins of Radio.DataByMarginDB;
// marginNoLink is the bin of frames to an addressee out of range.
const (
	numMarginBins = 9
	marginNoLink  = numMarginBins
)

// marginBin returns the bin of a link whose mean margin over the
// sensitivity is m dB.
func marginBin(m float64) int { return min(numMarginBins-1, max(0, int(m))) }

func marginBinName(b int) string {
	switch {
	case b == marginNoLink:
		return "none"
	case b == numMarginBins-1:
		return strconv.Itoa(b) + "+"
	}
	return strconv.Itoa(b)
}

func outcomesOf(u [numUniOutcomes]uint64) UnicastOutcomes {
	return UnicastOutcomes{Received: u[uniReceived], Collision: u[uniCollision],
		HalfDuplex: u[uniHalfDuplex], Random: u[uniRandom], Unreachable: u[uniUnreachable]}
}

// UnicastOutcomes counts unicast radio frames of one class by what became
// of them at their addressee.
type UnicastOutcomes struct {
	Received    uint64 `json:"received"`
	Collision   uint64 `json:"collision"`
	HalfDuplex  uint64 `json:"half_duplex"`
	Random      uint64 `json:"random"`
	Unreachable uint64 `json:"unreachable"`
}
