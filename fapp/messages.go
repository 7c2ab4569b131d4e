package fapp

import (
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/openmeshd/meshd/envelope"
)

// Port-2 messages. Each starts with a type byte. A reservation travels in
// an anon envelope (patient → therapist, sealed to the therapist's key from
// a one-time key); answers and search results travel in anon-reply
// envelopes sealed to the one-time key of the reservation or query.
const (
	msgReserve = 0x01
	msgAnswer  = 0x02
	msgResults = 0x03
)

// Limits of the messages.
const (
	// MaxContact bounds the contact details of a reservation.
	MaxContact = 160
	// MaxMessage bounds the therapist's message in an answer.
	MaxMessage = 200
	// MaxReplyRecords bounds the announces in one search reply.
	MaxReplyRecords = 8
)

// RequestID names a reservation: 8 random bytes the patient's node draws.
// Retries carry the same id, so the therapist sees one request.
type RequestID [8]byte

func (id RequestID) String() string { return fmt.Sprintf("%x", id[:]) }

// ParseRequestID reads the 16 hex digits String writes.
func ParseRequestID(s string) (RequestID, error) {
	var id RequestID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: request id %q (16 hex digits)", ErrInvalid, s)
	}
	copy(id[:], b)
	return id, nil
}

// reservation is the sealed payload of a reservation.
type reservation struct {
	ID        RequestID
	Made      time.Time // on the grid
	Slot      SlotID
	SlotStart time.Time // on the grid
	Contact   string
	Nonce     uint64
}

func validText(s string, min, max int) bool {
	return len(s) >= min && len(s) <= max && utf8.ValidString(s)
}

func appendReservation(dst []byte, m *reservation) ([]byte, error) {
	made, ok1 := toTicks(m.Made)
	start, ok2 := toTicks(m.SlotStart)
	if !ok1 || !ok2 || !onGrid(m.Made) || !onGrid(m.SlotStart) {
		return dst, fmt.Errorf("%w: reservation times", ErrInvalid)
	}
	if len(m.Contact) > MaxContact {
		return dst, fmt.Errorf("%w: contact is %d bytes, at most %d", ErrOversize, len(m.Contact), MaxContact)
	}
	if !validText(m.Contact, 1, MaxContact) {
		return dst, fmt.Errorf("%w: contact must be 1–%d bytes of UTF-8", ErrInvalid, MaxContact)
	}
	b := append(dst, msgReserve)
	b = append(b, m.ID[:]...)
	b = append(b, byte(made>>24), byte(made>>16), byte(made>>8), byte(made))
	b = append(b, byte(m.Slot>>8), byte(m.Slot))
	b = append(b, byte(start>>24), byte(start>>16), byte(start>>8), byte(start))
	b = append(b, uint8(len(m.Contact)))
	b = append(b, m.Contact...)
	n := m.Nonce
	return append(b, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n)), nil
}

func decodeReservation(b []byte) (reservation, error) {
	var m reservation
	r := &reader{b: b, what: "reservation"}
	if t := r.u8(); r.err == nil && t != msgReserve {
		return m, fmt.Errorf("%w: message type %#x is not a reservation", ErrMalformed, t)
	}
	r.copyTo(m.ID[:])
	m.Made = fromTicks(r.u32())
	m.Slot = SlotID(r.u16())
	m.SlotStart = fromTicks(r.u32())
	c := r.bytes8("contact", MaxContact)
	m.Nonce = r.u64()
	if err := r.end(); err != nil {
		return m, err
	}
	if !validText(string(c), 1, MaxContact) {
		return m, fmt.Errorf("%w: contact is not 1–%d bytes of UTF-8", ErrMalformed, MaxContact)
	}
	m.Contact = string(c)
	return m, nil
}

// reservationPoWInput: the stamp binds the therapist's key and the whole
// payload up to the nonce.
func reservationPoWInput(therapist envelope.PublicKey, payload []byte) []byte {
	return powInput(powReserve, therapist[:], payload[:len(payload)-8])
}

// Outcome is how a therapist answered a reservation.
type Outcome uint8

