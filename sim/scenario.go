package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrScenario is wrapped by every error about a malformed scenario.
var ErrScenario = errors.New("sim: bad scenario")

// Duration is a time.Duration that reads and writes as a Go duration string
// ("10m", "1h30m", "250ms") in JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if err2 := json.Unmarshal(b, &f); err2 != nil {
			return fmt.Errorf("%w: duration %s: want a string like \"10m\" or seconds", ErrScenario, b)
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%w: duration %q: %v", ErrScenario, s, err)
	}
	*d = Duration(v)
	return nil
}

// NodeRef names one node: its index (a JSON number) or "group:i", the i-th
// node of a named group (a JSON string).
type NodeRef struct {
	Index int
	Group string
	InGrp int
	named bool
}

// UnmarshalJSON reads a number or a "group:i" string.
func (r *NodeRef) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*r = NodeRef{Index: n}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: node reference %s: want an index or \"group:i\"", ErrScenario, b)
	}
	g, i, ok := strings.Cut(s, ":")
	k, err := strconv.Atoi(i)
	if !ok || err != nil || g == "" {
		return fmt.Errorf("%w: node reference %q: want \"group:i\"", ErrScenario, s)
	}
	*r = NodeRef{Group: g, InGrp: k, named: true}
	return nil
}

// MarshalJSON writes the reference back as it was written.
func (r NodeRef) MarshalJSON() ([]byte, error) {
	if r.named {
		return json.Marshal(fmt.Sprintf("%s:%d", r.Group, r.InGrp))
	}
	return json.Marshal(r.Index)
}

// NodeSet names a set of nodes: "all", a group name, or a list of NodeRefs.
type NodeSet struct {
	All   bool
	Group string
	Refs  []NodeRef
	isSet bool
}

// UnmarshalJSON reads "all", a group name, or a list of references.
func (s *NodeSet) UnmarshalJSON(b []byte) error {
	s.isSet = true
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		if str == "all" {
			s.All = true
		} else {
			s.Group = str
		}
		return nil
	}
	if err := json.Unmarshal(b, &s.Refs); err != nil {
		return fmt.Errorf("%w: node set %s: want \"all\", a group name or a list of nodes", ErrScenario, b)
	}
	return nil
}

// MarshalJSON writes the set back.
func (s NodeSet) MarshalJSON() ([]byte, error) {
	switch {
	case s.All || !s.isSet:
		return json.Marshal("all")
	case s.Group != "":
		return json.Marshal(s.Group)
	}
	return json.Marshal(s.Refs)
}

// Scenario is one simulation setup, read from a JSON file in sim/scenarios.
// docs/meshsim.md documents every field with its default.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Seed of the run; the -seed flag overrides it.
	Seed uint64 `json:"seed"`
	// Warmup is simulated before traffic starts (announces settle).
	Warmup Duration `json:"warmup"`
	// Duration is the traffic window; -duration overrides it.
	Duration Duration `json:"duration"`
	// Drain is simulated after the traffic window so that messages sent
	// late can still arrive.
	Drain Duration `json:"drain"`

	Radio     RadioSpec                  `json:"radio"`
	Groups    []GroupSpec                `json:"groups"`
	IPLinks   []IPLinkSpec               `json:"ip_links,omitempty"`
	Traffic   []TrafficSpec              `json:"traffic,omitempty"`
	Events    []EventSpec                `json:"events,omitempty"`
	Churn     *ChurnSpec                 `json:"churn,omitempty"`
	Protocols map[string]json.RawMessage `json:"protocols,omitempty"`
	// Expect holds bounds per protocol, asserted by the tests in sim/ and
	// printed by meshsim: {"flood": {"delivery_ratio": {"min": 0.9}}}.
	Expect map[string]map[string]Bound `json:"expect,omitempty"`
}

// Bound is an inclusive range; a missing side is open.
type Bound struct {
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
}

