package fapp

import (
	"fmt"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Topic is FAPP's flood and query topic (docs/protocol.md, registries).
const Topic = 1

// Port is FAPP's application port for anon and anon-reply (reservations,
// answers, search results).
const Port = 2

// Announce sizes. An announce is one signed flood envelope that fits one
// LoRa frame: the body gets what the 105 bytes of flood overhead leave.
const (
	// MaxAnnounceSize is the largest announce envelope any node accepts:
	// a LoRa frame's 254 bytes. Anything larger is ErrOversize.
	MaxAnnounceSize = 254
	// DefaultAnnounceBudget is the size this node's own announces are cut
	// to by default (Options.AnnounceBudget): 254 minus the LoRa link's
	// broadcast fragment header (10) and network-key MAC (4), so that an
	// announce is one frame on air on every LoRa configuration.
	DefaultAnnounceBudget = 240
	// FloodOverhead is a flood envelope without body: header 4, topic 1,
	// key 32, sequence 4, signature 64.
	FloodOverhead = envelope.HeaderSize + 1 + envelope.PublicKeySize + 4 + envelope.SignatureSize
	// MaxBody is the largest announce body.
	MaxBody = MaxAnnounceSize - FloodOverhead // 149
	// MaxPages bounds the announces (pages) one therapist's slots are split
	// across.
	MaxPages = 16
	// MaxLifetime is the longest an announce may live.
	MaxLifetime = 7 * 24 * time.Hour
	// bodyVersion is the first byte of every announce body.
	bodyVersion = 1
	// bodyFixed is the body without languages, endorsements and slots.
	bodyFixed = 1 + 1 + 4 + 2 + 5 + 1 + CommitmentSize
)

// Announce is one page of a therapist's slot announcement: a signed flood
// (topic 1) whose body is specified byte by byte in docs/fapp.md. A higher
// sequence number replaces the same page of the same therapist; an announce
// also says how many pages are current, so pages beyond that are dropped.
type Announce struct {
	Therapist envelope.PublicKey
	Seq       uint32
	// Page is this announce's index among Pages (0 ≤ Page < Pages ≤ 16).
	Page, Pages int
	// Issued is on the 5-minute grid; slots are encoded relative to it.
	Issued  time.Time
	Expires time.Time
	Profile Profile
	// Commitment binds the therapist key to an Approbation attestation.
	Commitment   Commitment
	Endorsements []Endorsement
	// Slots in increasing ID order.
	Slots []Slot
}

// bodySize is the encoded body size of a, or of a page of a with n slots.
func bodySize(p *Profile, endorsements, slots int) int {
	return bodyFixed + 2*len(p.Languages) + endorsements*endorsementSize + slots*slotSize
}

// SlotsPerAnnounce is how many slots fit an announce envelope of at most
// budget bytes (DefaultAnnounceBudget: one LoRa frame on air;
// MaxAnnounceSize: the protocol's limit) next to profile p and the given
// number of endorsements; 0 when not even one does.
func SlotsPerAnnounce(p *Profile, endorsements, budget int) int {
	n := (min(budget, MaxAnnounceSize) - FloodOverhead - bodySize(p, endorsements, 0)) / slotSize
	return max(n, 0)
}

// appendBody encodes a's body after dst. It validates every field.
func appendBody(dst []byte, a *Announce) ([]byte, error) {
	if a.Pages < 1 || a.Pages > MaxPages || a.Page < 0 || a.Page >= a.Pages {
		return dst, fmt.Errorf("%w: page %d of %d", ErrInvalid, a.Page, a.Pages)
	}
	issued, ok := toTicks(a.Issued)
	if !ok || !onGrid(a.Issued) {
		return dst, fmt.Errorf("%w: issue time %s", ErrInvalid, a.Issued)
	}
	life := a.Expires.Sub(a.Issued)
	if life < TickDuration || life > MaxLifetime || life%TickDuration != 0 {
		return dst, fmt.Errorf("%w: lifetime %s (5 minutes to %s, on the grid)", ErrInvalid, life, MaxLifetime)
	}
	if err := a.Profile.Validate(); err != nil {
		return dst, err
	}
	if len(a.Endorsements) > MaxEndorsements {
		return dst, fmt.Errorf("%w: %d endorsements, at most %d", ErrOversize, len(a.Endorsements), MaxEndorsements)
	}
	for i := range a.Endorsements {
		e := &a.Endorsements[i]
		if _, ok := toDays(e.ValidUntil); !ok || e.Verfahren == 0 || e.Verfahren&^allVerfahren != 0 || e.Altersgruppen == 0 || e.Altersgruppen&^allAltersgruppen != 0 {
			return dst, fmt.Errorf("%w: endorsement %d", ErrInvalid, i)
		}
	}
	if n := bodySize(&a.Profile, len(a.Endorsements), len(a.Slots)); n > MaxBody {
		return dst, fmt.Errorf("%w: announce body %d bytes, at most %d (%d slots fit)", ErrOversize, n, MaxBody, SlotsPerAnnounce(&a.Profile, len(a.Endorsements), MaxAnnounceSize))
	}
	for i := range a.Slots {
		s := &a.Slots[i]
		if i > 0 && s.ID <= a.Slots[i-1].ID {
			return dst, fmt.Errorf("%w: slot ids not increasing", ErrInvalid)
		}
		if err := validateSlot(s, &a.Profile); err != nil {
			return dst, err
		}
		if s.Start.Before(a.Issued) || s.Start.Sub(a.Issued) > MaxSlotAhead {
			return dst, fmt.Errorf("%w: slot %d starts %s after the issue time (0 to %s)", ErrInvalid, s.ID, s.Start.Sub(a.Issued), MaxSlotAhead)
		}
	}
	b := append(dst, bodyVersion, uint8(a.Page)<<4|uint8(a.Pages-1))
	b = append(b, byte(issued>>24), byte(issued>>16), byte(issued>>8), byte(issued))
	lt := uint16(life / TickDuration)
	b = append(b, byte(lt>>8), byte(lt))
	b = appendProfileHead(b, &a.Profile)
	b = append(b, uint8(len(a.Profile.Languages))<<4|uint8(len(a.Endorsements)))
	for _, l := range a.Profile.Languages {
		b = append(b, l...)
	}
	b = append(b, a.Commitment[:]...)
	for i := range a.Endorsements {
		b = appendEndorsement(b, &a.Endorsements[i])
	}
	for i := range a.Slots {
		s := &a.Slots[i]
		off := uint16(s.Start.Sub(a.Issued) / TickDuration)
		b = append(b, byte(s.ID>>8), byte(s.ID), byte(off>>8), byte(off),
			uint8(s.Duration/TickDuration),
			uint8(s.Type)<<6|uint8(s.Setting)<<4|uint8(s.Modalitaet)<<1)
	}
	return b, nil
}

// decodeBody reads an announce body. Every field is checked; the encoding
// is canonical, so an accepted body re-encodes to the same bytes.
func decodeBody(b []byte) (Announce, error) {
	var a Announce
	if len(b) > MaxBody {
		return a, fmt.Errorf("%w: announce body %d bytes, at most %d", ErrOversize, len(b), MaxBody)
	}
	r := &reader{b: b, what: "announce"}
	if v := r.u8(); r.err == nil && v != bodyVersion {
		return a, fmt.Errorf("%w: announce body version %d", ErrMalformed, v)
	}
	pg := r.u8()
	a.Page, a.Pages = int(pg>>4), int(pg&0x0f)+1
	issued := r.u32()
	life := r.u16()
	decodeProfileHead(r, &a.Profile)
	counts := r.u8()
	if r.err != nil {
		return a, r.err
	}
	if a.Page >= a.Pages {
		return a, fmt.Errorf("%w: page %d of %d", ErrMalformed, a.Page, a.Pages)
	}
	if life == 0 || time.Duration(life)*TickDuration > MaxLifetime {
		return a, fmt.Errorf("%w: lifetime %d ticks (1 to %d)", ErrMalformed, life, MaxLifetime/TickDuration)
	}
	a.Issued = fromTicks(issued)
	a.Expires = a.Issued.Add(time.Duration(life) * TickDuration)
	nl, ne := int(counts>>4), int(counts&0x0f)
	if nl > MaxLanguages {
		return a, fmt.Errorf("%w: %d languages, at most %d", ErrOversize, nl, MaxLanguages)
	}
	if ne > MaxEndorsements {
		return a, fmt.Errorf("%w: %d endorsements, at most %d", ErrOversize, ne, MaxEndorsements)
	}
	a.Profile.Languages = make([]string, 0, nl)
	for i := 0; i < nl; i++ {
		if l := r.take(2); l != nil {
			a.Profile.Languages = append(a.Profile.Languages, string(l))
		}
	}
	r.copyTo(a.Commitment[:])
	if r.err != nil {
		return a, r.err
	}
	if err := a.Profile.Validate(); err != nil {
		return a, fmt.Errorf("%w: profile: %v", ErrMalformed, err)
	}
	if ne > 0 {
		a.Endorsements = make([]Endorsement, ne)
	}
	for i := range a.Endorsements {
		a.Endorsements[i] = decodeEndorsement(r)
	}
	if r.err != nil {
		return a, r.err
	}
	if len(r.b)%slotSize != 0 {
		return a, fmt.Errorf("%w: slot area of %d bytes is not a multiple of %d", ErrMalformed, len(r.b), slotSize)
	}
	if n := len(r.b) / slotSize; n > 0 {
		a.Slots = make([]Slot, n)
	}
	for i := range a.Slots {
		s := &a.Slots[i]
		s.ID = SlotID(r.u16())
		off := r.u16()
		d := r.u8()
		f := r.u8()
		s.Start = a.Issued.Add(time.Duration(off) * TickDuration)
		s.Duration = time.Duration(d) * TickDuration
		s.Type, s.Setting, s.Modalitaet = SlotType(f>>6), Setting(f>>4&3), Modalitaet(f>>1&7)
		if f&1 != 0 {
			return a, fmt.Errorf("%w: slot %d reserved bit", ErrMalformed, s.ID)
		}
		if i > 0 && s.ID <= a.Slots[i-1].ID {
			return a, fmt.Errorf("%w: slot ids not increasing", ErrMalformed)
		}
		if err := validateSlot(s, &a.Profile); err != nil {
			return a, fmt.Errorf("%w: slot %d: %v", ErrMalformed, s.ID, err)
		}
	}
	return a, r.end()
}

// SignAnnounce builds the signed flood envelope of a (a.Therapist is
// ignored: the announce is signed by, and names, id). ttl is the flood's
// hop limit.
func SignAnnounce(id *envelope.Identity, a *Announce, ttl uint8) ([]byte, error) {
	body, err := appendBody(nil, a)
	if err != nil {
		return nil, err
	}
	raw, err := envelope.SignFlood(id, envelope.FloodOptions{Topic: Topic, Seq: a.Seq, Body: body, TTL: ttl})
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxAnnounceSize {
		return nil, fmt.Errorf("%w: announce %d bytes", ErrOversize, len(raw))
	}
	return raw, nil
}

// ParseAnnounce decodes and authenticates an announce envelope: structure,
// size (one LoRa frame), body, and the therapist's signature. It does not
// judge time, sequence or endorsements; the cache does.
func ParseAnnounce(raw []byte) (*Announce, error) {
	if len(raw) > MaxAnnounceSize {
		return nil, fmt.Errorf("%w: announce %d bytes, at most %d", ErrOversize, len(raw), MaxAnnounceSize)
	}
	e, err := envelope.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if e.Kind != envelope.KindFlood || e.Topic != Topic {
		return nil, fmt.Errorf("%w: %s topic %d", ErrWrongTopic, e.Kind, e.Topic)
	}
	a, err := decodeBody(e.Body)
	if err != nil {
		return nil, err
	}
	if err := e.Verify(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrForged, err)
	}
	a.Therapist, a.Seq = e.Key, e.Seq
	return &a, nil
}

