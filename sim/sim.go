package sim

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/lora/core"
)

// RunOptions adjust one run of a scenario.
type RunOptions struct {
	// Seed overrides the scenario's seed when HasSeed is set.
	Seed    uint64
	HasSeed bool
	// Duration overrides the scenario's traffic window when positive.
	Duration time.Duration
	// Interval, when positive, overrides the interval of every traffic
	// source: the same scenario under another load.
	Interval time.Duration
	// FreeAnnounces is a what-if: announces cost no airtime and reach
	// every neighbour in range at once, without collisions, fading or
	// loss, so that a run shows what announce traffic costs the rest
	// (Result.AirtimeByClass["announce"] is then 0).
	FreeAnnounces bool
	// FreeAnnouncesAfter, when positive, is the same what-if from that
	// time of the run on (warm-up included; a frame is judged when it
	// starts): announces before it cost as usual, so a run shows what
	// the rest would deliver if every repair and refresh after the boot
	// flood cost nothing. Zero: announces cost airtime throughout (unless
	// FreeAnnounces).
	FreeAnnouncesAfter time.Duration
	// DataDir is where nodes keep their stores (one sub-directory each).
	// Empty: a temporary directory, removed at the end of the run.
	DataDir string
	// Trace, when set, receives one line per status event and delivery.
	Trace io.Writer
	// MaxEvents aborts a run that processes more events (0: no limit).
	MaxEvents uint64
	// Progress, when set, receives a line every million events: simulated
	// time reached, events, messages so far.
	Progress io.Writer
	// MeasureMemory reports the heap the run holds per node at its end
	// (Result.Perf.HeapBytesPerNode), forcing two garbage collections. Only
	// meaningful when nothing else runs in the process meanwhile.
	MeasureMemory bool
}

// simNode is one node as the simulator holds it.
type simNode struct {
	idx    int
	id     *envelope.Identity
	addr   envelope.Address
	hint   transport.Addr
	node   Node
	env    Env
	radio  *radioNode
	links  []linkRef
	online bool
	raw    bool // the protocol brings its own LoRa link layer
	// overhear: the node is shown frames addressed to other neighbours.
	overhear bool
	boots    int // restarts so far
	side     int

	wakeAt  int64 // scheduled wake-up, -1 when none
	wakeGen uint64
	spins   int   // consecutive wake-ups at one instant
	spinAt  int64 // that instant
}

// linkRef says what a node's LinkID is.
type linkRef struct {
	radio bool
	ip    *ipLink
}

// Sim is one run in progress. It is not safe for concurrent use; runs are
// independent, so many can proceed in parallel.
type Sim struct {
	sc      *Scenario
	proto   string
	factory Factory
	sd      seeds
	opt     RunOptions

	rm    *radioModel
	topo  *topology
	nodes []*simNode
	ip    []*ipLink

	q     eventQueue
	now   int64
	end   int64
	epoch time.Time
	clk   *clock.Manual

	out       Out
	rxbuf     []byte
	rxScratch []rxOK

	rngLoss   *rand.Rand
	rngFading *rand.Rand
	fade      *fadeTable

	traffic []*trafficSource
	scripts []EventSpec
	churn   *churnState

	byHint  map[transport.Addr]*simNode
	coreMTU int

	msgs    []*msgRec
	flows   map[uint64]int32
	topoGen uint64
	ideal   idealCache

	m        counters
	dataDir  string
	ownDir   bool
	events   uint64
	err      error
	trace    io.Writer
	startMem uint64
}

// Run simulates a scenario with the protocol built by f and returns the
// metrics. name labels the protocol in the result.
func Run(sc *Scenario, name string, f Factory, o RunOptions) (*Result, error) {
	s, err := newSim(sc, name, f, o)
	if err != nil {
		return nil, err
	}
	defer s.cleanup()
	wall := time.Now()
	if err := s.run(); err != nil {
		return nil, err
	}
	res := s.result()
	el := time.Since(wall)
	res.Perf.WallSeconds = el.Seconds()
	if el > 0 {
		res.Perf.SimSecondsPerWallSecond = float64(s.end) / 1e9 / el.Seconds()
	}
	return res, nil
}

