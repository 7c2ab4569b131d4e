package fapp

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// The small API the node's wiring needs: endorsements in their wire form
// (what an anchor hands to a therapist), OwnsToken (the node offers an
// anon-reply to FAPP only for its own tokens) and single-use search drafts.

func TestEndorsementWireForm(t *testing.T) {
	w := newWorld(t)
	id := mustIdentity(t, "therapist")
	att := testAttestation(t, "therapist")
	e := w.endorse(t, id, att, testProfile())
	b, err := e.MarshalBinary()
	if err != nil || len(b) != EndorsementSize {
		t.Fatalf("MarshalBinary: %d bytes, %v", len(b), err)
	}
	got, err := ParseEndorsement(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != e || !got.Verify(w.anchor.PublicKey(), id.PublicKey(), att.Commit(id.PublicKey())) {
		t.Fatalf("round trip: %+v, want %+v", got, e)
	}
	bad := func(name string, b []byte) {
		t.Helper()
		if _, err := ParseEndorsement(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	bad("empty", nil)
	bad("truncated", b[:len(b)-1])
	bad("trailing", append(bytes.Clone(b), 0))
	q := bytes.Clone(b)
	q[4] |= 1 // reserved bits of the qualifications byte
	bad("reserved bit", q)
	q = bytes.Clone(b)
	q[4] = 0
	bad("no qualifications", q)
	if _, err := (Endorsement{}).MarshalBinary(); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty endorsement: %v", err)
	}
}

func TestOwnsToken(t *testing.T) {
	m, th, p1, _ := raceMesh(t, false)
	_ = th
	c := p1.core
	if c.OwnsToken(envelope.Token{1, 2, 3}) {
		t.Fatal("a stranger's token is owned")
	}
	_, _, err := c.SearchNetwork(bg(), m.now, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	qs := originated(c.Actions(), envelope.KindQuery)
	if len(qs) != 1 {
		t.Fatalf("%d queries", len(qs))
	}
	e, _ := envelope.Parse(qs[0])
	if !c.OwnsToken(e.Token) {
		t.Fatal("the running search's token is not owned")
	}
	res, _ := c.Search(m.now, Filter{})
	if _, err := c.Reserve(bg(), m.now, res[0].Ref, "Erika, 0151 2345678"); err != nil {
		t.Fatal(err)
	}
	sends := actionsOf[*SendAnon](c.Actions())
	if len(sends) != 1 || !c.OwnsToken(sends[0].Token) {
		t.Fatalf("reservation token not owned (%d sends)", len(sends))
	}
	c.Tick(m.now.Add(3 * time.Minute))
	if c.OwnsToken(e.Token) {
		t.Fatal("an ended search's token is still owned")
	}
	if !c.OwnsToken(sends[0].Token) {
		t.Fatal("a pending reservation's token is no longer owned")
	}
}

func TestSearchDraftOnce(t *testing.T) {
	m, _, p1, _ := raceMesh(t, false)
	c := p1.core
	d, err := c.PrepareSearch(m.now, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.StartSearch(m.now, d); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unsolved draft: %v", err)
	}
	if err := d.Solve(bg()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.StartSearch(m.now, d); err != nil {
		t.Fatal(err)
	}
	d.Discard() // a started draft's key belongs to the search: no effect
	later := m.now.Add(3 * time.Minute)
	c.Tick(later)
	c.Actions()
	// The search ended; its token and key must never be used again.
	if _, _, err := c.StartSearch(later, d); !errors.Is(err, ErrInvalid) {
		t.Fatalf("restarting an ended draft: %v", err)
	}
	if n := len(originated(c.Actions(), envelope.KindQuery)); n != 0 {
		t.Fatalf("restart sent %d queries", n)
	}
	d2, _ := c.PrepareSearch(later, Filter{})
	d2.Discard()
	var nilDraft *SearchDraft
	nilDraft.Discard()
}

// answeringRelay is a node whose cache holds n therapists' announces (one
// page each, 803xx), with o applied to its options.
func answeringRelay(t *testing.T, w *world, label string, n int, o func(*Options)) *Core {
	t.Helper()
	opts := w.opts(label, mustIdentity(t, label))
	if o != nil {
		o(&opts)
	}
	c, err := New(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		p := testProfile()
		p.PLZ = fmt.Sprintf("803%02d", i)
		th, _ := w.therapistCore(t, fmt.Sprintf("t%d", i), p, false, 1)
		for _, raw := range originated(th.Actions(), envelope.KindFlood) {
			if _, err := c.OnFlood(t0, "n", raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

// TestAnswerFanout: among many neighbours only about AnswerFanout answer;
// the others keep the query (the nodes behind them hold the same
// announces) rather than relay it.
func TestAnswerFanout(t *testing.T) {
	w := newWorld(t)
	c := answeringRelay(t, w, "relay", 2, func(o *Options) { o.AnswerFanout = 5; o.AnswerRate = Rate{Burst: 1000, Every: time.Second} })
	answered := 0
	const queries = 200
	c.SetNeighbours(50)
	for i := 0; i < queries; i++ {
		v, err := c.OnFlood(t0, Neighbour(fmt.Sprint(i)), makeQuery(t, networkFilter(Filter{PLZPrefix: "803"}), t0, 4, fmt.Sprint("q", i)))
		if err != nil || v != Keep {
			t.Fatalf("query %d: %s %v, want keep", i, v, err)
		}
		if len(actionsOf[*SendReply](c.Actions())) > 0 {
			answered++
		}
	}
	// About 5/50 of them: 20 expected.
	if answered < 8 || answered > 35 {
		t.Fatalf("answered %d of %d with fan-out 5 of 50 neighbours", answered, queries)
	}
	if st := c.Stats(); int(st.QueriesLeft) != queries-answered || int(st.QueriesAnswered) != answered {
		t.Fatalf("stats %+v", st)
	}
	// Few neighbours (a point-to-point link), or unknown: always answered.
	for _, n := range []int{0, 1, 5} {
		c.SetNeighbours(n)
		v, _ := c.OnFlood(t0, "x", makeQuery(t, networkFilter(Filter{PLZPrefix: "803"}), t0, 4, fmt.Sprint("few", n)))
		if v != Keep || len(actionsOf[*SendReply](c.Actions())) == 0 {
			t.Fatalf("%d neighbours: %s, not answered", n, v)
		}
	}
	// No match: relayed, whatever the fan-out.
	c.SetNeighbours(50)
	if v, _ := c.OnFlood(t0, "x", makeQuery(t, networkFilter(Filter{PLZPrefix: "1"}), t0, 4, "nomatch")); v != Relay {
		t.Fatalf("no match: %s", v)
	}
}

// TestAnswerOrder: answers carry the matching pages in random orders, so
// that neighbours answering one query together carry more than one answer
// holds.
func TestAnswerOrder(t *testing.T) {
	w := newWorld(t)
	seen := map[envelope.PublicKey]bool{}
	for i := 0; i < 6; i++ {
		c := answeringRelay(t, w, fmt.Sprint("relay", i), 12, func(o *Options) { o.RepliesPerQuery = 1 })
		c.OnFlood(t0, "x", makeQuery(t, networkFilter(Filter{PLZPrefix: "803"}), t0, 4, "q"))
		replies := actionsOf[*SendReply](c.Actions())
		if len(replies) != 1 {
			t.Fatalf("relay %d: %d replies", i, len(replies))
		}
		key, _ := envelope.NewReplyKey(newDetRand("rk/q"))
		e, _ := envelope.Parse(replies[0].Raw)
		payload, _, err := key.OpenReply(&e)
		if err != nil {
			t.Fatal(err)
		}
		raws, err := decodeResults(payload)
		if err != nil || len(raws) >= 12 {
			t.Fatalf("%d records, %v", len(raws), err)
		}
		for _, raw := range raws {
			a, _ := ParseAnnounce(raw)
			seen[a.Therapist] = true
		}
	}
	if len(seen) <= 4 {
		t.Fatalf("six answers carried only %d of 12 therapists", len(seen))
	}
}

// TestAnswerSpread: answers wait for a random instant within AnswerSpread.
func TestAnswerSpread(t *testing.T) {
	w := newWorld(t)
	c := answeringRelay(t, w, "relay", 2, func(o *Options) { o.AnswerSpread = 20 * time.Second })
	v, _ := c.OnFlood(t0, "x", makeQuery(t, networkFilter(Filter{PLZPrefix: "803"}), t0, 4, "q"))
	if v != Keep || len(actionsOf[*SendReply](c.Actions())) != 0 {
		t.Fatalf("answered at once (%s)", v)
	}
	wake := c.NextWake()
	if wake.Before(t0) || wake.After(t0.Add(20*time.Second)) {
		t.Fatalf("next wake %s", wake)
	}
	c.Tick(wake)
	if n := len(actionsOf[*SendReply](c.Actions())); n != 1 {
		t.Fatalf("%d replies at %s", n, wake)
	}
	c.Tick(wake.Add(time.Minute))
	if n := len(actionsOf[*SendReply](c.Actions())); n != 0 {
		t.Fatalf("%d replies again", n)
	}
}

// TestQueryRepeat: a network search's query goes out once more, the same
// bytes, between half and one and a half QueryRepeat later; never again.
func TestQueryRepeat(t *testing.T) {
	m, _, p1, _ := raceMesh(t, false)
	c := p1.core
	c.o.QueryRepeat = 10 * time.Second
	if _, _, err := c.SearchNetwork(bg(), m.now, Filter{}); err != nil {
		t.Fatal(err)
	}
	first := originated(c.Actions(), envelope.KindQuery)
	if len(first) != 1 {
		t.Fatalf("%d queries", len(first))
	}
	wake := c.NextWake()
	if wake.Before(m.now.Add(5*time.Second)) || wake.After(m.now.Add(15*time.Second)) {
		t.Fatalf("repeat at %s", wake.Sub(m.now))
	}
	c.Tick(wake)
	again := originated(c.Actions(), envelope.KindQuery)
	if len(again) != 1 || !bytes.Equal(again[0], first[0]) {
		t.Fatalf("repeat: %d queries", len(again))
	}
	c.Tick(wake.Add(30 * time.Second))
	if n := len(originated(c.Actions(), envelope.KindQuery)); n != 0 {
		t.Fatalf("%d more queries", n)
	}
	// Negative: never repeated.
	c.o.QueryRepeat = -1
	if _, _, err := c.SearchNetwork(bg(), m.now, Filter{}); err != nil {
		t.Fatal(err)
	}
	c.Actions()
	c.Tick(m.now.Add(time.Minute))
	if n := len(originated(c.Actions(), envelope.KindQuery)); n != 0 {
		t.Fatalf("repeated with QueryRepeat < 0: %d", n)
	}
}
