package fapp

import (
	"bytes"
	"errors"
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
