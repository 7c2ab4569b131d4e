package broadcast

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Two admins change the membership at the same time, on the same epoch;
// every control message is delivered in a random order (a different one
// per seed). All members must end on the same epoch with the same roster,
// and both admins' intents must hold: the losing commit is redone on top of
// the winning one.
func TestConcurrentCommitsConverge(t *testing.T) {
	type scenario struct {
		name string
		// act makes the two concurrent changes; check verifies the outcome
		// on the final roster.
		act   func(m *mesh, id ChannelID, n map[string]*node)
		check func(t *testing.T, roster []Member, n map[string]*node)
	}
	has := func(r []Member, n *node) bool { return rosterIndex(r, n.key()) >= 0 }
	scenarios := []scenario{
		{"remove vs remove", func(m *mesh, id ChannelID, n map[string]*node) {
			m.must(n["alice"], n["alice"].c.Remove(m.now(), id, n["xena"].key()))
			m.must(n["bob"], n["bob"].c.Remove(m.now(), id, n["zack"].key()))
		}, func(t *testing.T, r []Member, n map[string]*node) {
			if has(r, n["xena"]) || has(r, n["zack"]) || len(r) != 4 {
				t.Fatalf("roster %v", names(r, n))
			}
		}},
		{"rotation vs remove", func(m *mesh, id ChannelID, n map[string]*node) {
			m.must(n["alice"], n["alice"].c.Rotate(m.now(), id))
			m.must(n["bob"], n["bob"].c.Remove(m.now(), id, n["xena"].key()))
		}, func(t *testing.T, r []Member, n map[string]*node) {
			if has(r, n["xena"]) || len(r) != 5 {
				t.Fatalf("roster %v", names(r, n))
			}
		}},
		{"remove vs admit", func(m *mesh, id ChannelID, n map[string]*node) {
			m.must(n["alice"], n["alice"].c.Remove(m.now(), id, n["xena"].key()))
			m.must(n["bob"], n["bob"].c.Admit(m.now(), id, n["yann"].key()))
		}, func(t *testing.T, r []Member, n map[string]*node) {
			if has(r, n["xena"]) || !has(r, n["yann"]) || len(r) != 6 {
				t.Fatalf("roster %v", names(r, n))
			}
		}},
		{"promote vs remove", func(m *mesh, id ChannelID, n map[string]*node) {
			m.must(n["alice"], n["alice"].c.SetRole(m.now(), id, n["carol"].key(), RoleAdmin))
			m.must(n["bob"], n["bob"].c.Remove(m.now(), id, n["zack"].key()))
		}, func(t *testing.T, r []Member, n map[string]*node) {
			if has(r, n["zack"]) || r[rosterIndex(r, n["carol"].key())].Role != RoleAdmin {
				t.Fatalf("roster %v", names(r, n))
			}
		}},
		{"remove each other's pick and rotate", func(m *mesh, id ChannelID, n map[string]*node) {
			m.must(n["alice"], n["alice"].c.Remove(m.now(), id, n["xena"].key(), n["zack"].key()))
			m.must(n["bob"], n["bob"].c.Remove(m.now(), id, n["zack"].key()))
			m.must(n["bob"], n["bob"].c.Rotate(m.now(), id))
		}, func(t *testing.T, r []Member, n map[string]*node) {
			if has(r, n["xena"]) || has(r, n["zack"]) || len(r) != 4 {
				t.Fatalf("roster %v", names(r, n))
			}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for seed := int64(1); seed <= 40; seed++ {
				m := newMesh(t, Options{Stagger: time.Minute})
				n := map[string]*node{}
				for _, name := range []string{"alice", "bob", "carol", "dave", "xena", "zack", "yann"} {
					n[name] = m.add(name)
				}
				id := m.bulk(n["alice"], "garden", 0, []*node{n["carol"], n["dave"], n["xena"], n["zack"]})
				m.join(n["alice"], n["bob"], id, RoleAdmin)
				// yann asks bob (approval needed) before the race.
				inv, err := n["bob"].c.Invite(m.now(), id, InviteOptions{Approve: true})
				m.must(n["bob"], err)
				_, err = n["yann"].c.Join(m.now(), inv.Code())
				m.must(n["yann"], err)
				m.settle()

				m.rnd = rand.New(rand.NewSource(seed))
				sc.act(m, id, n)
				m.settle()
				m.advance(10 * time.Minute)

				var ref *node
				for _, name := range []string{"alice", "bob", "carol", "dave", "xena", "zack", "yann"} {
					x := n[name]
					i, err := x.c.Info(id)
					if err != nil || i.Status != StatusActive {
						continue
					}
					if ref == nil {
						ref = x
						continue
					}
					if a, b := ref.head(t, id), i; a.EpochHash != b.EpochHash {
						t.Fatalf("seed %d: %s at %d/%s, %s at %d/%s", seed, ref.name, a.Epoch, a.EpochHash, x.name, b.Epoch, b.EpochHash)
					}
				}
				roster, _ := ref.c.Members(id)
				for _, mb := range roster {
					if i := m.byKey[mb.Key].head(t, id); i.Status != StatusActive || i.EpochHash != ref.head(t, id).EpochHash {
						t.Fatalf("seed %d: member %s is %s at %d", seed, m.byKey[mb.Key].name, i.Status, i.Epoch)
					}
				}
				sc.check(t, roster, n)
				// Everyone in the roster can talk.
				m.rnd = nil
				m.send(ref, id, fmt.Sprint("after ", seed))
				m.settle()
				for _, mb := range roster {
					x := m.byKey[mb.Key]
					if x != ref && !slices.Contains(x.texts(id), fmt.Sprint("after ", seed)) {
						t.Fatalf("seed %d: %s cannot read the converged epoch (errors %v)", seed, x.name, x.errs)
					}
				}
				// And nobody outside it can.
				for _, x := range n {
					if rosterIndex(roster, x.key()) < 0 && slices.Contains(x.texts(id), fmt.Sprint("after ", seed)) {
						t.Fatalf("seed %d: non-member %s read the converged epoch", seed, x.name)
					}
				}
			}
		})
	}
}

