package fapp

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// MaxOwnSlots bounds the slots a therapist keeps (free and booked).
const MaxOwnSlots = 256

// seqBlock is how many sequence numbers are reserved ahead in the persisted
// state, so that a crash never makes the therapist reuse one.
const seqBlock = 64

// OwnSlot is one of the therapist's slots as `fapp slot list` shows it.
type OwnSlot struct {
	Slot
	Booked bool `json:"booked"`
	// Pending counts undecided requests for it.
	Pending int `json:"pending"`
}

// Request is a reservation request as the therapist sees it.
type Request struct {
	ID        RequestID `json:"id"`
	Slot      SlotID    `json:"slot"`
	SlotStart time.Time `json:"slot_start"`
	// Contact is what the patient chose to tell (only for pending and
	// confirmed requests; it is erased from the others when decided).
	Contact  string    `json:"contact,omitempty"`
	Received time.Time `json:"received"`
	Outcome  Outcome   `json:"outcome"`
	Decided  time.Time `json:"decided,omitzero"`
	Message  string    `json:"message,omitempty"`

	reply envelope.ReplyTo // where answers go: the newest attempt's token and key
}

type ownSlot struct {
	Slot
	booked bool
	page   int // index in therapistState.pages, -1 when unassigned
}

type pageState struct {
	slots  []SlotID
	seq    uint32
	issued time.Time // zero: never sent
}

type therapistState struct {
	set     bool
	profile Profile
	creds   Credentials
	commit  Commitment
	changed bool // profile or credentials changed since the last publish

	slots  map[SlotID]*ownSlot
	lastID SlotID
	seq    uint32 // last used
	seqRes uint32 // reserved up to (persisted)

	pages     []pageState
	publishAt time.Time // zero: nothing to publish

	requests map[RequestID]*Request
	seen     *expirySet // reservation tokens (replay protection)
}

func (t *therapistState) init() {
	t.slots = make(map[SlotID]*ownSlot)
	t.requests = make(map[RequestID]*Request)
	t.seen = newExpirySet(4096)
}

// SetProfile sets (or replaces) the therapist's profile and credentials.
// Endorsements by anchors this node knows are checked (ErrEndorsement); the
// profile with its endorsements must leave room for at least one slot in a
// LoRa frame (ErrOversize). Existing slots must fit the new profile's
// settings and modalities. The announces are republished after
// PublishDelay.
func (c *Core) SetProfile(now time.Time, p Profile, cr Credentials) error {
	start := c.begin()
	defer c.end(start)
	if c.o.Identity == nil {
		return fmt.Errorf("%w: node has no identity", ErrNotTherapist)
	}
	p.Languages = slices.Clone(p.Languages)
	if err := p.Validate(); err != nil {
		return err
	}
	if len(cr.Attestation.Document) == 0 || len(cr.Attestation.Document) > MaxDocument {
		return fmt.Errorf("%w: attestation document is %d bytes (1–%d)", ErrInvalid, len(cr.Attestation.Document), MaxDocument)
	}
	if len(cr.Endorsements) > MaxEndorsements {
		return fmt.Errorf("%w: %d endorsements, at most %d", ErrOversize, len(cr.Endorsements), MaxEndorsements)
	}
	if SlotsPerAnnounce(&p, len(cr.Endorsements), c.o.AnnounceBudget) == 0 {
		return fmt.Errorf("%w: profile and %d endorsements leave no room for a slot in a %d-byte announce", ErrOversize, len(cr.Endorsements), c.o.AnnounceBudget)
	}
	me := c.o.Identity.PublicKey()
	commit := cr.Attestation.Commit(me)
	probe := Announce{Therapist: me, Profile: p, Commitment: commit, Endorsements: cr.Endorsements}
	if _, err := checkEndorsements(c.o.Anchors, &probe); err != nil {
		return err
	}
	for i := range cr.Endorsements {
		if _, ok := toDays(cr.Endorsements[i].ValidUntil); !ok {
			return fmt.Errorf("%w: endorsement %d validity", ErrInvalid, i)
		}
	}
	for _, s := range c.th.slots {
		if !s.booked && (s.Setting&^p.Settings != 0 || s.Modalitaet&^p.Modalitaeten != 0) {
			return fmt.Errorf("%w: slot %d (%s, %s) does not fit the new profile; remove it first", ErrInvalid, s.ID, s.Setting, s.Modalitaet)
		}
	}
	cr.Attestation.Document = slices.Clone(cr.Attestation.Document)
	cr.Endorsements = slices.Clone(cr.Endorsements)
	c.th.set, c.th.profile, c.th.creds, c.th.commit, c.th.changed = true, p, cr, commit, true
	c.schedulePublish(now)
	c.dirty = true
	return nil
}

