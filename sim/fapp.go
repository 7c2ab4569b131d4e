package sim

// This file belongs to the FAPP engineer: it runs meshd's FAPP core
// (package fapp) beside the router core on simulated nodes, wired the way
// node/fapp.go wires it in the daemon (the core's verdict is the router's
// flood filter, port-2 anonymous messages and its own anon-replies go to
// the core, its answers to queries are carried out after the router's
// event, reservations wait for a route instead of a path request), and
// scripts the FAPP scenarios (sim/scenarios/fapp-*.json): therapists
// publish, patients search locally while the announces spread, patients
// that missed the announces search the network (one search at a time, so
// that its bytes on air are its own), and patients reserve, some pairs of
// them racing for one slot. RunFAPP returns the measurements;
// docs/fapp.md quotes them. FAPP is not in Protocols(): a run needs the
// script, not a traffic generator.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/fapp"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

// FAPPParams are a FAPP scenario's parameters ("protocols": {"fapp":
// {...}}). Times are from the start of the run unless they say "after
// publish".
type FAPPParams struct {
	// Therapists and Patients are drawn at random among the nodes; the
	// rest relay. LatePatients of the patients are away (their nodes off)
	// from the start until LateReturn after publish: they miss the
	// announces and search the network instead.
	Therapists   int `json:"therapists"`
	Patients     int `json:"patients"`
	LatePatients int `json:"late_patients"`
	// Each therapist offers SlotsMin..SlotsMax slots; Endorsed is the share
	// of therapists endorsed by the trust anchor every node believes.
	SlotsMin int     `json:"slots_min"`
	SlotsMax int     `json:"slots_max"`
	Endorsed float64 `json:"endorsed"`
	// PublishAt: the therapists set their profiles and slots and publish
	// (after the routers' warm-up), each at a random instant within
	// PublishSpread after it (0: all at once, the worst case).
	PublishAt     Duration `json:"publish_at"`
	PublishSpread Duration `json:"publish_spread"`
	// SearchAfter: the patients search locally this long after each
	// therapist published; the found ratio of that therapist's matching
	// slots is reported at each.
	SearchAfter []Duration `json:"search_after"`
	// LateReturn (after publish): the late patients' nodes come back,
	// restarted with empty caches.
	LateReturn Duration `json:"late_return"`
	// NetworkSearchAt (after publish): the first late patient searches the
	// network, the next one NetworkSearchEvery later, and so on.
	NetworkSearchAt    Duration `json:"network_search_at"`
	NetworkSearchEvery Duration `json:"network_search_every"`
	// ReserveAt (after publish): every patient reserves a slot it found;
	// RacePairs pairs of them reserve the same slot at the same time.
	ReserveAt Duration `json:"reserve_at"`
	RacePairs int      `json:"race_pairs"`
	// Proof-of-work difficulties (the stamps' CPU time is not simulated).
	QueryBits   int `json:"query_bits"`
	ReserveBits int `json:"reserve_bits"`
	// AutoConfirm: therapists confirm the first valid request at once.
	AutoConfirm bool `json:"auto_confirm"`
	// QueryLimit is the announces a network query asks each answering node
	// for (0: the core's default, 8).
	QueryLimit int `json:"query_limit,omitempty"`
	// AnswerSpread is the core's AnswerSpread (the daemon's default with a
	// LoRa radio: 20s). Negative: none.
	AnswerSpread Duration `json:"answer_spread,omitempty"`
	// Router: the router's parameters, as for the "router" protocol.
	Router RouterParams `json:"router"`
	// Expect bounds the result's metrics (FAPPResult.Metrics).
	Expect map[string]Bound `json:"expect,omitempty"`
}

func (p *FAPPParams) defaults() {
	if p.SlotsMin <= 0 {
		p.SlotsMin = 1
	}
	if p.SlotsMax < p.SlotsMin {
		p.SlotsMax = p.SlotsMin
	}
	if len(p.SearchAfter) == 0 {
		p.SearchAfter = []Duration{Duration(time.Minute), Duration(2 * time.Minute), Duration(5 * time.Minute), Duration(10 * time.Minute)}
	}
	if p.NetworkSearchEvery <= 0 {
		p.NetworkSearchEvery = Duration(3 * time.Minute)
	}
	if p.QueryBits <= 0 {
		p.QueryBits = 4
	}
	if p.ReserveBits <= 0 {
		p.ReserveBits = 4
	}
	if p.AnswerSpread == 0 {
		p.AnswerSpread = Duration(fappRadioAnswerSpread)
	}
}

// fappRadioAnswerSpread is node/fapp.go's AnswerSpread on a node with a
// LoRa radio.
const fappRadioAnswerSpread = 20 * time.Second

// FAPPSpread is the local-search found ratio some time after publishing:
// for every therapist and every patient present, the therapist's slots
// that match the patient's filter, looked for in the patient's cache that
// long after the therapist published.
type FAPPSpread struct {
	AfterS   float64 `json:"after_publish_s"`
	Searches int     `json:"searches"` // (patient, therapist) pairs with at least one matching slot
	Matching int     `json:"matching"` // matching slots, summed over them
	Found    int     `json:"found"`    // of those, found in the patients' caches
	Ratio    float64 `json:"ratio"`
}

// FAPPNetworkSearch is one network search from a late patient.
type FAPPNetworkSearch struct {
	Node     int     `json:"node"`
	AtS      float64 `json:"at_s"`
	Filter   string  `json:"filter"`
	Matching int     `json:"matching"`
	Found    int     `json:"found"`
	// Query: transmissions of the query envelope (origin and relays) and
	// their bytes; Replies: transmissions of its answers (anon-replies on
	// its token, every hop) and their bytes; Answering: nodes that
	// answered. Envelope bytes as handed to the links.
	QueryTx      int     `json:"query_tx"`
	QueryBytes   int     `json:"query_bytes"`
	ReplyTx      int     `json:"reply_tx"`
	ReplyBytes   int     `json:"reply_bytes"`
	Answering    int     `json:"answering_nodes"`
	RecordsSent  int     `json:"records_sent"`
	BytesOnAir   int     `json:"bytes_on_air"` // query + replies
	FirstAnswerS float64 `json:"first_answer_s"`
	// AirtimeS is all radio airtime of class other (FAPP envelopes with
	// the link layer's fragments, acknowledgements and retransmissions) in
	// the search's window; nothing else of class other is on air then
	// (BackgroundOtherS measures an idle window of the same length).
	AirtimeS float64 `json:"airtime_s"`
}

