package fapp

import (
	"fmt"
	"strings"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Filter selects slots. Every zero field means "any". Set fields match
// when they share a value with the profile or slot (a therapist offering
// VT and TP matches a search for TP).
type Filter struct {
	Verfahren     Verfahren     `json:"verfahren,omitempty"`
	Altersgruppen Altersgruppe  `json:"altersgruppen,omitempty"`
	Settings      Setting       `json:"settings,omitempty"`
	Kostentraeger Kostentraeger `json:"kostentraeger,omitempty"`
	Modalitaeten  Modalitaet    `json:"modalitaeten,omitempty"`
	SlotTypes     SlotTypeSet   `json:"slot_types,omitempty"`
	// PLZPrefix is 0–5 digits. A local search uses all of them; a network
	// query carries at most MaxQueryPLZDigits (Search caps it, the encoder
	// refuses more, every node rejects more) and the full prefix filters
	// the answers locally.
	PLZPrefix string `json:"plz_prefix,omitempty"`
	// From and To bound the slot start: From ≤ start < To. Zero: open. A
	// network query carries whole days (From rounded down, To rounded up).
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// Language (ISO 639-1) is applied locally only; it never leaves the
	// node.
	Language string `json:"language,omitempty"`
	// Limit is how many announces a network query asks each answering node
	// for (1–16). Zero: 8. Not used locally.
	Limit int `json:"limit,omitempty"`
}

// MaxQueryPLZDigits is the precision a network query may carry.
const MaxQueryPLZDigits = 3

// Validate checks the filter's fields.
func (f *Filter) Validate() error {
	switch {
	case f.Verfahren&^allVerfahren != 0, f.Altersgruppen&^allAltersgruppen != 0, f.Settings&^allSettings != 0,
		f.Kostentraeger&^allKostentraeger != 0, f.Modalitaeten&^allModalitaeten != 0, f.SlotTypes&^0x0f != 0:
		return fmt.Errorf("%w: filter value out of range", ErrInvalid)
	case len(f.PLZPrefix) > 5:
		return fmt.Errorf("%w: PLZ prefix %q longer than 5 digits", ErrInvalid, f.PLZPrefix)
	case f.Language != "" && !validLanguage(f.Language):
		return fmt.Errorf("%w: language %q", ErrInvalid, f.Language)
	case f.Limit < 0 || f.Limit > 16:
		return fmt.Errorf("%w: limit %d (1–16)", ErrInvalid, f.Limit)
	case !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To):
		return fmt.Errorf("%w: empty date range", ErrInvalid)
	}
	for i := 0; i < len(f.PLZPrefix); i++ {
		if f.PLZPrefix[i] < '0' || f.PLZPrefix[i] > '9' {
			return fmt.Errorf("%w: PLZ prefix %q is not digits", ErrInvalid, f.PLZPrefix)
		}
	}
	return nil
}

// matchProfile reports whether the profile-level fields match.
func (f *Filter) matchProfile(p *Profile) bool {
	return (f.Verfahren == 0 || f.Verfahren&p.Verfahren != 0) &&
		(f.Altersgruppen == 0 || f.Altersgruppen&p.Altersgruppen != 0) &&
		(f.Kostentraeger == 0 || f.Kostentraeger&p.Kostentraeger != 0) &&
		strings.HasPrefix(p.PLZ, f.PLZPrefix) &&
		(f.Language == "" || containsString(p.Languages, f.Language))
}

// matchSlot reports whether a slot of a matching profile matches, at now
// (slots that have started never match).
func (f *Filter) matchSlot(s *Slot, now time.Time) bool {
	return s.Start.After(now) &&
		(f.Settings == 0 || f.Settings&s.Setting != 0) &&
		(f.Modalitaeten == 0 || f.Modalitaeten&s.Modalitaet != 0) &&
		(f.SlotTypes == 0 || f.SlotTypes.Has(s.Type)) &&
		(f.From.IsZero() || !s.Start.Before(f.From)) &&
		(f.To.IsZero() || s.Start.Before(f.To))
}

