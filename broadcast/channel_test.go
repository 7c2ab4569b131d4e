package broadcast

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

func TestCreateInviteSend(t *testing.T) {
	for _, policy := range []Policy{0, PolicySigned} {
		t.Run(policy.String(), func(t *testing.T) {
			m := newMesh(t, Options{})
			a, b, c := m.add("alice"), m.add("bob"), m.add("carol")
			id := m.channel(a, "garden", policy, b, c)
			for _, n := range []*node{a, b, c} {
				i := n.head(t, id)
				if i.Members != 3 || i.Status != StatusActive || !i.Private || i.Name != "garden" {
					t.Fatalf("%s: %+v", n.name, i)
				}
			}
			m.send(a, id, "hello from alice")
			m.send(b, id, "hi, bob here")
			m.settle()
			if got := c.texts(id); !slices.Equal(got, []string{"hello from alice", "hi, bob here"}) {
				t.Fatalf("carol got %q", got)
			}
			for _, d := range c.delivered {
				if d.Verified != policy.Signed() {
					t.Errorf("verified = %v with policy %v", d.Verified, policy)
				}
				if want := map[string]envelope.PublicKey{"hello from alice": a.key(), "hi, bob here": b.key()}[string(d.Payload)]; d.From != want {
					t.Errorf("%q from %s", d.Payload, d.From.Address())
				}
			}
			if got := a.texts(id); !slices.Equal(got, []string{"hi, bob here"}) {
				t.Fatalf("alice got %q (own messages are not delivered back)", got)
			}
			if mem, _ := c.c.Members(id); len(mem) != 3 || mem[0].Role != RoleOwner || mem[0].Key != a.key() {
				t.Fatalf("members %+v", mem)
			}
		})
	}
}

// A removed member cannot decrypt any message of a later epoch: it never
// receives a later secret, and every later message is ErrUnknownEpoch to it.
func TestRemovedCannotReadLaterEpochs(t *testing.T) {
	m := newMesh(t, Options{})
	a, b, c := m.add("alice"), m.add("bob"), m.add("carol")
	id := m.channel(a, "garden", 0, b, c)
	m.send(a, id, "before")
	m.settle()
	before := c.head(t, id).Epoch

	var toCarol []ctlMsg
	m.dropCtl = func(x ctlMsg) bool {
		if x.to == c {
			toCarol = append(toCarol, x)
		}
		return false
	}
	m.must(a, a.c.Remove(m.now(), id, c.key()))
	m.settle()
	m.dropCtl = nil
	if i := c.head(t, id); i.Status != StatusRemoved {
		t.Fatalf("carol status %s", i.Status)
	}
	// What carol was sent about the removal carries no secret.
	if len(toCarol) != 1 || toCarol[0].typ != "notice" {
		t.Fatalf("carol got %d control messages: %+v", len(toCarol), toCarol)
	}
	msg, err := decodeControl(toCarol[0].payload)
	if err != nil || msg.(*commitMsg).secret != nil {
		t.Fatalf("notice to the removed member: %v, secret present", err)
	}
	// Later epochs: the one of the removal and one more rotation.
	nErr := len(c.errs)
	m.send(a, id, "after removal")
	m.send(b, id, "bob after removal")
	m.must(a, a.c.Rotate(m.now(), id))
	m.settle()
	m.send(b, id, "after rotation")
	m.settle()
	if got := c.texts(id); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("removed member read %q", got)
	}
	if got := c.countErrs(ErrUnknownEpoch); got != 3 || len(c.errs)-nErr != 3 {
		t.Fatalf("removed member errors %v", c.errs[nErr:])
	}
	// And its state holds no keys of any later epoch.
	for _, e := range c.c.chans[id].epochs {
		if e.num > before && e.k != nil {
			t.Fatalf("removed member has keys of epoch %d", e.num)
		}
	}
	if got := b.texts(id); !slices.Equal(got, []string{"before", "after removal"}) {
		t.Fatalf("bob got %q", got)
	}
}

// A joiner cannot decrypt any message of an earlier epoch.
func TestJoinerCannotReadEarlierEpochs(t *testing.T) {
	m := newMesh(t, Options{})
	a, b, d := m.add("alice"), m.add("bob"), m.add("dave")
	id := m.channel(a, "garden", 0, b)
	var old [][]byte
	for i := 0; i < 3; i++ {
		m.send(a, id, fmt.Sprintf("old %d", i))
		old = append(old, m.floods[len(m.floods)-1].raw)
	}
	m.settle()
	m.join(a, d, id, RoleMember)
	joined := d.head(t, id).Epoch
	for _, e := range d.c.chans[id].epochs {
		if e.num < joined {
			t.Fatalf("joiner holds epoch %d < %d", e.num, joined)
		}
	}
	for _, raw := range old {
		if err := d.c.HandleChannel(m.now(), raw); !errors.Is(err, ErrUnknownEpoch) {
			t.Fatalf("old message to joiner: %v", err)
		}
	}
	// Nor from a history reply: catch-up brings the old ciphertexts, which
	// stay unreadable.
	m.must(d, d.c.CatchUp(m.now(), id))
	m.settle()
	if got := d.texts(id); len(got) != 0 {
		t.Fatalf("joiner read %q", got)
	}
	m.send(a, id, "new")
	m.settle()
	if got := d.texts(id); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("joiner got %q", got)
	}
}

