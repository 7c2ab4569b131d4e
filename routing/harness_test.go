package routing_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/routing/boltstore"
	"github.com/openmeshd/meshd/transport"
)

// seeded is a deterministic entropy source for tests.
type seeded struct{ r *rand.ChaCha8 }

func newSeeded(seed uint64) *seeded {
	var s [32]byte
	for i := range s {
		s[i] = byte(seed >> (8 * (i % 8)))
	}
	s[31] ^= 0x5a
	return &seeded{rand.NewChaCha8(s)}
}

func (s *seeded) Read(p []byte) (int, error) { return s.r.Read(p) }

// tnode is one router in a test network.
type tnode struct {
	name  string
	id    *envelope.Identity
	r     *routing.Router
	store routing.Store
	opts  routing.Options
	up    bool
	path  string // bbolt file, when the net uses bbolt

	delivered []*routing.Deliver
	statuses  []*routing.Status
	floods    []*routing.FloodReceived
	replies   []*routing.AnonReplyReceived
	sent      int
}

func (n *tnode) hint() transport.Addr { h := n.id.Address().Hint(); return transport.Addr(h[:]) }

// edge is a link between two nodes.
type edge struct {
	a, b  *tnode
	radio bool // shared medium "radio" vs point-to-point
	loss  float64
}

type frameEv struct {
	at   time.Time
	seq  int
	to   *tnode
	link routing.LinkID
	data []byte
	meta transport.Meta
	over bool
}

// tnet is a tiny discrete-event network: radio neighbours share the link
// "radio" (unicast frames reach only the addressee), point-to-point links
// are named "p2p:<a>-<b>".
type tnet struct {
	t      testing.TB
	clk    *clock.Manual
	nodes  []*tnode
	byHint map[transport.Addr]*tnode
	edges  []*edge
	frames []frameEv
	seq    int
	rnd    *rand.Rand
	delay  time.Duration
	radio  routing.LinkInfo
	// bolt gives each node a bbolt store in a temporary directory instead
	// of a MemStore.
	bolt bool
	// onSend lets a test watch (and count) every frame put on the air; it
	// returns true to lose the frame.
	onSend func(from *tnode, f *routing.SendFrame) bool
}

func newNet(t testing.TB, seed uint64) *tnet {
	return &tnet{t: t, clk: clock.NewManual(time.Time{}), byHint: map[transport.Addr]*tnode{},
		rnd: rand.New(rand.NewPCG(seed, 7)), delay: 50 * time.Millisecond,
		radio: routing.LinkInfo{Info: transport.Info{ID: "radio", Kind: "lora", MTU: 250, Bitrate: 5470, Cost: 100, Broadcast: true}}}
}

func (n *tnet) now() time.Time { return n.clk.Now() }

func (n *tnet) add(name string, mod func(*routing.Options)) *tnode {
	id, err := envelope.GenerateIdentity(newSeeded(uint64(len(n.nodes)) + 1000))
	if err != nil {
		n.t.Fatal(err)
	}
	nd := &tnode{name: name, id: id, store: routing.NewMemStore(), up: true}
	if n.bolt {
		nd.path = filepath.Join(n.t.TempDir(), name+".db")
		nd.store = n.openBolt(nd.path)
	}
	nd.opts = routing.Options{Identity: id, Store: nd.store, Entropy: newSeeded(uint64(len(n.nodes)) + 1),
		Rand: rand.New(rand.NewPCG(uint64(len(n.nodes)), 1)), AnnounceDelay: 5 * time.Second}
	if mod != nil {
		mod(&nd.opts)
	}
	r, err := routing.New(nd.opts, n.now())
	if err != nil {
		n.t.Fatal(err)
	}
	nd.r = r
	n.nodes = append(n.nodes, nd)
	n.byHint[nd.hint()] = nd
	return nd
}

func (n *tnet) openBolt(path string) routing.Store {
	s, err := boltstore.Open(path, time.Second)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { s.Close() })
	return s
}

