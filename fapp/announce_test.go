package fapp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

func sampleAnnounce(t testing.TB, w *world, id *envelope.Identity, endorsed bool, nslots int) *Announce {
	t.Helper()
	p := testProfile()
	att := testAttestation(t, "sample")
	a := &Announce{
		Therapist: id.PublicKey(), Seq: 7, Page: 0, Pages: 1,
		Issued: t0, Expires: t0.Add(24 * time.Hour),
		Profile: p, Commitment: att.Commit(id.PublicKey()),
	}
	if endorsed {
		a.Endorsements = []Endorsement{w.endorse(t, id, att, p)}
	}
	for i := 0; i < nslots; i++ {
		a.Slots = append(a.Slots, Slot{ID: SlotID(i + 1), Type: SlotType(i % 4), Start: t0.Add(time.Duration(24+i) * time.Hour),
			Duration: 50 * time.Minute, Setting: Einzel, Modalitaet: Praxis})
	}
	return a
}

func TestAnnounceRoundTrip(t *testing.T) {
	w := newWorld(t)
	id := mustIdentity(t, "therapist")
	for _, tc := range []struct {
		name     string
		endorsed bool
		slots    int
	}{{"empty", false, 0}, {"unendorsed", false, 5}, {"endorsed", true, 3}, {"full unendorsed", false, 19}, {"full endorsed", true, 7}} {
		t.Run(tc.name, func(t *testing.T) {
			a := sampleAnnounce(t, w, id, tc.endorsed, tc.slots)
			raw, err := SignAnnounce(id, a, 16)
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) > MaxAnnounceSize {
				t.Fatalf("announce %d bytes > %d", len(raw), MaxAnnounceSize)
			}
			got, err := ParseAnnounce(raw)
			if err != nil {
				t.Fatal(err)
			}
			a.Therapist = id.PublicKey()
			if !announcesEqual(a, got) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, a)
			}
			body, _ := appendBody(nil, got)
			e, _ := envelope.Parse(raw)
			if !bytes.Equal(body, e.Body) {
				t.Fatal("re-encoding differs")
			}
		})
	}
}

func announcesEqual(a, b *Announce) bool {
	if a.Therapist != b.Therapist || a.Seq != b.Seq || a.Page != b.Page || a.Pages != b.Pages ||
		!a.Issued.Equal(b.Issued) || !a.Expires.Equal(b.Expires) || a.Commitment != b.Commitment ||
		len(a.Slots) != len(b.Slots) || len(a.Endorsements) != len(b.Endorsements) {
		return false
	}
	pa, pb := a.Profile, b.Profile
	if pa.Verfahren != pb.Verfahren || pa.Altersgruppen != pb.Altersgruppen || pa.Settings != pb.Settings ||
		pa.Kostentraeger != pb.Kostentraeger || pa.Modalitaeten != pb.Modalitaeten || pa.PLZ != pb.PLZ || !slices.Equal(pa.Languages, pb.Languages) {
		return false
	}
	for i := range a.Slots {
		x, y := a.Slots[i], b.Slots[i]
		if x.ID != y.ID || x.Type != y.Type || !x.Start.Equal(y.Start) || x.Duration != y.Duration || x.Setting != y.Setting || x.Modalitaet != y.Modalitaet {
			return false
		}
	}
	for i := range a.Endorsements {
		x, y := a.Endorsements[i], b.Endorsements[i]
		if x.Anchor != y.Anchor || x.Verfahren != y.Verfahren || x.Altersgruppen != y.Altersgruppen || !x.ValidUntil.Equal(y.ValidUntil) || x.Sig != y.Sig {
			return false
		}
	}
	return true
}

