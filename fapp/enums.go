package fapp

import (
	"fmt"
	"strings"
)

// The domain enumerations of issue 8, as bit sets: one bit per value, so a
// profile, a slot or a search filter carries any subset in one field. The
// bit positions are wire format (docs/fapp.md, "Enumerations"); never
// renumber them. Each type has a canonical short name (what String and
// MarshalText write) and accepts its long German name when parsing.

// Verfahren is a set of psychotherapy methods (Richtlinienverfahren and
// Systemische Therapie). 4 bits on the wire.
type Verfahren uint8

// The Verfahren.
const (
	Verhaltenstherapie          Verfahren = 1 << 0 // VT
	TiefenpsychologischFundiert Verfahren = 1 << 1 // TP: tiefenpsychologisch fundierte Psychotherapie
	Analytisch                  Verfahren = 1 << 2 // AP: analytische Psychotherapie
	Systemisch                  Verfahren = 1 << 3 // ST: Systemische Therapie
	allVerfahren                Verfahren = 0x0f
)

// Altersgruppe is a set of age groups. 2 bits on the wire.
type Altersgruppe uint8

// The Altersgruppen.
const (
	Erwachsene        Altersgruppe = 1 << 0
	KinderJugendliche Altersgruppe = 1 << 1 // Kinder und Jugendliche
	allAltersgruppen  Altersgruppe = 0x03
)

// Setting is a set of therapy settings. 2 bits on the wire.
type Setting uint8

// The Settings.
const (
	Einzel      Setting = 1 << 0
	Gruppe      Setting = 1 << 1
	allSettings Setting = 0x03
)

// Kostentraeger is a set of payers (Kostenträger). 4 bits on the wire.
type Kostentraeger uint8

// The Kostenträger.
const (
	GKV              Kostentraeger = 1 << 0 // gesetzliche Krankenversicherung
	PKV              Kostentraeger = 1 << 1 // private Krankenversicherung
	Beihilfe         Kostentraeger = 1 << 2
	Selbstzahler     Kostentraeger = 1 << 3
	allKostentraeger Kostentraeger = 0x0f
)

// Modalitaet is a set of modalities (Modalität). 3 bits on the wire.
type Modalitaet uint8

// The Modalitäten.
const (
	Praxis          Modalitaet = 1 << 0 // in the practice
	Video           Modalitaet = 1 << 1
	Telefon         Modalitaet = 1 << 2
	allModalitaeten Modalitaet = 0x07
)

// SlotType is the kind of appointment a slot offers. Unlike the sets above
// a slot has exactly one type: 2 bits on the wire, values 0–3.
type SlotType uint8

// The slot types.
const (
	Sprechstunde   SlotType = 0 // psychotherapeutische Sprechstunde
	Probatorik     SlotType = 1 // probatorische Sitzung
	Akutbehandlung SlotType = 2
	Therapieplatz  SlotType = 3 // a place for a full course of therapy
	numSlotTypes            = 4
)

// SlotTypeSet is a set of slot types, for search filters: bit t stands for
// SlotType t. 4 bits on the wire.
type SlotTypeSet uint8

// SlotTypes returns the set holding ts.
func SlotTypes(ts ...SlotType) SlotTypeSet {
	var s SlotTypeSet
	for _, t := range ts {
		if t < numSlotTypes {
			s |= 1 << t
		}
	}
	return s
}

// Has reports whether t is in s.
func (s SlotTypeSet) Has(t SlotType) bool { return t < numSlotTypes && s&(1<<t) != 0 }

// names is one enumeration's table: names[i] are the accepted names of bit
// i (or value i), the first being canonical.
type names [][]string

var (
	verfahrenNames = names{
		{"VT", "Verhaltenstherapie"},
		{"TP", "tiefenpsychologisch fundierte Psychotherapie", "tiefenpsychologisch"},
		{"AP", "analytische Psychotherapie", "analytisch"},
		{"ST", "Systemische Therapie", "systemisch"},
	}
	altersgruppeNames = names{
		{"erwachsene", "Erwachsene"},
		{"kinder-jugendliche", "Kinder und Jugendliche", "kinder", "jugendliche", "KJ"},
	}
	settingNames       = names{{"einzel", "Einzel"}, {"gruppe", "Gruppe"}}
	kostentraegerNames = names{{"gkv"}, {"pkv"}, {"beihilfe"}, {"selbstzahler"}}
	modalitaetNames    = names{{"praxis"}, {"video"}, {"telefon"}}
	slotTypeNames      = names{{"sprechstunde"}, {"probatorik"}, {"akutbehandlung", "akut"}, {"therapieplatz"}}
)

// formatSet writes the canonical names of the bits of v, comma-separated;
// "-" for the empty set.
func (n names) formatSet(v uint8) string {
	if v == 0 {
		return "-"
	}
	var parts []string
	for i := range n {
		if v&(1<<i) != 0 {
			parts = append(parts, n[i][0])
		}
	}
	if rest := v &^ (1<<len(n) - 1); rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", rest))
	}
	return strings.Join(parts, ",")
}