func containsString(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// Query is a decoded network search (the body of a query envelope, topic 1,
// plus its token).
type Query struct {
	Token envelope.Token
	// ReplyKey is the searcher's one-time X25519 key: answers are sealed to
	// it (envelope.SealAnonReply).
	ReplyKey [32]byte
	// Time is when the query was made, on the 5-minute grid.
	Time time.Time
	// Filter as carried: at most 3 PLZ digits, whole days, no language.
	Filter Filter
	Nonce  uint64
}

// Query body layout (docs/fapp.md): 54 bytes.
const (
	queryVersion  = 1
	queryBodySize = 1 + 32 + 4 + 1 + 1 + 1 + 2 + 2 + 2 + 8
	// QuerySize is a whole query envelope: header 4, topic 1, token 8, body.
	QuerySize = envelope.HeaderSize + 1 + envelope.TokenSize + queryBodySize
)

// networkFilter returns the filter as a network query carries it: PLZ
// capped to 3 digits, whole days, no language, limit defaulted.
func networkFilter(f Filter) Filter {
	if len(f.PLZPrefix) > MaxQueryPLZDigits {
		f.PLZPrefix = f.PLZPrefix[:MaxQueryPLZDigits]
	}
	if !f.From.IsZero() {
		d, _ := toDays(f.From)
		f.From = fromDays(d)
	}
	if !f.To.IsZero() {
		d, _ := toDays(f.To.Add(-time.Nanosecond))
		f.To = fromDays(d + 1)
	}
	f.Language = ""
	if f.Limit == 0 {
		f.Limit = 8
	}
	return f
}

// appendQueryBody encodes q's body. It refuses a PLZ prefix of more than
// three digits (ErrPrecision) and a filter that is not in network form.
func appendQueryBody(dst []byte, q *Query) ([]byte, error) {
	f := &q.Filter
	if err := f.Validate(); err != nil {
		return dst, err
	}
	if len(f.PLZPrefix) > MaxQueryPLZDigits {
		return dst, fmt.Errorf("%w: %d digits", ErrPrecision, len(f.PLZPrefix))
	}
	if f.Language != "" || f.Limit < 1 {
		return dst, fmt.Errorf("%w: filter not in network form", ErrInvalid)
	}
	t, ok := toTicks(q.Time)
	if !ok || !onGrid(q.Time) {
		return dst, fmt.Errorf("%w: query time %s", ErrInvalid, q.Time)
	}
	var from, to uint16
	if !f.From.IsZero() {
		if from, ok = toDays(f.From); !ok || !fromDays(from).Equal(f.From) {
			return dst, fmt.Errorf("%w: From is not a whole day", ErrInvalid)
		}
	}
	if !f.To.IsZero() {
		d, ok := toDays(f.To)
		if !ok || d == 0 || !fromDays(d).Equal(f.To) {
			return dst, fmt.Errorf("%w: To is not a whole day", ErrInvalid)
		}
		to = d - 1
	}
	var plz uint16
	if n := len(f.PLZPrefix); n > 0 {
		v := 0
		for i := 0; i < n; i++ {
			v = v*10 + int(f.PLZPrefix[i]-'0')
		}
		plz = uint16(n)<<13 | uint16(v)
	}
	b := append(dst, queryVersion)
	b = append(b, q.ReplyKey[:]...)
	b = append(b, byte(t>>24), byte(t>>16), byte(t>>8), byte(t))
	b = append(b, uint8(f.Verfahren)<<4|uint8(f.Altersgruppen)<<2|uint8(f.Settings))
	b = append(b, uint8(f.Kostentraeger)<<4|uint8(f.Modalitaeten)<<1)
	b = append(b, uint8(f.SlotTypes)<<4|uint8(f.Limit-1))
	b = append(b, byte(plz>>8), byte(plz), byte(from>>8), byte(from), byte(to>>8), byte(to))
	n := q.Nonce
	return append(b, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n)), nil
}

var pow10 = [...]int{1, 10, 100, 1000}

// decodeQueryBody reads a query body. A PLZ prefix of more than three
// digits is ErrPrecision; every other defect is ErrMalformed.
func decodeQueryBody(token envelope.Token, b []byte) (Query, error) {
	q := Query{Token: token}
	if len(b) > queryBodySize {
		return q, fmt.Errorf("%w: query body %d bytes, want %d", ErrMalformed, len(b), queryBodySize)
	}
	r := &reader{b: b, what: "query"}
	if v := r.u8(); r.err == nil && v != queryVersion {
		return q, fmt.Errorf("%w: query version %d", ErrMalformed, v)
	}
	r.copyTo(q.ReplyKey[:])
	t := r.u32()
	quals, offer, tl := r.u8(), r.u8(), r.u8()
	plz, from, to := r.u16(), r.u16(), r.u16()
	q.Nonce = r.u64()
	if err := r.end(); err != nil {
		return q, err
	}
	if q.ReplyKey == [32]byte{} {
		return q, fmt.Errorf("%w: zero reply key", ErrMalformed)
	}
	if offer&1 != 0 {
		return q, fmt.Errorf("%w: query reserved bit", ErrMalformed)
	}
	f := &q.Filter
	q.Time = fromTicks(t)
	f.Verfahren, f.Altersgruppen, f.Settings = Verfahren(quals>>4), Altersgruppe(quals>>2&3), Setting(quals&3)
	f.Kostentraeger, f.Modalitaeten = Kostentraeger(offer>>4), Modalitaet(offer>>1&7)
	f.SlotTypes, f.Limit = SlotTypeSet(tl>>4), int(tl&0x0f)+1
	digits, v := int(plz>>13), int(plz&0x1fff)
	if digits > MaxQueryPLZDigits {
		return q, fmt.Errorf("%w: query carries %d PLZ digits", ErrPrecision, digits)
	}
	if v >= pow10[digits] {
		return q, fmt.Errorf("%w: PLZ prefix value %d for %d digits", ErrMalformed, v, digits)
	}
	if digits > 0 {
		f.PLZPrefix = fmt.Sprintf("%0*d", digits, v)
	}
	if from != 0 {
		f.From = fromDays(from)
	}
	if to != 0 {
		if to < from || to == 0xffff {
			return q, fmt.Errorf("%w: date range", ErrMalformed)
		}
		f.To = fromDays(to + 1)
	}
	return q, nil
}

// queryPoWInput is what a query's stamp covers: the token and the body up
// to the nonce.
func queryPoWInput(token envelope.Token, body []byte) []byte {
	return powInput(powQuery, token[:], body[:len(body)-8])
}

// buildQuery encodes the query envelope for q (hops, TTL as given).
func buildQuery(q *Query, hops, ttl uint8) ([]byte, error) {
	body, err := appendQueryBody(nil, q)
	if err != nil {
		return nil, err
	}
	e := envelope.Envelope{Kind: envelope.KindQuery, Hops: hops, TTL: ttl, Topic: Topic, Token: q.Token, Body: body}
	return e.Append(nil)
}

// ParseQuery decodes a query envelope (it does not check the proof of work,
// time or rate limits; the core does).
func ParseQuery(raw []byte) (Query, error) {
	e, err := envelope.Parse(raw)
	if err != nil {
		return Query{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if e.Kind != envelope.KindQuery || e.Topic != Topic {
		return Query{}, fmt.Errorf("%w: %s topic %d", ErrWrongTopic, e.Kind, e.Topic)
	}
	return decodeQueryBody(e.Token, e.Body)
}