// Profile returns the therapist's profile and credentials, if set.
func (c *Core) Profile() (Profile, Credentials, bool) {
	return c.th.profile, c.th.creds, c.th.set
}

// AddSlot adds a free slot and returns its id. A zero Setting or
// Modalitaet means the profile's. The slot must start after now, on the
// 5-minute grid, within MaxSlotAhead.
func (c *Core) AddSlot(now time.Time, s Slot) (SlotID, error) {
	start := c.begin()
	defer c.end(start)
	if !c.th.set {
		return 0, ErrNotTherapist
	}
	if s.Setting == 0 {
		s.Setting = c.th.profile.Settings
	}
	if s.Modalitaet == 0 {
		s.Modalitaet = c.th.profile.Modalitaeten
	}
	if err := validateSlot(&s, &c.th.profile); err != nil {
		return 0, err
	}
	if !s.Start.After(now) || s.Start.Sub(now) > MaxSlotAhead-TickDuration {
		return 0, fmt.Errorf("%w: slot must start after now and within %s", ErrInvalid, MaxSlotAhead-TickDuration)
	}
	if len(c.th.slots) >= MaxOwnSlots {
		return 0, fmt.Errorf("%w: %d slots", ErrOversize, len(c.th.slots))
	}
	id := c.th.lastID
	for {
		id++
		if id == 0 {
			id = 1
		}
		if c.th.slots[id] == nil {
			break
		}
	}
	c.th.lastID = id
	s.ID = id
	c.th.slots[id] = &ownSlot{Slot: s, page: -1}
	c.schedulePublish(now)
	c.dirty = true
	return id, nil
}

// RemoveSlot withdraws a slot. Undecided requests for it are told it is
// gone; it disappears from the next announce.
func (c *Core) RemoveSlot(now time.Time, id SlotID) error {
	start := c.begin()
	defer c.end(start)
	s := c.th.slots[id]
	if s == nil {
		return fmt.Errorf("%w: %d", ErrUnknownSlot, id)
	}
	delete(c.th.slots, id)
	for _, r := range c.sortedRequests() {
		if r.Slot == id && r.Outcome == Pending {
			c.decide(now, r, Gone, "")
		}
	}
	c.schedulePublish(now)
	c.dirty = true
	return nil
}