// RadioSpec is the LoRa medium. Zero fields take the defaults in
// docs/meshsim.md.
type RadioSpec struct {
	Region       string  `json:"region"`        // "EU868"
	FrequencyMHz float64 `json:"frequency_mhz"` // 869.525 (EU868 g3, 10%)
	SF           int     `json:"sf"`            // 7
	BandwidthKHz float64 `json:"bandwidth_khz"` // 125
	CodingRate   int     `json:"coding_rate"`   // 5 (4/5)
	Preamble     int     `json:"preamble"`      // 8
	TxPowerDBm   float64 `json:"tx_power_dbm"`  // 14
	// AntennaGainDB is added once per end (transmit and receive).
	AntennaGainDB float64 `json:"antenna_gain_db"`
	// SensitivityDBm overrides the SX1276 datasheet value for SF/BW.
	SensitivityDBm float64 `json:"sensitivity_dbm,omitempty"`
	NoiseFigureDB  float64 `json:"noise_figure_db"` // 6
	PathLoss       struct {
		D0M      float64 `json:"d0_m"`         // 1000
		PL0DB    float64 `json:"pl0_db"`       // 128.95
		Exponent float64 `json:"exponent"`     // 2.32
		ShadowDB float64 `json:"shadowing_db"` // 7.8 (per link, fixed for the run)
		FadingDB float64 `json:"fading_db"`    // 1 (per frame)
		NoShadow bool    `json:"no_shadowing,omitempty"`
		NoFading bool    `json:"no_fading,omitempty"`
	} `json:"path_loss"`
	// FrameLoss is the probability that a frame that survived the channel
	// is lost anyway (interference from outside the mesh, CRC errors).
	FrameLoss float64 `json:"frame_loss"`
	// CaptureDB: a frame survives overlapping ones if it is this much
	// stronger than their summed power. Default 6.
	CaptureDB float64 `json:"capture_db"`
	// NoCSMA disables listen-before-talk.
	NoCSMA bool `json:"no_csma,omitempty"`
	// HeaderBytes is what the radio firmware adds to every frame on air,
	// counted in its airtime. Default 1 (RNode).
	HeaderBytes *int `json:"header_bytes,omitempty"`
	// MTU is the largest frame a protocol with its own link layer (the
	// baseline) may send. Default 255 minus HeaderBytes. Protocols on
	// meshd's LoRa link layer get its MTU (it fragments).
	MTU int `json:"mtu,omitempty"`
	// Overhear hands unicast frames addressed to other neighbours to nodes
	// that implement Overhearer on a raw link layer (a protocol that brings
	// its own, RawRadio): off by default. On meshd's LoRa link layer the
	// link reports them itself, as the LoRa transport does when the node
	// turns overhearing on (transport.Overhearer): see NoOverhear.
	Overhear bool `json:"overhear,omitempty"`
	// NoOverhear keeps meshd's LoRa link layer from reporting overheard
	// messages even to nodes that implement Overhearer: the link as a
	// handler that never turns transport.Overhearer on sees it (the router
	// then relies on the link's SACKs). Default false.
	NoOverhear bool `json:"no_overhear,omitempty"`
	// TxLatency is the time from a node's Send to the radio starting to
	// consider it (serial link, firmware). Default 10ms.
	TxLatency *Duration `json:"tx_latency,omitempty"`
	// MaxQueueDelay (raw link layer only): a frame the duty-cycle budget
	// cannot carry within this long after it was queued is refused and
	// counted as a duty-cycle violation. Default 2m.
	MaxQueueDelay Duration `json:"max_queue_delay,omitempty"`
	// MaxQueue is the raw link layer's queue bound in frames. Default 64.
	MaxQueue int `json:"max_queue,omitempty"`
	// IdealMarginDB: links whose mean SNR margin is at least this are
	// edges of the graph the ideal path and connectivity use. Default 3.
	IdealMarginDB *float64 `json:"ideal_margin_db,omitempty"`
	// DutyCycle overrides the sub-band's limit (0 keeps the region's).
	DutyCycle float64 `json:"duty_cycle,omitempty"`
	// BudgetBuckets is the dutycycle.Budget's slice count. Default 60.
	BudgetBuckets int `json:"budget_buckets,omitempty"`
	// Audit checks every node's transmissions against the legal limit with
	// dutycycle.Audit (exact, O(n) per frame: small scenarios only).
	Audit bool `json:"audit,omitempty"`
}

