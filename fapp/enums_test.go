package fapp

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestEnumerationValues pins the wire value of every enumeration member
// (docs/fapp.md, "Enumerations").
func TestEnumerationValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uint8
		want uint8
		text string
	}{
		{"Verhaltenstherapie", uint8(Verhaltenstherapie), 0x1, "VT"},
		{"tiefenpsychologisch fundiert", uint8(TiefenpsychologischFundiert), 0x2, "TP"},
		{"analytisch", uint8(Analytisch), 0x4, "AP"},
		{"Systemische Therapie", uint8(Systemisch), 0x8, "ST"},
		{"Erwachsene", uint8(Erwachsene), 0x1, "erwachsene"},
		{"Kinder und Jugendliche", uint8(KinderJugendliche), 0x2, "kinder-jugendliche"},
		{"Einzel", uint8(Einzel), 0x1, "einzel"},
		{"Gruppe", uint8(Gruppe), 0x2, "gruppe"},
		{"GKV", uint8(GKV), 0x1, "gkv"},
		{"PKV", uint8(PKV), 0x2, "pkv"},
		{"Beihilfe", uint8(Beihilfe), 0x4, "beihilfe"},
		{"Selbstzahler", uint8(Selbstzahler), 0x8, "selbstzahler"},
		{"Praxis", uint8(Praxis), 0x1, "praxis"},
		{"Video", uint8(Video), 0x2, "video"},
		{"Telefon", uint8(Telefon), 0x4, "telefon"},
		{"Sprechstunde", uint8(Sprechstunde), 0, "sprechstunde"},
		{"Probatorik", uint8(Probatorik), 1, "probatorik"},
		{"Akutbehandlung", uint8(Akutbehandlung), 2, "akutbehandlung"},
		{"Therapieplatz", uint8(Therapieplatz), 3, "therapieplatz"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

func TestEnumerationText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Verfahren
		err  bool
	}{
		{"VT", Verhaltenstherapie, false},
		{"vt, tp", Verhaltenstherapie | TiefenpsychologischFundiert, false},
		{"Verhaltenstherapie,analytische Psychotherapie", Verhaltenstherapie | Analytisch, false},
		{"Systemische Therapie", Systemisch, false},
		{"", 0, false},
		{"-", 0, false},
		{"XY", 0, true},
	} {
		got, err := ParseVerfahren(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%q: %v %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", tc.in, err)
		}
	}
	if s := (Verhaltenstherapie | Systemisch).String(); s != "VT,ST" {
		t.Errorf("String %q", s)
	}
	if st, err := ParseSlotTypes("akut,sprechstunde"); err != nil || st != SlotTypes(Akutbehandlung, Sprechstunde) {
		t.Errorf("%v %v", st, err)
	}
	if _, err := ParseSlotType("kaffee"); !errors.Is(err, ErrInvalid) {
		t.Error(err)
	}
	for _, s := range []string{"kinder und jugendliche", "KJ"} {
		if a, err := ParseAltersgruppe(s); err != nil || a != KinderJugendliche {
			t.Errorf("%q: %v %v", s, a, err)
		}
	}
	// JSON carries names both ways.
	f := Filter{Verfahren: Analytisch, Kostentraeger: GKV | Beihilfe, Modalitaeten: Video, SlotTypes: SlotTypes(Therapieplatz), PLZPrefix: "803"}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"verfahren":"AP","kostentraeger":"gkv,beihilfe","modalitaeten":"video","slot_types":"therapieplatz","plz_prefix":"803"}`
	if string(b) != want {
		t.Fatalf("json %s", b)
	}
	var back Filter
	if err := json.Unmarshal(b, &back); err != nil || back.Verfahren != f.Verfahren || back.Kostentraeger != f.Kostentraeger || back.SlotTypes != f.SlotTypes {
		t.Fatalf("%+v %v", back, err)
	}
}

func TestProfileValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(p *Profile)
		want error
	}{
		{"ok", func(p *Profile) {}, nil},
		{"no Verfahren", func(p *Profile) { p.Verfahren = 0 }, ErrInvalid},
		{"unknown Verfahren bit", func(p *Profile) { p.Verfahren = 0x10 }, ErrInvalid},
		{"no Kostenträger", func(p *Profile) { p.Kostentraeger = 0 }, ErrInvalid},
		{"PLZ 4 digits", func(p *Profile) { p.PLZ = "8033" }, ErrInvalid},
		{"PLZ letters", func(p *Profile) { p.PLZ = "8033a" }, ErrInvalid},
		{"PLZ leading zero", func(p *Profile) { p.PLZ = "01067" }, nil},
		{"no language", func(p *Profile) { p.Languages = nil }, ErrInvalid},
		{"language upper case", func(p *Profile) { p.Languages = []string{"DE"} }, ErrInvalid},
		{"language twice", func(p *Profile) { p.Languages = []string{"de", "de"} }, ErrInvalid},
		{"five languages", func(p *Profile) { p.Languages = []string{"de", "en", "tr", "ru", "ar"} }, ErrOversize},
	} {
		p := testProfile()
		tc.mod(&p)
		if err := p.Validate(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestTherapistAPI covers the therapist's argument checks.
func TestTherapistAPI(t *testing.T) {
	w := newWorld(t)
	id := mustIdentity(t, "t")
	c, _ := New(w.opts("t", id), nil)
	if _, err := c.AddSlot(t0, Slot{Start: t0.Add(time.Hour), Duration: time.Hour}); !errors.Is(err, ErrNotTherapist) {
		t.Fatal(err)
	}
	att := testAttestation(t, "t")
	p := testProfile()
	p.Languages = []string{"de", "en", "tr", "ru"}
	// Two endorsements and four languages leave no room for a slot.
	e := w.endorse(t, id, att, p)
	if err := c.SetProfile(t0, p, Credentials{Attestation: att, Endorsements: []Endorsement{e, e}}); !errors.Is(err, ErrOversize) {
		t.Fatalf("oversized profile: %v", err)
	}
	bad := e
	bad.Sig[0] ^= 1
	if err := c.SetProfile(t0, p, Credentials{Attestation: att, Endorsements: []Endorsement{bad}}); !errors.Is(err, ErrEndorsement) {
		t.Fatalf("bad endorsement: %v", err)
	}
	if err := c.SetProfile(t0, p, Credentials{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no attestation: %v", err)
	}
	if err := c.SetProfile(t0, p, Credentials{Attestation: att, Endorsements: []Endorsement{e}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    Slot
	}{
		{"past", Slot{Start: t0.Add(-time.Hour), Duration: time.Hour}},
		{"off grid", Slot{Start: t0.Add(time.Hour + time.Minute), Duration: time.Hour}},
		{"zero duration", Slot{Start: t0.Add(time.Hour)}},
		{"too long", Slot{Start: t0.Add(time.Hour), Duration: 22 * time.Hour}},
		{"too far ahead", Slot{Start: t0.Add(300 * 24 * time.Hour), Duration: time.Hour}},
		{"setting not offered", Slot{Start: t0.Add(time.Hour), Duration: time.Hour, Setting: Gruppe}},
		{"bad type", Slot{Type: 4, Start: t0.Add(time.Hour), Duration: time.Hour}},
	} {
		if _, err := c.AddSlot(t0, tc.s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	sid, err := c.AddSlot(t0, Slot{Type: Akutbehandlung, Start: t0.Add(time.Hour), Duration: time.Hour, Modalitaet: Video})
	if err != nil {
		t.Fatal(err)
	}
	// A profile change that would strand the slot is refused.
	p2 := p
	p2.Modalitaeten = Praxis
	if err := c.SetProfile(t0, p2, Credentials{Attestation: att}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("stranding profile: %v", err)
	}
	if err := c.RemoveSlot(t0, sid+1); !errors.Is(err, ErrUnknownSlot) {
		t.Fatal(err)
	}
	if err := c.Confirm(t0, RequestID{}, string(make([]byte, 300))); !errors.Is(err, ErrUnknownRequest) {
		t.Fatal(err)
	}
	// The publish happens after PublishDelay, from Tick.
	if len(originated(c.Actions(), 7)) != 0 {
		t.Fatal("published before the delay")
	}
	if w := c.NextWake(); !w.Equal(t0.Add(time.Second)) {
		t.Fatalf("wake %s", w)
	}
	c.Tick(t0.Add(time.Second))
	acts := c.Actions()
	if _, ok := acts[0].(*SaveState); !ok {
		t.Fatalf("first action %T, want SaveState before the announce", acts[0])
	}
	if len(originated(acts, 7)) != 1 {
		t.Fatal("no announce")
	}
}
