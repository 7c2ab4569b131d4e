package fapp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/envelope/clock"
)

// detRand is a deterministic byte stream (SHA-256 in counter mode over a
// label), so tests are reproducible.
type detRand struct {
	label []byte
	ctr   uint64
	buf   []byte
}

func newDetRand(label string) *detRand { return &detRand{label: []byte(label)} }

func (r *detRand) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], r.ctr)
			r.ctr++
			s := sha256.Sum256(append(append([]byte(nil), r.label...), c[:]...))
			r.buf = s[:]
		}
		k := copy(p[n:], r.buf)
		r.buf = r.buf[k:]
		n += k
	}
	return n, nil
}

func mustIdentity(t testing.TB, label string) *envelope.Identity {
	t.Helper()
	id, err := envelope.GenerateIdentity(newDetRand("id/" + label))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// t0 is the tests' "now": 2026-01-01T00:00:00Z, on the 5-minute grid.
var t0 = clock.Epoch()

func testProfile() Profile {
	return Profile{
		Verfahren:     Verhaltenstherapie | TiefenpsychologischFundiert,
		Altersgruppen: Erwachsene,
		Settings:      Einzel,
		Kostentraeger: GKV | PKV,
		Modalitaeten:  Praxis | Video,
		PLZ:           "80331",
		Languages:     []string{"de"},
	}
}

func testAttestation(t testing.TB, label string) Attestation {
	t.Helper()
	a, err := NewAttestation(newDetRand("att/"+label), []byte("Approbation als Psychologische Psychotherapeutin, Regierung von Oberbayern, 2019-05-02, Nr. "+label))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// world is the fixture most tests share: one trust anchor, and options
// with low proof-of-work difficulty.
type world struct {
	anchor  *envelope.Identity
	anchors []Anchor
}

func newWorld(t testing.TB) *world {
	a := mustIdentity(t, "anchor")
	return &world{anchor: a, anchors: []Anchor{{Name: "Kammer", Key: a.PublicKey()}}}
}

func (w *world) opts(label string, id *envelope.Identity) Options {
	return Options{
		Identity:     id,
		Entropy:      newDetRand("core/" + label),
		Anchors:      w.anchors,
		QueryBits:    4,
		ReserveBits:  4,
		PublishDelay: time.Second,
	}
}

// endorse returns an endorsement of id's attestation by the world's anchor.
func (w *world) endorse(t testing.TB, id *envelope.Identity, att Attestation, p Profile) Endorsement {
	t.Helper()
	e, err := Endorse(w.anchor, id.PublicKey(), att.Commit(id.PublicKey()), p.Verfahren, p.Altersgruppen, t0.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// therapistCore makes a therapist with profile p and n slots starting one
// day after t0, one hour apart, and publishes.
func (w *world) therapistCore(t testing.TB, label string, p Profile, endorsed bool, n int) (*Core, *envelope.Identity) {
	t.Helper()
	id := mustIdentity(t, label)
	c, err := New(w.opts(label, id), nil)
	if err != nil {
		t.Fatal(err)
	}
	att := testAttestation(t, label)
	cr := Credentials{Attestation: att}
	if endorsed {
		cr.Endorsements = []Endorsement{w.endorse(t, id, att, p)}
	}
	if err := c.SetProfile(t0, p, cr); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := c.AddSlot(t0, Slot{Type: SlotType(i % 4), Start: t0.Add(24*time.Hour + time.Duration(i)*time.Hour), Duration: 50 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Publish(t0); err != nil {
		t.Fatal(err)
	}
	return c, id
}

// originated returns the raw envelopes of kind k among actions.
func originated(acts []Action, k envelope.Kind) [][]byte {
	var out [][]byte
	for _, a := range acts {
		if o, ok := a.(*Originate); ok && o.Kind == k {
			out = append(out, o.Raw)
		}
	}
	return out
}

func actionsOf[T Action](acts []Action) []T {
	var out []T
	for _, a := range acts {
		if v, ok := a.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// cacheDigest summarises a core's cache and counters that must not change
// when an input is refused.
func cacheDigest(c *Core) string {
	h := sha256.New()
	for _, t := range c.cache.sorted() {
		fmt.Fprintf(h, "%x top=%d count=%d seqs=%v|", t.key[:], t.top, t.count, t.seqs)
		for _, e := range t.pages {
			if e != nil {
				h.Write(e.raw)
			}
		}
	}
	fmt.Fprintf(h, "entries=%d bytes=%d", c.cache.entries, c.cache.bytes)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// ---- a small mesh for end-to-end tests ----

// mesh connects cores over a graph and delivers their actions the way the
// router will: floods and queries hop by hop (each node's verdict decides
// whether it relays), anon envelopes along the shortest path, leaving
// breadcrumbs (token → previous hop) at every relay, anon-replies back along
// the breadcrumbs. It records every frame each node transmits.
type mesh struct {
	t     testing.TB
	now   time.Time
	nodes []*mnode
	byKey map[envelope.PublicKey]*mnode
}

type mnode struct {
	name   string
	id     *envelope.Identity
	core   *Core
	nbrs   []*mnode
	seen   map[[32]byte]bool
	crumbs map[envelope.Token]*mnode // token → previous hop (router state)
	own    map[envelope.Token]bool   // tokens this node issued
	sent   [][]byte                  // every frame this node transmitted
	errs   []error                   // errors its core returned
	events []Action                  // app-level actions delivered to it
}

func newMesh(t testing.TB) *mesh {
	return &mesh{t: t, now: t0, byKey: map[envelope.PublicKey]*mnode{}}
}

func (m *mesh) add(name string, c *Core, id *envelope.Identity) *mnode {
	n := &mnode{name: name, id: id, core: c, seen: map[[32]byte]bool{}, crumbs: map[envelope.Token]*mnode{}, own: map[envelope.Token]bool{}}
	m.nodes = append(m.nodes, n)
	m.byKey[id.PublicKey()] = n
	return n
}

func (m *mesh) link(a, b *mnode) {
	a.nbrs = append(a.nbrs, b)
	b.nbrs = append(b.nbrs, a)
}

func dedupKey(raw []byte) [32]byte {
	h, rest := envelope.Immutable(raw)
	return sha256.Sum256(append(append([]byte(nil), h...), rest...))
}

type delivery struct {
	to, from *mnode
	raw      []byte
}

// run drains every node's actions until the mesh is quiet.
func (m *mesh) run() {
	for round := 0; round < 1000; round++ {
		var q []delivery
		for _, n := range m.nodes {
			for _, a := range n.core.Actions() {
				q = append(q, m.perform(n, a)...)
			}
			if err := cacheConsistent(n.core); err != nil {
				m.t.Fatalf("%s: %v", n.name, err)
			}
		}
		if len(q) == 0 {
			return
		}
		for len(q) > 0 {
			d := q[0]
			q = q[1:]
			q = append(q, m.receive(d)...)
		}
	}
	m.t.Fatal("mesh did not settle")
}

func (m *mesh) transmit(from *mnode, raw []byte) []delivery {
	from.sent = append(from.sent, append([]byte(nil), raw...))
	var out []delivery
	for _, nb := range from.nbrs {
		out = append(out, delivery{to: nb, from: from, raw: append([]byte(nil), raw...)})
	}
	return out
}

func (m *mesh) perform(n *mnode, a Action) []delivery {
	switch a := a.(type) {
	case *Originate:
		n.seen[dedupKey(a.Raw)] = true
		if a.Kind == envelope.KindQuery {
			e, _ := envelope.Parse(a.Raw)
			n.own[e.Token] = true
		}
		return m.transmit(n, a.Raw)
	case *SendAnon:
		n.own[a.Token] = true
		return m.unicast(n, m.byKey[a.To], a.Raw)
	case *SendReply:
		prev := n.crumbs[a.Token]
		if prev == nil {
			m.t.Errorf("%s: reply on token %x without breadcrumb", n.name, a.Token[:])
			return nil
		}
		n.sent = append(n.sent, append([]byte(nil), a.Raw...))
		return []delivery{{to: prev, from: n, raw: append([]byte(nil), a.Raw...)}}
	default:
		n.events = append(n.events, a)
	}
	return nil
}

// unicast sends raw one hop along the shortest path to dst.
func (m *mesh) unicast(from, dst *mnode, raw []byte) []delivery {
	if dst == nil {
		m.t.Errorf("%s: anon to unknown node", from.name)
		return nil
	}
	next := m.nextHop(from, dst)
	if next == nil {
		m.t.Errorf("%s: no path to %s", from.name, dst.name)
		return nil
	}
	from.sent = append(from.sent, append([]byte(nil), raw...))
	return []delivery{{to: next, from: from, raw: append([]byte(nil), raw...)}}
}

func (m *mesh) nextHop(from, dst *mnode) *mnode {
	prev := map[*mnode]*mnode{from: nil}
	q := []*mnode{from}
	for len(q) > 0 {
		x := q[0]
		q = q[1:]
		if x == dst {
			for prev[x] != from {
				x = prev[x]
			}
			return x
		}
		for _, nb := range x.nbrs {
			if _, ok := prev[nb]; !ok {
				prev[nb] = x
				q = append(q, nb)
			}
		}
	}
	return nil
}

// receive is the router's part at node d.to.
func (m *mesh) receive(d delivery) []delivery {
	n := d.to
	e, err := envelope.Parse(d.raw)
	if err != nil {
		m.t.Fatalf("%s: unparsable frame: %v", n.name, err)
	}
	k := dedupKey(d.raw)
	if n.seen[k] {
		return nil
	}
	n.seen[k] = true
	switch e.Kind {
	case envelope.KindFlood, envelope.KindQuery:
		if e.Kind == envelope.KindQuery {
			if n.own[e.Token] {
				return nil
			}
			n.crumbs[e.Token] = d.from
		}
		v, err := n.core.OnFlood(m.now, Neighbour(d.from.name), d.raw)
		if err != nil {
			n.errs = append(n.errs, err)
		}
		if v == Relay && envelope.Relay(d.raw) {
			return m.transmit(n, d.raw)
		}
	case envelope.KindAnon:
		n.crumbs[e.Token] = d.from
		if e.Dst.Matches(n.id.Address()) {
			payload, port, reply, err := n.id.OpenAnonymous(&e)
			if err != nil {
				m.t.Fatalf("%s: open anon: %v", n.name, err)
			}
			if port != Port {
				m.t.Fatalf("port %d", port)
			}
			if err := n.core.OnAnon(m.now, payload, reply); err != nil {
				n.errs = append(n.errs, err)
			}
			return nil
		}
		for _, dst := range m.nodes {
			if e.Dst.Matches(dst.id.Address()) && envelope.Relay(d.raw) {
				return m.unicast(n, dst, d.raw)
			}
		}
	case envelope.KindAnonReply:
		if n.own[e.Token] {
			if err := n.core.OnAnonReply(m.now, e.Token, d.raw); err != nil {
				n.errs = append(n.errs, err)
			}
			return nil
		}
		prev := n.crumbs[e.Token]
		if prev != nil && envelope.Relay(d.raw) {
			n.sent = append(n.sent, append([]byte(nil), d.raw...))
			return []delivery{{to: prev, from: n, raw: d.raw}}
		}
	}
	return nil
}

// tick advances the mesh clock and ticks every core.
func (m *mesh) tick(d time.Duration) {
	m.now = m.now.Add(d)
	for _, n := range m.nodes {
		n.core.Tick(m.now)
	}
	m.run()
}

func bg() context.Context { return context.Background() }

// cacheConsistent checks the cache's counters against its contents.
func cacheConsistent(c *Core) error {
	entries, size := 0, 0
	for k, t := range c.cache.byKey {
		live := 0
		for p, e := range t.pages {
			if e == nil {
				continue
			}
			live++
			entries++
			size += e.size()
			if e.ann.Therapist != k || e.ann.Page != p || t.seqs[p] != e.ann.Seq || p >= t.count {
				return fmt.Errorf("page %d of %x misfiled", p, k[:4])
			}
		}
		if live != t.live {
			return fmt.Errorf("therapist %x: live %d, counted %d", k[:4], t.live, live)
		}
	}
	if entries != c.cache.entries || size != c.cache.bytes {
		return fmt.Errorf("cache counts %d/%d, contents %d/%d", c.cache.entries, c.cache.bytes, entries, size)
	}
	if entries > c.cache.maxEntries || size > c.cache.maxBytes {
		return fmt.Errorf("cache over its bounds: %d/%d", entries, size)
	}
	return nil
}