func newSim(sc *Scenario, name string, f Factory, o RunOptions) (*Sim, error) {
	if f == nil {
		return nil, errors.New("sim: nil protocol factory")
	}
	if o.Duration > 0 || o.Interval > 0 {
		c := *sc
		if o.Duration > 0 {
			c.Duration = Duration(o.Duration)
		}
		if o.Interval > 0 {
			c.Traffic = slices.Clone(c.Traffic)
			for i := range c.Traffic {
				c.Traffic[i].Interval = Duration(o.Interval)
			}
		}
		sc = &c
	}
	seed := sc.Seed
	if o.HasSeed {
		seed = o.Seed
	}
	var ms runtime.MemStats
	if o.MeasureMemory {
		runtime.GC()
		runtime.ReadMemStats(&ms)
	}
	s := &Sim{
		sc: sc, proto: name, factory: f, sd: seeds{seed: seed}, opt: o,
		epoch:    clock.Epoch(),
		flows:    make(map[uint64]int32),
		trace:    o.Trace,
		startMem: ms.HeapAlloc,
	}
	s.clk = clock.NewManual(s.epoch)
	s.end = int64(sc.End())
	s.rngLoss = s.sd.stream("frame-loss", 0)
	s.rngFading = s.sd.stream("fading", 0)
	var err error
	s.rm, err = newRadioModel(sc.Radio)
	if err != nil {
		return nil, err
	}
	s.fade = newFadeTable(s.sd.stream("fading-table", 0), s.rm.fadingSigma)
	s.topo, err = buildTopology(sc, s.rm, s.sd)
	if err != nil {
		return nil, err
	}
	if o.DataDir != "" {
		s.dataDir = o.DataDir
	} else {
		s.dataDir, err = os.MkdirTemp("", "meshsim-")
		if err != nil {
			return nil, err
		}
		s.ownDir = true
	}
	if err := s.buildNodes(); err != nil {
		s.cleanup()
		return nil, err
	}
	if err := s.buildTraffic(); err != nil {
		s.cleanup()
		return nil, err
	}
	return s, nil
}

func (s *Sim) cleanup() {
	for _, n := range s.nodes {
		if n.node != nil {
			_ = n.node.Close()
			n.node = nil
		}
	}
	if s.ownDir {
		_ = os.RemoveAll(s.dataDir)
	}
}

