package broadcast

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/envelope/clock"
)

// detRand is a deterministic byte stream (SHA-256 in counter mode).
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

// node is one simulated meshd node: a core and what its driver would keep.
type node struct {
	name      string
	id        *envelope.Identity
	c         *Core
	o         Options
	store     map[ChannelID][]byte // durable Saves
	hist      []byte
	delivered []*Deliver
	events    []*Event
	errs      []error // errors returned by Handle* calls
	online    bool
}

func (n *node) key() envelope.PublicKey { return n.id.PublicKey() }

type ctlMsg struct {
	from, to *node
	payload  []byte
	typ      string
}

type floodMsg struct {
	from *node
	raw  []byte
	kind envelope.Kind
}

// mesh connects nodes the way the router would: control messages are
// reliable end-to-end (held while the destination is offline, as
// store-and-forward does), floods reach the nodes online at the time.
type mesh struct {
	t      testing.TB
	clk    *clock.Manual
	nodes  []*node
	byKey  map[envelope.PublicKey]*node
	ctl    []ctlMsg
	floods []floodMsg
	rnd    *rand.Rand // nil: FIFO; else deliver in random order
	opts   Options
	// dropCtl drops control messages for which it returns true.
	dropCtl func(m ctlMsg) bool
	// ctlBytes counts control payload bytes handed to the network.
	ctlBytes, ctlCount int
}

func newMesh(t testing.TB, o Options) *mesh {
	return &mesh{t: t, clk: clock.NewManual(time.Time{}), byKey: map[envelope.PublicKey]*node{}, opts: o}
}

func (m *mesh) now() time.Time { return m.clk.Now() }

func (m *mesh) add(name string) *node {
	m.t.Helper()
	id := mustIdentity(m.t, name)
	o := m.opts
	o.Identity = id
	o.Rand = newDetRand("rand/" + name)
	c, err := New(o)
	if err != nil {
		m.t.Fatal(err)
	}
	n := &node{name: name, id: id, c: c, o: o, store: map[ChannelID][]byte{}, online: true}
	m.nodes = append(m.nodes, n)
	m.byKey[n.key()] = n
	return n
}

// drain carries out a node's actions: saves first, then the network.
func (m *mesh) drain(n *node) {
	acts := n.c.Actions()
	for _, a := range acts {
		switch a := a.(type) {
		case *Save:
			n.store[a.Channel] = append([]byte(nil), a.State...)
		case *Forget:
			delete(n.store, a.Channel)
		case *SaveHistory:
			n.hist = a.State
		case *Deliver:
			n.delivered = append(n.delivered, a)
		case *Event:
			n.events = append(n.events, a)
		}
	}
	for _, a := range acts {
		switch a := a.(type) {
		case *SendControl:
			to := m.byKey[a.To]
			if to == nil {
				continue
			}
			m.ctlBytes += len(a.Payload)
			m.ctlCount++
			m.ctl = append(m.ctl, ctlMsg{from: n, to: to, payload: a.Payload, typ: a.Type})
		case *Flood:
			m.floods = append(m.floods, floodMsg{from: n, raw: a.Raw, kind: a.Kind})
		case *Reply:
			m.reply(n, a)
		}
	}
}

// reply routes a history reply to the node that asked, sealed as the router
// would seal it.
func (m *mesh) reply(from *node, a *Reply) {
	raw, err := envelope.SealAnonReply(newDetRand("reply"), a.To, a.Payload, PortControl, 8)
	if err != nil {
		m.t.Fatal(err)
	}
	for _, n := range m.nodes {
		if _, ok := n.c.queries[a.To.Token]; ok && n.online {
			n.record(n.c.HandleReply(m.now(), a.To.Token, raw))
			m.drain(n)
		}
	}
}

func (n *node) record(err error) {
	if err != nil {
		n.errs = append(n.errs, err)
	}
}

// step delivers one queued message; false when none is left.
func (m *mesh) step() bool {
	// Control messages to offline nodes wait.
	var ready []int
	for i, c := range m.ctl {
		if c.to.online {
			ready = append(ready, i)
		}
	}
	total := len(ready) + len(m.floods)
	if total == 0 {
		return false
	}
	pick := 0
	if m.rnd != nil {
		pick = m.rnd.Intn(total)
	}
	if pick < len(ready) {
		i := ready[pick]
		c := m.ctl[i]
		m.ctl = append(m.ctl[:i], m.ctl[i+1:]...)
		if m.dropCtl != nil && m.dropCtl(c) {
			return true
		}
		c.to.record(c.to.c.HandleControl(m.now(), c.from.key(), c.payload))
		m.drain(c.to)
		return true
	}
	f := m.floods[pick-len(ready)]
	m.floods = append(m.floods[:pick-len(ready)], m.floods[pick-len(ready)+1:]...)
	for _, n := range m.nodes {
		if n == f.from || !n.online {
			continue
		}
		switch f.kind {
		case envelope.KindChannel:
			n.record(n.c.HandleChannel(m.now(), append([]byte(nil), f.raw...)))
		case envelope.KindQuery:
			n.record(n.c.HandleQuery(m.now(), f.raw))
		}
		m.drain(n)
	}
	return true
}

