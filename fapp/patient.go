package fapp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// maxAttemptKeys is how many attempts' reply keys a reservation keeps: an
// answer on an older token (whose breadcrumbs are long gone) is unlikely.
const maxAttemptKeys = 4

// Reservation is a patient's reservation as `fapp status` shows it.
type Reservation struct {
	ID        RequestID `json:"id"`
	Slot      SlotRef   `json:"slot"`
	SlotStart time.Time `json:"slot_start"`
	Outcome   Outcome   `json:"outcome"`
	// Message is the therapist's (for a confirmation: address, how to
	// prepare).
	Message  string    `json:"message,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	Attempts int       `json:"attempts"`
}

type attempt struct {
	token envelope.Token
	key   *envelope.ReplyKey
}

// pendingRes is a reservation with what the patient's node needs to resend
// it and open the answer. It lives only on the patient's node.
type pendingRes struct {
	Reservation
	payload   []byte // the sealed plaintext, proof of work included
	attempts  []attempt
	nextRetry time.Time
	gap       time.Duration
}

// ReservationDraft is a reservation being prepared: its payload is built,
// its proof of work not yet found. Solve may run on any goroutine; then hand
// the draft to SubmitReservation.
type ReservationDraft struct {
	ref       SlotRef
	slotStart time.Time
	m         reservation
	payload   []byte
	bits      int
	solved    bool
}

// PrepareReservation builds a reservation of the cached slot ref, with the
// contact details only the therapist will be able to read.
func (c *Core) PrepareReservation(now time.Time, ref SlotRef, contact string) (*ReservationDraft, error) {
	e, s := c.cache.find(ref, now)
	if e == nil {
		return nil, fmt.Errorf("%w: %s is not in the cache (search first)", ErrUnknownSlot, ref)
	}
	if !s.Start.After(now) {
		return nil, fmt.Errorf("%w: %s has started", ErrUnknownSlot, ref)
	}
	for _, r := range c.res {
		if r.Slot == ref && r.Outcome == Pending {
			return nil, fmt.Errorf("%w: reservation %s for %s is pending", ErrDuplicate, r.ID, ref)
		}
	}
	t, ok := toTicks(now)
	if !ok {
		return nil, fmt.Errorf("%w: clock %s", ErrInvalid, now)
	}
	d := &ReservationDraft{ref: ref, slotStart: s.Start, bits: c.o.ReserveBits,
		m: reservation{Made: fromTicks(t), Slot: s.ID, SlotStart: s.Start, Contact: contact}}
	if err := c.random(d.m.ID[:]); err != nil {
		return nil, err
	}
	var n [8]byte
	if err := c.random(n[:]); err != nil {
		return nil, err
	}
	d.m.Nonce = binary.BigEndian.Uint64(n[:])
	var err error
	if d.payload, err = appendReservation(nil, &d.m); err != nil {
		return nil, err
	}
	return d, nil
}

// Solve finds the proof of work (about 2^ReserveBits hashes). It touches
// nothing but the draft.
func (d *ReservationDraft) Solve(ctx context.Context) error {
	if d.solved {
		return nil
	}
	n, err := solve(ctx, reservationPoWInput(d.ref.Therapist, d.payload), d.bits, d.m.Nonce)
	if err != nil {
		return err
	}
	d.m.Nonce = n
	binary.BigEndian.PutUint64(d.payload[len(d.payload)-8:], n)
	d.solved = true
	return nil
}

// SubmitReservation sends a solved reservation (a SendAnon action) and
// returns its id. It is resent, each time under a fresh one-time key and
// token, until answered or ReservationTimeout.
func (c *Core) SubmitReservation(now time.Time, d *ReservationDraft) (RequestID, error) {
	start := c.begin()
	defer c.end(start)
	if d == nil || !d.solved {
		return RequestID{}, fmt.Errorf("%w: reservation draft not solved", ErrInvalid)
	}
	if c.res[d.m.ID] != nil {
		return RequestID{}, fmt.Errorf("%w: reservation %s already submitted", ErrDuplicate, d.m.ID)
	}
	if len(c.res) >= c.o.MaxReservations {
		c.forgetOldReservations(now, true)
		if len(c.res) >= c.o.MaxReservations {
			return RequestID{}, fmt.Errorf("%w: %d reservations", ErrRateLimited, len(c.res))
		}
	}
	r := &pendingRes{
		Reservation: Reservation{ID: d.m.ID, Slot: d.ref, SlotStart: d.slotStart, Created: now, Updated: now},
		payload:     slices.Clone(d.payload),
		gap:         c.o.ReservationRetry,
	}
	if err := c.sendAttempt(now, r); err != nil {
		return RequestID{}, err
	}
	c.res[r.ID] = r
	c.stats.ReservationsSent++
	c.emit(&ReservationUpdate{Reservation: r.Reservation})
	c.dirty = true
	return r.ID, nil
}

// Reserve prepares, solves (on the calling goroutine) and submits a
// reservation.
func (c *Core) Reserve(ctx context.Context, now time.Time, ref SlotRef, contact string) (RequestID, error) {
	d, err := c.PrepareReservation(now, ref, contact)
	if err != nil {
		return RequestID{}, err
	}
	if err := d.Solve(ctx); err != nil {
		return RequestID{}, err
	}
	return c.SubmitReservation(now, d)
}

// sendAttempt seals the payload under a fresh one-time key and token.
func (c *Core) sendAttempt(now time.Time, r *pendingRes) error {
	var tok envelope.Token
	if err := c.random(tok[:]); err != nil {
		return err
	}
	raw, key, err := envelope.SealAnonymous(c.o.Entropy, r.Slot.Therapist, tok, r.payload, envelope.AnonOptions{Port: Port, TTL: c.o.AnonTTL})
	if err != nil {
		return err
	}
	j := c.jitter()
	raw[envelope.OffsetHops] = j
	raw[envelope.OffsetTTL] -= min(j, raw[envelope.OffsetTTL]-1)
	r.attempts = append(r.attempts, attempt{token: tok, key: key})
	if len(r.attempts) > maxAttemptKeys {
		old := r.attempts[0]
		old.key.Destroy()
		delete(c.resByTok, old.token)
		r.attempts = slices.Delete(r.attempts, 0, 1)
	}
	c.resByTok[tok] = r.ID
	r.Attempts++
	r.nextRetry = now.Add(r.gap)
	r.gap = min(2*r.gap, c.o.ReservationRetryMax)
	c.emit(&SendAnon{To: r.Slot.Therapist, Token: tok, Raw: raw})
	return nil
}

// onAnswer handles the therapist's answer to a reservation.
func (c *Core) onAnswer(now time.Time, r *pendingRes, e *envelope.Envelope) error {
	var payload []byte
	var port uint8
	var err error
	for _, a := range r.attempts {
		if a.token == e.Token {
			payload, port, err = a.key.OpenReply(e)
			break
		}
	}
	if err != nil || payload == nil {
		return fmt.Errorf("%w: answer to %s", ErrForged, r.ID)
	}
	if port != Port {
		return fmt.Errorf("%w: answer on port %d", ErrWrongTopic, port)
	}
	m, err := decodeAnswer(payload)
	if err != nil {
		return err
	}
	if m.ID != r.ID || m.Slot != r.Slot.Slot {
		return fmt.Errorf("%w: answer names request %s slot %d, want %s slot %d", ErrMalformed, m.ID, m.Slot, r.ID, r.Slot.Slot)
	}
	c.stats.AnswersReceived++
	if r.Outcome != Pending {
		if r.Outcome == m.Outcome {
			return nil // the answer again, after a resend
		}
		return fmt.Errorf("%w: request %s already %s, answer says %s", ErrDuplicate, r.ID, r.Outcome, m.Outcome)
	}
	r.Outcome, r.Message, r.Updated = m.Outcome, m.Message, now
	r.payload = nil // the contact details are not needed any more
	c.emit(&ReservationUpdate{Reservation: r.Reservation})
	c.dirty = true
	return nil
}

// Reservations lists the patient's reservations, newest first.
func (c *Core) Reservations() []Reservation {
	out := make([]Reservation, 0, len(c.res))
	for _, r := range c.res {
		out = append(out, r.Reservation)
	}
	slices.SortFunc(out, func(a, b Reservation) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	return out
}

// tickReservations resends unanswered reservations and gives up on those
// past ReservationTimeout.
func (c *Core) tickReservations(now time.Time) {
	var rs []*pendingRes
	for _, r := range c.res {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *pendingRes) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	for _, r := range rs {
		if r.Outcome != Pending {
			continue
		}
		if !now.Before(r.Created.Add(c.o.ReservationTimeout)) {
			r.Outcome, r.Updated, r.payload = Expired, now, nil
			c.emit(&ReservationUpdate{Reservation: r.Reservation})
			c.dirty = true
			continue
		}
		if !now.Before(r.nextRetry) {
			if err := c.sendAttempt(now, r); err == nil {
				c.stats.ReservationRetry++
				c.dirty = true
			}
		}
	}
	c.forgetOldReservations(now, false)
}

// forgetOldReservations forgets finished reservations after
// RequestRetention and, when room is needed, the oldest finished ones.
func (c *Core) forgetOldReservations(now time.Time, forRoom bool) {
	var done []*pendingRes
	for _, r := range c.res {
		if r.Outcome == Pending {
			continue
		}
		if now.Sub(r.Updated) > c.o.RequestRetention {
			c.dropReservation(r)
			continue
		}
		done = append(done, r)
	}
	if !forRoom {
		return
	}
	slices.SortFunc(done, func(a, b *pendingRes) int {
		if c := a.Updated.Compare(b.Updated); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	for _, r := range done {
		if len(c.res) < c.o.MaxReservations {
			break
		}
		c.dropReservation(r)
	}
}

func (c *Core) dropReservation(r *pendingRes) {
	for _, a := range r.attempts {
		a.key.Destroy()
		delete(c.resByTok, a.token)
	}
	delete(c.res, r.ID)
	c.dirty = true
}