// TestBodyLayout pins the body byte by byte, as docs/fapp.md specifies it.
func TestBodyLayout(t *testing.T) {
	p := testProfile()
	p.Languages = []string{"de", "tr"}
	a := &Announce{Page: 1, Pages: 3, Issued: t0, Expires: t0.Add(24 * time.Hour), Profile: p,
		Slots: []Slot{{ID: 0x0102, Type: Probatorik, Start: t0.Add(25 * time.Hour), Duration: 50 * time.Minute, Setting: Einzel, Modalitaet: Video}}}
	for i := range a.Commitment {
		a.Commitment[i] = 0xc0 | byte(i)
	}
	b, err := appendBody(nil, a)
	if err != nil {
		t.Fatal(err)
	}
	ticks := uint32(t0.Unix() / 300) // 5890752 = 0x0059e2c0
	want := "" +
		"01" + // body version
		"12" + // page 1 (high nibble), count-1 = 2 (low nibble)
		hex.EncodeToString([]byte{byte(ticks >> 24), byte(ticks >> 16), byte(ticks >> 8), byte(ticks)}) + // issued, ticks
		"0120" + // lifetime 288 ticks = 24h
		"35" + // quals: Verfahren VT|TP 0011, Altersgruppen Erwachsene 01, Settings Einzel 01
		"36" + // offer: Kostenträger GKV|PKV 0011, Modalitäten Praxis|Video 011, reserved 0
		"0139cb" + // PLZ 80331 = 0x0139cb
		"20" + // 2 languages (high nibble), 0 endorsements
		"6465" + "7472" + // "de" "tr"
		hex.EncodeToString(a.Commitment[:]) +
		"0102" + "012c" + "0a" + "54" // slot id 0x0102, start +300 ticks (25h), 10 ticks (50 min), Probatorik 01 | Einzel 01 | Video 010 | 0
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
	if len(b) != bodyFixed+4+slotSize {
		t.Fatalf("len %d", len(b))
	}
}

func TestSlotsPerAnnounce(t *testing.T) {
	p := testProfile()
	for _, tc := range []struct {
		langs, endorsements, budget, want int
	}{
		{1, 0, MaxAnnounceSize, 19}, {1, 1, MaxAnnounceSize, 7}, {2, 0, MaxAnnounceSize, 19}, {2, 1, MaxAnnounceSize, 7},
		{4, 0, MaxAnnounceSize, 18}, {4, 1, MaxAnnounceSize, 6}, {1, 2, MaxAnnounceSize, 0},
		{1, 0, DefaultAnnounceBudget, 17}, {1, 1, DefaultAnnounceBudget, 5}, {4, 1, DefaultAnnounceBudget, 4}, {1, 1, 1000, 7},
	} {
		p.Languages = []string{"de", "en", "tr", "ru"}[:tc.langs]
		if got := SlotsPerAnnounce(&p, tc.endorsements, tc.budget); got != tc.want {
			t.Errorf("%d languages, %d endorsements, %d bytes: %d slots, want %d", tc.langs, tc.endorsements, tc.budget, got, tc.want)
		}
	}
	// Too many slots for one frame: refused, never silently cut.
	w := newWorld(t)
	id := mustIdentity(t, "therapist")
	a := sampleAnnounce(t, w, id, true, 8)
	if _, err := SignAnnounce(id, a, 16); !errors.Is(err, ErrOversize) {
		t.Fatalf("8 slots with an endorsement: %v, want ErrOversize", err)
	}
}