// Reordered messages are all delivered once; replays are refused with
// ErrReplay and change nothing.
func TestReorderAndReplay(t *testing.T) {
	m := newMesh(t, Options{})
	a, b := m.add("alice"), m.add("bob")
	id := m.channel(a, "garden", 0, b)
	var raws [][]byte
	for i := 0; i < 100; i++ {
		m.must(a, a.c.Send(m.now(), id, []byte(fmt.Sprint(i))))
	}
	for _, f := range m.floods {
		raws = append(raws, f.raw)
	}
	m.floods = nil
	// Deliver in a scrambled order: the last first (a 99-message gap, kept as
	// a range), then odd ones backwards, then even ones.
	order := []int{99}
	for i := 97; i >= 1; i -= 2 {
		order = append(order, i)
	}
	for i := 0; i < 99; i += 2 {
		order = append(order, i)
	}
	for _, i := range order {
		if err := b.c.HandleChannel(m.now(), raws[i]); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	m.drain(b)
	got := b.texts(id)
	if len(got) != 100 {
		t.Fatalf("delivered %d", len(got))
	}
	seen := map[string]bool{}
	for _, s := range got {
		if seen[s] {
			t.Fatalf("%s delivered twice", s)
		}
		seen[s] = true
	}
	if k := b.c.chans[id].head.k; len(k.skip) != 0 {
		t.Fatalf("%d skip entries left after every message came", len(k.skip))
	}
	state := b.c.marshalChannel(b.c.chans[id])
	for _, i := range []int{0, 50, 99} {
		if err := b.c.HandleChannel(m.now(), raws[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay of %d: %v", i, err)
		}
	}
	if !bytes.Equal(state, b.c.marshalChannel(b.c.chans[id])) {
		t.Fatal("a replay changed the state")
	}
	if acts := b.c.Actions(); len(acts) != 0 {
		t.Fatalf("replays produced %d actions", len(acts))
	}
}

func TestOutOfOrderWindow(t *testing.T) {
	m := newMesh(t, Options{MaxSkip: 50, MaxSkipped: 3})
	a, b := m.add("alice"), m.add("bob")
	id := m.channel(a, "garden", 0, b)
	var raws [][]byte
	for i := 0; i < 60; i++ {
		m.must(a, a.c.Send(m.now(), id, []byte(fmt.Sprint(i))))
		raws = append(raws, m.floods[len(m.floods)-1].raw)
	}
	m.floods = nil
	steps := []struct {
		msg  int
		want error
	}{
		{51, ErrTooFarAhead}, // more than MaxSkip ahead
		{2, nil},             // skips 0 and 1: two message keys kept
		{5, nil},             // skips 3 and 4: no room for two more keys, so a range
		{8, nil},             // skips 6 and 7: a fourth entry, the oldest (key 0) evicted
		{0, ErrStale},        // its key is gone
		{1, nil},             // its key was kept
		{1, ErrReplay},
		{59, nil}, // skips 50: kept as one range
	}
	for i := 58; i >= 9; i-- {
		steps = append(steps, struct {
			msg  int
			want error
		}{i, nil})
	}
	steps = append(steps, []struct {
		msg  int
		want error
	}{{7, nil}, {6, nil}, {3, nil}, {4, nil}, {30, ErrReplay}}...)
	for _, s := range steps {
		if err := b.c.HandleChannel(m.now(), raws[s.msg]); !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("message %d: %v, want %v", s.msg, err, s.want)
		}
	}
	if n := len(b.c.chans[id].head.k.skip); n != 0 {
		t.Fatalf("%d skip entries left", n)
	}
}

func TestOpenChannel(t *testing.T) {
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprint("signed=", signed), func(t *testing.T) {
			m := newMesh(t, Options{})
			a, b := m.add("alice"), m.add("bob")
			ida, err := a.c.JoinOpen(m.now(), "#General", signed)
			m.must(a, err)
			idb, err := b.c.JoinOpen(m.now(), " general", signed)
			m.must(b, err)
			if ida != idb {
				t.Fatal("same name, different ids")
			}
			if i := a.head(t, ida); i.Private || i.Policy.Open() != true {
				t.Fatalf("open channel info %+v", i)
			}
			m.send(a, ida, "anyone can read this")
			raw := m.floods[len(m.floods)-1].raw
			m.settle()
			if got := b.texts(idb); !slices.Equal(got, []string{"anyone can read this"}) {
				t.Fatalf("got %q", got)
			}
			d := b.delivered[0]
			if d.Private || d.Verified != signed || (signed && d.From != a.key()) {
				t.Fatalf("deliver %+v", d)
			}
			if err := b.c.HandleChannel(m.now(), raw); !errors.Is(err, ErrReplay) {
				t.Fatalf("replay: %v", err)
			}
			// The other variant is another channel.
			c := m.add("carol")
			_, err = c.c.JoinOpen(m.now(), "general", !signed)
			m.must(c, err)
			if err := c.c.HandleChannel(m.now(), raw); !errors.Is(err, ErrUnknownEpoch) {
				t.Fatalf("other variant: %v", err)
			}
		})
	}
}