func names(r []Member, n map[string]*node) []string {
	var out []string
	for _, m := range r {
		for name, x := range n {
			if x.key() == m.Key {
				out = append(out, name+"/"+m.Role.String())
			}
		}
	}
	return out
}

// The fork choice depends only on the set of commits: any arrival order
// gives the same head.
func TestForkChoiceOrderIndependent(t *testing.T) {
	mk := func(num uint32, parent EpochHash, h byte, removes int) *epoch {
		return &epoch{num: num, parent: parent, hash: EpochHash{h}, removes: removes}
	}
	root := &epoch{num: 5, hash: EpochHash{0xaa}, base: true}
	all := []*epoch{
		mk(6, root.hash, 0x30, 0), mk(6, root.hash, 0x20, 0), mk(6, root.hash, 0x90, 1), // removal wins at 6
		mk(7, EpochHash{0x20}, 0x01, 0),                                  // child of a loser: ignored
		mk(7, EpochHash{0x90}, 0x50, 0), mk(7, EpochHash{0x90}, 0x40, 0), // lower hash wins at 7
	}
	want := EpochHash{0x40}
	rnd := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		perm := append([]*epoch(nil), all...)
		rnd.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		ch := &channel{epochs: append([]*epoch{root}, perm...), root: root}
		if got := ch.choose(); got.hash != want {
			t.Fatalf("order %d: head %s", i, got.hash)
		}
	}
}

