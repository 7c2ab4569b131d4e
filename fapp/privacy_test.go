package fapp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// TestPrivacyInvariant captures every byte the patient's node transmits
// while it searches (locally, then over the network) and reserves a slot,
// and checks that none of it contains the patient's identity key, address,
// address hint, contact details, or its PLZ with more than 3 digits, in any
// encoding. It also checks that the relays keep nothing of the reservation
// beyond the router's breadcrumb (token → previous hop).
func TestPrivacyInvariant(t *testing.T) {
	w := newWorld(t)
	m := newMesh(t)
	patientID := mustIdentity(t, "patient")
	pc, err := New(w.opts("patient", patientID), nil)
	if err != nil {
		t.Fatal(err)
	}
	patient := m.add("patient", pc, patientID)
	var relays []*mnode
	prev := patient
	for i := 0; i < 3; i++ {
		id := mustIdentity(t, fmt.Sprintf("relay%d", i))
		c, _ := New(w.opts(fmt.Sprintf("relay%d", i), id), nil)
		r := m.add(fmt.Sprintf("relay%d", i), c, id)
		m.link(prev, r)
		relays, prev = append(relays, r), r
	}
	tc, tid := w.therapistCore(t, "therapist", testProfile(), true, 4)
	therapist := m.add("therapist", tc, tid)
	m.link(prev, therapist)
	m.run() // announces spread

	// The patient's own address and PLZ. Its node has an identity like
	// every node; FAPP must never use it.
	const fullPLZ = "80331"
	const contact = "Erika Mustermann, 0151 2345678, erika@example.org"
	before := len(patient.sent)

	// 1. Local search: zero traffic.
	local, err := pc.Search(m.now, Filter{PLZPrefix: fullPLZ, Verfahren: Verhaltenstherapie, Kostentraeger: GKV})
	if err != nil {
		t.Fatal(err)
	}
	if len(local) != 4 {
		t.Fatalf("local search found %d, want 4", len(local))
	}
	m.run()
	if len(patient.sent) != before {
		t.Fatalf("local search sent %d frames", len(patient.sent)-before)
	}

	// 2. Network search with the full PLZ in the filter: capped to 803.
	sid, _, err := pc.SearchNetwork(bg(), m.now, Filter{PLZPrefix: fullPLZ, Verfahren: Verhaltenstherapie, Language: "de"})
	if err != nil {
		t.Fatal(err)
	}
	m.run()
	var got []Result
	for _, a := range patient.events {
		if u, ok := a.(*SearchUpdate); ok && u.ID == sid {
			got = append(got, u.New...)
		}
	}
	all, running := pc.SearchResults(sid)
	if !running || len(all) != 4 {
		t.Fatalf("network search: %d results (running %v)", len(all), running)
	}
	// Every relay and the therapist answered, yet no slot is duplicated.
	if st := relays[0].core.Stats(); st.QueriesAnswered != 1 {
		t.Fatalf("relay0 answered %d", st.QueriesAnswered)
	}
	seen := map[SlotRef]bool{}
	for _, r := range append(got, all...) {
		if seen[r.Ref] && !containsRef(all, r.Ref) {
			t.Fatalf("duplicate %s", r.Ref)
		}
		seen[r.Ref] = true
	}
	// What the relays saw of the search: at most three PLZ digits.
	for _, f := range relays[0].sent {
		if e, _ := envelope.Parse(f); e.Kind == envelope.KindQuery {
			q, err := ParseQuery(f)
			if err != nil || q.Filter.PLZPrefix != "803" {
				t.Fatalf("query as relayed: %+v %v", q.Filter, err)
			}
		}
	}

	// 3. Reserve.
	rid, err := pc.Reserve(bg(), m.now, local[0].Ref, contact)
	if err != nil {
		t.Fatal(err)
	}
	m.run()
	reqs := tc.Requests()
	if len(reqs) != 1 || reqs[0].Contact != contact || reqs[0].ID != rid {
		t.Fatalf("therapist sees %+v", reqs)
	}
	if err := tc.Confirm(m.now, rid, "Praxis Dr. T., Sendlinger Str. 1, 80331 München"); err != nil {
		t.Fatal(err)
	}
	m.run()
	if rs := pc.Reservations(); len(rs) != 1 || rs[0].Outcome != Confirmed {
		t.Fatalf("patient sees %+v", rs)
	}

	// The invariant, over everything the patient's node transmitted.
	frames := patient.sent[before:]
	if len(frames) < 2 {
		t.Fatalf("only %d frames captured", len(frames))
	}
	key, addr := patientID.PublicKey(), patientID.Address()
	hint := addr.Hint()
	x := patientID.X25519Public()
	needles := map[string][]byte{
		"identity key":       key[:],
		"X25519 key":         x[:],
		"address":            addr[:],
		"address hint":       hint[:],
		"PLZ (5 digits)":     []byte(fullPLZ),
		"PLZ (4 digits)":     []byte(fullPLZ[:4]),
		"PLZ 24-bit":         {0x01, 0x39, 0xcb},
		"PLZ 32-bit BE":      binary.BigEndian.AppendUint32(nil, 80331),
		"PLZ 32-bit LE":      binary.LittleEndian.AppendUint32(nil, 80331),
		"PLZ 4 digits 16bit": binary.BigEndian.AppendUint16(nil, 8033),
		"contact":            []byte(contact),
		"name":               []byte("Erika"),
		"phone":              []byte("2345678"),
	}
	for i, f := range frames {
		e, err := envelope.Parse(f)
		if err != nil {
			t.Fatal(err)
		}
		switch e.Kind {
		case envelope.KindQuery, envelope.KindAnon:
		default:
			// The patient's node also relays others' traffic; that carries
			// nothing of its own either, and is checked the same way.
		}
		for what, n := range needles {
			if bytes.Contains(f, n) {
				t.Errorf("frame %d (%s, %d bytes) contains the patient's %s", i, e.Kind, len(f), what)
			}
		}
		if e.Kind == envelope.KindAnon && (e.Flags&envelope.FlagFull != 0) {
			t.Errorf("frame %d: anon with full addresses", i)
		}
	}
	// The query's PLZ field says 3 digits.
	for _, f := range frames {
		if q, err := ParseQuery(f); err == nil && len(q.Filter.PLZPrefix) > MaxQueryPLZDigits {
			t.Errorf("query with %q", q.Filter.PLZPrefix)
		}
	}

	// Relays keep nothing of the reservation: their FAPP state is that of a
	// fresh node, and the only router state is the breadcrumb.
	fresh, _ := New(w.opts("fresh", mustIdentity(t, "fresh")), nil)
	want, _ := fresh.MarshalState()
	for _, r := range relays {
		st, _ := r.core.MarshalState()
		if !bytes.Equal(st, want) {
			t.Errorf("%s: FAPP state is not empty: %x", r.name, st)
		}
		if s := r.core.Stats(); s.RequestsReceived != 0 || s.ReservationsSent != 0 {
			t.Errorf("%s: %+v", r.name, s)
		}
		if len(r.core.Requests()) != 0 || len(r.core.Reservations()) != 0 {
			t.Errorf("%s holds reservations", r.name)
		}
		for tok, nb := range r.crumbs {
			_ = tok // token → previous hop: all the router keeps
			if nb == nil {
				t.Errorf("%s: empty breadcrumb", r.name)
			}
		}
	}
}