func (m *mesh) settle() {
	for i := 0; m.step(); i++ {
		if i > 1_000_000 {
			m.t.Fatal("mesh does not settle")
		}
	}
}

// advance moves time and ticks every online node whose wake is due.
func (m *mesh) advance(d time.Duration) {
	end := m.now().Add(d)
	for {
		next := end
		for _, n := range m.nodes {
			if w := n.c.NextWake(); n.online && !w.IsZero() && w.Before(next) {
				next = w
			}
		}
		if next.After(m.now()) {
			m.clk.Set(next)
		}
		for _, n := range m.nodes {
			if w := n.c.NextWake(); n.online && !w.IsZero() && !w.After(m.now()) {
				n.c.Tick(m.now())
				m.drain(n)
			}
		}
		m.settle()
		due := false
		for _, n := range m.nodes {
			if w := n.c.NextWake(); n.online && !w.IsZero() && !w.After(m.now()) {
				due = true
			}
		}
		if !due && !m.now().Before(end) {
			return
		}
	}
}

// crash replaces a node's core by one restored from its durable store.
func (m *mesh) crash(n *node) {
	m.t.Helper()
	c, err := New(n.o)
	if err != nil {
		m.t.Fatal(err)
	}
	for _, st := range n.store {
		if _, err := c.Load(m.now(), st); err != nil {
			m.t.Fatalf("%s: reload: %v", n.name, err)
		}
	}
	if n.hist != nil {
		if err := c.LoadHistory(m.now(), n.hist); err != nil {
			m.t.Fatalf("%s: history reload: %v", n.name, err)
		}
	}
	n.c = c
}

func (m *mesh) must(n *node, err error) {
	m.t.Helper()
	if err != nil {
		m.t.Fatalf("%s: %v", n.name, err)
	}
	m.drain(n)
}

// channel creates a channel owned by owner and brings members in through
// invite codes, settling after each.
func (m *mesh) channel(owner *node, name string, policy Policy, members ...*node) ChannelID {
	m.t.Helper()
	id, err := owner.c.Create(m.now(), name, policy)
	m.must(owner, err)
	for _, n := range members {
		m.join(owner, n, id, RoleMember)
	}
	return id
}

func (m *mesh) join(admin, n *node, id ChannelID, role Role) {
	m.t.Helper()
	inv, err := admin.c.Invite(m.now(), id, InviteOptions{Role: role})
	m.must(admin, err)
	_, err = n.c.Join(m.now(), inv.Code())
	m.must(n, err)
	m.settle()
	if i, err := n.c.Info(id); err != nil || i.Status != StatusActive {
		m.t.Fatalf("%s did not join: %+v %v (errors %v)", n.name, i, err, n.errs)
	}
}

// bulk makes a channel of n members quickly: the owner admits everyone in
// one commit through approval invites.
func (m *mesh) bulk(owner *node, name string, policy Policy, members []*node) ChannelID {
	m.t.Helper()
	id, err := owner.c.Create(m.now(), name, policy)
	m.must(owner, err)
	inv, err := owner.c.Invite(m.now(), id, InviteOptions{MaxUses: 255, Approve: true})
	m.must(owner, err)
	var keys []envelope.PublicKey
	for _, n := range members {
		_, err := n.c.Join(m.now(), inv.Code())
		m.must(n, err)
		keys = append(keys, n.key())
	}
	m.settle()
	m.must(owner, owner.c.Admit(m.now(), id, keys...))
	m.settle()
	return id
}

func (m *mesh) send(n *node, id ChannelID, text string) {
	m.t.Helper()
	m.must(n, n.c.Send(m.now(), id, []byte(text)))
}

// texts returns what a node was delivered for a channel, in order.
func (n *node) texts(id ChannelID) []string {
	var out []string
	for _, d := range n.delivered {
		if d.Channel == id {
			out = append(out, string(d.Payload))
		}
	}
	return out
}

func (n *node) head(t testing.TB, id ChannelID) Info {
	t.Helper()
	i, err := n.c.Info(id)
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	return i
}

func (n *node) lastErr() error {
	if len(n.errs) == 0 {
		return nil
	}
	return n.errs[len(n.errs)-1]
}

func (n *node) countErrs(target error) int {
	k := 0
	for _, e := range n.errs {
		if errors.Is(e, target) {
			k++
		}
	}
	return k
}