// GroupSpec is a set of nodes placed together.
type GroupSpec struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	// NoRadio: the nodes have no LoRa radio (IP only).
	NoRadio bool `json:"no_radio,omitempty"`
	// Layout places the nodes.
	Layout LayoutSpec `json:"layout"`
}

// LayoutSpec places a group's nodes.
type LayoutSpec struct {
	// Kind: "random" (uniform in the rectangle), "grid", "line" or
	// "positions" (explicit).
	Kind string `json:"kind"`
	// X, Y: the rectangle's lower-left corner in metres.
	X float64 `json:"x_m"`
	Y float64 `json:"y_m"`
	// Width, Height of the rectangle in metres (random, grid); Spacing for
	// line and grid.
	Width   float64 `json:"width_m"`
	Height  float64 `json:"height_m"`
	Spacing float64 `json:"spacing_m"`
	// Connected: redraw a random layout until the group's radio graph
	// (ideal edges) is connected. Default true for random.
	Connected *bool `json:"connected,omitempty"`
	// Positions for kind "positions", [x, y] in metres.
	Positions [][2]float64 `json:"positions,omitempty"`
}

// IPLinkSpec is a point-to-point IP link (a TCP connection).
type IPLinkSpec struct {
	A NodeRef `json:"a"`
	B NodeRef `json:"b"`
	// Latency one way. Default 20ms.
	Latency Duration `json:"latency"`
	// BandwidthBps in bits per second. Default 10 Mbit/s.
	BandwidthBps float64 `json:"bandwidth_bps"`
	// Loss probability per frame (TCP hides loss: default 0).
	Loss float64 `json:"loss,omitempty"`
	// MaxQueueDelay: frames that would wait longer are dropped. Default 10s.
	MaxQueueDelay Duration `json:"max_queue_delay,omitempty"`
}

// TrafficSpec generates application messages.
type TrafficSpec struct {
	// Kind: "random" (each From node sends to a random To node) or "pairs"
	// (each pair [a, b]: a sends to b).
	Kind  string       `json:"kind"`
	From  NodeSet      `json:"from"`
	To    NodeSet      `json:"to"`
	Pairs [][2]NodeRef `json:"pairs,omitempty"`
	// Interval between two messages of one sender.
	Interval Duration `json:"interval"`
	// Poisson draws exponential gaps with mean Interval instead of a fixed
	// period with a random phase.
	Poisson bool `json:"poisson,omitempty"`
	// Size of each payload in bytes (at least 8: the simulator's message id
	// leads every payload). Default 50.
	Size int `json:"size"`
	// Start and Stop bound the source, relative to the end of the warm-up;
	// zero Stop means the end of the traffic window.
	Start Duration `json:"start,omitempty"`
	Stop  Duration `json:"stop,omitempty"`
	// ReplyProb is the probability that a recipient answers a message on
	// its first delivery, after ReplyDelay, with ReplySize bytes.
	ReplyProb  float64  `json:"reply_prob,omitempty"`
	ReplyDelay Duration `json:"reply_delay,omitempty"`
	ReplySize  int      `json:"reply_size,omitempty"`
}