// TestPublishPaging: more slots than one frame holds are split across
// pages, each one LoRa frame; removing a slot re-sends only its page.
func TestPublishPaging(t *testing.T) {
	w := newWorld(t)
	th, id := w.therapistCore(t, "t1", testProfile(), true, 20)
	pages := originated(th.Actions(), envelope.KindFlood)
	if len(pages) != 4 { // 5 + 5 + 5 + 5 with the default 240-byte budget
		t.Fatalf("%d pages, want 4", len(pages))
	}
	relay, err := New(w.opts("relay", mustIdentity(t, "relay")), nil)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint32
	for i, raw := range pages {
		if len(raw) > MaxAnnounceSize {
			t.Fatalf("page %d: %d bytes", i, len(raw))
		}
		a, err := ParseAnnounce(raw)
		if err != nil {
			t.Fatal(err)
		}
		if a.Page != i || a.Pages != 4 || a.Therapist != id.PublicKey() {
			t.Fatalf("page %d: %d/%d", i, a.Page, a.Pages)
		}
		seqs = append(seqs, a.Seq)
		if v, err := relay.OnFlood(t0, "n", raw); err != nil || v != Relay {
			t.Fatalf("relay: %v %v", v, err)
		}
	}
	if !slices.IsSorted(seqs) || seqs[0] == seqs[1] {
		t.Fatalf("sequence numbers %v", seqs)
	}
	res, _ := relay.Search(t0, Filter{})
	if len(res) != 20 {
		t.Fatalf("relay finds %d slots, want 20", len(res))
	}
	// Take slot 9 (on page 1) off.
	if err := th.RemoveSlot(t0, 9); err != nil {
		t.Fatal(err)
	}
	if err := th.Publish(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	again := originated(th.Actions(), envelope.KindFlood)
	if len(again) != 1 {
		t.Fatalf("%d pages re-sent, want 1", len(again))
	}
	a, _ := ParseAnnounce(again[0])
	if a.Page != 1 || a.Seq <= seqs[3] {
		t.Fatalf("re-sent page %d seq %d", a.Page, a.Seq)
	}
	for _, s := range a.Slots {
		if s.ID == 9 {
			t.Fatal("removed slot still announced")
		}
	}
	if _, err := relay.OnFlood(t0.Add(time.Minute), "n", again[0]); err != nil {
		t.Fatal(err)
	}
	res, _ = relay.Search(t0.Add(time.Minute), Filter{})
	if len(res) != 19 {
		t.Fatalf("relay finds %d slots after removal, want 19", len(res))
	}
	// The old page 1 replayed: rollback.
	if _, err := relay.OnFlood(t0.Add(time.Minute), "n", pages[1]); !errors.Is(err, ErrRollback) {
		t.Fatalf("old page: %v", err)
	}
	// Remove every slot of page 3: the count shrinks and page 3 is dropped
	// everywhere.
	for _, s := range th.Slots() {
		if s.ID > 15 {
			if err := th.RemoveSlot(t0, s.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	th.Publish(t0.Add(2 * time.Minute))
	for _, raw := range originated(th.Actions(), envelope.KindFlood) {
		if _, err := relay.OnFlood(t0.Add(2*time.Minute), "n", raw); err != nil {
			t.Fatal(err)
		}
	}
	res, _ = relay.Search(t0.Add(2*time.Minute), Filter{})
	if len(res) != 14 {
		t.Fatalf("relay finds %d slots, want 14", len(res))
	}
	if _, err := relay.OnFlood(t0.Add(2*time.Minute), "n", pages[3]); !errors.Is(err, ErrRollback) {
		t.Fatalf("withdrawn page: %v", err)
	}
}

// TestRefresh: announces are re-sent at half their lifetime with a higher
// sequence number; an un-refreshed announce expires from caches.
func TestRefresh(t *testing.T) {
	w := newWorld(t)
	th, _ := w.therapistCore(t, "t1", testProfile(), false, 2)
	first := originated(th.Actions(), envelope.KindFlood)
	wake := th.NextWake()
	if want := t0.Add(12 * time.Hour); !wake.Equal(want) {
		t.Fatalf("next wake %s, want %s", wake, want)
	}
	th.Tick(wake)
	second := originated(th.Actions(), envelope.KindFlood)
	if len(second) != 1 {
		t.Fatalf("%d refreshed", len(second))
	}
	a1, _ := ParseAnnounce(first[0])
	a2, _ := ParseAnnounce(second[0])
	if a2.Seq <= a1.Seq || !a2.Expires.After(a1.Expires) {
		t.Fatalf("refresh seq %d→%d expiry %s→%s", a1.Seq, a2.Seq, a1.Expires, a2.Expires)
	}
	relay, _ := New(w.opts("relay", mustIdentity(t, "relay")), nil)
	relay.OnFlood(t0, "n", first[0])
	if res, _ := relay.Search(t0.Add(23*time.Hour), Filter{}); len(res) != 2 {
		t.Fatalf("before expiry: %d", len(res))
	}
	if res, _ := relay.Search(t0.Add(24*time.Hour), Filter{}); len(res) != 0 {
		t.Fatalf("after expiry: %d", len(res))
	}
}

func TestSlotRef(t *testing.T) {
	id := mustIdentity(t, "x")
	r := SlotRef{Therapist: id.PublicKey(), Slot: 4711}
	got, err := ParseSlotRef(r.String())
	if err != nil || got != r {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"", "abc/1", r.Therapist.String(), r.Therapist.String() + "/70000", r.Therapist.String() + "/x"} {
		if _, err := ParseSlotRef(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