// FAPPReservations summarises the reservations.
type FAPPReservations struct {
	Attempted int `json:"attempted"` // reservations submitted (race included)
	Confirmed int `json:"confirmed"`
	Taken     int `json:"taken"`
	Declined  int `json:"declined"`
	Gone      int `json:"gone"`
	Pending   int `json:"pending"` // unanswered at the end of the run
	Expired   int `json:"expired"`
	// SuccessRatio: confirmed among the reservations that did not race.
	SuccessRatio float64 `json:"success_ratio"`
	LatencyP50S  float64 `json:"latency_p50_s"`
	LatencyP95S  float64 `json:"latency_p95_s"`
	// Races: pairs that reserved one slot at the same time; RaceOK: pairs
	// with exactly one confirmed and the other told it is taken;
	// RaceDouble: both confirmed (must never happen); the rest were not
	// both answered by the end of the run.
	Races      int `json:"races"`
	RaceOK     int `json:"race_ok"`
	RaceDouble int `json:"race_double_confirmed"`
	// Waited: attempts that waited for a route (no path request is sent
	// for a reservation).
	Waited    int `json:"waited_for_route"`
	AnonTx    int `json:"anon_tx"` // reservation envelope transmissions, every hop
	AnonBytes int `json:"anon_bytes"`
}

// FAPPResult is what a FAPP run measured.
type FAPPResult struct {
	Scenario     string `json:"scenario"`
	Seed         uint64 `json:"seed"`
	Nodes        int    `json:"nodes"`
	Therapists   int    `json:"therapists"`
	Patients     int    `json:"patients"`
	SlotsOffered int    `json:"slots_offered"`
	// Announces: the therapists' announce pages published and every
	// transmission of them (relays included), with their bytes.
	AnnouncePages int `json:"announce_pages"`
	AnnounceTx    int `json:"announce_tx"`
	AnnounceBytes int `json:"announce_bytes"`
	// Spread: local-search found ratios after publish.
	Spread []FAPPSpread `json:"spread"`
	// Network searches from late patients, one at a time.
	NetworkSearches          []FAPPNetworkSearch `json:"network_searches"`
	NetworkFoundRatio        float64             `json:"network_found_ratio"`
	BytesPerNetworkSearch    float64             `json:"bytes_per_network_search"`
	AirtimePerNetworkSearchS float64             `json:"airtime_per_network_search_s"`
	BackgroundOtherS         float64             `json:"background_other_airtime_s"`
	Reservations             FAPPReservations    `json:"reservations"`
	// Rejected counts refused inputs over all cores, by reason.
	Rejected map[string]uint64 `json:"rejected"`
	// Sim is the run's radio-level result (airtime by class, collisions,
	// duty cycle, speed); its message metrics are empty (no DM traffic).
	Sim *Result `json:"sim"`
	// Expect is the scenario's bounds (Check).
	Expect map[string]Bound `json:"expect,omitempty"`
}

// Metrics names the headline numbers for Expect bounds.
func (r *FAPPResult) Metrics() map[string]float64 {
	m := map[string]float64{
		"network_found_ratio":          r.NetworkFoundRatio,
		"bytes_per_network_search":     r.BytesPerNetworkSearch,
		"airtime_per_network_search_s": r.AirtimePerNetworkSearchS,
		"reservation_success_ratio":    r.Reservations.SuccessRatio,
		"reservations_confirmed":       float64(r.Reservations.Confirmed),
		"reservations_pending":         float64(r.Reservations.Pending),
		"race_double_confirmed":        float64(r.Reservations.RaceDouble),
		"race_unresolved":              float64(r.Reservations.Races - r.Reservations.RaceOK - r.Reservations.RaceDouble),
		"duty_cycle_violations":        0,
		"duty_cycle_audit_violations":  0,
		"reservation_latency_p95_s":    r.Reservations.LatencyP95S,
		"announce_bytes_per_therapist": 0,
		"forged_or_malformed_refusals": float64(r.Rejected["forged"] + r.Rejected["malformed"] + r.Rejected["endorsement"]),
	}
	if r.Therapists > 0 {
		m["announce_bytes_per_therapist"] = float64(r.AnnounceBytes) / float64(r.Therapists)
	}
	if r.Sim != nil {
		m["duty_cycle_violations"] = float64(r.Sim.DutyCycleViolations)
		m["duty_cycle_audit_violations"] = float64(r.Sim.Radio.DutyCycleAudit)
	}
	for _, sp := range r.Spread {
		m[fmt.Sprintf("found_ratio_%ds", int(sp.AfterS))] = sp.Ratio
	}
	return m
}

// Check returns the broken Expect bounds.
func (r *FAPPResult) Check() []string {
	expect := r.Expect
	vals := r.Metrics()
	keys := make([]string, 0, len(expect))
	for k := range expect {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var bad []string
	for _, k := range keys {
		b := expect[k]
		v, ok := vals[k]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("fapp: unknown metric %q in expect", k))
		case b.Min != nil && v < *b.Min:
			bad = append(bad, fmt.Sprintf("fapp: %s = %g, want >= %g", k, v, *b.Min))
		case b.Max != nil && v > *b.Max:
			bad = append(bad, fmt.Sprintf("fapp: %s = %g, want <= %g", k, v, *b.Max))
		}
	}
	return bad
}