// restart rebuilds a node's router on its store, as after kill -9: what
// the router had not committed is lost.
func (n *tnet) restart(nd *tnode) {
	if ms, ok := nd.store.(*routing.MemStore); ok {
		ms.Reopen()
	} else {
		nd.store.Close()
		nd.store = n.openBolt(nd.path)
		nd.opts.Store = nd.store
	}
	r, err := routing.New(nd.opts, n.now())
	if err != nil {
		n.t.Fatal(err)
	}
	nd.r = r
	nd.up = true
	n.collect(nd)
	n.linksUp(nd)
}

func p2pID(a, b *tnode) routing.LinkID { return routing.LinkID("p2p:" + a.name + "-" + b.name) }

func (n *tnet) connect(a, b *tnode, radio bool) *edge {
	e := &edge{a: a, b: b, radio: radio}
	n.edges = append(n.edges, e)
	return e
}

func (n *tnet) linkInfo(nd *tnode, e *edge) routing.LinkInfo {
	if e.radio {
		return n.radio
	}
	other := e.b
	id := p2pID(e.a, e.b)
	if nd == e.b {
		other = e.a
	}
	return routing.LinkInfo{Info: transport.Info{ID: string(id), Kind: "tcp", MTU: 65535, Bitrate: 10_000_000, Cost: 1,
		Peer: other.id.PublicKey(), HasPeer: true}}
}

// start brings every link up.
func (n *tnet) start() {
	for _, nd := range n.nodes {
		n.linksUp(nd)
	}
}

func (n *tnet) linksUp(nd *tnode) {
	radioDone := false
	for _, e := range n.edges {
		if e.a != nd && e.b != nd {
			continue
		}
		if e.radio {
			if radioDone {
				continue
			}
			radioDone = true
		}
		nd.r.LinkUp(n.now(), n.linkInfo(nd, e))
		n.collect(nd)
	}
}

func (n *tnet) neighbours(nd *tnode) []*tnode {
	var out []*tnode
	for _, e := range n.edges {
		if e.radio && e.a == nd {
			out = append(out, e.b)
		} else if e.radio && e.b == nd {
			out = append(out, e.a)
		}
	}
	return out
}

func (n *tnet) edgeFor(a, b *tnode, radio bool) *edge {
	for _, e := range n.edges {
		if e.radio == radio && ((e.a == a && e.b == b) || (e.a == b && e.b == a)) {
			return e
		}
	}
	return nil
}

// collect performs a node's pending actions.
func (n *tnet) collect(nd *tnode) {
	for _, a := range nd.r.Actions() {
		switch a := a.(type) {
		case *routing.SendFrame:
			nd.sent++
			if n.onSend != nil && n.onSend(nd, a) {
				continue
			}
			n.transmit(nd, a)
		case *routing.Deliver:
			nd.delivered = append(nd.delivered, a)
			if a.ID.Counter != 0 {
				nd.r.AppAck(n.now(), a.ID)
			}
		case *routing.Status:
			nd.statuses = append(nd.statuses, a)
		case *routing.FloodReceived:
			nd.floods = append(nd.floods, a)
		case *routing.AnonReplyReceived:
			nd.replies = append(nd.replies, a)
		}
	}
}

func (n *tnet) transmit(from *tnode, f *routing.SendFrame) {
	if !from.up {
		return
	}
	if f.Link == "radio" {
		for _, to := range n.neighbours(from) {
			over := f.To != transport.Broadcast && to.hint() != f.To
			if over && !n.radio.Overhears {
				continue
			}
			e := n.edgeFor(from, to, true)
			if e.loss > 0 && n.rnd.Float64() < e.loss {
				continue
			}
			n.push(to, "radio", f.Data, transport.Meta{From: from.hint(), HasSignal: true, RSSI: -100, SNR: 6})
			n.frames[len(n.frames)-1].over = over
		}
		return
	}
	for _, e := range n.edges {
		if e.radio || p2pID(e.a, e.b) != f.Link {
			continue
		}
		to := e.b
		if from == e.b {
			to = e.a
		}
		if e.loss > 0 && n.rnd.Float64() < e.loss {
			return
		}
		n.push(to, f.Link, f.Data, transport.Meta{})
	}
}

