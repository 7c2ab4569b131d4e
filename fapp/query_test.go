package fapp

import (
	"errors"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

func TestQueryRoundTrip(t *testing.T) {
	for _, f := range []Filter{
		{},
		{PLZPrefix: "0"},
		{PLZPrefix: "999", Verfahren: Systemisch | Analytisch, Altersgruppen: KinderJugendliche, Settings: Gruppe},
		{Kostentraeger: Selbstzahler | Beihilfe, Modalitaeten: Telefon, SlotTypes: SlotTypes(Probatorik, Therapieplatz), Limit: 16},
		{From: t0.Add(30 * time.Hour), To: t0.Add(80 * time.Hour)},
	} {
		nf := networkFilter(f)
		raw := makeQuery(t, nf, t0, 4, "rt")
		q, err := ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		g := q.Filter
		if g.PLZPrefix != nf.PLZPrefix || g.Verfahren != nf.Verfahren || g.Altersgruppen != nf.Altersgruppen || g.Settings != nf.Settings ||
			g.Kostentraeger != nf.Kostentraeger || g.Modalitaeten != nf.Modalitaeten || g.SlotTypes != nf.SlotTypes || g.Limit != nf.Limit ||
			!g.From.Equal(nf.From) || !g.To.Equal(nf.To) {
			t.Fatalf("round trip\n got %+v\nwant %+v", g, nf)
		}
	}
	// Rounding: whole days, outward; 5 digits capped to 3; language dropped.
	nf := networkFilter(Filter{PLZPrefix: "80331", Language: "tr", From: t0.Add(30 * time.Hour), To: t0.Add(50 * time.Hour)})
	if nf.PLZPrefix != "803" || nf.Language != "" || !nf.From.Equal(t0.Add(24*time.Hour)) || !nf.To.Equal(t0.Add(72*time.Hour)) || nf.Limit != 8 {
		t.Fatalf("network filter %+v", nf)
	}
}

// TestQueryOrigin: the patient's node starts a query with a hop count of
// 0–2 and lowers the TTL by as much, so hops+TTL is always QueryTTL.
func TestQueryOrigin(t *testing.T) {
	w := newWorld(t)
	c, _ := New(w.opts("p", mustIdentity(t, "p")), nil)
	seen := map[uint8]bool{}
	for i := 0; i < 30; i++ {
		_, _, err := c.SearchNetwork(bg(), t0, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		raw := originated(c.Actions(), envelope.KindQuery)[0]
		h, ttl := raw[envelope.OffsetHops], raw[envelope.OffsetTTL]
		if h > 2 || h+ttl != 6 {
			t.Fatalf("hops %d ttl %d", h, ttl)
		}
		seen[h] = true
		c.Tick(t0.Add(time.Duration(i+1) * 3 * time.Minute)) // end the search
	}
	if len(seen) != 3 {
		t.Fatalf("hop counts used: %v", seen)
	}
	// At most MaxSearches at once.
	for i := 0; i < 4; i++ {
		c.SearchNetwork(bg(), t0.Add(time.Hour), Filter{})
	}
	if _, _, err := c.SearchNetwork(bg(), t0.Add(time.Hour), Filter{}); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("fifth search: %v", err)
	}
}

// TestQueryAnswering: a node answers only with matching announces, keeps
// (does not relay) a query it answered in full, and stops answering at its
// node-wide answer limit while still relaying.
func TestQueryAnswering(t *testing.T) {
	w := newWorld(t)
	o := w.opts("relay", mustIdentity(t, "relay"))
	o.AnswerRate = Rate{Burst: 2, Every: time.Hour}
	c, _ := New(o, nil)
	for i, plz := range []string{"80331", "80333", "10115"} {
		p := testProfile()
		p.PLZ = plz
		th, _ := w.therapistCore(t, "t"+plz, p, i == 0, 2)
		for _, raw := range originated(th.Actions(), envelope.KindFlood) {
			if _, err := c.OnFlood(t0, "n", raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	ask := func(label string, f Filter) (Verdict, []*SendReply) {
		v, err := c.OnFlood(t0, Neighbour(label), makeQuery(t, networkFilter(f), t0, 4, label))
		if err != nil {
			t.Fatal(err)
		}
		return v, actionsOf[*SendReply](c.Actions())
	}
	v, replies := ask("a", Filter{PLZPrefix: "803", Limit: 1})
	if v != Keep || len(replies) != 1 {
		t.Fatalf("limit 1: %s, %d replies", v, len(replies))
	}
	v, replies = ask("b", Filter{PLZPrefix: "803"})
	if v != Relay || len(replies) != 1 {
		t.Fatalf("803: %s, %d replies", v, len(replies))
	}
	// The answer carries both 803 therapists (verified one first), not
	// the Berlin one.
	key, _ := envelope.NewReplyKey(newDetRand("rk/b"))
	e, _ := envelope.Parse(replies[0].Raw)
	payload, _, err := key.OpenReply(&e)
	if err != nil {
		t.Fatal(err)
	}
	raws, err := decodeResults(payload)
	if err != nil || len(raws) != 2 {
		t.Fatalf("%d records, %v", len(raws), err)
	}
	a0, _ := ParseAnnounce(raws[0])
	if a0.Profile.PLZ != "80331" || len(a0.Endorsements) != 1 {
		t.Fatalf("first record %s", a0.Profile.PLZ)
	}
	// Answer limit reached: relayed, not answered.
	v, replies = ask("c", Filter{PLZPrefix: "101"})
	if v != Relay || len(replies) != 0 {
		t.Fatalf("over the answer limit: %s, %d replies", v, len(replies))
	}
	if got := c.Stats().Rejected["rate_limited"]; got != 1 {
		t.Fatalf("rate_limited %d", got)
	}
	// No match: relayed, nothing sent, no answer budget spent.
	v, replies = ask("d", Filter{PLZPrefix: "5"})
	if v != Relay || len(replies) != 0 {
		t.Fatalf("no match: %s %d", v, len(replies))
	}
}