// WriteTable prints the headline numbers.
func (r *FAPPResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\t%s (seed %d): %d nodes, %d therapists, %d patients, %d slots\n", r.Scenario, r.Seed, r.Nodes, r.Therapists, r.Patients, r.SlotsOffered)
	fmt.Fprintf(tw, "announces\t%d pages, %d transmissions, %d bytes (%.0f per therapist)\n", r.AnnouncePages, r.AnnounceTx, r.AnnounceBytes,
		float64(r.AnnounceBytes)/float64(max(1, r.Therapists)))
	for _, sp := range r.Spread {
		fmt.Fprintf(tw, "local search +%s\t%d/%d matching slots found (%.4f), %d patient-therapist pairs\n", time.Duration(sp.AfterS*float64(time.Second)), sp.Found, sp.Matching, sp.Ratio, sp.Searches)
	}
	fmt.Fprintf(tw, "network searches\t%d, found %.4f of matching; %.0f bytes and %.2f s of airtime per search (background %.2f s)\n",
		len(r.NetworkSearches), r.NetworkFoundRatio, r.BytesPerNetworkSearch, r.AirtimePerNetworkSearchS, r.BackgroundOtherS)
	for _, ns := range r.NetworkSearches {
		fmt.Fprintf(tw, "  node %d\t%s: %d/%d found; query %d tx %d B, replies %d tx %d B from %d nodes, first answer %.1f s, airtime %.2f s\n",
			ns.Node, ns.Filter, ns.Found, ns.Matching, ns.QueryTx, ns.QueryBytes, ns.ReplyTx, ns.ReplyBytes, ns.Answering, ns.FirstAnswerS, ns.AirtimeS)
	}
	rs := r.Reservations
	fmt.Fprintf(tw, "reservations\t%d: %d confirmed, %d taken, %d declined, %d gone, %d pending, %d expired; success %.4f; latency p50 %.1f s p95 %.1f s; %d waited for a route\n",
		rs.Attempted, rs.Confirmed, rs.Taken, rs.Declined, rs.Gone, rs.Pending, rs.Expired, rs.SuccessRatio, rs.LatencyP50S, rs.LatencyP95S, rs.Waited)
	fmt.Fprintf(tw, "races\t%d pairs: %d with exactly one confirmed and one taken, %d with both confirmed, %d not both answered by the end\n",
		rs.Races, rs.RaceOK, rs.RaceDouble, rs.Races-rs.RaceOK-rs.RaceDouble)
	if r.Sim != nil {
		fmt.Fprintf(tw, "radio\tairtime %.1f s (%v), duty-cycle violations %d, collisions %d; %.0f sim s per wall s\n", r.Sim.AirtimeTotal,
			r.Sim.AirtimeByClass, r.Sim.DutyCycleViolations, r.Sim.Radio.LostCollision, r.Sim.Perf.SimSecondsPerWallSecond)
	}
	return tw.Flush()
}

// ---- the harness ----

type fappRole uint8

const (
	roleRelay fappRole = iota
	roleTherapist
	rolePatient
	roleLatePatient
)

// fappHarness sees every node of a FAPP run.
type fappHarness struct {
	p      FAPPParams
	s      *Sim
	rng    *rand.Rand
	anchor *envelope.Identity
	roles  []fappRole
	nodes  []*fappNode
	states map[string][]byte // data dir → persisted core state (survives restarts)
	filter map[int]fapp.Filter

	// Accounting, by what the routers hand to their links.
	annTx, annBytes   int
	anonTx, anonBytes int
	byToken           map[envelope.Token]*FAPPNetworkSearch
	searchStart       map[envelope.Token]time.Time
	answering         map[envelope.Token]map[int]bool
	searchRes         map[int]map[fapp.SlotRef]bool // late patient → slots its network search found
	searchTok         map[int]envelope.Token
	waited            int

	spread      []FAPPSpread
	netSearches []*FAPPNetworkSearch
	background  float64

	// Reservations: node → request → record.
	res   map[int]map[fapp.RequestID]*resRec
	races [][2]resKey
	err   error
}

type resKey struct {
	node int
	id   fapp.RequestID
}

type resRec struct {
	sent    time.Time
	outcome fapp.Outcome
	at      time.Time
	race    bool
}

func (h *fappHarness) fail(err error) {
	if h.err == nil && err != nil {
		h.err = err
	}
}

// RunFAPP runs a FAPP scenario: the routers with a FAPP core each, and the
// script its "fapp" parameters describe.
func RunFAPP(sc *Scenario, o RunOptions) (*FAPPResult, error) {
	raw, ok := sc.Protocols["fapp"]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no \"fapp\" parameters", ErrScenario, sc.Name)
	}
	var p FAPPParams
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: fapp parameters: %v", ErrScenario, err)
	}
	p.defaults()
	n := sc.NodeCount()
	if p.Therapists+p.Patients > n || p.LatePatients > p.Patients || p.Therapists < 1 || p.Patients < 1 {
		return nil, fmt.Errorf("%w: fapp: %d therapists and %d patients (%d late) among %d nodes", ErrScenario, p.Therapists, p.Patients, p.LatePatients, n)
	}
	seed := sc.Seed
	if o.HasSeed {
		seed = o.Seed
	}
	sd := seeds{seed: seed}
	h := &fappHarness{p: p, rng: sd.stream("fapp-script", 0), states: map[string][]byte{}, filter: map[int]fapp.Filter{},
		byToken: map[envelope.Token]*FAPPNetworkSearch{}, searchStart: map[envelope.Token]time.Time{},
		answering: map[envelope.Token]map[int]bool{}, searchRes: map[int]map[fapp.SlotRef]bool{}, searchTok: map[int]envelope.Token{},
		res: map[int]map[fapp.RequestID]*resRec{}}
	var err error
	if h.anchor, err = envelope.IdentityFromSeed(sd.bytes32("fapp-anchor", 0)); err != nil {
		return nil, err
	}
	// Roles: a random permutation; the first therapists, then patients.
	h.roles = make([]fappRole, n)
	h.nodes = make([]*fappNode, n)
	perm := h.rng.Perm(n)
	for k, i := range perm {
		switch {
		case k < p.Therapists:
			h.roles[i] = roleTherapist
		case k < p.Therapists+p.Patients-p.LatePatients:
			h.roles[i] = rolePatient
		case k < p.Therapists+p.Patients:
			h.roles[i] = roleLatePatient
		}
	}
	s, err := newSim(sc, "fapp", h.factory(), o)
	if err != nil {
		return nil, err
	}
	defer s.cleanup()
	h.s = s
	h.script()
	wall := time.Now()
	if err := s.run(); err != nil {
		return nil, err
	}
	if h.err != nil {
		return nil, h.err
	}
	res := h.result(seed)
	res.Expect = p.Expect
	res.Sim = s.result()
	el := time.Since(wall)
	res.Sim.Perf.WallSeconds = el.Seconds()
	if el > 0 {
		res.Sim.Perf.SimSecondsPerWallSecond = float64(s.end) / 1e9 / el.Seconds()
	}
	return res, nil
}

