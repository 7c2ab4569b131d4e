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
	// Fewer matches than asked for: answered all the same, and not relayed
	// (the nodes behind hold the same announces).
	v, replies = ask("b", Filter{PLZPrefix: "803"})
	if v != Keep || len(replies) != 1 {
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

// TestFilterMatch: each filter field against one profile and slot.
func TestFilterMatch(t *testing.T) {
	p := testProfile() // VT|TP, Erwachsene, Einzel, GKV|PKV, Praxis|Video, 80331, de
	p.Settings = Einzel | Gruppe
	p.Languages = []string{"de", "tr"}
	s := Slot{ID: 1, Type: Probatorik, Start: t0.Add(48 * time.Hour), Duration: time.Hour, Setting: Gruppe, Modalitaet: Video}
	for _, tc := range []struct {
		name string
		f    Filter
		want bool
	}{
		{"empty", Filter{}, true},
		{"Verfahren shared", Filter{Verfahren: TiefenpsychologischFundiert | Analytisch}, true},
		{"Verfahren not offered", Filter{Verfahren: Analytisch}, false},
		{"age group", Filter{Altersgruppen: KinderJugendliche}, false},
		{"setting of the slot", Filter{Settings: Gruppe}, true},
		{"setting the slot lacks", Filter{Settings: Einzel}, false},
		{"Kostenträger", Filter{Kostentraeger: PKV | Beihilfe}, true},
		{"Kostenträger not taken", Filter{Kostentraeger: Selbstzahler}, false},
		{"modality of the slot", Filter{Modalitaeten: Video}, true},
		{"modality the slot lacks", Filter{Modalitaeten: Praxis}, false},
		{"slot type", Filter{SlotTypes: SlotTypes(Probatorik, Akutbehandlung)}, true},
		{"other slot type", Filter{SlotTypes: SlotTypes(Therapieplatz)}, false},
		{"PLZ 3 digits", Filter{PLZPrefix: "803"}, true},
		{"PLZ 5 digits", Filter{PLZPrefix: "80331"}, true},
		{"other PLZ", Filter{PLZPrefix: "804"}, false},
		{"language", Filter{Language: "tr"}, true},
		{"other language", Filter{Language: "en"}, false},
		{"from before", Filter{From: t0.Add(47 * time.Hour)}, true},
		{"from at start", Filter{From: t0.Add(48 * time.Hour)}, true},
		{"from after", Filter{From: t0.Add(49 * time.Hour)}, false},
		{"to after", Filter{To: t0.Add(49 * time.Hour)}, true},
		{"to at start (exclusive)", Filter{To: t0.Add(48 * time.Hour)}, false},
	} {
		f := tc.f
		if err := f.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := f.matchProfile(&p) && f.matchSlot(&s, t0)
		if got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// A slot that has started never matches.
	var f Filter
	if f.matchSlot(&s, s.Start) {
		t.Error("started slot matched")
	}
	for _, bad := range []Filter{{PLZPrefix: "803311"}, {PLZPrefix: "8o3"}, {Language: "DE"}, {Limit: 17}, {From: t0, To: t0}, {Verfahren: 0x10}} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func TestRequestIDText(t *testing.T) {
	id := RequestID{1, 2, 3, 4, 5, 6, 7, 0xff}
	got, err := ParseRequestID(id.String())
	if err != nil || got != id {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"", "0102", "zz02030405060708", "010203040506070809"} {
		if _, err := ParseRequestID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestLimiterBounded: the limiter forgets the idlest key when full, and a
// clock going backwards does not refill.
func TestLimiterBounded(t *testing.T) {
	l := newLimiter[string](Rate{Burst: 1, Every: time.Minute}, 2)
	if !l.allow("a", t0) || !l.allow("b", t0.Add(time.Second)) || l.allow("a", t0.Add(2*time.Second)) {
		t.Fatal("burst")
	}
	l.allow("c", t0.Add(3*time.Second)) // forgets a (idlest)
	if len(l.buckets) != 2 || l.buckets["a"] != nil {
		t.Fatalf("buckets %v", l.buckets)
	}
	if l.allow("b", t0.Add(-time.Hour)) {
		t.Fatal("refilled by a clock going backwards")
	}
	if !l.allow("b", t0.Add(2*time.Minute)) {
		t.Fatal("no refill")
	}
}
