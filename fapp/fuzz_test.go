package fapp

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

var update = flag.Bool("update", false, "rewrite the seed corpus and the size table in docs/fapp.md")

// Every decoder of outside bytes in this package has a fuzz target here:
// announce bodies (FuzzAnnounceBody), query bodies (FuzzQueryBody),
// reservations (FuzzReservation), answers and search results (FuzzReply),
// persisted state (FuzzState), endorsements as anchors hand them out
// (FuzzEndorsement), and the core's entry points end to end (FuzzCore). The seed corpus is the valid samples (f.Add) plus the files
// under testdata/fuzz/<Target>/, written by
// `go test ./fapp -run FuzzCorpus -update`.

// fuzzSeeds returns valid inputs per target, built the way production code
// builds them.
func fuzzSeeds(t testing.TB) map[string][][]byte {
	w := newWorld(t)
	s := map[string][][]byte{}
	th, thID := w.therapistCore(t, "t", testProfile(), true, 7)
	pages := originated(th.Actions(), envelope.KindFlood)
	p2 := testProfile()
	p2.Languages = []string{"de", "en", "tr"}
	p2.Settings, p2.Modalitaeten = Einzel|Gruppe, Praxis|Video|Telefon
	th2, _ := w.therapistCore(t, "t2", p2, false, 20)
	pages = append(pages, originated(th2.Actions(), envelope.KindFlood)...)
	for _, raw := range pages {
		e, _ := envelope.Parse(raw)
		s["FuzzAnnounceBody"] = append(s["FuzzAnnounceBody"], append([]byte(nil), e.Body...))
		s["FuzzCore"] = append(s["FuzzCore"], append([]byte{0}, raw...))
	}
	for i, f := range []Filter{{}, {PLZPrefix: "803", Verfahren: Verhaltenstherapie, Kostentraeger: GKV},
		{PLZPrefix: "0", SlotTypes: SlotTypes(Therapieplatz), From: t0, To: t0.Add(72 * time.Hour), Modalitaeten: Video, Settings: Gruppe, Altersgruppen: KinderJugendliche}} {
		raw := makeQuery(t, networkFilter(f), t0, 4, fmt.Sprint("seed", i))
		e, _ := envelope.Parse(raw)
		s["FuzzQueryBody"] = append(s["FuzzQueryBody"], append([]byte(nil), e.Body...))
		s["FuzzCore"] = append(s["FuzzCore"], append([]byte{0}, raw...))
	}
	slot := th.Slots()[0]
	res := makeReservation(t, thID.PublicKey(), reservation{ID: RequestID{1, 2, 3}, Made: t0, Slot: slot.ID, SlotStart: slot.Start, Contact: "Erika, 0151 2345678"}, 4)
	s["FuzzReservation"] = [][]byte{res}
	s["FuzzCore"] = append(s["FuzzCore"], append([]byte{1}, res...))
	ans, _ := appendAnswer(nil, &answer{ID: RequestID{1}, Outcome: Confirmed, Slot: 3, SlotStart: t0, Message: "Praxis, Sendlinger Str. 1"})
	ans2, _ := appendAnswer(nil, &answer{ID: RequestID{2}, Outcome: Taken, Slot: 3, SlotStart: t0})
	var recs [][]byte
	for _, raw := range pages[:2] {
		r, _ := recordOf(raw)
		recs = append(recs, r)
	}
	results, _ := appendResults(nil, recs)
	s["FuzzReply"] = [][]byte{ans, ans2, results}
	_, cr, _ := th.Profile()
	end, _ := cr.Endorsements[0].MarshalBinary()
	s["FuzzEndorsement"] = [][]byte{end}

	// State of a busy therapist and a patient.
	pt, _ := New(w.opts("p", mustIdentity(t, "p")), nil)
	for _, raw := range pages {
		pt.OnFlood(t0, "n", raw)
	}
	rs, _ := pt.Search(t0, Filter{})
	pt.Reserve(bg(), t0, rs[0].Ref, "seed contact")
	for _, a := range pt.Actions() {
		if sa, ok := a.(*SendAnon); ok {
			e, _ := envelope.Parse(sa.Raw)
			payload, _, reply, _ := thID.OpenAnonymous(&e)
			th.OnAnon(t0, payload, reply)
		}
	}
	for _, c := range []*Core{th, pt} {
		b, err := c.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		s["FuzzState"] = append(s["FuzzState"], b)
	}
	return s
}

