package fapp

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Persisted state: the therapist's profile, credentials, slots, sequence
// reservation, requests and replay tokens; the patient's reservations with
// their resend payloads and one-time reply keys. The cache and running
// searches are not persisted (the mesh refills the cache; a search lasts
// minutes). docs/fapp.md, "Persisted state", has the layout. The node keeps
// the blob in its store with the same care as the identity key: it holds
// patients' contact details (therapist) and reply keys (patient).

const (
	stateMagic   = "FAPPST"
	stateVersion = 1
	// Hard bounds of the decoder, independent of Options.
	maxStateRequests     = 4096
	maxStateSeen         = 4096
	maxStateReservations = 1024
	maxStatePayload      = 512
)

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// appendTime writes t as Unix nanoseconds; the zero time as 0.
func appendTime(b []byte, t time.Time) []byte {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

func (r *reader) time() time.Time {
	n := int64(r.u64())
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func appendTicks(b []byte, t time.Time) []byte {
	v, _ := toTicks(t)
	return appendU32(b, v)
}

func appendBytes8(b, v []byte) []byte  { return append(append(b, uint8(len(v))), v...) }
func appendBytes16(b, v []byte) []byte { return append(appendU16(b, uint16(len(v))), v...) }

// MarshalState encodes what must survive a restart. Persist it whenever a
// SaveState action says so.
func (c *Core) MarshalState() ([]byte, error) {
	t := &c.th
	b := append([]byte(stateMagic), stateVersion)
	if t.set {
		b = append(b, 1)
		b = appendProfileHead(b, &t.profile)
		b = append(b, uint8(len(t.profile.Languages)))
		for _, l := range t.profile.Languages {
			b = append(b, l...)
		}
		b = append(b, t.creds.Attestation.Salt[:]...)
		b = appendBytes16(b, t.creds.Attestation.Document)
		b = append(b, uint8(len(t.creds.Endorsements)))
		for i := range t.creds.Endorsements {
			b = appendEndorsement(b, &t.creds.Endorsements[i])
		}
	} else {
		b = append(b, 0)
	}
	b = appendU32(b, t.seqRes)
	b = appendU16(b, uint16(t.lastID))
	slots := c.Slots()
	b = appendU16(b, uint16(len(slots)))
	for _, s := range slots {
		b = appendU16(b, uint16(s.ID))
		b = appendTicks(b, s.Start)
		booked := uint8(0)
		if s.Booked {
			booked = 1
		}
		b = append(b, uint8(s.Type), uint8(s.Duration/TickDuration), uint8(s.Setting), uint8(s.Modalitaet), booked)
	}
	reqs := c.sortedRequests()
	b = appendU16(b, uint16(len(reqs)))
	for _, r := range reqs {
		b = append(b, r.ID[:]...)
		b = appendU16(b, uint16(r.Slot))
		b = appendTicks(b, r.SlotStart)
		b = appendBytes8(b, []byte(r.Contact))
		b = appendTime(b, r.Received)
		b = append(b, uint8(r.Outcome))
		b = appendTime(b, r.Decided)
		b = appendBytes8(b, []byte(r.Message))
		b = append(b, r.reply.Token[:]...)
		b = append(b, r.reply.Key[:]...)
	}
	b = appendU16(b, uint16(len(t.seen.m)))
	for _, k := range sortedTokens(t.seen.m) {
		b = append(b, k[:]...)
		b = appendTime(b, t.seen.m[k])
	}
	res := c.Reservations()
	b = appendU16(b, uint16(len(res)))
	for i := len(res) - 1; i >= 0; i-- { // oldest first
		r := c.res[res[i].ID]
		b = append(b, r.ID[:]...)
		b = append(b, r.Slot.Therapist[:]...)
		b = appendU16(b, uint16(r.Slot.Slot))
		b = appendTicks(b, r.SlotStart)
		b = append(b, uint8(r.Outcome))
		b = appendBytes8(b, []byte(r.Message))
		b = appendTime(b, r.Created)
		b = appendTime(b, r.Updated)
		b = appendU16(b, uint16(min(r.Attempts, 0xffff)))
		b = appendBytes16(b, r.payload)
		b = appendTime(b, r.nextRetry)
		b = binary.BigEndian.AppendUint64(b, uint64(r.gap))
		b = append(b, uint8(len(r.attempts)))
		for _, a := range r.attempts {
			b = append(b, a.token[:]...)
			k, err := a.key.MarshalBinary()
			if err != nil {
				return nil, err
			}
			b = append(b, k...)
		}
	}
	return b, nil
}

func sortedTokens(m map[envelope.Token]time.Time) []envelope.Token {
	ks := make([]envelope.Token, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && lessToken(ks[j], ks[j-1]); j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

// restore loads MarshalState's output into a fresh core.
func (c *Core) restore(b []byte) error {
	st, err := decodeState(b)
	if err != nil {
		return err
	}
	t := &c.th
	if st.set {
		if c.o.Identity == nil {
			return fmt.Errorf("%w: therapist state on a node without identity", ErrCorruptState)
		}
		t.set, t.profile, t.creds, t.changed = true, st.profile, st.creds, true
		t.commit = st.creds.Attestation.Commit(c.o.Identity.PublicKey())
	}
	t.seqRes, t.seq, t.lastID = st.seqRes, st.seqRes, st.lastID
	for _, s := range st.slots {
		s := s
		t.slots[s.ID] = &s
	}
	for _, r := range st.requests {
		t.requests[r.ID] = r
	}
	for k, v := range st.seen {
		t.seen.m[k] = v
	}
	for _, r := range st.res {
		c.res[r.ID] = r
		for _, a := range r.attempts {
			c.resByTok[a.token] = r.ID
		}
	}
	// Publish soon after a restart: pages are not persisted, so all are
	// re-sent with fresh sequence numbers.
	if t.set {
		t.publishAt = time.Unix(0, 1)
	}
	return nil
}

type decodedState struct {
	set      bool
	profile  Profile
	creds    Credentials
	seqRes   uint32
	lastID   SlotID
	slots    []ownSlot
	requests []*Request
	seen     map[envelope.Token]time.Time
	res      []*pendingRes
}

// decodeState reads MarshalState's output. Every count and length is
// bounded before anything is allocated; every failure is ErrCorruptState.
func decodeState(b []byte) (*decodedState, error) {
	st, err := decodeStateInner(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptState, err)
	}
	return st, nil
}

func decodeStateInner(b []byte) (*decodedState, error) {
	r := &reader{b: b, what: "state"}
	if m := r.take(len(stateMagic)); r.err == nil && string(m) != stateMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	if v := r.u8(); r.err == nil && v != stateVersion {
		return nil, fmt.Errorf("%w: state version %d", ErrMalformed, v)
	}
	st := &decodedState{seen: make(map[envelope.Token]time.Time)}
	switch f := r.u8(); {
	case r.err != nil:
		return nil, r.err
	case f > 1:
		return nil, fmt.Errorf("%w: therapist flag %d", ErrMalformed, f)
	case f == 1:
		st.set = true
		decodeProfileHead(r, &st.profile)
		nl := int(r.u8())
		if r.err == nil && nl > MaxLanguages {
			return nil, fmt.Errorf("%w: %d languages", ErrOversize, nl)
		}
		for i := 0; i < nl && r.err == nil; i++ {
			st.profile.Languages = append(st.profile.Languages, string(r.take(2)))
		}
		r.copyTo(st.creds.Attestation.Salt[:])
		st.creds.Attestation.Document = append([]byte(nil), r.bytes16("document", MaxDocument)...)
		ne := int(r.u8())
		if r.err == nil && ne > MaxEndorsements {
			return nil, fmt.Errorf("%w: %d endorsements", ErrOversize, ne)
		}
		for i := 0; i < ne && r.err == nil; i++ {
			st.creds.Endorsements = append(st.creds.Endorsements, decodeEndorsement(r))
		}
		if r.err != nil {
			return nil, r.err
		}
		if err := st.profile.Validate(); err != nil {
			return nil, err
		}
		if len(st.creds.Attestation.Document) == 0 {
			return nil, fmt.Errorf("%w: empty attestation document", ErrMalformed)
		}
	}
	st.seqRes = r.u32()
	st.lastID = SlotID(r.u16())
	n := int(r.u16())
	if r.err == nil && n > MaxOwnSlots {
		return nil, fmt.Errorf("%w: %d slots", ErrOversize, n)
	}
	seenSlot := map[SlotID]bool{}
	for i := 0; i < n && r.err == nil; i++ {
		s := ownSlot{page: -1}
		s.ID = SlotID(r.u16())
		s.Start = fromTicks(r.u32())
		typ, d, set, mod, booked := r.u8(), r.u8(), r.u8(), r.u8(), r.u8()
		if r.err != nil {
			break
		}
		s.Type, s.Duration, s.Setting, s.Modalitaet, s.booked = SlotType(typ), time.Duration(d)*TickDuration, Setting(set), Modalitaet(mod), booked == 1
		if booked > 1 || seenSlot[s.ID] || !st.set {
			return nil, fmt.Errorf("%w: slot %d", ErrMalformed, s.ID)
		}
		if err := validateSlot(&s.Slot, &st.profile); err != nil {
			return nil, err
		}
		seenSlot[s.ID] = true
		st.slots = append(st.slots, s)
	}
	n = int(r.u16())
	if r.err == nil && n > maxStateRequests {
		return nil, fmt.Errorf("%w: %d requests", ErrOversize, n)
	}
	seenReq := map[RequestID]bool{}
	for i := 0; i < n && r.err == nil; i++ {
		q := &Request{}
		r.copyTo(q.ID[:])
		q.Slot = SlotID(r.u16())
		q.SlotStart = fromTicks(r.u32())
		q.Contact = string(r.bytes8("contact", MaxContact))
		q.Received = r.time()
		q.Outcome = Outcome(r.u8())
		q.Decided = r.time()
		q.Message = string(r.bytes8("message", MaxMessage))
		r.copyTo(q.reply.Token[:])
		r.copyTo(q.reply.Key[:])
		if r.err != nil {
			break
		}
		if q.Outcome > Gone || seenReq[q.ID] {
			return nil, fmt.Errorf("%w: request %s", ErrMalformed, q.ID)
		}
		seenReq[q.ID] = true
		st.requests = append(st.requests, q)
	}
	n = int(r.u16())
	if r.err == nil && n > maxStateSeen {
		return nil, fmt.Errorf("%w: %d tokens", ErrOversize, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var k envelope.Token
		r.copyTo(k[:])
		st.seen[k] = r.time()
	}
	n = int(r.u16())
	if r.err == nil && n > maxStateReservations {
		return nil, fmt.Errorf("%w: %d reservations", ErrOversize, n)
	}
	seenRes := map[RequestID]bool{}
	seenTok := map[envelope.Token]bool{}
	for i := 0; i < n && r.err == nil; i++ {
		p := &pendingRes{}
		r.copyTo(p.ID[:])
		r.copyTo(p.Slot.Therapist[:])
		p.Slot.Slot = SlotID(r.u16())
		p.SlotStart = fromTicks(r.u32())
		p.Outcome = Outcome(r.u8())
		p.Message = string(r.bytes8("message", MaxMessage))
		p.Created = r.time()
		p.Updated = r.time()
		p.Attempts = int(r.u16())
		if pl := r.bytes16("payload", maxStatePayload); len(pl) > 0 {
			p.payload = append([]byte(nil), pl...)
		}
		p.nextRetry = r.time()
		p.gap = time.Duration(r.u64())
		na := int(r.u8())
		if r.err == nil && na > maxAttemptKeys {
			return nil, fmt.Errorf("%w: %d attempt keys", ErrOversize, na)
		}
		for j := 0; j < na && r.err == nil; j++ {
			var a attempt
			r.copyTo(a.token[:])
			kb := r.take(32)
			if r.err != nil {
				break
			}
			a.key = &envelope.ReplyKey{}
			if err := a.key.UnmarshalBinary(kb); err != nil {
				return nil, err
			}
			if seenTok[a.token] {
				return nil, fmt.Errorf("%w: token used twice", ErrMalformed)
			}
			seenTok[a.token] = true
			p.attempts = append(p.attempts, a)
		}
		if r.err != nil {
			break
		}
		if p.Outcome > Expired || seenRes[p.ID] || p.gap < 0 || (p.Outcome == Pending && len(p.payload) == 0) {
			return nil, fmt.Errorf("%w: reservation %s", ErrMalformed, p.ID)
		}
		seenRes[p.ID] = true
		st.res = append(st.res, p)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return st, nil
}