// EventSpec is a scripted change at an instant (relative to the run's
// start, warm-up included).
type EventSpec struct {
	At Duration `json:"at"`
	// Kind: "offline" (Nodes leave for For, then return), "partition"
	// (Sides, or SplitXM), "heal", "link_down"/"link_up" (IP link index).
	Kind  string    `json:"kind"`
	Nodes NodeSet   `json:"nodes,omitempty"`
	For   Duration  `json:"for,omitempty"`
	Sides []NodeSet `json:"sides,omitempty"`
	// SplitXM partitions by position: nodes with x below it on one side.
	SplitXM float64 `json:"split_x_m,omitempty"`
	Link    int     `json:"link,omitempty"`
	// Restart: an offline node reboots when it returns (its protocol core
	// is rebuilt from its identity and data directory) instead of resuming.
	Restart bool `json:"restart,omitempty"`
}

// ChurnSpec makes nodes leave and return at random.
type ChurnSpec struct {
	Nodes NodeSet `json:"nodes"`
	// Fraction of Nodes that churn (the others stay up). Default 0.1.
	Fraction float64 `json:"fraction"`
	// MeanUp and MeanDown are the means of exponential up and down times.
	MeanUp   Duration `json:"mean_up"`
	MeanDown Duration `json:"mean_down"`
	// Restart: returning nodes reboot (see EventSpec.Restart).
	Restart bool `json:"restart,omitempty"`
}

// MaxScenarioSize bounds a scenario file.
const MaxScenarioSize = 16 << 20

// LoadScenario reads and validates a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxScenarioSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxScenarioSize {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrScenario, MaxScenarioSize)
	}
	sc, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

// ParseScenario decodes and validates a scenario. Unknown fields are errors,
// so a typo never silently falls back to a default.
func ParseScenario(b []byte) (*Scenario, error) {
	if len(b) > MaxScenarioSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrScenario, MaxScenarioSize)
	}
	var sc Scenario
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&sc); err != nil {
		if errors.Is(err, ErrScenario) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrScenario, err)
	}
	if err := sc.validate(); err != nil {
		return nil, err
	}
	return &sc, nil
}

func (sc *Scenario) validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrScenario}, a...)...) }
	if sc.Duration <= 0 {
		return bad("duration must be positive")
	}
	if sc.Warmup < 0 || sc.Drain < 0 {
		return bad("negative warmup or drain")
	}
	if len(sc.Groups) == 0 {
		return bad("no groups of nodes")
	}
	names := map[string]bool{}
	total := 0
	for i, g := range sc.Groups {
		if g.Count <= 0 || g.Count > 100000 {
			return bad("group %d: count %d", i, g.Count)
		}
		if g.Name != "" {
			if names[g.Name] || g.Name == "all" {
				return bad("group name %q repeated or reserved", g.Name)
			}
			names[g.Name] = true
		}
		switch g.Layout.Kind {
		case "random", "grid":
			if g.Layout.Kind == "random" && (g.Layout.Width <= 0 || g.Layout.Height <= 0) {
				return bad("group %d: random layout needs width_m and height_m", i)
			}
			if g.Layout.Kind == "grid" && g.Layout.Spacing <= 0 {
				return bad("group %d: grid layout needs spacing_m", i)
			}
		case "line":
			if g.Layout.Spacing <= 0 {
				return bad("group %d: line layout needs spacing_m", i)
			}
		case "positions":
			if len(g.Layout.Positions) != g.Count {
				return bad("group %d: %d positions for %d nodes", i, len(g.Layout.Positions), g.Count)
			}
		default:
			return bad("group %d: unknown layout kind %q", i, g.Layout.Kind)
		}
		total += g.Count
	}
	if total > 100000 {
		return bad("%d nodes is too many", total)
	}
	r := sc.Radio
	if r.FrameLoss < 0 || r.FrameLoss >= 1 {
		return bad("radio.frame_loss %v not in [0,1)", r.FrameLoss)
	}
	if r.DutyCycle < 0 || r.DutyCycle > 1 {
		return bad("radio.duty_cycle %v not in [0,1]", r.DutyCycle)
	}
	for i, l := range sc.IPLinks {
		if l.Loss < 0 || l.Loss >= 1 || l.BandwidthBps < 0 || l.Latency < 0 {
			return bad("ip_links[%d]: bad loss, bandwidth or latency", i)
		}
	}
	for i, t := range sc.Traffic {
		switch t.Kind {
		case "random":
		case "pairs":
			if len(t.Pairs) == 0 {
				return bad("traffic[%d]: pairs without pairs", i)
			}
		default:
			return bad("traffic[%d]: unknown kind %q", i, t.Kind)
		}
		if t.Interval <= 0 {
			return bad("traffic[%d]: interval must be positive", i)
		}
		if t.Size != 0 && (t.Size < msgIDSize || t.Size > 60000) {
			return bad("traffic[%d]: size %d not in %d..60000", i, t.Size, msgIDSize)
		}
		if t.ReplySize != 0 && (t.ReplySize < msgIDSize || t.ReplySize > 60000) {
			return bad("traffic[%d]: reply_size %d not in %d..60000", i, t.ReplySize, msgIDSize)
		}
		if t.ReplyProb < 0 || t.ReplyProb > 1 {
			return bad("traffic[%d]: reply_prob not in [0,1]", i)
		}
	}
	for i, e := range sc.Events {
		switch e.Kind {
		case "offline":
			if e.For <= 0 {
				return bad("events[%d]: offline needs a positive \"for\"", i)
			}
		case "partition":
			if len(e.Sides) < 2 && e.SplitXM == 0 {
				return bad("events[%d]: partition needs two or more sides or split_x_m", i)
			}
		case "heal":
		case "link_down", "link_up":
			if e.Link < 0 || e.Link >= len(sc.IPLinks) {
				return bad("events[%d]: no ip_links[%d]", i, e.Link)
			}
		default:
			return bad("events[%d]: unknown kind %q", i, e.Kind)
		}
	}
	if c := sc.Churn; c != nil {
		if c.Fraction < 0 || c.Fraction > 1 || c.MeanUp <= 0 || c.MeanDown <= 0 {
			return bad("churn: fraction in [0,1] and positive mean_up, mean_down required")
		}
	}
	return nil
}

