package fapp

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Time on the wire. Announces, slots, queries and reservations count time
// in ticks of five minutes since the Unix epoch (uint32: good until the
// year 42800). Appointments start on a five-minute grid anyway, and the
// coarse grain keeps a query's timestamp from fingerprinting its sender's
// clock. Date ranges in queries count Unix days (uint16: until 2149).
const (
	// TickDuration is the unit of wire time.
	TickDuration = 5 * time.Minute
	tickSeconds  = int64(TickDuration / time.Second)
	daySeconds   = int64(24 * time.Hour / time.Second)
)

// toTicks returns t in ticks, rounded down. ok is false before 1970 or
// beyond uint32.
func toTicks(t time.Time) (uint32, bool) {
	s := t.Unix()
	if s < 0 || s/tickSeconds > 0xffffffff {
		return 0, false
	}
	return uint32(s / tickSeconds), true
}

func fromTicks(v uint32) time.Time { return time.Unix(int64(v)*tickSeconds, 0).UTC() }

// toDays returns t in Unix days, rounded down; ok is false outside uint16.
func toDays(t time.Time) (uint16, bool) {
	s := t.Unix()
	if s < 0 || s/daySeconds > 0xffff {
		return 0, false
	}
	return uint16(s / daySeconds), true
}

func fromDays(v uint16) time.Time { return time.Unix(int64(v)*daySeconds, 0).UTC() }

// onGrid reports whether t is a whole number of ticks.
func onGrid(t time.Time) bool { return t.Nanosecond() == 0 && t.Unix()%tickSeconds == 0 }

// Limits of the profile and slots.
const (
	// MaxLanguages bounds the languages of a profile.
	MaxLanguages = 4
	// MaxSlotDuration is the longest slot: 255 ticks.
	MaxSlotDuration = 255 * TickDuration
	// MaxSlotAhead is how far after an announce's issue time a slot may
	// start: the 16-bit tick offset (about 227 days). Slots further out are
	// kept and published once they come into range.
	MaxSlotAhead = 0xffff * TickDuration
)

// Profile is what a therapist publishes about the practice: sets of what
// is offered and the practice's PLZ. Never a street address or a name:
// those go to a patient only in the encrypted answer to a reservation.
type Profile struct {
	Verfahren     Verfahren     `json:"verfahren"`
	Altersgruppen Altersgruppe  `json:"altersgruppen"`
	Settings      Setting       `json:"settings"`
	Kostentraeger Kostentraeger `json:"kostentraeger"`
	Modalitaeten  Modalitaet    `json:"modalitaeten"`
	// PLZ is the practice's five-digit postcode.
	PLZ string `json:"plz"`
	// Languages are ISO 639-1 codes ("de", "en"), 1 to MaxLanguages.
	Languages []string `json:"languages"`
}

// Validate checks every field: each set non-empty and within its bits, a
// five-digit PLZ, 1–4 distinct two-letter lowercase language codes.
func (p *Profile) Validate() error {
	switch {
	case p.Verfahren == 0 || p.Verfahren&^allVerfahren != 0:
		return fmt.Errorf("%w: Verfahren %#x", ErrInvalid, uint8(p.Verfahren))
	case p.Altersgruppen == 0 || p.Altersgruppen&^allAltersgruppen != 0:
		return fmt.Errorf("%w: Altersgruppen %#x", ErrInvalid, uint8(p.Altersgruppen))
	case p.Settings == 0 || p.Settings&^allSettings != 0:
		return fmt.Errorf("%w: Settings %#x", ErrInvalid, uint8(p.Settings))
	case p.Kostentraeger == 0 || p.Kostentraeger&^allKostentraeger != 0:
		return fmt.Errorf("%w: Kostenträger %#x", ErrInvalid, uint8(p.Kostentraeger))
	case p.Modalitaeten == 0 || p.Modalitaeten&^allModalitaeten != 0:
		return fmt.Errorf("%w: Modalitäten %#x", ErrInvalid, uint8(p.Modalitaeten))
	}
	if _, err := plzValue(p.PLZ); err != nil {
		return err
	}
	if len(p.Languages) == 0 {
		return fmt.Errorf("%w: no language", ErrInvalid)
	}
	if len(p.Languages) > MaxLanguages {
		return fmt.Errorf("%w: %d languages, at most %d", ErrOversize, len(p.Languages), MaxLanguages)
	}
	for i, l := range p.Languages {
		if !validLanguage(l) {
			return fmt.Errorf("%w: language %q is not a lowercase ISO 639-1 code", ErrInvalid, l)
		}
		if slices.Contains(p.Languages[:i], l) {
			return fmt.Errorf("%w: language %q twice", ErrInvalid, l)
		}
	}
	return nil
}

func validLanguage(l string) bool {
	return len(l) == 2 && l[0] >= 'a' && l[0] <= 'z' && l[1] >= 'a' && l[1] <= 'z'
}