// factory builds a router with a FAPP core per node, the router's flood
// filter being the core's verdict (as in the daemon).
func (h *fappHarness) factory() Factory {
	stores := map[string]*routing.MemStore{}
	return func(env Env) (Node, error) {
		p := h.p.Router
		n := &fappNode{h: h, idx: env.Index, env: env, links: map[routing.LinkID]LinkID{}}
		key := env.DataDir
		if key == "" {
			key = strconv.Itoa(env.Index)
		}
		ms := stores[key]
		if ms == nil {
			ms = routing.NewMemStore()
			stores[key] = ms
		}
		ms.Reopen()
		n.store = ms
		r, err := routing.New(routing.Options{
			Identity:         env.Identity,
			Rand:             env.Rand,
			Entropy:          &randReader{r: env.Rand},
			Store:            ms,
			AnnounceInterval: time.Duration(p.AnnounceInterval),
			AnnounceDelay:    time.Duration(p.AnnounceDelay),
			AnnounceShare:    p.AnnounceShare,
			RouteLifetime:    time.Duration(p.RouteLifetime),
			MessageTTL:       time.Duration(p.MessageTTL),
			RetryMin:         time.Duration(p.RetryMin),
			RetryMax:         time.Duration(p.RetryMax),
			MaxHops:          p.MaxHops,
			SuppressAfter:    p.SuppressAfter,
			SNRMargin:        p.SNRMargin,
			PathRequestEvery: time.Duration(p.PathRequestEvery),
			FloodFilter:      n.filter,
		}, env.Clock.Now())
		if err != nil {
			return nil, err
		}
		n.r = r
		o := fapp.Options{
			Entropy:      &randReader{r: env.Rand},
			Anchors:      []fapp.Anchor{{Name: "Kammer", Key: h.anchor.PublicKey()}},
			QueryBits:    h.p.QueryBits,
			ReserveBits:  h.p.ReserveBits,
			AutoConfirm:  h.p.AutoConfirm,
			AnswerSpread: max(0, time.Duration(h.p.AnswerSpread)),
		}
		if h.roles[env.Index] == roleTherapist {
			o.Identity = env.Identity
		}
		core, err := fapp.New(o, h.states[key])
		if err != nil {
			return nil, fmt.Errorf("fapp: node %d: %w", env.Index, err)
		}
		_ = core.Actions()
		n.core, n.stateKey = core, key
		h.nodes[env.Index] = n
		return n, nil
	}
}

// fappNode is a router node with the FAPP core on top.
type fappNode struct {
	h        *fappHarness
	idx      int
	env      Env
	r        *routing.Router
	store    routing.Store
	links    map[routing.LinkID]LinkID
	core     *fapp.Core
	stateKey string

	pending   []fapp.Action // from the flood filter, carried out after the router's event
	waiting   []*fapp.SendAnon
	waitCheck time.Time
	now       time.Time
}

func (n *fappNode) filter(now time.Time, link routing.LinkID, from transport.Addr, e *envelope.Envelope) routing.FloodVerdict {
	if e.Topic != fapp.Topic || (e.Kind != envelope.KindFlood && e.Kind != envelope.KindQuery) {
		return routing.FloodRelay
	}
	if e.Kind == envelope.KindQuery {
		n.core.SetNeighbours(fappNeighbours(n.r, now, link))
	}
	v, _ := n.core.OnFlood(now, fapp.Neighbour(string(link)+"|"+string(from)), e.Raw())
	n.pending = append(n.pending, n.core.Actions()...)
	switch v {
	case fapp.Relay:
		return routing.FloodRelay
	case fapp.Keep:
		return routing.FloodKeep
	}
	return routing.FloodDrop
}

// fappNeighbours counts the neighbours heard on link in the last hour (as
// node/fapp.go does).
func fappNeighbours(r *routing.Router, now time.Time, link routing.LinkID) int {
	k := 0
	for _, nb := range r.Neighbours() {
		if nb.Link == link && now.Sub(nb.LastHeard) < time.Hour {
			k++
		}
	}
	return k
}

func (n *fappNode) Start(now time.Time, out *Out) { n.flush(now, out) }

func (n *fappNode) LinkUp(now time.Time, l LinkID, info transport.Info, out *Out) {
	routerLinkUp(n.r, n.env, n.links, now, l, info)
	n.flush(now, out)
}

func (n *fappNode) LinkDown(now time.Time, l LinkID, out *Out) {
	n.r.LinkDown(now, linkName(l))
	n.flush(now, out)
}

func (n *fappNode) Receive(now time.Time, l LinkID, data []byte, m transport.Meta, out *Out) {
	n.r.Receive(now, linkName(l), append([]byte(nil), data...), m)
	n.flush(now, out)
}

// Overhear implements Overhearer, as the router adapter does: frames for
// other neighbours are the router's passive hop acknowledgements.
func (n *fappNode) Overhear(now time.Time, l LinkID, to transport.Addr, data []byte, m transport.Meta, out *Out) {
	n.r.Overhear(now, linkName(l), data, m)
	n.flush(now, out)
}

