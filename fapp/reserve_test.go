package fapp

import (
	"errors"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// raceMesh: a therapist and two patients behind one relay, announces
// spread.
func raceMesh(t *testing.T, auto bool) (*mesh, *mnode, *mnode, *mnode) {
	w := newWorld(t)
	m := newMesh(t)
	id := mustIdentity(t, "therapist")
	o := w.opts("therapist", id)
	o.AutoConfirm = auto
	tc, err := New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	att := testAttestation(t, "therapist")
	if err := tc.SetProfile(t0, testProfile(), Credentials{Attestation: att}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := tc.AddSlot(t0, Slot{Type: Sprechstunde, Start: t0.Add(time.Duration(48+i) * time.Hour), Duration: 25 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	tc.Publish(t0)
	th := m.add("therapist", tc, id)
	rid := mustIdentity(t, "relay")
	rc, _ := New(w.opts("relay", rid), nil)
	relay := m.add("relay", rc, rid)
	m.link(th, relay)
	var ps []*mnode
	for _, name := range []string{"p1", "p2"} {
		pid := mustIdentity(t, name)
		pc, _ := New(w.opts(name, pid), nil)
		p := m.add(name, pc, pid)
		m.link(relay, p)
		ps = append(ps, p)
	}
	m.run()
	return m, th, ps[0], ps[1]
}

func outcome(t *testing.T, p *mnode) Outcome {
	t.Helper()
	rs := p.core.Reservations()
	if len(rs) != 1 {
		t.Fatalf("%s has %d reservations", p.name, len(rs))
	}
	return rs[0].Outcome
}

// TestReservationRace: two patients reserve the same slot; exactly one is
// confirmed, the other is told it is taken, and the slot leaves the next
// announce everywhere.
func TestReservationRace(t *testing.T) {
	for _, auto := range []bool{false, true} {
		name := map[bool]string{false: "manual", true: "auto-confirm"}[auto]
		t.Run(name, func(t *testing.T) {
			m, th, p1, p2 := raceMesh(t, auto)
			res, _ := p1.core.Search(m.now, Filter{})
			if len(res) != 2 {
				t.Fatalf("p1 finds %d", len(res))
			}
			ref := res[0].Ref
			id1, err := p1.core.Reserve(bg(), m.now, ref, "p1 contact")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p2.core.Reserve(bg(), m.now, ref, "p2 contact"); err != nil {
				t.Fatal(err)
			}
			m.run()
			if !auto {
				reqs := th.core.Requests()
				if len(reqs) != 2 || reqs[0].Outcome != Pending || reqs[1].Outcome != Pending {
					t.Fatalf("requests %+v", reqs)
				}
				if outcome(t, p1) != Pending || outcome(t, p2) != Pending {
					t.Fatal("answered before the therapist decided")
				}
				if err := th.core.Confirm(m.now, id1, "bis Dienstag"); err != nil {
					t.Fatal(err)
				}
				// The other request is decided already.
				if err := th.core.Confirm(m.now, reqs[1].ID, ""); !errors.Is(err, ErrDecided) {
					t.Fatalf("second confirm: %v", err)
				}
				m.run()
			}
			o1, o2 := outcome(t, p1), outcome(t, p2)
			if !(o1 == Confirmed && o2 == Taken) {
				t.Fatalf("outcomes %s / %s, want confirmed / taken", o1, o2)
			}
			confirmed := 0
			for _, r := range th.core.Requests() {
				if r.Outcome == Confirmed {
					confirmed++
				} else if r.Contact != "" {
					t.Fatal("contact kept for a request that was not confirmed")
				}
			}
			if confirmed != 1 {
				t.Fatalf("%d confirmed", confirmed)
			}
			// The slot leaves the next announce and so the patients' caches.
			m.tick(time.Minute)
			for _, p := range []*mnode{p1, p2} {
				res, _ := p.core.Search(m.now, Filter{})
				if len(res) != 1 || res[0].Ref == ref {
					t.Fatalf("%s still finds %d slots (%v)", p.name, len(res), res)
				}
			}
			// A third patient arriving late is told it is gone.
			if _, err := p2.core.Reserve(bg(), m.now, ref, "again"); !errors.Is(err, ErrUnknownSlot) {
				t.Fatalf("reserving a withdrawn slot: %v", err)
			}
		})
	}
}

// direct wires one therapist and one patient core without a mesh, so a
// test can drop, replay and reorder envelopes.
type direct struct {
	t     *testing.T
	th    *Core
	thID  *envelope.Identity
	pt    *Core
	now   time.Time
	slots []Result
}

func newDirect(t *testing.T) *direct {
	w := newWorld(t)
	th, id := w.therapistCore(t, "t", testProfile(), false, 2)
	d := &direct{t: t, th: th, thID: id, now: t0}
	d.pt, _ = New(w.opts("p", mustIdentity(t, "p")), nil)
	for _, raw := range originated(th.Actions(), envelope.KindFlood) {
		if _, err := d.pt.OnFlood(t0, "n", raw); err != nil {
			t.Fatal(err)
		}
	}
	d.slots, _ = d.pt.Search(t0, Filter{})
	return d
}

// toTherapist opens an anon envelope as the router would and hands it over.
func (d *direct) toTherapist(raw []byte) error {
	e, err := envelope.Parse(raw)
	if err != nil {
		d.t.Fatal(err)
	}
	payload, _, reply, err := d.thID.OpenAnonymous(&e)
	if err != nil {
		d.t.Fatal(err)
	}
	return d.th.OnAnon(d.now, payload, reply)
}

func TestReservationRetryAndReplay(t *testing.T) {
	d := newDirect(t)
	id, err := d.pt.Reserve(bg(), d.now, d.slots[0].Ref, "contact")
	if err != nil {
		t.Fatal(err)
	}
	sends := actionsOf[*SendAnon](d.pt.Actions())
	if len(sends) != 1 || sends[0].To != d.thID.PublicKey() {
		t.Fatalf("sends %+v", sends)
	}
	first := sends[0]
	if err := d.toTherapist(first.Raw); err != nil {
		t.Fatal(err)
	}
	if err := d.th.Confirm(d.now, id, "ok"); err != nil {
		t.Fatal(err)
	}
	lost := actionsOf[*SendReply](d.th.Actions()) // the answer is lost
	if len(lost) != 1 || lost[0].Token != first.Token {
		t.Fatalf("answer %+v", lost)
	}
	// Replaying the first envelope: refused, nothing re-sent.
	if err := d.toTherapist(first.Raw); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	if len(d.th.Actions()) != 0 {
		t.Fatal("replay produced output")
	}
	// The patient resends after ReservationRetry, under a new token.
	d.now = d.now.Add(15 * time.Minute)
	if w := d.pt.NextWake(); w.After(d.now) {
		t.Fatalf("next wake %s", w)
	}
	d.pt.Tick(d.now)
	sends = actionsOf[*SendAnon](d.pt.Actions())
	if len(sends) != 1 || sends[0].Token == first.Token {
		t.Fatalf("resend %+v", sends)
	}
	if err := d.toTherapist(sends[0].Raw); err != nil {
		t.Fatal(err)
	}
	answers := actionsOf[*SendReply](d.th.Actions())
	if len(answers) != 1 || answers[0].Token != sends[0].Token {
		t.Fatalf("answer to the resend %+v", answers)
	}
	if len(d.th.Requests()) != 1 {
		t.Fatal("a resend became a second request")
	}
	if err := d.pt.OnAnonReply(d.now, answers[0].Token, answers[0].Raw); err != nil {
		t.Fatal(err)
	}
	rs := d.pt.Reservations()
	if rs[0].Outcome != Confirmed || rs[0].Message != "ok" || rs[0].Attempts != 2 {
		t.Fatalf("%+v", rs[0])
	}
	// The lost answer arriving late changes nothing.
	if err := d.pt.OnAnonReply(d.now, lost[0].Token, lost[0].Raw); err != nil {
		t.Fatal(err)
	}
	// A reply on a token nobody issued.
	other := append([]byte(nil), answers[0].Raw...)
	copy(other[envelope.HeaderSize:], []byte{9, 9, 9, 9, 9, 9, 9, 9})
	if err := d.pt.OnAnonReply(d.now, envelope.Token{9, 9, 9, 9, 9, 9, 9, 9}, other); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("unknown token: %v", err)
	}
	// No more resends once answered.
	d.now = d.now.Add(24 * time.Hour)
	d.pt.Tick(d.now)
	if n := len(actionsOf[*SendAnon](d.pt.Actions())); n != 0 {
		t.Fatalf("%d resends after the answer", n)
	}
}

func TestReservationTimeoutAndDecline(t *testing.T) {
	d := newDirect(t)
	if _, err := d.pt.Reserve(bg(), d.now, d.slots[0].Ref, "a"); err != nil {
		t.Fatal(err)
	}
	// A second reservation of the same slot while one is pending.
	if _, err := d.pt.Reserve(bg(), d.now, d.slots[0].Ref, "a"); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("double reservation: %v", err)
	}
	d.pt.Actions()
	resends := 0
	for i := 0; i < 200 && !d.pt.NextWake().IsZero(); i++ {
		d.now = d.pt.NextWake()
		d.pt.Tick(d.now)
		resends += len(actionsOf[*SendAnon](d.pt.Actions()))
	}
	rs := d.pt.Reservations()
	if rs[0].Outcome != Expired {
		t.Fatalf("%+v", rs[0])
	}
	// 15m, 30m, 1h, then every 2h until 72h: 3 + 35.
	if resends < 30 || resends > 45 {
		t.Fatalf("%d resends in 72h", resends)
	}

	// Those slots are past now; the therapist offers a new one.
	newID, err := d.th.AddSlot(d.now, Slot{Type: Probatorik, Start: d.now.Add(24 * time.Hour), Duration: 50 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	d.th.Publish(d.now)
	for _, raw := range originated(d.th.Actions(), envelope.KindFlood) {
		if _, err := d.pt.OnFlood(d.now, "n", raw); err != nil {
			t.Fatal(err)
		}
	}
	id2, err := d.pt.Reserve(bg(), d.now, SlotRef{Therapist: d.thID.PublicKey(), Slot: newID}, "b")
	if err != nil {
		t.Fatal(err)
	}
	s := actionsOf[*SendAnon](d.pt.Actions())[0]
	if err := d.toTherapist(s.Raw); err != nil {
		t.Fatal(err)
	}
	if err := d.th.Decline(d.now, id2, "leider nicht"); err != nil {
		t.Fatal(err)
	}
	a := actionsOf[*SendReply](d.th.Actions())[0]
	if err := d.pt.OnAnonReply(d.now, a.Token, a.Raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range d.pt.Reservations() {
		if r.ID == id2 && (r.Outcome != Declined || r.Message != "leider nicht") {
			t.Fatalf("%+v", r)
		}
	}
	// The slot stays offered after a decline.
	if sl := d.th.Slots(); sl[len(sl)-1].Booked || sl[len(sl)-1].ID != newID {
		t.Fatal("declined slot booked")
	}
	if err := d.th.Decline(d.now, id2, ""); !errors.Is(err, ErrDecided) {
		t.Fatalf("%v", err)
	}
	if err := d.th.Confirm(d.now, RequestID{7}, ""); !errors.Is(err, ErrUnknownRequest) {
		t.Fatalf("%v", err)
	}
}

// TestGoneSlot: a reservation for a slot the therapist withdrew (or one
// that never existed) is answered "gone" at once.
func TestGoneSlot(t *testing.T) {
	d := newDirect(t)
	ref := d.slots[0].Ref
	if _, err := d.pt.Reserve(bg(), d.now, ref, "c"); err != nil {
		t.Fatal(err)
	}
	s := actionsOf[*SendAnon](d.pt.Actions())[0]
	if err := d.th.RemoveSlot(d.now, ref.Slot); err != nil {
		t.Fatal(err)
	}
	d.th.Actions()
	if err := d.toTherapist(s.Raw); err != nil {
		t.Fatal(err)
	}
	a := actionsOf[*SendReply](d.th.Actions())
	if len(a) != 1 {
		t.Fatal("no answer")
	}
	if err := d.pt.OnAnonReply(d.now, a[0].Token, a[0].Raw); err != nil {
		t.Fatal(err)
	}
	if o := d.pt.Reservations()[0].Outcome; o != Gone {
		t.Fatalf("outcome %s", o)
	}
	if r := d.th.Requests(); len(r) != 1 || r[0].Contact != "" {
		t.Fatalf("therapist kept %+v", r)
	}
}

// TestForgedAnswer: an answer not sealed to the patient's one-time key, or
// naming another request, is refused.
func TestForgedAnswer(t *testing.T) {
	d := newDirect(t)
	if _, err := d.pt.Reserve(bg(), d.now, d.slots[0].Ref, "c"); err != nil {
		t.Fatal(err)
	}
	s := actionsOf[*SendAnon](d.pt.Actions())[0]
	wrongKey, _ := envelope.NewReplyKey(newDetRand("wrong"))
	payload, _ := appendAnswer(nil, &answer{ID: RequestID{1}, Outcome: Confirmed, Slot: d.slots[0].Ref.Slot, SlotStart: d.slots[0].Slot.Start})
	raw, _ := envelope.SealAnonReply(newDetRand("x"), envelope.ReplyTo{Token: s.Token, Key: wrongKey.Public()}, payload, Port, 8)
	if err := d.pt.OnAnonReply(d.now, s.Token, raw); !errors.Is(err, ErrForged) {
		t.Fatalf("wrong key: %v", err)
	}
	if o := d.pt.Reservations()[0].Outcome; o != Pending {
		t.Fatalf("outcome %s", o)
	}
}