// index finds s (case-insensitive) among the names.
func (n names) index(s string) (int, bool) {
	s = strings.TrimSpace(s)
	for i, alts := range n {
		for _, a := range alts {
			if strings.EqualFold(a, s) {
				return i, true
			}
		}
	}
	return 0, false
}

// parseSet reads a comma-separated list of names; "" and "-" are the empty
// set.
func (n names) parseSet(what, s string) (uint8, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "-" {
		return 0, nil
	}
	var v uint8
	for _, p := range strings.Split(s, ",") {
		i, ok := n.index(p)
		if !ok {
			return 0, fmt.Errorf("%w: unknown %s %q (want one of %s)", ErrInvalid, what, strings.TrimSpace(p), n.formatSet(1<<len(n)-1))
		}
		v |= 1 << i
	}
	return v, nil
}

func (v Verfahren) String() string     { return verfahrenNames.formatSet(uint8(v)) }
func (v Altersgruppe) String() string  { return altersgruppeNames.formatSet(uint8(v)) }
func (v Setting) String() string       { return settingNames.formatSet(uint8(v)) }
func (v Kostentraeger) String() string { return kostentraegerNames.formatSet(uint8(v)) }
func (v Modalitaet) String() string    { return modalitaetNames.formatSet(uint8(v)) }
func (v SlotTypeSet) String() string   { return slotTypeNames.formatSet(uint8(v)) }

func (t SlotType) String() string {
	if t < numSlotTypes {
		return slotTypeNames[t][0]
	}
	return fmt.Sprintf("slottype(%d)", uint8(t))
}

// ParseVerfahren reads a comma-separated list such as "VT,TP" or
// "Verhaltenstherapie".
func ParseVerfahren(s string) (Verfahren, error) {
	v, err := verfahrenNames.parseSet("Verfahren", s)
	return Verfahren(v), err
}

// ParseAltersgruppe reads a comma-separated list such as "erwachsene".
func ParseAltersgruppe(s string) (Altersgruppe, error) {
	v, err := altersgruppeNames.parseSet("Altersgruppe", s)
	return Altersgruppe(v), err
}

// ParseSetting reads a comma-separated list such as "einzel,gruppe".
func ParseSetting(s string) (Setting, error) {
	v, err := settingNames.parseSet("Setting", s)
	return Setting(v), err
}

// ParseKostentraeger reads a comma-separated list such as "gkv,beihilfe".
func ParseKostentraeger(s string) (Kostentraeger, error) {
	v, err := kostentraegerNames.parseSet("Kostenträger", s)
	return Kostentraeger(v), err
}

// ParseModalitaet reads a comma-separated list such as "praxis,video".
func ParseModalitaet(s string) (Modalitaet, error) {
	v, err := modalitaetNames.parseSet("Modalität", s)
	return Modalitaet(v), err
}

// ParseSlotTypes reads a comma-separated list of slot types.
func ParseSlotTypes(s string) (SlotTypeSet, error) {
	v, err := slotTypeNames.parseSet("slot type", s)
	return SlotTypeSet(v), err
}

// ParseSlotType reads one slot type name.
func ParseSlotType(s string) (SlotType, error) {
	i, ok := slotTypeNames.index(s)
	if !ok {
		return 0, fmt.Errorf("%w: unknown slot type %q", ErrInvalid, s)
	}
	return SlotType(i), nil
}

// Text forms, so that the API and `--json` output carry names, not bits.

func (v Verfahren) MarshalText() ([]byte, error)     { return []byte(v.String()), nil }
func (v Altersgruppe) MarshalText() ([]byte, error)  { return []byte(v.String()), nil }
func (v Setting) MarshalText() ([]byte, error)       { return []byte(v.String()), nil }
func (v Kostentraeger) MarshalText() ([]byte, error) { return []byte(v.String()), nil }
func (v Modalitaet) MarshalText() ([]byte, error)    { return []byte(v.String()), nil }
func (v SlotTypeSet) MarshalText() ([]byte, error)   { return []byte(v.String()), nil }
func (t SlotType) MarshalText() ([]byte, error)      { return []byte(t.String()), nil }

func (v *Verfahren) UnmarshalText(b []byte) (err error) {
	*v, err = ParseVerfahren(string(b))
	return err
}

func (v *Altersgruppe) UnmarshalText(b []byte) (err error) {
	*v, err = ParseAltersgruppe(string(b))
	return err
}

func (v *Setting) UnmarshalText(b []byte) (err error) {
	*v, err = ParseSetting(string(b))
	return err
}

func (v *Kostentraeger) UnmarshalText(b []byte) (err error) {
	*v, err = ParseKostentraeger(string(b))
	return err
}

func (v *Modalitaet) UnmarshalText(b []byte) (err error) {
	*v, err = ParseModalitaet(string(b))
	return err
}

func (v *SlotTypeSet) UnmarshalText(b []byte) (err error) {
	*v, err = ParseSlotTypes(string(b))
	return err
}

func (t *SlotType) UnmarshalText(b []byte) (err error) {
	*t, err = ParseSlotType(string(b))
	return err
}