// End returns the length of the whole run: warm-up, traffic and drain.
func (sc *Scenario) End() time.Duration {
	return sc.Warmup.D() + sc.Duration.D() + sc.Drain.D()
}

// NodeCount returns the number of nodes.
func (sc *Scenario) NodeCount() int {
	n := 0
	for _, g := range sc.Groups {
		n += g.Count
	}
	return n
}

// resolve turns a NodeRef into an index.
func (sc *Scenario) resolve(r NodeRef) (int, error) {
	if !r.named {
		if r.Index < 0 || r.Index >= sc.NodeCount() {
			return 0, fmt.Errorf("%w: node %d out of range", ErrScenario, r.Index)
		}
		return r.Index, nil
	}
	base := 0
	for _, g := range sc.Groups {
		if g.Name == r.Group {
			if r.InGrp < 0 || r.InGrp >= g.Count {
				return 0, fmt.Errorf("%w: node %s:%d out of range", ErrScenario, r.Group, r.InGrp)
			}
			return base + r.InGrp, nil
		}
		base += g.Count
	}
	return 0, fmt.Errorf("%w: no group %q", ErrScenario, r.Group)
}

// members turns a NodeSet into sorted indices. An unset set is "all".
func (sc *Scenario) members(s NodeSet) ([]int, error) {
	n := sc.NodeCount()
	if s.All || !s.isSet {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	if s.Group != "" {
		base := 0
		for _, g := range sc.Groups {
			if g.Name == s.Group {
				out := make([]int, g.Count)
				for i := range out {
					out[i] = base + i
				}
				return out, nil
			}
			base += g.Count
		}
		return nil, fmt.Errorf("%w: no group %q", ErrScenario, s.Group)
	}
	seen := map[int]bool{}
	out := make([]int, 0, len(s.Refs))
	for _, r := range s.Refs {
		i, err := sc.resolve(r)
		if err != nil {
			return nil, err
		}
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out, nil
}