// buildNodes derives identities, links and the protocol cores.
func (s *Sim) buildNodes() error {
	n := s.sc.NodeCount()
	s.nodes = make([]*simNode, n)
	hints := make(map[transport.Addr]int, n)
	for i := 0; i < n; i++ {
		var id *envelope.Identity
		var hint transport.Addr
		// Derive the identity from the seed; redraw on the (rare) hint
		// collision, since the LoRa link address is the hint.
		for k := 0; ; k++ {
			var err error
			id, err = envelope.IdentityFromSeed(s.sd.bytes32("identity", i*1000+k))
			if err != nil {
				return fmt.Errorf("sim: node %d identity: %w", i, err)
			}
			h := id.Address().Hint()
			hint = transport.Addr(h[:])
			if _, dup := hints[hint]; !dup {
				break
			}
		}
		hints[hint] = i
		s.nodes[i] = &simNode{idx: i, id: id, addr: id.Address(), hint: hint, online: true, wakeAt: -1}
	}
	s.byHint = make(map[transport.Addr]*simNode, n)
	for _, sn := range s.nodes {
		s.byHint[sn.hint] = sn
	}
	for i, l := range s.sc.IPLinks {
		il, err := newIPLink(s, i, l)
		if err != nil {
			return err
		}
		s.ip = append(s.ip, il)
	}
	contacts := make([]envelope.PublicKey, n)
	for i, sn := range s.nodes {
		contacts[i] = sn.id.PublicKey()
	}
	probe, err := core.New(core.Options{Self: core.Hint{1}, Modulation: s.rm.mod, AirHeader: s.rm.header})
	if err != nil {
		return fmt.Errorf("sim: LoRa link layer: %w", err)
	}
	s.coreMTU = probe.MTU()
	for i, sn := range s.nodes {
		var links []Link
		radioLink := -1
		if s.topo.radio[i] {
			lid := LinkID(len(sn.links))
			radioLink = int(lid)
			sn.links = append(sn.links, linkRef{radio: true})
			links = append(links, Link{ID: lid, Info: s.loraInfo(i), Addr: sn.hint,
				DutyCycle: s.rm.band.DutyCycle, Airtime: s.airtimeFunc(), SymbolTime: s.rm.mod.SymbolTime()})
		}
		for _, l := range s.ip {
			if int(l.a) != i && int(l.b) != i {
				continue
			}
			lid := LinkID(len(sn.links))
			sn.links = append(sn.links, linkRef{ip: l})
			if int(l.a) == i {
				l.la = lid
			} else {
				l.lb = lid
			}
			links = append(links, Link{ID: lid, Info: l.info(s, int32(i))})
		}
		dir := filepath.Join(s.dataDir, fmt.Sprintf("node%04d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		sn.env = Env{
			Index:    i,
			Identity: sn.id,
			Clock:    s.clk,
			Rand:     s.sd.stream("node", i),
			DataDir:  dir,
			Links:    links,
			Contacts: contacts,
			Params:   s.sc.Protocols[s.proto],
		}
		node, err := s.factory(sn.env)
		if err != nil {
			return fmt.Errorf("sim: node %d: %w", i, err)
		}
		sn.node = node
		if radioLink >= 0 {
			rr, ok := node.(RawRadio)
			sn.raw = ok && rr.RawRadio()
			if sn.raw {
				links[radioLink].Info.MTU = s.rm.mtu
			}
			// The node sees the slice it was given: Overhears is final
			// before its first LinkUp.
			_, over := node.(Overhearer)
			sn.overhear = over && ((sn.raw && s.rm.overhear) || (!sn.raw && !s.rm.noOverhear))
			links[radioLink].Overhears = sn.overhear
			r, err := newRadioNode(s, i, LinkID(radioLink), sn.hint, sn.raw)
			if err != nil {
				return err
			}
			sn.radio = r
		}
	}
	return nil
}

func (s *Sim) loraInfo(i int) transport.Info {
	mtu := s.coreMTU
	if s.nodes[i].raw {
		mtu = s.rm.mtu
	}
	return transport.Info{
		ID:        fmt.Sprintf("lora%d", i),
		Kind:      "lora",
		MTU:       mtu,
		Bitrate:   s.rm.mod.Bitrate(),
		Cost:      100,
		Broadcast: true,
	}
}

func (s *Sim) airtimeFunc() func(n int) time.Duration {
	rm := s.rm
	return func(n int) time.Duration { return time.Duration(rm.airtime(n)) }
}

func (s *Sim) timeAt(ns int64) time.Time { return s.epoch.Add(time.Duration(ns)) }

// run processes events until the end of the scenario.
func (s *Sim) run() error {
	// Boot every node at t=0, in index order.
	for _, n := range s.nodes {
		s.boot(n)
	}
	s.refreshIP()
	s.scheduleScripts()
	s.startChurn()
	for s.q.Len() > 0 && s.err == nil {
		at, _ := s.q.peek()
		if at > s.end {
			break
		}
		e := s.q.pop()
		s.now = e.at
		s.events++
		if s.opt.Progress != nil && s.events%1000000 == 0 {
			fmt.Fprintf(s.opt.Progress, "meshsim: %s %s: %v of %v simulated, %d events, %d messages\n",
				s.sc.Name, s.proto, time.Duration(s.now).Truncate(time.Second), time.Duration(s.end), s.events, len(s.msgs))
		}
		if s.opt.MaxEvents > 0 && s.events > s.opt.MaxEvents {
			return fmt.Errorf("sim: more than %d events", s.opt.MaxEvents)
		}
		s.dispatch(e)
	}
	if s.err != nil {
		return s.err
	}
	s.now = s.end
	return nil
}

func (s *Sim) dispatch(e event) {
	switch e.kind {
	case evNodeTimer:
		n := s.nodes[e.node]
		if uint64(e.arg) != n.wakeGen {
			return
		}
		n.wakeAt = -1
		if !n.online {
			return // resumed nodes are woken on return
		}
		s.callTimer(n)
	case evTxAttempt:
		s.attempt(s.nodes[e.node].radio, uint64(e.arg))
	case evLinkWake:
		s.linkWake(s.nodes[e.node].radio, uint64(e.arg))
	case evTxEnd:
		s.txEnd(e.ptr.(*transmission))
	case evIPArrive:
		s.ipArrive(e.ptr.(*ipFrame))
	case evTraffic:
		s.fireTraffic(int(e.arg))
	case evScript:
		s.fireScript(e.arg)
	case evChurn:
		s.fireChurn(int(e.node))
	case evReply:
		s.fireReply(e.ptr.(*pendingReply))
	case evFunc:
		e.ptr.(func())()
	}
}

// boot starts a node's core and brings its links up.
func (s *Sim) boot(n *simNode) {
	s.prep()
	n.node.Start(s.timeAt(s.now), &s.out)
	s.after(n)
	for lid, ref := range n.links {
		switch {
		case ref.radio:
			s.callLinkUp(n, LinkID(lid), s.loraInfo(n.idx))
		case ref.ip.up:
			s.callLinkUp(n, LinkID(lid), ref.ip.info(s, int32(n.idx)))
		}
	}
}

func (s *Sim) prep() {
	s.clk.Set(s.timeAt(s.now))
	s.out.reset()
}

func (s *Sim) callReceive(n *simNode, l LinkID, data []byte, m transport.Meta) {
	s.prep()
	n.node.Receive(s.timeAt(s.now), l, data, m, &s.out)
	s.after(n)
}

func (s *Sim) callOverhear(n *simNode, l LinkID, to transport.Addr, data []byte, m transport.Meta) {
	s.prep()
	n.node.(Overhearer).Overhear(s.timeAt(s.now), l, to, data, m, &s.out)
	s.after(n)
}

func (s *Sim) callLinkUp(n *simNode, l LinkID, info transport.Info) {
	s.prep()
	n.node.LinkUp(s.timeAt(s.now), l, info, &s.out)
	s.after(n)
}

func (s *Sim) callLinkDown(n *simNode, l LinkID) {
	s.prep()
	n.node.LinkDown(s.timeAt(s.now), l, &s.out)
	s.after(n)
}

func (s *Sim) callTimer(n *simNode) {
	if n.spinAt == s.now {
		n.spins++
		if n.spins > 10000 {
			s.fail(fmt.Errorf("sim: node %d asks to be woken at %v again and again without time passing", n.idx, s.timeAt(s.now)))
			return
		}
	} else {
		n.spinAt, n.spins = s.now, 0
	}
	s.prep()
	n.node.Timer(s.timeAt(s.now), &s.out)
	s.after(n)
}

func (s *Sim) callAppSend(n *simNode, m AppMessage) {
	s.prep()
	n.node.AppSend(s.timeAt(s.now), m, &s.out)
	s.after(n)
}

func (s *Sim) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// after acts on a node's outputs and reschedules its wake-up.
func (s *Sim) after(n *simNode) {
	// Events first: an EventAccepted binds the flow the sends carry.
	for i := range s.out.Events {
		s.onEvent(n, &s.out.Events[i])
	}
	for i := range s.out.Deliveries {
		s.onDeliver(n, &s.out.Deliveries[i])
	}
	for i := range s.out.Sends {
		sd := &s.out.Sends[i]
		if sd.Link < 0 || int(sd.Link) >= len(n.links) {
			s.fail(fmt.Errorf("sim: node %d sends on unknown link %d", n.idx, sd.Link))
			return
		}
		ref := n.links[sd.Link]
		if ref.radio {
			if n.online {
				s.radioSend(n, sd)
			}
		} else {
			s.ipSend(int32(n.idx), ref.ip, sd)
		}
	}
	w := n.node.NextWake()
	if w.IsZero() {
		if n.wakeAt >= 0 {
			n.wakeGen++
			n.wakeAt = -1
		}
		return
	}
	at := int64(w.Sub(s.epoch))
	if at < s.now {
		at = s.now
	}
	if at == n.wakeAt {
		return
	}
	n.wakeGen++
	n.wakeAt = at
	s.q.push(event{at: at, kind: evNodeTimer, node: int32(n.idx), arg: int64(n.wakeGen)})
}

// setOnline takes a node off the air or brings it back.
func (s *Sim) setOnline(n *simNode, online, restart bool) {
	if n.online == online {
		return
	}
	n.online = online
	s.topoGen++
	if !online {
		if n.radio != nil {
			// The radio loses what it was handed; meshd's link layer (on the
			// host) keeps its queue, as the daemon does across a radio
			// unplug, but makes no progress while the node is away.
			n.radio.clearQueue()
			n.radio.attemptGen++
			n.radio.attemptAt = -1
			n.radio.engGen++
			n.radio.engWakeAt = -1
		}
		s.m.offlineEvents++
		s.refreshIP()
		return
	}
	if restart {
		n.boots++
		if n.radio != nil && !n.radio.raw {
			if err := s.newEngine(n.radio, n.boots); err != nil {
				s.fail(err)
				return
			}
		}
		_ = n.node.Close()
		node, err := s.factory(n.env)
		if err != nil {
			s.fail(fmt.Errorf("sim: restarting node %d: %w", n.idx, err))
			return
		}
		n.node = node
		n.wakeGen++
		n.wakeAt = -1
		s.boot(n)
		s.refreshIP()
		return
	}
	// Resume: IP connections died while the node was away.
	for lid, ref := range n.links {
		if ref.ip != nil {
			s.callLinkDown(n, LinkID(lid))
		}
	}
	s.refreshIP()
	// Wake it now: whatever came due while it was away is due.
	s.prep()
	n.node.Timer(s.timeAt(s.now), &s.out)
	s.after(n)
	if n.radio != nil {
		s.pump(n.radio)
	}
}