// A crash at any point never makes a member reuse a message key: the stored
// state always holds the end of a reservation, and the driver stores it
// before sending. Receivers deliver each message once across their own
// crashes.
func TestCrashNeverReusesKeys(t *testing.T) {
	m := newMesh(t, Options{})
	a, b := m.add("alice"), m.add("bob")
	id := m.channel(a, "garden", 0, b)
	rnd := rand.New(rand.NewSource(7))
	type slot struct {
		tag    [4]byte
		sender uint16
		gen    uint32
	}
	used := map[slot][]byte{}
	sent := 0
	for i := 0; i < 400; i++ {
		switch r := rnd.Intn(20); {
		case r == 0:
			m.crash(a)
		case r == 1:
			m.crash(b)
		case r == 2:
			// A send whose batch never ran (crash before the store commit):
			// its flood is lost with it.
			if err := a.c.Send(m.now(), id, []byte("lost")); err != nil {
				t.Fatal(err)
			}
			m.crash(a)
		case r == 3:
			m.must(a, a.c.Rotate(m.now(), id))
		default:
			m.send(a, id, fmt.Sprint("msg ", i))
			sent++
		}
		for _, f := range m.floods {
			if f.kind != envelope.KindChannel {
				continue
			}
			e, _ := envelope.Parse(f.raw)
			s, g, _, _ := parseBody(e.Body)
			k := slot{[4]byte(e.Dst.Hint()), s, g}
			if prev, ok := used[k]; ok && !bytes.Equal(prev, f.raw) {
				t.Fatalf("step %d: key of epoch %x sender %d generation %d used twice", i, k.tag, s, g)
			}
			used[k] = f.raw
		}
		m.settle()
		// Replays after a crash are refused, not delivered again.
		if i%50 == 49 {
			for _, raw := range used {
				if err := b.c.HandleChannel(m.now(), raw); err == nil {
					t.Fatalf("step %d: a replay was delivered again", i)
				}
			}
			m.drain(b)
		}
	}
	got := b.texts(id)
	if len(got) != sent {
		t.Fatalf("bob got %d of %d messages", len(got), sent)
	}
	dup := map[string]bool{}
	for _, s := range got {
		if dup[s] {
			t.Fatalf("%q delivered twice", s)
		}
		dup[s] = true
	}
}

// A member offline for an hour, during which 300 messages were sent and a
// member was removed (a new epoch whose commit the router held for it),
// catches up on every message exactly once when it comes back.
func TestCatchUpAfterAnHour(t *testing.T) {
	m := newMesh(t, Options{})
	a, b, c, off := m.add("alice"), m.add("bob"), m.add("carol"), m.add("mo")
	id := m.channel(a, "garden", 0, b, c, off)
	m.send(a, id, "before")
	m.settle()
	off.online = false
	senders := []*node{a, b, c}
	var want []string
	for i := 0; i < 300; i++ {
		if i == 150 {
			m.must(a, a.c.Remove(m.now(), id, c.key()))
			m.settle()
		}
		s := senders[i%3]
		if i >= 150 && s == c {
			s = b
		}
		text := fmt.Sprintf("msg %03d from %s", i, s.name)
		m.send(s, id, text)
		want = append(want, text)
		m.settle()
		m.clk.Advance(12 * time.Second)
	}
	// Back online: the held commit arrives, the node asks for history.
	off.online = true
	off.c.CatchUpAll(m.now())
	m.drain(off)
	m.settle()
	m.advance(5 * time.Minute)
	got := off.texts(id)[1:]
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("caught up %d of %d messages (history stats %+v, errors %v)", len(got), len(want), off.c.Stats(), off.errs)
	}
	for _, d := range off.delivered[1:] {
		if !d.History {
			t.Fatalf("%q not marked as history", d.Payload)
		}
		if age := m.now().Sub(d.Time); age < 0 || age > 61*time.Minute+5*time.Minute {
			t.Fatalf("%q dated %v ago", d.Payload, age)
		}
	}
	if i := off.head(t, id); i.Members != 3 {
		t.Fatalf("back member sees %d members", i.Members)
	}
	s := off.c.Stats()
	t.Logf("catch-up: %d requests, %d delivered from history, %d duplicates dropped", s.HistoryRequests, s.FromHistory, s.Duplicates)
}