// Slots lists the therapist's slots by start time.
func (c *Core) Slots() []OwnSlot {
	out := make([]OwnSlot, 0, len(c.th.slots))
	for _, s := range c.th.slots {
		o := OwnSlot{Slot: s.Slot, Booked: s.booked}
		for _, r := range c.th.requests {
			if r.Slot == s.ID && r.Outcome == Pending {
				o.Pending++
			}
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b OwnSlot) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// Requests lists reservation requests, oldest first.
func (c *Core) Requests() []Request {
	rs := c.sortedRequests()
	out := make([]Request, len(rs))
	for i, r := range rs {
		out[i] = *r
	}
	return out
}

func (c *Core) sortedRequests() []*Request {
	rs := make([]*Request, 0, len(c.th.requests))
	for _, r := range c.th.requests {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *Request) int {
		if c := a.Received.Compare(b.Received); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return rs
}

// Confirm gives the slot to request id and tells the patient, with message
// (e.g. the practice's address and how to prepare). Every other undecided
// request for the slot is told it is taken, and the slot leaves the next
// announce. A slot already booked is ErrSlotTaken.
func (c *Core) Confirm(now time.Time, id RequestID, message string) error {
	start := c.begin()
	defer c.end(start)
	r, err := c.pendingRequest(id, message)
	if err != nil {
		return err
	}
	s := c.th.slots[r.Slot]
	if s == nil || !s.Start.Equal(r.SlotStart) {
		return fmt.Errorf("%w: %d", ErrUnknownSlot, r.Slot)
	}
	if s.booked {
		return fmt.Errorf("%w: slot %d", ErrSlotTaken, r.Slot)
	}
	c.confirm(now, r, s, message)
	return nil
}

func (c *Core) confirm(now time.Time, r *Request, s *ownSlot, message string) {
	s.booked = true
	c.decide(now, r, Confirmed, message)
	for _, o := range c.sortedRequests() {
		if o != r && o.Slot == r.Slot && o.Outcome == Pending {
			c.decide(now, o, Taken, "")
		}
	}
	c.schedulePublish(now)
}

// Decline tells the patient of request id no, with an optional message.
func (c *Core) Decline(now time.Time, id RequestID, message string) error {
	start := c.begin()
	defer c.end(start)
	r, err := c.pendingRequest(id, message)
	if err != nil {
		return err
	}
	c.decide(now, r, Declined, message)
	return nil
}

func (c *Core) pendingRequest(id RequestID, message string) (*Request, error) {
	r := c.th.requests[id]
	if r == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownRequest, id)
	}
	if r.Outcome != Pending {
		return nil, fmt.Errorf("%w: %s is %s", ErrDecided, id, r.Outcome)
	}
	if len(message) > MaxMessage {
		return nil, fmt.Errorf("%w: message is %d bytes, at most %d", ErrOversize, len(message), MaxMessage)
	}
	if !validText(message, 0, MaxMessage) {
		return nil, fmt.Errorf("%w: message is not UTF-8", ErrInvalid)
	}
	return r, nil
}

// decide records an outcome and sends it. Contact details are kept only for
// confirmed requests.
func (c *Core) decide(now time.Time, r *Request, o Outcome, message string) {
	r.Outcome, r.Decided, r.Message = o, now, message
	if o != Confirmed {
		r.Contact = ""
	}
	if o == Confirmed {
		c.stats.Confirmed++
	} else {
		c.stats.Declined++
	}
	c.sendAnswer(r)
	c.emit(&RequestUpdate{Request: *r})
	c.dirty = true
}

// sendAnswer seals the request's outcome to the patient's one-time key.
func (c *Core) sendAnswer(r *Request) {
	payload, err := appendAnswer(nil, &answer{ID: r.ID, Outcome: r.Outcome, Slot: r.Slot, SlotStart: r.SlotStart, Message: r.Message})
	if err != nil {
		c.log.Debug("fapp: cannot encode answer", "err", err)
		return
	}
	raw, err := envelope.SealAnonReply(c.o.Entropy, r.reply, payload, Port, c.o.AnonTTL)
	if err != nil {
		c.log.Debug("fapp: cannot seal answer", "err", err)
		return
	}
	c.stats.AnswersSent++
	c.emit(&SendReply{Token: r.reply.Token, Raw: raw})
}

// OnAnon handles an anonymous message the router opened for this node on
// port 2 (payload and the way to answer it): a reservation. Invalid ones
// are refused with the reason; a valid one becomes a Request (or, for a
// slot that is gone or booked, is answered at once).
func (c *Core) OnAnon(now time.Time, payload []byte, reply envelope.ReplyTo) error {
	start := c.begin()
	defer c.end(start)
	if err := c.onReservation(now, payload, reply); err != nil {
		return c.reject(now, err)
	}
	return nil
}

func (c *Core) onReservation(now time.Time, payload []byte, reply envelope.ReplyTo) error {
	if !c.th.set || c.o.Identity == nil {
		return fmt.Errorf("%w: reservation for a node that offers no slots", ErrNotTherapist)
	}
	if t := msgType(payload); t != msgReserve {
		return fmt.Errorf("%w: message type %#x on port %d", ErrMalformed, t, Port)
	}
	m, err := decodeReservation(payload)
	if err != nil {
		return err
	}
	if got := stampBits(reservationPoWInput(c.o.Identity.PublicKey(), payload), m.Nonce); got < c.o.ReserveBits {
		return fmt.Errorf("%w: %d bits, need %d", ErrProofOfWork, got, c.o.ReserveBits)
	}
	if m.Made.Before(now.Add(-c.o.ReservationMaxAge)) {
		return fmt.Errorf("%w: reservation made %s", ErrExpired, m.Made.Format(time.RFC3339))
	}
	if m.Made.After(now.Add(c.o.ClockSkew)) {
		return fmt.Errorf("%w: reservation made %s", ErrFuture, m.Made.Format(time.RFC3339))
	}
	if c.th.seen.has(reply.Token, now) {
		return fmt.Errorf("%w: reservation token %x", ErrReplay, reply.Token[:])
	}
	if r := c.th.requests[m.ID]; r != nil {
		if r.Slot != m.Slot || !r.SlotStart.Equal(m.SlotStart) {
			return fmt.Errorf("%w: request id %s reused for another slot", ErrReplay, m.ID)
		}
		// A resend: answer on the newest token.
		c.th.seen.add(reply.Token, m.Made.Add(c.o.ReservationMaxAge+c.o.ClockSkew))
		r.reply = reply
		c.dirty = true
		if r.Outcome != Pending {
			c.sendAnswer(r)
		}
		return nil
	}
	pending := 0
	for _, r := range c.th.requests {
		if r.Slot == m.Slot && r.Outcome == Pending {
			pending++
		}
	}
	if pending >= c.o.MaxPendingPerSlot || len(c.th.requests) >= c.o.MaxRequests {
		return fmt.Errorf("%w: %d pending for slot %d, %d requests", ErrRateLimited, pending, m.Slot, len(c.th.requests))
	}
	c.th.seen.add(reply.Token, m.Made.Add(c.o.ReservationMaxAge+c.o.ClockSkew))
	c.stats.RequestsReceived++
	r := &Request{ID: m.ID, Slot: m.Slot, SlotStart: m.SlotStart, Contact: m.Contact, Received: now, reply: reply}
	c.th.requests[m.ID] = r
	c.dirty = true
	s := c.th.slots[m.Slot]
	switch {
	case s == nil || !s.Start.Equal(m.SlotStart) || !s.Start.After(now):
		c.decide(now, r, Gone, "")
	case s.booked:
		c.decide(now, r, Taken, "")
	case c.o.AutoConfirm:
		c.confirm(now, r, s, "")
	default:
		c.emit(&RequestUpdate{Request: *r})
	}
	return nil
}

// schedulePublish arranges a publish after PublishDelay (if none is due
// sooner).
func (c *Core) schedulePublish(now time.Time) {
	at := now.Add(c.o.PublishDelay)
	if c.th.publishAt.IsZero() || at.Before(c.th.publishAt) {
		c.th.publishAt = at
	}
}

// nextSeq returns the next announce sequence number: above every one used
// before (the reserved block survives a crash) and at least the current
// Unix minute, so that even a node that lost its state does not fall
// behind its old announces (given a correct clock).
func (c *Core) nextSeq(now time.Time) uint32 {
	s := c.th.seq + 1
	if m := now.Unix() / 60; m > int64(s) && m < 0xffffffff-seqBlock {
		s = uint32(m)
	}
	c.th.seq = s
	if s > c.th.seqRes {
		// Persisted before the announce leaves: the event's actions start
		// with SaveState.
		c.th.seqRes = s + seqBlock
		c.dirty = true
	}
	return s
}

// Publish sends the announces that changed (or are due for refresh) now,
// instead of waiting for PublishDelay.
func (c *Core) Publish(now time.Time) error {
	start := c.begin()
	defer c.end(start)
	if !c.th.set || c.o.Identity == nil {
		return ErrNotTherapist
	}
	return c.publish(now)
}

func (c *Core) publish(now time.Time) error {
	t := &c.th
	t.publishAt = time.Time{}
	capacity := SlotsPerAnnounce(&t.profile, len(t.creds.Endorsements), c.o.AnnounceBudget)
	if capacity == 0 {
		return fmt.Errorf("%w: no room for slots", ErrOversize)
	}
	issuedT, ok := toTicks(now)
	if !ok {
		return fmt.Errorf("%w: clock %s", ErrInvalid, now)
	}
	issued := fromTicks(issuedT)
	// What can be offered now.
	var offer []*ownSlot
	for _, s := range t.slots {
		if !s.booked && s.Start.After(now) && s.Start.Sub(issued) <= MaxSlotAhead {
			offer = append(offer, s)
		} else {
			s.page = -1
		}
	}
	slices.SortFunc(offer, func(a, b *ownSlot) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	if len(offer) > capacity*MaxPages {
		c.log.Warn("fapp: more free slots than announces can carry; the latest wait", "slots", len(offer), "max", capacity*MaxPages)
		for _, s := range offer[capacity*MaxPages:] {
			s.page = -1
		}
		offer = offer[:capacity*MaxPages]
	}
	old := t.pages
	inOffer := make(map[SlotID]bool, len(offer))
	for _, s := range offer {
		inOffer[s.ID] = true
	}
	// Keep each slot on its page (so one change re-sends one page), fill
	// holes with new slots, and repack when pages got sparse.
	var pages []pageState
	repack := t.changed || len(old) == 0
	if !repack {
		pages = make([]pageState, len(old))
		for i := range old {
			pages[i] = pageState{seq: old[i].seq, issued: old[i].issued}
			for _, id := range old[i].slots {
				if inOffer[id] {
					pages[i].slots = append(pages[i].slots, id)
				}
			}
		}
		for _, s := range offer {
			if s.page >= 0 && s.page < len(pages) && slices.Contains(pages[s.page].slots, s.ID) {
				continue
			}
			placed := false
			for i := range pages {
				if len(pages[i].slots) < capacity {
					pages[i].slots = append(pages[i].slots, s.ID)
					placed = true
					break
				}
			}
			if !placed {
				pages = append(pages, pageState{slots: []SlotID{s.ID}})
			}
		}
		for len(pages) > 1 && len(pages[len(pages)-1].slots) == 0 {
			pages = pages[:len(pages)-1]
		}
		if need := (len(offer) + capacity - 1) / capacity; len(pages) > max(need, 1)+1 {
			repack = true
		}
	}
	if repack {
		pages = nil
		for i := 0; i < len(offer); i += capacity {
			ps := pageState{}
			for _, s := range offer[i:min(i+capacity, len(offer))] {
				ps.slots = append(ps.slots, s.ID)
			}
			pages = append(pages, ps)
		}
		if len(pages) == 0 {
			pages = []pageState{{}}
		}
	}
	for i := range pages {
		for _, id := range pages[i].slots {
			t.slots[id].page = i
		}
	}
	// Which pages go out: new or changed ones, all after a profile change,
	// those due for refresh, and page 0 when the count shrank (every
	// announce carries the count; one is enough to withdraw the rest).
	send := make([]bool, len(pages))
	anySent := false
	for i := range pages {
		changed := repack || i >= len(old) || !slices.Equal(pages[i].slots, old[i].slots) || pages[i].issued.IsZero()
		due := !pages[i].issued.IsZero() && !now.Before(pages[i].issued.Add(c.o.AnnounceLifetime/2))
		send[i] = changed || due
		anySent = anySent || send[i]
	}
	if len(pages) < len(old) && !anySent {
		send[0] = true
	}
	for i := range pages {
		if !send[i] {
			continue
		}
		a := Announce{
			Page: i, Pages: len(pages), Issued: issued, Expires: issued.Add(c.o.AnnounceLifetime),
			Profile: t.profile, Commitment: t.commit, Endorsements: t.creds.Endorsements,
		}
		for _, id := range pages[i].slots {
			a.Slots = append(a.Slots, t.slots[id].Slot)
		}
		slices.SortFunc(a.Slots, func(x, y Slot) int { return cmp.Compare(x.ID, y.ID) })
		a.Seq = c.nextSeq(now)
		raw, err := SignAnnounce(c.o.Identity, &a, c.o.AnnounceTTL)
		if err != nil {
			return err
		}
		pages[i].seq, pages[i].issued = a.Seq, issued
		c.stats.Published++
		// Our own cache holds our announces too, so this node answers
		// queries for them and finds them locally.
		if _, err := c.ingest(now, raw, false); err != nil {
			c.log.Warn("fapp: own announce not cached", "err", err)
		}
		c.emit(&Originate{Kind: envelope.KindFlood, Raw: raw})
	}
	t.pages = pages
	t.changed = false
	return nil
}

// tickTherapist publishes when due and forgets old requests and slots.
func (c *Core) tickTherapist(now time.Time) {
	t := &c.th
	if t.set && c.o.Identity != nil {
		due := !t.publishAt.IsZero() && !now.Before(t.publishAt)
		for _, p := range t.pages {
			if !p.issued.IsZero() && !now.Before(p.issued.Add(c.o.AnnounceLifetime/2)) {
				due = true
			}
		}
		if due {
			if err := c.publish(now); err != nil {
				c.log.Warn("fapp: publishing failed", "err", err)
			}
		}
	}
	for id, r := range t.requests {
		if r.Outcome != Pending && now.Sub(r.Decided) > c.o.RequestRetention {
			delete(t.requests, id)
			c.dirty = true
		}
	}
	for id, s := range t.slots {
		if s.Start.Add(s.Duration).Before(now.Add(-c.o.RequestRetention)) {
			delete(t.slots, id)
			c.dirty = true
		}
	}
	t.seen.expire(now)
}

func (c *Core) wakeTherapist(at func(time.Time)) {
	t := &c.th
	if !t.set {
		return
	}
	at(t.publishAt)
	for _, p := range t.pages {
		if !p.issued.IsZero() {
			at(p.issued.Add(c.o.AnnounceLifetime / 2))
		}
	}
}