// plzValue parses a five-digit PLZ.
func plzValue(s string) (uint32, error) {
	if len(s) != 5 {
		return 0, fmt.Errorf("%w: PLZ %q is not 5 digits", ErrInvalid, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: PLZ %q is not 5 digits", ErrInvalid, s)
		}
	}
	v, _ := strconv.Atoi(s)
	return uint32(v), nil
}

func plzString(v uint32) string { return fmt.Sprintf("%05d", v) }

// appendProfile writes quals, offer and PLZ (the languages go after the
// shared counts byte; see appendBody). p must be valid.
func appendProfileHead(b []byte, p *Profile) []byte {
	v, _ := plzValue(p.PLZ)
	b = append(b, uint8(p.Verfahren)<<4|uint8(p.Altersgruppen)<<2|uint8(p.Settings))
	b = append(b, uint8(p.Kostentraeger)<<4|uint8(p.Modalitaeten)<<1)
	return append(b, byte(v>>16), byte(v>>8), byte(v))
}

// decodeProfileHead reads what appendProfileHead wrote.
func decodeProfileHead(r *reader, p *Profile) {
	q, o, plz := r.u8(), r.u8(), r.u24()
	if r.err != nil {
		return
	}
	p.Verfahren = Verfahren(q >> 4)
	p.Altersgruppen = Altersgruppe(q >> 2 & 3)
	p.Settings = Setting(q & 3)
	p.Kostentraeger = Kostentraeger(o >> 4)
	p.Modalitaeten = Modalitaet(o >> 1 & 7)
	if o&1 != 0 {
		r.fail("profile reserved bit")
		return
	}
	if plz > 99999 {
		r.fail("PLZ above 99999")
		return
	}
	p.PLZ = plzString(plz)
}

// SlotID names a slot among one therapist's slots. The therapist's node
// allocates them in increasing order and never reuses one while an
// announce carrying it can still be alive.
type SlotID uint16

// Slot is a free appointment.
type Slot struct {
	ID    SlotID    `json:"id"`
	Type  SlotType  `json:"type"`
	Start time.Time `json:"start"`
	// Duration is a whole number of ticks, 5 minutes to MaxSlotDuration.
	Duration time.Duration `json:"duration"`
	// Setting and Modalitaet say how this slot is offered: non-empty
	// subsets of the profile's. Zero when adding a slot: the profile's.
	Setting    Setting    `json:"setting"`
	Modalitaet Modalitaet `json:"modalitaet"`
}

// slotSize is the encoded size of a slot.
const slotSize = 6

// validateSlot checks s against the profile it is published under.
func validateSlot(s *Slot, p *Profile) error {
	switch {
	case s.Type >= numSlotTypes:
		return fmt.Errorf("%w: slot type %d", ErrInvalid, s.Type)
	case !onGrid(s.Start) || s.Start.Unix() < 0:
		return fmt.Errorf("%w: slot start %s is not on the 5-minute grid", ErrInvalid, s.Start.Format(time.RFC3339))
	case s.Duration < TickDuration || s.Duration > MaxSlotDuration || s.Duration%TickDuration != 0:
		return fmt.Errorf("%w: slot duration %s (multiples of 5 minutes up to %s)", ErrInvalid, s.Duration, MaxSlotDuration)
	case s.Setting == 0 || s.Setting&^p.Settings != 0:
		return fmt.Errorf("%w: slot setting %s not a subset of the profile's %s", ErrInvalid, s.Setting, p.Settings)
	case s.Modalitaet == 0 || s.Modalitaet&^p.Modalitaeten != 0:
		return fmt.Errorf("%w: slot modality %s not a subset of the profile's %s", ErrInvalid, s.Modalitaet, p.Modalitaeten)
	}
	return nil
}

// reader decodes bytes from outside: every read is bounds-checked and the
// first failure sticks, so a decoder reads fields in a row and checks r.err
// once. Failures wrap ErrMalformed.
type reader struct {
	b   []byte
	err error
	// what names the structure, for error messages.
	what string
}

func (r *reader) fail(why string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s", ErrMalformed, r.what, why)
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = fmt.Errorf("%w: %s truncated (need %d bytes, have %d)", ErrMalformed, r.what, n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u24() uint32 {
	if b := r.take(3); b != nil {
		return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) copyTo(dst []byte) {
	if b := r.take(len(dst)); b != nil {
		copy(dst, b)
	}
}

// bytes8 reads a length byte and that many bytes (at most max).
func (r *reader) bytes8(field string, max int) []byte {
	n := int(r.u8())
	if r.err == nil && n > max {
		r.err = fmt.Errorf("%w: %s %s is %d bytes, at most %d", ErrOversize, r.what, field, n, max)
		return nil
	}
	return r.take(n)
}

// bytes16 reads a 2-byte length and that many bytes (at most max).
func (r *reader) bytes16(field string, max int) []byte {
	n := int(r.u16())
	if r.err == nil && n > max {
		r.err = fmt.Errorf("%w: %s %s is %d bytes, at most %d", ErrOversize, r.what, field, n, max)
		return nil
	}
	return r.take(n)
}

// end fails unless every byte was read.
func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformed, r.what, len(r.b))
	}
	return r.err
}