// Records. Search replies carry announces without the envelope header (its
// version, hops, TTL, type and topic are implied): key 32 ‖ seq 4 ‖ body
// length 1 ‖ body ‖ signature 64.
const recordOverhead = envelope.PublicKeySize + 4 + 1 + envelope.SignatureSize // 101

// recordOf turns an announce envelope into a record.
func recordOf(raw []byte) ([]byte, error) {
	e, err := envelope.Parse(raw)
	if err != nil || e.Kind != envelope.KindFlood || len(e.Body) > MaxBody {
		return nil, fmt.Errorf("%w: not an announce", ErrMalformed)
	}
	rec := make([]byte, 0, recordOverhead+len(e.Body))
	rec = append(rec, e.Key[:]...)
	rec = append(rec, byte(e.Seq>>24), byte(e.Seq>>16), byte(e.Seq>>8), byte(e.Seq))
	rec = append(rec, uint8(len(e.Body)))
	rec = append(rec, e.Body...)
	return append(rec, e.Sig...), nil
}

// envelopeOf rebuilds the announce envelope (hops and TTL zero) a record
// came from, so that its signature can be checked.
func envelopeOf(r *reader) []byte {
	var e envelope.Envelope
	e.Kind, e.Topic = envelope.KindFlood, Topic
	r.copyTo(e.Key[:])
	e.Seq = r.u32()
	e.Body = r.bytes8("record body", MaxBody)
	e.Sig = r.take(envelope.SignatureSize)
	if r.err != nil {
		return nil
	}
	raw, err := e.Append(nil)
	if err != nil {
		r.fail(err.Error())
		return nil
	}
	return raw
}