func TestLeave(t *testing.T) {
	m := newMesh(t, Options{Stagger: time.Minute})
	a, b, c, d := m.add("alice"), m.add("bob"), m.add("carol"), m.add("dave")
	id := m.channel(a, "garden", 0, c, d)
	m.join(a, b, id, RoleAdmin)
	m.must(c, c.c.Leave(m.now(), id))
	m.settle()
	if _, err := c.c.Info(id); !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("leaver still holds the channel: %v", err)
	}
	// Both admins got the request; the one of rank 0 commits at once, the
	// other would after a minute and finds nothing left to do.
	m.advance(2 * time.Minute)
	for _, n := range []*node{a, b, d} {
		if i := n.head(t, id); i.Members != 3 {
			t.Fatalf("%s sees %d members", n.name, i.Members)
		}
	}
	// Alice: three admissions and the removal; bob found nothing to do.
	if a.c.stats.Commits != 4 || b.c.stats.Commits != 0 {
		t.Fatalf("commits: alice %d bob %d", a.c.stats.Commits, b.c.stats.Commits)
	}
	if h1, h2 := a.head(t, id).EpochHash, d.head(t, id).EpochHash; h1 != h2 {
		t.Fatal("members disagree")
	}
	// The only owner cannot leave a channel with members.
	if err := a.c.Leave(m.now(), id); !errors.Is(err, ErrLastOwner) {
		t.Fatalf("last owner leaves: %v", err)
	}
}

func TestRotationSchedule(t *testing.T) {
	m := newMesh(t, Options{RotateEvery: time.Hour, RotateAfter: 10, Stagger: time.Minute})
	a, b := m.add("alice"), m.add("bob")
	id := m.channel(a, "garden", 0, b)
	e0 := a.head(t, id).Epoch
	m.advance(59 * time.Minute)
	if e := a.head(t, id).Epoch; e != e0 {
		t.Fatalf("rotated early: %d", e)
	}
	m.advance(2 * time.Minute)
	e1 := b.head(t, id).Epoch
	if e1 != e0+1 {
		t.Fatalf("after an hour epoch %d, want %d", e1, e0+1)
	}
	for i := 0; i < 10; i++ {
		m.send(b, id, "x")
	}
	m.advance(time.Second)
	if e := b.head(t, id).Epoch; e != e1+1 {
		t.Fatalf("after 10 messages epoch %d, want %d", e, e1+1)
	}
}

func TestKDFMatchesHKDF(t *testing.T) {
	// hkdfExpand/hkdfExtract are RFC 5869 for one block; check against the
	// standard library.
	checkHKDF(t)
}

// A removed member keeps its old epoch's keys, but what it posts with them
// is refused once the removal is older than RemovedGrace (before, it may be
// a message sent before the removal and still on its way).
func TestRemovedMemberCannotKeepPosting(t *testing.T) {
	m := newMesh(t, Options{RemovedGrace: 10 * time.Minute})
	a, b, c := m.add("alice"), m.add("bob"), m.add("carol")
	id := m.channel(a, "garden", 0, b, c)
	old := c.c.chans[id].head
	m.must(a, a.c.Remove(m.now(), id, c.key()))
	m.settle()
	// Carol, now removed, still holds the old epoch and sends with it.
	post := func(text string, gen uint32) []byte {
		sender := uint16(old.self)
		leaf, _ := old.k.tree.derive(old.self, false)
		ck := advance(leaf, gen)
		return sealWith(t, old.k.tag, sender, gen, step(&ck), []byte(text))
	}
	if err := b.c.HandleChannel(m.now(), post("in flight", 0)); err != nil {
		t.Fatalf("within the grace: %v", err)
	}
	m.clk.Advance(11 * time.Minute)
	before := b.c.marshalChannel(b.c.chans[id])
	if err := b.c.HandleChannel(m.now(), post("still here", 1)); !errors.Is(err, ErrNotMember) {
		t.Fatalf("after the grace: %v", err)
	}
	if !bytes.Equal(before, b.c.marshalChannel(b.c.chans[id])) {
		t.Fatal("state changed")
	}
	// A current member's late message of the old epoch is still fine.
	mk, _ := func() (key32, *epoch) {
		ep := b.c.chans[id].byHash(old.hash)
		leaf, _ := ep.k.tree.derive(0, false)
		return step(&leaf), ep
	}()
	if err := b.c.HandleChannel(m.now(), sealWith(t, old.k.tag, 0, 0, mk, []byte("late from alice"))); err != nil {
		t.Fatalf("member's late message: %v", err)
	}
}
