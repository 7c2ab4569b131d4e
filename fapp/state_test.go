package fapp

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// stateFixture builds a therapist with an endorsed profile, a booked and a
// free slot and two requests, and a patient with one answered and one
// pending reservation, all delivered directly.
func stateFixture(t *testing.T) (w *world, th *Core, thID *envelope.Identity, pt *Core, ptID *envelope.Identity, pending envelope.Token) {
	w = newWorld(t)
	th, thID = w.therapistCore(t, "t", testProfile(), true, 3)
	ptID = mustIdentity(t, "p")
	pt, _ = New(w.opts("p", ptID), nil)
	for _, raw := range originated(th.Actions(), envelope.KindFlood) {
		if _, err := pt.OnFlood(t0, "n", raw); err != nil {
			t.Fatal(err)
		}
	}
	res, _ := pt.Search(t0, Filter{})
	open := func(raw []byte) {
		e, _ := envelope.Parse(raw)
		payload, _, reply, err := thID.OpenAnonymous(&e)
		if err != nil {
			t.Fatal(err)
		}
		if err := th.OnAnon(t0, payload, reply); err != nil {
			t.Fatal(err)
		}
	}
	id1, err := pt.Reserve(bg(), t0, res[0].Ref, "first")
	if err != nil {
		t.Fatal(err)
	}
	open(actionsOf[*SendAnon](pt.Actions())[0].Raw)
	th.Confirm(t0, id1, "willkommen")
	a := actionsOf[*SendReply](th.Actions())[0]
	if err := pt.OnAnonReply(t0, a.Token, a.Raw); err != nil {
		t.Fatal(err)
	}
	// The second is decided only after both nodes restarted.
	if _, err := pt.Reserve(bg(), t0, res[1].Ref, "second"); err != nil {
		t.Fatal(err)
	}
	s := actionsOf[*SendAnon](pt.Actions())[0]
	open(s.Raw)
	return w, th, thID, pt, ptID, s.Token
}

func TestStateRoundTrip(t *testing.T) {
	w, th, thID, pt, ptID, tok := stateFixture(t)
	for _, tc := range []struct {
		name string
		c    *Core
		id   *envelope.Identity
	}{{"therapist", th, thID}, {"patient", pt, ptID}} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.c.MarshalState()
			if err != nil {
				t.Fatal(err)
			}
			c2, err := New(w.opts(tc.name+"2", tc.id), b)
			if err != nil {
				t.Fatal(err)
			}
			b2, _ := c2.MarshalState()
			if !bytes.Equal(b, b2) {
				t.Fatalf("state differs after restore:\n%x\n%x", b, b2)
			}
		})
	}
	// The restored therapist continues: sequence numbers above the old
	// ones, requests intact, the pending one can still be confirmed and
	// the restored patient opens the answer.
	oldSeq := th.th.seq
	tb, _ := th.MarshalState()
	pb, _ := pt.MarshalState()
	th2, err := New(w.opts("t2", thID), tb)
	if err != nil {
		t.Fatal(err)
	}
	pt2, err := New(w.opts("p2", ptID), pb)
	if err != nil {
		t.Fatal(err)
	}
	th2.Tick(t0.Add(time.Minute))
	pages := originated(th2.Actions(), envelope.KindFlood)
	if len(pages) == 0 {
		t.Fatal("no publish after restore")
	}
	a, _ := ParseAnnounce(pages[0])
	if a.Seq <= oldSeq {
		t.Fatalf("seq %d after restore, was %d", a.Seq, oldSeq)
	}
	// Three slots: one booked (not announced), one with a pending request
	// and one free (both still offered).
	if len(a.Slots) != 2 {
		t.Fatalf("%d slots announced", len(a.Slots))
	}
	var pendingID RequestID
	for _, r := range th2.Requests() {
		if r.Outcome == Pending {
			pendingID = r.ID
		}
	}
	if err := th2.Confirm(t0.Add(time.Minute), pendingID, "ok"); err != nil {
		t.Fatal(err)
	}
	ans := actionsOf[*SendReply](th2.Actions())
	if len(ans) != 1 || ans[0].Token != tok {
		t.Fatalf("answer %+v", ans)
	}
	if err := pt2.OnAnonReply(t0.Add(time.Minute), ans[0].Token, ans[0].Raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range pt2.Reservations() {
		if r.Outcome != Confirmed {
			t.Fatalf("%+v", r)
		}
	}
}

func TestCorruptState(t *testing.T) {
	w, th, thID, pt, _, _ := stateFixture(t)
	for _, c := range []*Core{th, pt} {
		b, _ := c.MarshalState()
		for n := 0; n < len(b); n++ {
			if _, err := New(w.opts("x", thID), b[:n]); !errors.Is(err, ErrCorruptState) {
				t.Fatalf("prefix %d/%d: %v", n, len(b), err)
			}
		}
		for _, mod := range []func([]byte){
			func(b []byte) { b[0] = 'X' },
			func(b []byte) { b[6] = 9 },
			func(b []byte) { b[7] = 2 },
		} {
			bad := append([]byte(nil), b...)
			mod(bad)
			if _, err := New(w.opts("x", thID), bad); !errors.Is(err, ErrCorruptState) {
				t.Fatalf("%v", err)
			}
		}
		if _, err := New(w.opts("x", thID), append(append([]byte(nil), b...), 0)); !errors.Is(err, ErrCorruptState) {
			t.Fatal("trailing byte accepted")
		}
	}
	// Therapist state on a node without identity.
	b, _ := th.MarshalState()
	if _, err := New(Options{Entropy: newDetRand("x")}, b); !errors.Is(err, ErrCorruptState) {
		t.Fatal(err)
	}
}