func (n *tnet) push(to *tnode, l routing.LinkID, data []byte, m transport.Meta) {
	n.seq++
	n.frames = append(n.frames, frameEv{at: n.now().Add(n.delay), seq: n.seq, to: to, link: l, data: bytes.Clone(data), meta: m})
}

// run advances virtual time by d, delivering frames and firing timers.
func (n *tnet) run(d time.Duration) {
	end := n.now().Add(d)
	for steps := 0; ; steps++ {
		if steps > 2_000_000 {
			n.t.Fatal("network does not settle")
		}
		next := end
		kind := -1
		fi := -1
		for i, f := range n.frames {
			if !f.at.After(next) && (fi < 0 || f.at.Before(n.frames[fi].at) || (f.at.Equal(n.frames[fi].at) && f.seq < n.frames[fi].seq)) {
				fi = i
			}
		}
		if fi >= 0 {
			next, kind = n.frames[fi].at, 0
		}
		wi := -1
		for i, nd := range n.nodes {
			w := nd.r.NextWake()
			if nd.up && !w.IsZero() && w.Before(next) {
				next, kind, wi = w, 1, i
			}
		}
		if kind < 0 {
			n.clk.Set(end)
			return
		}
		if next.After(n.now()) {
			n.clk.Set(next)
		}
		if kind == 0 {
			f := n.frames[fi]
			n.frames = append(n.frames[:fi], n.frames[fi+1:]...)
			if f.to.up {
				if f.over {
					f.to.r.Overhear(n.now(), f.link, f.data, f.meta)
				} else {
					f.to.r.Receive(n.now(), f.link, f.data, f.meta)
				}
				n.collect(f.to)
			}
		} else {
			nd := n.nodes[wi]
			nd.r.Tick(n.now())
			n.collect(nd)
		}
	}
}

// line builds a chain of n nodes over one link type.
func line(t testing.TB, count int, radio bool, mod func(*routing.Options)) (*tnet, []*tnode) {
	return lineStore(t, count, radio, false, mod)
}

// lineStore is line with a choice of store.
func lineStore(t testing.TB, count int, radio, bolt bool, mod func(*routing.Options)) (*tnet, []*tnode) {
	return buildLine(t, lineSpec{seed: 1, prefix: "n", count: count, radio: radio, bolt: bolt, mod: mod})
}

// overhearLine is a chain of count nodes (named prefix0, prefix1, ...) on
// a radio link that reports overheard frames (passive hop
// acknowledgements), from the given seed.
func overhearLine(t testing.TB, seed uint64, prefix string, count int, bolt bool) (*tnet, []*tnode) {
	return buildLine(t, lineSpec{seed: seed, prefix: prefix, count: count, radio: true, bolt: bolt, overhears: true})
}

// lineSpec describes a chain of nodes for buildLine.
type lineSpec struct {
	seed                   uint64
	prefix                 string
	count                  int
	radio, bolt, overhears bool
	mod                    func(*routing.Options)
}

// buildLine builds and starts a chain of nodes.
func buildLine(t testing.TB, s lineSpec) (*tnet, []*tnode) {
	n := newNet(t, s.seed)
	n.bolt = s.bolt
	n.radio.Overhears = s.overhears
	var nodes []*tnode
	for i := 0; i < s.count; i++ {
		nodes = append(nodes, n.add(fmt.Sprint(s.prefix, i), s.mod))
		if i > 0 {
			n.connect(nodes[i-1], nodes[i], s.radio)
		}
	}
	n.start()
	return n, nodes
}

func payloads(ds []*routing.Deliver) []string {
	var out []string
	for _, d := range ds {
		out = append(out, string(d.Payload))
	}
	sort.Strings(out)
	return out
}

func lastState(nd *tnode, id routing.MsgID) routing.MsgState {
	st := routing.MsgState(255)
	for _, s := range nd.statuses {
		if s.ID == id {
			st = s.State
		}
	}
	return st
}
