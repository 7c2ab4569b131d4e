package sim

import (
	"fmt"
	"math"
)

// nbr is a node within interference range of another.
type nbr struct {
	j    int32
	rssi float32 // mean received power in dBm (shadowing included)
	mw   float32 // the same in mW
}

// topology is the static geometry of a run: positions and, for radio
// nodes, who hears whom at what mean power.
type topology struct {
	pos   [][2]float64
	radio []bool
	group []int
	// nbrs[i]: nodes that hear i at or above the interference floor.
	nbrs [][]nbr
	// idealAdj[i]: nodes j with an ideal-graph edge i-j.
	idealAdj [][]int32
}

// shadowing returns the fixed log-normal shadowing in dB of the link i-j
// (symmetric). It is a pure function of the seed and the pair (splitmix64
// of both, then Box-Muller), so it does not depend on positions, on how often
// a layout was redrawn, or on the order pairs are looked at.
func (s seeds) shadowing(i, j int, sigma float64) float64 {
	if sigma == 0 {
		return 0
	}
	if i > j {
		i, j = j, i
	}
	x := splitmix64(s.seed ^ 0x5368_6164_6f77_696e) // "Shadowin"
	x = splitmix64(x ^ uint64(i)<<32 ^ uint64(j))
	y := splitmix64(x)
	u1 := float64(x>>11+1) / (1 << 53) // (0, 1]
	u2 := float64(y>>11) / (1 << 53)
	return sigma * math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// buildTopology places every group's nodes and computes who hears whom.
func buildTopology(sc *Scenario, rm *radioModel, sd seeds) (*topology, error) {
	n := sc.NodeCount()
	t := &topology{
		pos:      make([][2]float64, n),
		radio:    make([]bool, n),
		group:    make([]int, n),
		nbrs:     make([][]nbr, n),
		idealAdj: make([][]int32, n),
	}
	// Shadowing is cached per pair only for the pairs that matter.
	base := 0
	for gi, g := range sc.Groups {
		for k := 0; k < g.Count; k++ {
			t.radio[base+k] = !g.NoRadio
			t.group[base+k] = gi
		}
		if err := t.place(sc, rm, sd, gi, base); err != nil {
			return nil, err
		}
		base += g.Count
	}
	// Link budgets between every pair of radio nodes.
	for i := 0; i < n; i++ {
		if !t.radio[i] {
			continue
		}
		for j := i + 1; j < n; j++ {
			if !t.radio[j] {
				continue
			}
			rssi := t.meanRSSI(rm, sd, i, j)
			if rssi < rm.interfFloor {
				continue
			}
			mw := float32(dBmToMW(rssi))
			t.nbrs[i] = append(t.nbrs[i], nbr{j: int32(j), rssi: float32(rssi), mw: mw})
			t.nbrs[j] = append(t.nbrs[j], nbr{j: int32(i), rssi: float32(rssi), mw: mw})
			if rm.ideal(rssi) {
				t.idealAdj[i] = append(t.idealAdj[i], int32(j))
				t.idealAdj[j] = append(t.idealAdj[j], int32(i))
			}
		}
	}
	return t, nil
}

func (t *topology) meanRSSI(rm *radioModel, sd seeds, i, j int) float64 {
	dx, dy := t.pos[i][0]-t.pos[j][0], t.pos[i][1]-t.pos[j][1]
	d := math.Hypot(dx, dy)
	return rm.txPower - rm.pathLoss(d) - sd.shadowing(i, j, rm.shadowSigma)
}

// place positions group gi (nodes base..base+count-1).
func (t *topology) place(sc *Scenario, rm *radioModel, sd seeds, gi, base int) error {
	g := sc.Groups[gi]
	L := g.Layout
	switch L.Kind {
	case "positions":
		for k, p := range L.Positions {
			t.pos[base+k] = p
		}
		return nil
	case "line":
		for k := 0; k < g.Count; k++ {
			t.pos[base+k] = [2]float64{L.X + float64(k)*L.Spacing, L.Y}
		}
		return nil
	case "grid":
		cols := int(math.Ceil(math.Sqrt(float64(g.Count))))
		if L.Width > 0 {
			cols = int(L.Width/L.Spacing) + 1
		}
		for k := 0; k < g.Count; k++ {
			t.pos[base+k] = [2]float64{L.X + float64(k%cols)*L.Spacing, L.Y + float64(k/cols)*L.Spacing}
		}
		return nil
	}
	// random
	connected := L.Connected == nil || *L.Connected
	rng := sd.stream("layout", gi)
	for attempt := 0; attempt < 1000; attempt++ {
		for k := 0; k < g.Count; k++ {
			t.pos[base+k] = [2]float64{L.X + rng.Float64()*L.Width, L.Y + rng.Float64()*L.Height}
		}
		if !connected || g.NoRadio || t.groupConnected(rm, sd, base, g.Count) {
			return nil
		}
	}
	return fmt.Errorf("%w: group %d (%s): no connected layout of %d nodes in %.0fx%.0f m after 1000 draws: make the area smaller",
		ErrScenario, gi, g.Name, g.Count, L.Width, L.Height)
}

// groupConnected reports whether nodes base..base+n-1 form one component of
// the ideal radio graph.
func (t *topology) groupConnected(rm *radioModel, sd seeds, base, n int) bool {
	seen := make([]bool, n)
	stack := []int{0}
	seen[0] = true
	count := 1
	for len(stack) > 0 {
		a := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for b := 0; b < n; b++ {
			if seen[b] {
				continue
			}
			if rm.ideal(t.meanRSSI(rm, sd, base+a, base+b)) {
				seen[b] = true
				count++
				stack = append(stack, b)
			}
		}
	}
	return count == n
}

// graphStats summarises the ideal radio graph: mean degree and diameter in
// hops (over radio edges only, largest finite distance).
func (t *topology) graphStats() (meanDegree float64, diameter int) {
	meanDegree, diameter, _ = t.graphHist()
	return meanDegree, diameter
}

// graphHist is graphStats plus the number of ordered pairs of radio nodes at
// each hop distance (index 0: not connected by radio).
func (t *topology) graphHist() (meanDegree float64, diameter int, hist []int) {
	hist = []int{0}
	n := len(t.pos)
	radios := 0
	deg := 0
	dist := make([]int32, n)
	queue := make([]int32, 0, n)
	for s := 0; s < n; s++ {
		if !t.radio[s] {
			continue
		}
		radios++
		deg += len(t.idealAdj[s])
		for i := range dist {
			dist[i] = -1
		}
		dist[s] = 0
		queue = append(queue[:0], int32(s))
		for h := 0; h < len(queue); h++ {
			a := queue[h]
			for _, b := range t.idealAdj[a] {
				if dist[b] < 0 {
					dist[b] = dist[a] + 1
					if int(dist[b]) > diameter {
						diameter = int(dist[b])
					}
					for len(hist) <= int(dist[b]) {
						hist = append(hist, 0)
					}
					hist[dist[b]]++
					queue = append(queue, b)
				}
			}
		}
		for j := range dist {
			if j != s && t.radio[j] && dist[j] < 0 {
				hist[0]++
			}
		}
	}
	if radios > 0 {
		meanDegree = float64(deg) / float64(radios)
	}
	return meanDegree, diameter, hist
}

// TopologyInfo summarises a scenario's radio graph without running it.
type TopologyInfo struct {
	Nodes      int     `json:"nodes"`
	RangeM     float64 `json:"range_m"`
	IdealRange float64 `json:"ideal_range_m"`
	MeanDegree float64 `json:"mean_degree"`
	Diameter   int     `json:"diameter_hops"`
	MeanNbrs   float64 `json:"mean_interferers"`
	// Hops[h] is the share of ordered pairs of radio nodes h radio hops
	// apart on the ideal graph (Hops[0]: not connected by radio).
	Hops []float64 `json:"hops"`
}

// DescribeTopology lays out a scenario for a seed and summarises its ideal
// radio graph (mean degree, diameter) and the mean number of nodes within
// interference range.
func DescribeTopology(sc *Scenario, seed uint64) (TopologyInfo, error) {
	rm, err := newRadioModel(sc.Radio)
	if err != nil {
		return TopologyInfo{}, err
	}
	t, err := buildTopology(sc, rm, seeds{seed: seed})
	if err != nil {
		return TopologyInfo{}, err
	}
	info := TopologyInfo{Nodes: len(t.pos), RangeM: math.Round(rm.rangeM(0)), IdealRange: math.Round(rm.rangeM(rm.idealMargin))}
	var hist []int
	info.MeanDegree, info.Diameter, hist = t.graphHist()
	total := 0
	for _, c := range hist {
		total += c
	}
	for _, c := range hist {
		info.Hops = append(info.Hops, math.Round(float64(c)/float64(max(total, 1))*1e4)/1e4)
	}
	info.MeanDegree = math.Round(info.MeanDegree*100) / 100
	nb := 0
	for _, l := range t.nbrs {
		nb += len(l)
	}
	if len(t.nbrs) > 0 {
		info.MeanNbrs = math.Round(float64(nb)/float64(len(t.nbrs))*10) / 10
	}
	return info, nil
}