// Outcomes. On the wire as one byte, 1–4.
const (
	// Pending: no answer yet (never on the wire).
	Pending Outcome = 0
	// Confirmed: the slot is this patient's.
	Confirmed Outcome = 1
	// Declined: the therapist said no.
	Declined Outcome = 2
	// Taken: another patient got the slot first.
	Taken Outcome = 3
	// Gone: the slot is no longer offered (withdrawn, or never existed).
	Gone Outcome = 4
	// Expired: no answer came before the reservation timed out (patient
	// side only, never on the wire).
	Expired Outcome = 5
)

var outcomeNames = [...]string{"pending", "confirmed", "declined", "taken", "gone", "expired"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// MarshalText writes the outcome's name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// answer is the therapist's reply to a reservation.
type answer struct {
	ID        RequestID
	Outcome   Outcome
	Slot      SlotID
	SlotStart time.Time
	Message   string
}

func appendAnswer(dst []byte, m *answer) ([]byte, error) {
	start, ok := toTicks(m.SlotStart)
	if !ok || !onGrid(m.SlotStart) || m.Outcome < Confirmed || m.Outcome > Gone {
		return dst, fmt.Errorf("%w: answer", ErrInvalid)
	}
	if len(m.Message) > MaxMessage {
		return dst, fmt.Errorf("%w: message is %d bytes, at most %d", ErrOversize, len(m.Message), MaxMessage)
	}
	if !validText(m.Message, 0, MaxMessage) {
		return dst, fmt.Errorf("%w: message is not UTF-8", ErrInvalid)
	}
	b := append(dst, msgAnswer)
	b = append(b, m.ID[:]...)
	b = append(b, uint8(m.Outcome), byte(m.Slot>>8), byte(m.Slot))
	b = append(b, byte(start>>24), byte(start>>16), byte(start>>8), byte(start))
	b = append(b, uint8(len(m.Message)))
	return append(b, m.Message...), nil
}

func decodeAnswer(b []byte) (answer, error) {
	var m answer
	r := &reader{b: b, what: "answer"}
	if t := r.u8(); r.err == nil && t != msgAnswer {
		return m, fmt.Errorf("%w: message type %#x is not an answer", ErrMalformed, t)
	}
	r.copyTo(m.ID[:])
	m.Outcome = Outcome(r.u8())
	m.Slot = SlotID(r.u16())
	m.SlotStart = fromTicks(r.u32())
	msg := r.bytes8("message", MaxMessage)
	if err := r.end(); err != nil {
		return m, err
	}
	if m.Outcome < Confirmed || m.Outcome > Gone {
		return m, fmt.Errorf("%w: outcome %d", ErrMalformed, m.Outcome)
	}
	if !utf8.Valid(msg) {
		return m, fmt.Errorf("%w: message is not UTF-8", ErrMalformed)
	}
	m.Message = string(msg)
	return m, nil
}

// appendResults packs announce records into a search-results message.
func appendResults(dst []byte, records [][]byte) ([]byte, error) {
	if len(records) == 0 || len(records) > MaxReplyRecords {
		return dst, fmt.Errorf("%w: %d records in a reply", ErrInvalid, len(records))
	}
	b := append(dst, msgResults, uint8(len(records)))
	for _, r := range records {
		b = append(b, r...)
	}
	return b, nil
}

// decodeResults returns the announce envelopes (rebuilt from records) of a
// search-results message. Their signatures are not checked here.
func decodeResults(b []byte) ([][]byte, error) {
	r := &reader{b: b, what: "results"}
	if t := r.u8(); r.err == nil && t != msgResults {
		return nil, fmt.Errorf("%w: message type %#x is not search results", ErrMalformed, t)
	}
	n := int(r.u8())
	if r.err == nil && (n == 0 || n > MaxReplyRecords) {
		return nil, fmt.Errorf("%w: %d records in a reply (1–%d)", ErrMalformed, n, MaxReplyRecords)
	}
	out := make([][]byte, 0, min(n, MaxReplyRecords))
	for i := 0; i < n && r.err == nil; i++ {
		if raw := envelopeOf(r); raw != nil {
			out = append(out, raw)
		}
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return out, nil
}

// msgType returns the type byte of a port-2 message, or 0.
func msgType(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}