// A member that missed a commit for good (longer than the router holds
// messages) asks the admins to resync it and is welcomed into a new epoch.
func TestResync(t *testing.T) {
	m := newMesh(t, Options{SyncAfter: time.Minute, Stagger: time.Minute})
	a, b, c := m.add("alice"), m.add("bob"), m.add("carol")
	id := m.channel(a, "garden", 0, b, c)
	m.dropCtl = func(x ctlMsg) bool { return x.to == c }
	m.must(a, a.c.Rotate(m.now(), id))
	m.settle()
	m.dropCtl = nil
	m.must(a, a.c.Rotate(m.now(), id))
	m.settle()
	if n := len(c.c.chans[id].pending); n != 1 {
		t.Fatalf("carol holds %d pending commits", n)
	}
	m.send(a, id, "while carol is lost")
	m.settle()
	m.advance(3 * time.Minute)
	if ha, hc := a.head(t, id), c.head(t, id); ha.EpochHash != hc.EpochHash {
		t.Fatalf("carol at %d, alice at %d", hc.Epoch, ha.Epoch)
	}
	m.send(b, id, "welcome back")
	m.settle()
	if got := c.texts(id); !slices.Contains(got, "welcome back") {
		t.Fatalf("carol got %q", got)
	}
	if !slices.ContainsFunc(c.events, func(e *Event) bool { return e.Type == EventResynced }) {
		t.Fatal("no resync event")
	}
}

// Stored state restores to an identical core.
func TestPersistRoundTrip(t *testing.T) {
	m := newMesh(t, Options{})
	a, b, c, d := m.add("alice"), m.add("bob"), m.add("carol"), m.add("dave")
	id := m.channel(a, "garden", PolicySigned, b, c)
	inv, err := a.c.Invite(m.now(), id, InviteOptions{Approve: true, MaxUses: 3})
	m.must(a, err)
	_, err = d.c.Join(m.now(), inv.Code())
	m.must(d, err)
	m.settle()
	for i := 0; i < 40; i++ {
		m.must(b, b.c.Send(m.now(), id, []byte(fmt.Sprint(i))))
	}
	raws := m.floods
	m.floods = nil
	for _, f := range raws[:5] {
		c.record(c.c.HandleChannel(m.now(), f.raw))
	}
	c.record(c.c.HandleChannel(m.now(), raws[39].raw)) // a range
	c.record(c.c.HandleChannel(m.now(), raws[8].raw))  // single keys
	m.drain(c)
	_, err = c.c.JoinOpen(m.now(), "town square", true)
	m.must(c, err)
	m.send(c, id, "from carol")
	m.settle()
	for _, n := range []*node{a, c, d} {
		for cid, st := range n.store {
			if cid != id && n != c {
				continue
			}
			c2, _ := New(n.o)
			got, err := c2.Load(m.now(), st)
			if err != nil || got != cid {
				t.Fatalf("%s: load: %v", n.name, err)
			}
			if again := c2.marshalChannel(c2.chans[cid]); !bytes.Equal(again, st) {
				t.Fatalf("%s: state does not round-trip", n.name)
			}
		}
	}
	// Another identity's record is refused.
	if _, err := b.c.Load(m.now(), a.store[id]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("foreign record: %v", err)
	}
	// History round-trips too.
	c.c.FlushHistory()
	m.drain(c)
	c2, _ := New(c.o)
	if err := c2.LoadHistory(m.now(), c.hist); err != nil || !bytes.Equal(c2.hist.marshal(), c.hist) {
		t.Fatalf("history: %v", err)
	}
}

// A member of a busy channel that missed a few messages gets those, not
// the hundreds it already holds but could not list in its request.
func TestCatchUpBusyChannel(t *testing.T) {
	m := newMesh(t, Options{RotateAfter: 10000})
	a, b := m.add("alice"), m.add("bob")
	id := m.channel(a, "garden", 0, b)
	for i := 0; i < 400; i++ {
		b.online = i < 300 || i >= 310
		m.send(a, id, fmt.Sprintf("msg %03d", i))
		m.settle()
		m.clk.Advance(10 * time.Second)
	}
	b.online = true
	m.must(b, b.c.CatchUp(m.now(), id))
	m.settle()
	if got := b.texts(id); len(got) != 400 {
		t.Fatalf("bob has %d of 400", len(got))
	}
	s := b.c.Stats()
	if s.FromHistory != 10 || s.Duplicates > 40 {
		t.Fatalf("caught up %d, with %d duplicates", s.FromHistory, s.Duplicates)
	}
	t.Logf("caught up %d messages with %d duplicates", s.FromHistory, s.Duplicates)
}