func addSeeds(f *testing.F, target string) {
	for _, b := range fuzzSeeds(f)[target] {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
}

// checkKnown fails on an error that wraps none of the documented
// sentinels.
func checkKnown(t *testing.T, err error) {
	t.Helper()
	if Reason(err) == "other" {
		t.Fatalf("undocumented error: %v", err)
	}
}

func FuzzAnnounceBody(f *testing.F) {
	addSeeds(f, "FuzzAnnounceBody")
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeBody(b)
		if err != nil {
			checkKnown(t, err)
			return
		}
		again, err := appendBody(nil, &a)
		if err != nil {
			t.Fatalf("decoded but does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}

func FuzzEndorsement(f *testing.F) {
	addSeeds(f, "FuzzEndorsement")
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEndorsement(b)
		if err != nil {
			checkKnown(t, err)
			return
		}
		again, err := e.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed but does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}

func FuzzQueryBody(f *testing.F) {
	addSeeds(f, "FuzzQueryBody")
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := decodeQueryBody(envelope.Token{1}, b)
		if err != nil {
			checkKnown(t, err)
			return
		}
		if len(q.Filter.PLZPrefix) > MaxQueryPLZDigits {
			t.Fatalf("accepted PLZ prefix %q", q.Filter.PLZPrefix)
		}
		again, err := appendQueryBody(nil, &q)
		if err != nil {
			t.Fatalf("decoded but does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}

func FuzzReservation(f *testing.F) {
	addSeeds(f, "FuzzReservation")
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeReservation(b)
		if err != nil {
			checkKnown(t, err)
			return
		}
		again, err := appendReservation(nil, &m)
		if err != nil {
			t.Fatalf("decoded but does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}

func FuzzReply(f *testing.F) {
	addSeeds(f, "FuzzReply")
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeAnswer(b); err != nil {
			checkKnown(t, err)
		} else {
			again, err := appendAnswer(nil, &m)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("answer does not re-encode: %v", err)
			}
		}
		raws, err := decodeResults(b)
		if err != nil {
			checkKnown(t, err)
			return
		}
		var recs [][]byte
		for _, raw := range raws {
			if _, err := ParseAnnounce(raw); err != nil {
				checkKnown(t, err)
			}
			r, err := recordOf(raw)
			if err != nil {
				t.Fatalf("rebuilt envelope is not a record: %v", err)
			}
			recs = append(recs, r)
		}
		again, err := appendResults(nil, recs)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("results do not re-encode: %v", err)
		}
	})
}

func FuzzState(f *testing.F) {
	addSeeds(f, "FuzzState")
	w := newWorld(f)
	id := mustIdentity(f, "t")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := New(w.opts("s", id), b)
		if err != nil {
			checkKnown(t, err)
			return
		}
		// A restored state marshals to a canonical form that restores to
		// itself.
		b1, err := c.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := New(w.opts("s", id), b1)
		if err != nil {
			t.Fatalf("own state refused: %v", err)
		}
		b2, _ := c2.MarshalState()
		if !bytes.Equal(b1, b2) {
			t.Fatal("state not stable")
		}
		c2.Tick(t0.Add(time.Hour))
		c2.Actions()
	})
}

// FuzzCore feeds arbitrary bytes to the core's entry points: the first byte
// picks OnFlood (0), OnAnon on a therapist (1) or OnAnonReply (2). Refused
// inputs must leave the cache unchanged; accepted announces must be found.
func FuzzCore(f *testing.F) {
	addSeeds(f, "FuzzCore")
	w := newWorld(f)
	seeds := fuzzSeeds(f)
	// A therapist (restored from its state for speed) and a relay with
	// something in its cache already.
	th0, thID := w.therapistCore(f, "t", testProfile(), true, 7)
	thState, _ := th0.MarshalState()
	first := seeds["FuzzCore"][0][1:]
	relayID := mustIdentity(f, "relay")
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		th, err := New(w.opts("t", thID), thState)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := New(w.opts("relay", relayID), nil)
		c.OnFlood(t0, "seed", first)
		c.Actions()
		switch b[0] % 3 {
		case 0:
			before := cacheDigest(c)
			v, err := c.OnFlood(t0, "n", b[1:])
			if err != nil {
				checkKnown(t, err)
				if v != Drop {
					t.Fatalf("verdict %s with error", v)
				}
				if cacheDigest(c) != before {
					t.Fatal("refused input changed the cache")
				}
			}
		case 1:
			var reply envelope.ReplyTo
			reply.Key[0] = 9
			before, _ := th.MarshalState()
			if err := th.OnAnon(t0, b[1:], reply); err != nil {
				checkKnown(t, err)
				after, _ := th.MarshalState()
				if !bytes.Equal(before, after) {
					t.Fatal("refused reservation changed the state")
				}
			}
		case 2:
			var tok envelope.Token
			copy(tok[:], b[1:])
			if err := c.OnAnonReply(t0, tok, b[1:]); err != nil {
				checkKnown(t, err)
			}
		}
		if err := cacheConsistent(c); err != nil {
			t.Fatal(err)
		}
		c.Tick(t0.Add(time.Minute))
		c.Actions()
	})
}

// TestFuzzCorpus writes the seed corpus files under -update and otherwise
// checks they exist, so the corpus is visible in the tree and reviewable.
func TestFuzzCorpus(t *testing.T) {
	for name, inputs := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", name)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for i, in := range inputs {
				content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", in)
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) == 0 {
			t.Fatalf("no seed corpus in %s (run with -update): %v", dir, err)
		}
	}
}