func (n *fappNode) Timer(now time.Time, out *Out) {
	n.r.Tick(now)
	if w := n.core.NextWake(); !w.IsZero() && !now.Before(w) {
		n.core.Tick(now)
	}
	if !n.waitCheck.IsZero() && !now.Before(n.waitCheck) {
		w := n.waiting
		n.waiting, n.waitCheck = nil, time.Time{}
		for _, a := range w {
			n.sendAnon(now, a, false)
		}
	}
	n.flush(now, out)
}

// AppSend: FAPP runs carry no direct messages.
func (n *fappNode) AppSend(now time.Time, m AppMessage, out *Out) {
	out.Event(Event{Kind: EventFailed, MsgID: m.ID, Detail: "fapp: no direct messages"})
}

func (n *fappNode) NextWake() time.Time {
	w := n.r.NextWake()
	at := func(t time.Time) {
		if !t.IsZero() && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	at(n.core.NextWake())
	at(n.waitCheck)
	if len(n.pending) > 0 {
		at(n.now)
	}
	return w
}

func (n *fappNode) Close() error {
	if st, err := n.core.MarshalState(); err == nil {
		n.h.states[n.stateKey] = st
	}
	return n.store.Close()
}

// apply carries out the core's actions: the state first (kept per data
// directory, as the daemon's bbolt), then the network and the app.
func (n *fappNode) apply(now time.Time) {
	acts := append(n.pending, n.core.Actions()...)
	n.pending = nil
	h := n.h
	for _, a := range acts {
		switch a := a.(type) {
		case *fapp.SaveState:
			st, err := n.core.MarshalState()
			if err != nil {
				h.fail(fmt.Errorf("fapp: node %d: %w", n.idx, err))
				return
			}
			h.states[n.stateKey] = st
		case *fapp.Originate:
			if err := n.r.Originate(now, a.Raw); err != nil {
				h.fail(fmt.Errorf("fapp: node %d originate: %w", n.idx, err))
			}
			if a.Kind == envelope.KindQuery {
				if e, err := envelope.Parse(a.Raw); err == nil {
					h.searchStart[e.Token] = now
				}
			}
		case *fapp.SendAnon:
			n.sendAnon(now, a, true)
		case *fapp.SendReply:
			if ans := h.answering[a.Token]; ans != nil {
				ans[n.idx] = true
			}
			_ = n.r.ReplyRaw(now, a.Raw)
		case *fapp.SearchUpdate:
			set := h.searchRes[n.idx]
			if set == nil {
				set = map[fapp.SlotRef]bool{}
				h.searchRes[n.idx] = set
			}
			for _, r := range a.New {
				set[r.Ref] = true
			}
			if tok, ok := h.searchTok[n.idx]; ok && len(a.New) > 0 {
				if ns := h.byToken[tok]; ns != nil && ns.FirstAnswerS == 0 {
					ns.FirstAnswerS = round6(now.Sub(h.searchStart[tok]).Seconds())
				}
			}
		case *fapp.ReservationUpdate:
			rec := h.res[n.idx][a.Reservation.ID]
			if rec != nil && rec.outcome == fapp.Pending && a.Reservation.Outcome != fapp.Pending {
				rec.outcome, rec.at = a.Reservation.Outcome, now
			}
		}
	}
}

// sendAnon: as the daemon, a reservation goes to the router only when it
// has a route to the therapist (else it would send a path request naming
// this node); otherwise it waits and is retried every 5 s.
func (n *fappNode) sendAnon(now time.Time, a *fapp.SendAnon, first bool) {
	if info, ok := n.r.Peer(a.To.Address()); !ok || !info.Reachable {
		if first {
			n.h.waited++
		}
		n.waiting = append(n.waiting, a)
		if n.waitCheck.IsZero() {
			n.waitCheck = now.Add(5 * time.Second)
		}
		return
	}
	if err := n.r.SendAnonRaw(now, a.To, a.Raw); err != nil {
		n.h.fail(fmt.Errorf("fapp: node %d reservation: %w", n.idx, err))
	}
}

// flush carries out the router's actions, feeding the core what is its
// own, until both are quiet.
func (n *fappNode) flush(now time.Time, out *Out) {
	n.now = now
	n.apply(now)
	for round := 0; round < 16; round++ {
		acts := n.r.Actions()
		if len(acts) == 0 {
			return
		}
		for _, a := range acts {
			switch a := a.(type) {
			case *routing.SendFrame:
				n.h.account(a.Data, a.To)
				cl, flow := frameLabel(a.Data)
				out.Send(Send{Link: n.links[a.Link], To: a.To, Priority: a.Priority, Class: cl, Flow: flow, Data: a.Data, NoAck: a.NoAck, MaxRounds: a.MaxRounds})
			case *routing.Deliver:
				if a.Anonymous {
					if a.Port == fapp.Port {
						_ = n.core.OnAnon(now, a.Payload, a.ReplyTo)
						n.apply(now)
					}
					continue
				}
				n.r.AppAck(now, a.ID)
			case *routing.FloodReceived:
				n.apply(now)
			case *routing.AnonReplyReceived:
				if n.core.OwnsToken(a.Token) {
					_ = n.core.OnAnonReply(now, a.Token, a.Data)
					n.apply(now)
				}
			}
		}
	}
}

// account counts FAPP envelopes handed to links.
func (h *fappHarness) account(raw []byte, to transport.Addr) {
	e, err := envelope.Parse(raw)
	if err != nil {
		return
	}
	switch {
	case e.Kind == envelope.KindFlood && e.Topic == fapp.Topic:
		h.annTx++
		h.annBytes += len(raw)
	case e.Kind == envelope.KindQuery && e.Topic == fapp.Topic:
		if ns := h.byToken[e.Token]; ns != nil {
			ns.QueryTx++
			ns.QueryBytes += len(raw)
		}
	case e.Kind == envelope.KindAnonReply:
		if ns := h.byToken[e.Token]; ns != nil {
			ns.ReplyTx++
			ns.ReplyBytes += len(raw)
		}
	case e.Kind == envelope.KindAnon:
		h.anonTx++
		h.anonBytes += len(raw)
	}
}

// call runs f on node i as one input of the simulation, then acts on its
// output (as Sim.callNode does for channel nodes).
func (h *fappHarness) call(i int, f func(now time.Time, n *fappNode)) {
	s := h.s
	sn := s.nodes[i]
	if !sn.online {
		return
	}
	s.prep()
	now := s.timeAt(s.now)
	fn := sn.node.(*fappNode)
	f(now, fn)
	fn.flush(now, &s.out)
	s.after(sn)
}

// ---- the script ----

var (
	fappRegions = []string{"803", "804", "805", "810", "811", "812"}
	fappLangs   = []string{"en", "tr", "ar", "ru", "pl"}
)

func (h *fappHarness) nodesWith(roles ...fappRole) []int {
	var out []int
	for i, r := range h.roles {
		if slices.Contains(roles, r) {
			out = append(out, i)
		}
	}
	return out
}

// profile draws a therapist's profile.
func (h *fappHarness) profile() fapp.Profile {
	r := h.rng
	p := fapp.Profile{
		Verfahren:     []fapp.Verfahren{fapp.Verhaltenstherapie, fapp.Verhaltenstherapie, fapp.TiefenpsychologischFundiert, fapp.Verhaltenstherapie | fapp.TiefenpsychologischFundiert, fapp.Analytisch | fapp.TiefenpsychologischFundiert, fapp.Systemisch}[r.IntN(6)],
		Altersgruppen: []fapp.Altersgruppe{fapp.Erwachsene, fapp.Erwachsene, fapp.Erwachsene, fapp.KinderJugendliche, fapp.Erwachsene | fapp.KinderJugendliche}[r.IntN(5)],
		Settings:      []fapp.Setting{fapp.Einzel, fapp.Einzel, fapp.Einzel | fapp.Gruppe}[r.IntN(3)],
		Kostentraeger: []fapp.Kostentraeger{fapp.GKV | fapp.PKV | fapp.Beihilfe, fapp.GKV | fapp.PKV, fapp.PKV | fapp.Selbstzahler | fapp.Beihilfe, fapp.GKV}[r.IntN(4)],
		Modalitaeten:  []fapp.Modalitaet{fapp.Praxis, fapp.Praxis | fapp.Video, fapp.Praxis | fapp.Video | fapp.Telefon}[r.IntN(3)],
		PLZ:           fappRegions[r.IntN(len(fappRegions))] + fmt.Sprintf("%02d", r.IntN(100)),
		Languages:     []string{"de"},
	}
	if r.IntN(3) == 0 {
		p.Languages = append(p.Languages, fappLangs[r.IntN(len(fappLangs))])
	}
	return p
}

// patientFilter draws what a patient searches for (a network search
// carries at most 3 PLZ digits; so does every filter here).
func (h *fappHarness) patientFilter() fapp.Filter {
	r := h.rng
	f := fapp.Filter{Limit: h.p.QueryLimit}
	switch r.IntN(4) {
	case 0: // any region
	case 1:
		f.PLZPrefix = "8"
	default:
		f.PLZPrefix = fappRegions[r.IntN(len(fappRegions))][:2+r.IntN(2)]
	}
	switch r.IntN(5) {
	case 0, 1:
		f.Verfahren = fapp.Verhaltenstherapie
	case 2:
		f.Verfahren = fapp.TiefenpsychologischFundiert
	}
	switch r.IntN(3) {
	case 0:
		f.Kostentraeger = fapp.GKV
	case 1:
		f.Kostentraeger = fapp.PKV
	}
	if r.IntN(4) == 0 {
		f.Altersgruppen = fapp.Erwachsene
	}
	return f
}

func describeFilter(f fapp.Filter) string {
	var parts []string
	if f.PLZPrefix != "" {
		parts = append(parts, "plz "+f.PLZPrefix)
	}
	if f.Verfahren != 0 {
		parts = append(parts, f.Verfahren.String())
	}
	if f.Kostentraeger != 0 {
		parts = append(parts, f.Kostentraeger.String())
	}
	if f.Altersgruppen != 0 {
		parts = append(parts, f.Altersgruppen.String())
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, " ")
}

// truth is the slots every therapist offers now that match f (from the
// therapists' own state: their caches hold their own announces).
func (h *fappHarness) truth(now time.Time, f fapp.Filter) map[fapp.SlotRef]bool {
	out := map[fapp.SlotRef]bool{}
	for _, i := range h.nodesWith(roleTherapist) {
		h.truthOf(i, now, f, out)
	}
	return out
}

// truthOf adds therapist i's offered slots matching f to out.
func (h *fappHarness) truthOf(i int, now time.Time, f fapp.Filter, out map[fapp.SlotRef]bool) {
	n := h.nodes[i]
	me := n.env.Identity.PublicKey()
	offered := map[fapp.SlotID]bool{}
	for _, s := range n.core.Slots() {
		if !s.Booked {
			offered[s.ID] = true
		}
	}
	rs, err := n.core.Search(now, f)
	if err != nil {
		h.fail(err)
		return
	}
	for _, r := range rs {
		if r.Ref.Therapist == me && offered[r.Ref.Slot] {
			out[r.Ref] = true
		}
	}
}

func (h *fappHarness) script() {
	p := h.p
	s := h.s
	pub := time.Duration(p.PublishAt)
	therapists := h.nodesWith(roleTherapist)
	patients := h.nodesWith(rolePatient)
	late := h.nodesWith(roleLatePatient)
	for _, i := range append(slices.Clone(patients), late...) {
		h.filter[i] = h.patientFilter()
	}
	// Late patients are away from the start.
	s.at(time.Millisecond, func() {
		for _, i := range late {
			s.setOnline(s.nodes[i], false, false)
		}
	})
	// Publish, each therapist at its own instant; the patients search
	// locally at fixed times after it.
	h.spread = make([]FAPPSpread, len(p.SearchAfter))
	for k, after := range p.SearchAfter {
		h.spread[k].AfterS = time.Duration(after).Seconds()
	}
	for k, i := range therapists {
		prof := h.profile()
		nslots := p.SlotsMin + h.rng.IntN(p.SlotsMax-p.SlotsMin+1)
		endorsed := float64(k) < p.Endorsed*float64(len(therapists))
		at := pub
		if p.PublishSpread > 0 {
			at += time.Duration(h.rng.Int64N(int64(p.PublishSpread)))
		}
		slotStarts := make([]time.Duration, nslots)
		slotTypes := make([]fapp.SlotType, nslots)
		for j := range slotStarts {
			slotStarts[j] = time.Duration(h.rng.IntN(30*24)) * time.Hour
			slotTypes[j] = fapp.SlotType(h.rng.IntN(4))
		}
		s.at(at, func() {
			h.call(i, func(now time.Time, n *fappNode) {
				me := n.env.Identity
				att, err := fapp.NewAttestation(&randReader{r: n.env.Rand}, []byte(fmt.Sprintf("Approbation Nr. %d", i)))
				if err != nil {
					h.fail(err)
					return
				}
				cr := fapp.Credentials{Attestation: att}
				if endorsed {
					e, err := fapp.Endorse(h.anchor, me.PublicKey(), att.Commit(me.PublicKey()), prof.Verfahren, prof.Altersgruppen, now.AddDate(1, 0, 0))
					if err != nil {
						h.fail(err)
						return
					}
					cr.Endorsements = []fapp.Endorsement{e}
				}
				if err := n.core.SetProfile(now, prof, cr); err != nil {
					h.fail(fmt.Errorf("fapp: therapist %d: %w", i, err))
					return
				}
				base := now.Truncate(time.Hour).Add(24 * time.Hour)
				for j := range slotStarts {
					sl := fapp.Slot{Type: slotTypes[j], Start: base.Add(slotStarts[j]), Duration: 50 * time.Minute}
					if _, err := n.core.AddSlot(now, sl); err != nil {
						h.fail(fmt.Errorf("fapp: therapist %d slot: %w", i, err))
						return
					}
				}
				if err := n.core.Publish(now); err != nil {
					h.fail(err)
				}
			})
		})
		for k, after := range p.SearchAfter {
			s.at(at+time.Duration(after), func() { h.sample(&h.spread[k], i, patients) })
		}
	}
	// The late patients come back (restarted: empty caches) and search the
	// network one at a time; an idle window of the same length first
	// measures the background of class "other".
	s.at(pub+time.Duration(p.LateReturn), func() {
		for _, i := range late {
			s.setOnline(s.nodes[i], true, true)
		}
	})
	every := time.Duration(p.NetworkSearchEvery)
	first := pub + time.Duration(p.NetworkSearchAt)
	var idle0 int64
	s.at(first-every, func() { idle0 = s.m.air(ClassOther) })
	s.at(first, func() { h.background = float64(s.m.air(ClassOther)-idle0) / 1e9 })
	for k, i := range late {
		at := first + time.Duration(k)*every
		var air0 int64
		s.at(at, func() {
			air0 = s.m.air(ClassOther)
			now := s.timeAt(s.now)
			f := h.filter[i]
			ns := &FAPPNetworkSearch{Node: i, AtS: round6(time.Duration(s.now).Seconds()), Filter: describeFilter(f), Matching: len(h.truth(now, f))}
			h.call(i, func(now time.Time, n *fappNode) {
				d, err := n.core.PrepareSearch(now, f)
				if err != nil {
					h.fail(err)
					return
				}
				if err := d.Solve(context.Background()); err != nil {
					h.fail(err)
					return
				}
				// The token is in the query the core originates: learn it
				// before the router sends anything.
				if _, _, err := n.core.StartSearch(now, d); err != nil {
					h.fail(err)
					return
				}
				for _, a := range n.core.Actions() {
					if o, ok := a.(*fapp.Originate); ok && o.Kind == envelope.KindQuery {
						e, _ := envelope.Parse(o.Raw)
						h.byToken[e.Token] = ns
						h.answering[e.Token] = map[int]bool{}
						h.searchTok[i] = e.Token
					}
					n.pending = append(n.pending, a)
				}
			})
			h.netSearches = append(h.netSearches, ns)
		})
		s.at(at+every-time.Millisecond, func() {
			now := s.timeAt(s.now)
			tok := h.searchTok[i]
			ns := h.byToken[tok]
			if ns == nil {
				return
			}
			truth := h.truth(now, h.filter[i])
			ns.Matching = len(truth)
			for ref := range h.searchRes[i] {
				if truth[ref] {
					ns.Found++
				}
			}
			ns.Answering = len(h.answering[tok])
			ns.BytesOnAir = ns.QueryBytes + ns.ReplyBytes
			ns.AirtimeS = round6(float64(s.m.air(ClassOther)-air0) / 1e9)
		})
	}
	// Reservations.
	s.at(pub+time.Duration(p.ReserveAt), func() { h.reserve() })
}

// sample looks for therapist i's slots in the caches of the patients
// present, each with its own filter.
func (h *fappHarness) sample(sp *FAPPSpread, i int, patients []int) {
	s := h.s
	now := s.timeAt(s.now)
	for _, pt := range patients {
		truth := map[fapp.SlotRef]bool{}
		h.truthOf(i, now, h.filter[pt], truth)
		if len(truth) == 0 || !s.nodes[pt].online {
			continue
		}
		sp.Searches++
		sp.Matching += len(truth)
		h.call(pt, func(now time.Time, n *fappNode) {
			rs, err := n.core.Search(now, h.filter[pt])
			if err != nil {
				h.fail(err)
				return
			}
			for _, r := range rs {
				if truth[r.Ref] {
					sp.Found++
				}
			}
		})
	}
	if sp.Matching > 0 {
		sp.Ratio = round6(float64(sp.Found) / float64(sp.Matching))
	}
}

// reserve makes every patient reserve a slot it found (locally, or by its
// network search); RacePairs pairs reserve one slot at the same instant.
func (h *fappHarness) reserve() {
	s := h.s
	now := s.timeAt(s.now)
	everyone := append(h.nodesWith(rolePatient), h.nodesWith(roleLatePatient)...)
	sort.Ints(everyone)
	h.rng.Shuffle(len(everyone), func(a, b int) { everyone[a], everyone[b] = everyone[b], everyone[a] })
	cached := func(i int) []fapp.SlotRef {
		var out []fapp.SlotRef
		h.call(i, func(now time.Time, n *fappNode) {
			rs, _ := n.core.Search(now, h.filter[i])
			for _, r := range rs {
				out = append(out, r.Ref)
			}
		})
		return out
	}
	taken := map[fapp.SlotRef]bool{}
	truth := h.truth(now, fapp.Filter{})
	submit := func(i int, ref fapp.SlotRef, race bool) (fapp.RequestID, bool) {
		var id fapp.RequestID
		ok := false
		h.call(i, func(now time.Time, n *fappNode) {
			rid, err := n.core.Reserve(context.Background(), now, ref, fmt.Sprintf("Patient %d, 0151 %07d", i, i))
			if err != nil {
				return
			}
			id, ok = rid, true
			if h.res[i] == nil {
				h.res[i] = map[fapp.RequestID]*resRec{}
			}
			h.res[i][rid] = &resRec{sent: now, race: race}
		})
		return id, ok
	}
	k := 0
	// Races: two patients whose caches both hold a free slot.
	for pairs := 0; pairs < h.p.RacePairs && k+1 < len(everyone); k += 2 {
		a, b := everyone[k], everyone[k+1]
		inB := map[fapp.SlotRef]bool{}
		for _, r := range cached(b) {
			inB[r] = true
		}
		var pick *fapp.SlotRef
		for _, r := range cached(a) {
			if inB[r] && truth[r] && !taken[r] {
				pick = &r
				break
			}
		}
		if pick == nil {
			// Without a common filter match: any free slot both hold.
			ca, cb := h.cachedAll(a), h.cachedAll(b)
			for _, r := range ca {
				if slices.Contains(cb, r) && truth[r] && !taken[r] {
					pick = &r
					break
				}
			}
		}
		if pick == nil {
			continue
		}
		taken[*pick] = true
		ida, oka := submit(a, *pick, true)
		idb, okb := submit(b, *pick, true)
		if oka && okb {
			h.races = append(h.races, [2]resKey{{a, ida}, {b, idb}})
			pairs++
		}
	}
	for ; k < len(everyone); k++ {
		i := everyone[k]
		for _, r := range cached(i) {
			if truth[r] && !taken[r] {
				taken[r] = true
				submit(i, r, false)
				break
			}
		}
	}
}

// cachedAll is every free slot in node i's cache.
func (h *fappHarness) cachedAll(i int) []fapp.SlotRef {
	var out []fapp.SlotRef
	h.call(i, func(now time.Time, n *fappNode) {
		rs, _ := n.core.Search(now, fapp.Filter{})
		for _, r := range rs {
			out = append(out, r.Ref)
		}
	})
	return out
}

func (h *fappHarness) result(seed uint64) *FAPPResult {
	r := &FAPPResult{Scenario: h.s.sc.Name, Seed: seed, Nodes: len(h.nodes), Therapists: h.p.Therapists, Patients: h.p.Patients,
		AnnounceTx: h.annTx, AnnounceBytes: h.annBytes, Spread: h.spread, BackgroundOtherS: round6(h.background), Rejected: map[string]uint64{}}
	for _, i := range h.nodesWith(roleTherapist) {
		st := h.nodes[i].core.Stats()
		r.AnnouncePages += int(st.Published)
		r.SlotsOffered += len(h.nodes[i].core.Slots())
	}
	for _, n := range h.nodes {
		for k, v := range n.core.Stats().Rejected {
			r.Rejected[k] += v
		}
	}
	var found, matching, bytesSum int
	var air float64
	for _, ns := range h.netSearches {
		r.NetworkSearches = append(r.NetworkSearches, *ns)
		found += ns.Found
		matching += ns.Matching
		bytesSum += ns.BytesOnAir
		air += ns.AirtimeS
	}
	if matching > 0 {
		r.NetworkFoundRatio = round6(float64(found) / float64(matching))
	}
	if len(h.netSearches) > 0 {
		r.BytesPerNetworkSearch = round6(float64(bytesSum) / float64(len(h.netSearches)))
		r.AirtimePerNetworkSearchS = round6(air / float64(len(h.netSearches)))
	}
	rs := &r.Reservations
	var lat []float64
	plain, plainOK := 0, 0
	for _, m := range h.res {
		for _, rec := range m {
			rs.Attempted++
			switch rec.outcome {
			case fapp.Confirmed:
				rs.Confirmed++
			case fapp.Taken:
				rs.Taken++
			case fapp.Declined:
				rs.Declined++
			case fapp.Gone:
				rs.Gone++
			case fapp.Expired:
				rs.Expired++
			default:
				rs.Pending++
			}
			if rec.outcome != fapp.Pending {
				lat = append(lat, rec.at.Sub(rec.sent).Seconds())
			}
			if !rec.race {
				plain++
				if rec.outcome == fapp.Confirmed {
					plainOK++
				}
			}
		}
	}
	if plain > 0 {
		rs.SuccessRatio = round6(float64(plainOK) / float64(plain))
	}
	sort.Float64s(lat)
	rs.LatencyP50S, rs.LatencyP95S = round6(quantile(lat, 0.5)), round6(quantile(lat, 0.95))
	rs.Races = len(h.races)
	for _, pr := range h.races {
		a, b := h.res[pr[0].node][pr[0].id], h.res[pr[1].node][pr[1].id]
		switch {
		case a == nil || b == nil:
		case a.outcome == fapp.Confirmed && b.outcome == fapp.Confirmed:
			rs.RaceDouble++
		case a.outcome == fapp.Confirmed && b.outcome == fapp.Taken, a.outcome == fapp.Taken && b.outcome == fapp.Confirmed:
			rs.RaceOK++
		}
	}
	rs.Waited, rs.AnonTx, rs.AnonBytes = h.waited, h.anonTx, h.anonBytes
	return r
}