func containsRef(rs []Result, ref SlotRef) bool {
	for _, r := range rs {
		if r.Ref == ref {
			return true
		}
	}
	return false
}

// TestSearchMerge: two therapists, answers from several nodes, each slot
// once; a network search's answers are filtered with the full local
// filter; the search ends after SearchLifetime.
func TestSearchMerge(t *testing.T) {
	w := newWorld(t)
	m := newMesh(t)
	pid := mustIdentity(t, "patient")
	pc, _ := New(w.opts("patient", pid), nil)
	patient := m.add("patient", pc, pid)
	hub := func(label string) *mnode {
		id := mustIdentity(t, label)
		c, _ := New(w.opts(label, id), nil)
		return m.add(label, c, id)
	}
	a, b := hub("a"), hub("b")
	m.link(patient, a)
	m.link(patient, b)
	p1 := testProfile()
	p2 := testProfile()
	p2.PLZ, p2.Verfahren = "80999", Systemisch
	t1c, t1 := w.therapistCore(t, "t1", p1, false, 3)
	t2c, t2 := w.therapistCore(t, "t2", p2, true, 2)
	m.link(a, m.add("t1", t1c, t1))
	m.link(b, m.add("t2", t2c, t2))
	// The patient was offline while announces spread: its cache is empty.
	patient.seen = map[[32]byte]bool{}
	m.run()
	pc.cache = newCache(1024, 1<<20, w.anchors)

	sid, local, err := pc.SearchNetwork(bg(), m.now, Filter{PLZPrefix: "8099"})
	if err != nil || len(local) != 0 {
		t.Fatalf("%v %d", err, len(local))
	}
	m.run()
	res, _ := pc.SearchResults(sid)
	if len(res) != 2 {
		t.Fatalf("%d results, want the 2 slots in 8099x", len(res))
	}
	for _, r := range res {
		if r.Ref.Therapist != t2.PublicKey() || !r.Trust.Verified {
			t.Fatalf("result %+v", r)
		}
	}
	// Several nodes answered with the same announce (both neighbours; they
	// answered, so they did not relay the query on to the therapists'
	// nodes); the patient cached it once, and nothing of t1 (whose PLZ
	// does not match 809).
	if got := pc.Stats().ResultsReceived; got < 2 {
		t.Fatalf("results received %d", got)
	}
	if all, _ := pc.Search(m.now, Filter{}); len(all) != 2 {
		t.Fatalf("cache after search: %d slots", len(all))
	}
	m.tick(3 * time.Minute)
	if _, running := pc.SearchResults(sid); running {
		t.Fatal("search still running")
	}
	done := false
	for _, e := range patient.events {
		if u, ok := e.(*SearchUpdate); ok && u.ID == sid && u.Done {
			done = true
		}
	}
	if !done {
		t.Fatal("no Done update")
	}
}
