package fapp

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// signBody signs an arbitrary (possibly invalid) body as a topic-1 flood.
func signBody(t testing.TB, id *envelope.Identity, seq uint32, body []byte, topic uint8) []byte {
	t.Helper()
	raw, err := envelope.SignFlood(id, envelope.FloodOptions{Topic: topic, Seq: seq, Body: body, TTL: 8})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func mustBody(t testing.TB, a *Announce) []byte {
	t.Helper()
	b, err := appendBody(nil, a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBadAnnounces: each bad announce is refused with its own reason, the
// verdict is Drop and the cache does not change.
func TestBadAnnounces(t *testing.T) {
	w := newWorld(t)
	id := mustIdentity(t, "therapist")
	other := mustIdentity(t, "other")
	base := sampleAnnounce(t, w, id, true, 3)
	base.Seq = 100
	good, err := SignAnnounce(id, base, 8)
	if err != nil {
		t.Fatal(err)
	}
	next := func(mod func(a *Announce)) *Announce {
		a := sampleAnnounce(t, w, id, true, 3)
		a.Seq = 101
		if mod != nil {
			mod(a)
		}
		return a
	}
	sign := func(a *Announce) []byte {
		raw, err := SignAnnounce(id, a, 8)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	flip := func(raw []byte, off int, bit byte) []byte {
		b := append([]byte(nil), raw...)
		b[off] ^= bit
		return b
	}
	fresh := sign(next(nil))
	e, _ := envelope.Parse(fresh)
	bodyOff := len(fresh) - len(e.Body) - envelope.SignatureSize
	slotOff := len(fresh) - envelope.SignatureSize - slotSize // last slot

	// Endorsement with one signature bit flipped, signed by the therapist.
	altered := next(func(a *Announce) { a.Endorsements[0].Sig[10] ^= 1 })
	// Another therapist's endorsement, copied.
	copied := next(func(a *Announce) {
		a.Endorsements = []Endorsement{w.endorse(t, other, testAttestation(t, "other"), a.Profile)}
	})
	// 19 slots fit unendorsed; a 20th makes the envelope 260 bytes.
	big := sampleAnnounce(t, w, id, false, 19)
	big.Seq = 101
	bigBody := mustBody(t, big)
	bigBody = append(bigBody, 0x00, 0x50, 0x01, 0x20, 0x0a, 0x12)
	// Five languages: the counts nibble allows it, the format does not.
	many := mustBody(t, next(func(a *Announce) { a.Endorsements = nil; a.Slots = nil }))
	many[13] = 5<<4 | 0
	many = append(many[:16], append([]byte("enfrtrru"), many[16:]...)...)

	expired := next(func(a *Announce) { a.Issued = t0.Add(-48 * time.Hour); a.Expires = t0.Add(-24 * time.Hour) })
	expired.Slots = nil
	future := next(func(a *Announce) { a.Issued = t0.Add(2 * time.Hour); a.Expires = t0.Add(26 * time.Hour) })
	rollback := next(func(a *Announce) { a.Seq = 99 })

	reserved := mustBody(t, next(nil))
	reserved[9] |= 1 // offer byte reserved bit
	badPLZ := mustBody(t, next(nil))
	badPLZ[10], badPLZ[11], badPLZ[12] = 0xff, 0xff, 0xff
	badPage := mustBody(t, next(nil))
	badPage[1] = 0x11 // page 1 of 2... valid; make it page 2 of 2:
	badPage[1] = 0x21
	zeroLife := mustBody(t, next(nil))
	zeroLife[6], zeroLife[7] = 0, 0
	subset := mustBody(t, next(nil))
	subset[len(subset)-1] = uint8(Sprechstunde)<<6 | uint8(Gruppe)<<4 | uint8(Praxis)<<1 // Gruppe not offered by the profile

	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"forged signature", flip(fresh, len(fresh)-1, 0x01), ErrForged},
		{"forged slot duration", flip(fresh, slotOff+4, 0x01), ErrForged},
		{"signer key replaced", func() []byte {
			b := append([]byte(nil), fresh...)
			k := other.PublicKey()
			copy(b[5:37], k[:])
			return b
		}(), ErrForged},
		{"expired", sign(expired), ErrExpired},
		{"issued in the future", sign(future), ErrFuture},
		{"sequence rollback", sign(rollback), ErrRollback},
		{"duplicate", good, ErrDuplicate},
		{"altered endorsement", sign(altered), ErrEndorsement},
		{"copied endorsement", sign(copied), ErrEndorsement},
		{"oversized announce", signBody(t, id, 101, bigBody, Topic), ErrOversize},
		{"oversized profile (5 languages)", signBody(t, id, 101, many, Topic), ErrOversize},
		{"truncated body", signBody(t, id, 101, e.Body[:20], Topic), ErrMalformed},
		{"trailing slot bytes", signBody(t, id, 101, append(append([]byte(nil), e.Body...), 1, 2, 3), Topic), ErrMalformed},
		{"reserved bit", signBody(t, id, 101, reserved, Topic), ErrMalformed},
		{"PLZ out of range", signBody(t, id, 101, badPLZ, Topic), ErrMalformed},
		{"page beyond count", signBody(t, id, 101, badPage, Topic), ErrMalformed},
		{"zero lifetime", signBody(t, id, 101, zeroLife, Topic), ErrMalformed},
		{"slot setting not offered", signBody(t, id, 101, subset, Topic), ErrMalformed},
		{"wrong topic", signBody(t, id, 101, e.Body, 2), ErrWrongTopic},
		{"not an envelope", []byte{1, 0, 8}, ErrMalformed},
		{"truncated envelope", fresh[:bodyOff+3], ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(w.opts("relay", mustIdentity(t, "relay")), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.OnFlood(t0, "n", good); err != nil {
				t.Fatal(err)
			}
			c.Actions()
			before := cacheDigest(c)
			v, err := c.OnFlood(t0, "n", tc.raw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, other := range reasons {
				if other.err != tc.want && errors.Is(err, other.err) {
					t.Fatalf("%v also matches %v", err, other.err)
				}
			}
			if v != Drop {
				t.Fatalf("verdict %s", v)
			}
			if after := cacheDigest(c); after != before {
				t.Fatal("cache changed")
			}
			if got := c.Stats().Rejected[Reason(tc.want)]; got != 1 {
				t.Fatalf("Rejected[%s] = %d", Reason(tc.want), got)
			}
			if len(c.Actions()) != 0 {
				t.Fatal("actions after a refused input")
			}
		})
	}
}

// TestTrustJudgement: unendorsed and unknown-anchor announces are cached,
// relayed and found, marked unverified; never hidden, never verified.
func TestTrustJudgement(t *testing.T) {
	w := newWorld(t)
	stranger := mustIdentity(t, "stranger-anchor")
	id := mustIdentity(t, "therapist")
	att := testAttestation(t, "therapist")
	p := testProfile()
	byStranger, _ := Endorse(stranger, id.PublicKey(), att.Commit(id.PublicKey()), p.Verfahren, p.Altersgruppen, t0.AddDate(1, 0, 0))
	narrow, _ := Endorse(w.anchor, id.PublicKey(), att.Commit(id.PublicKey()), Verhaltenstherapie, Erwachsene, t0.AddDate(1, 0, 0))
	old, _ := Endorse(w.anchor, id.PublicKey(), att.Commit(id.PublicKey()), p.Verfahren, p.Altersgruppen, t0.AddDate(0, 0, -2))
	for _, tc := range []struct {
		name     string
		e        []Endorsement
		verified bool
		note     string
	}{
		{"none", nil, false, noteNone},
		{"unknown anchor", []Endorsement{byStranger}, false, noteUnknown},
		{"covers less", []Endorsement{narrow}, false, noteExceeds},
		{"expired", []Endorsement{old}, false, noteExpired},
		{"verified", []Endorsement{w.endorse(t, id, att, p)}, true, ""},
		{"unknown then verified", []Endorsement{byStranger, w.endorse(t, id, att, p)}[:1], false, noteUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Announce{Seq: 1, Pages: 1, Issued: t0, Expires: t0.Add(time.Hour), Profile: p, Commitment: att.Commit(id.PublicKey()), Endorsements: tc.e,
				Slots: []Slot{{ID: 1, Start: t0.Add(30 * time.Minute), Duration: 25 * time.Minute, Setting: Einzel, Modalitaet: Praxis}}}
			raw, err := SignAnnounce(id, a, 8)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := New(w.opts("relay", mustIdentity(t, "relay")), nil)
			v, err := c.OnFlood(t0, "n", raw)
			if err != nil || v != Relay {
				t.Fatalf("%v %v", v, err)
			}
			res, _ := c.Search(t0, Filter{})
			if len(res) != 1 {
				t.Fatalf("%d results", len(res))
			}
			if res[0].Trust.Verified != tc.verified || res[0].Trust.Note != tc.note {
				t.Fatalf("trust %+v", res[0].Trust)
			}
			if tc.verified && res[0].Trust.Anchor != "Kammer" {
				t.Fatalf("anchor %q", res[0].Trust.Anchor)
			}
		})
	}
}

func TestAnnounceRateLimit(t *testing.T) {
	w := newWorld(t)
	id := mustIdentity(t, "therapist")
	o := w.opts("relay", mustIdentity(t, "relay"))
	o.AnnounceRate = Rate{Burst: 2, Every: time.Hour}
	c, _ := New(o, nil)
	for i := 1; i <= 3; i++ {
		a := sampleAnnounce(t, w, id, false, 1)
		a.Seq = uint32(i)
		raw, _ := SignAnnounce(id, a, 8)
		before := cacheDigest(c)
		_, err := c.OnFlood(t0, "n", raw)
		if i <= 2 && err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if i == 3 {
			if !errors.Is(err, ErrRateLimited) {
				t.Fatalf("3rd: %v", err)
			}
			if cacheDigest(c) != before {
				t.Fatal("cache changed")
			}
		}
	}
	// An hour later one more is allowed.
	a := sampleAnnounce(t, w, id, false, 1)
	a.Seq = 4
	raw, _ := SignAnnounce(id, a, 8)
	if _, err := c.OnFlood(t0.Add(time.Hour), "n", raw); err != nil {
		t.Fatal(err)
	}
}

// TestCacheEviction: when full, unverified entries go before verified
// ones, sooner-expiring before later; a newcomer ranking lowest is refused
// (ErrCacheFull) without changing the cache.
func TestCacheEviction(t *testing.T) {
	w := newWorld(t)
	o := w.opts("relay", mustIdentity(t, "relay"))
	o.CacheEntries = 2
	c, _ := New(o, nil)
	mk := func(label string, endorsed bool, life time.Duration) []byte {
		id := mustIdentity(t, label)
		att := testAttestation(t, label)
		p := testProfile()
		a := &Announce{Seq: 1, Pages: 1, Issued: t0, Expires: t0.Add(life), Profile: p, Commitment: att.Commit(id.PublicKey()),
			Slots: []Slot{{ID: 1, Start: t0.Add(time.Hour), Duration: 50 * time.Minute, Setting: Einzel, Modalitaet: Praxis}}}
		if endorsed {
			a.Endorsements = []Endorsement{w.endorse(t, id, att, p)}
		}
		raw, err := SignAnnounce(id, a, 8)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	v1 := mk("v1", true, 24*time.Hour)
	u1 := mk("u1", false, 24*time.Hour)
	u2 := mk("u2", false, 12*time.Hour)
	v2 := mk("v2", true, 6*time.Hour)
	for _, raw := range [][]byte{v1, u1} {
		if _, err := c.OnFlood(t0, "n", raw); err != nil {
			t.Fatal(err)
		}
	}
	before := cacheDigest(c)
	if _, err := c.OnFlood(t0, "n", u2); !errors.Is(err, ErrCacheFull) {
		t.Fatalf("u2 (unverified, sooner expiry): %v", err)
	}
	if cacheDigest(c) != before {
		t.Fatal("cache changed")
	}
	if _, err := c.OnFlood(t0, "n", v2); err != nil { // evicts u1
		t.Fatal(err)
	}
	st := c.Stats()
	if st.CachePages != 2 || st.Evicted != 1 {
		t.Fatalf("stats %+v", st)
	}
	res, _ := c.Search(t0, Filter{})
	for _, r := range res {
		if !r.Trust.Verified {
			t.Fatal("unverified entry survived")
		}
	}
}

// ---- queries ----

// makeQuery builds a query envelope with a proof of work of bits (or,
// with bits < 0, a nonce whose stamp has fewer than -bits bits).
func makeQuery(t testing.TB, f Filter, made time.Time, bits int, label string) []byte {
	t.Helper()
	key, _ := envelope.NewReplyKey(newDetRand("rk/" + label))
	q := Query{ReplyKey: key.Public(), Time: made, Filter: f}
	newDetRand("tok/" + label).Read(q.Token[:])
	body, err := appendQueryBody(nil, &q)
	if err != nil {
		t.Fatal(err)
	}
	in := queryPoWInput(q.Token, body)
	var n uint64
	if bits >= 0 {
		n, _ = solve(nil, in, bits, 0)
	} else {
		for stampBits(in, n) >= -bits {
			n++
		}
	}
	q.Nonce = n
	raw, err := buildQuery(&q, 0, 6)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestBadQueries(t *testing.T) {
	w := newWorld(t)
	f := networkFilter(Filter{PLZPrefix: "803"})
	good := makeQuery(t, f, t0, 4, "good")
	e, _ := envelope.Parse(good)
	withBody := func(mod func(b []byte) []byte) []byte {
		b := mod(append([]byte(nil), e.Body...))
		// Re-solve so that only the modification is wrong.
		in := powInput(powQuery, e.Token[:], b[:max(len(b)-8, 0)])
		if len(b) >= 8 {
			n, _ := solve(nil, in, 4, 0)
			for i := 0; i < 8; i++ {
				b[len(b)-8+i] = byte(n >> (56 - 8*i))
			}
		}
		q := envelope.Envelope{Kind: envelope.KindQuery, TTL: 6, Topic: Topic, Token: e.Token, Body: b}
		raw, _ := q.Append(nil)
		return raw
	}
	plz4 := withBody(func(b []byte) []byte { b[40], b[41] = 4<<5|0x1f, 0x61; return b }) // 4 digits: 8033 = 0x1f61
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"truncated", withBody(func(b []byte) []byte { return b[:30] }), ErrMalformed},
		{"long", withBody(func(b []byte) []byte { return append(b, 0) }), ErrMalformed},
		{"bad version", withBody(func(b []byte) []byte { b[0] = 2; return b }), ErrMalformed},
		{"zero reply key", withBody(func(b []byte) []byte { clear(b[1:33]); return b }), ErrMalformed},
		{"reserved bit", withBody(func(b []byte) []byte { b[38] |= 1; return b }), ErrMalformed},
		{"PLZ value too big for its digits", withBody(func(b []byte) []byte { b[40], b[41] = 2<<5, 100; return b }), ErrMalformed},
		{"PLZ with 4 digits", plz4, ErrPrecision},
		{"PLZ with 5 digits", withBody(func(b []byte) []byte { b[40], b[41] = 5<<5, 0x00; return b }), ErrPrecision},
		{"date range reversed", withBody(func(b []byte) []byte { b[42], b[43], b[44], b[45] = 0x50, 0, 0x40, 0; return b }), ErrMalformed},
		{"no proof of work", makeQuery(t, f, t0, -4, "weak"), ErrProofOfWork},
		{"too old", makeQuery(t, f, t0.Add(-time.Hour), 4, "old"), ErrExpired},
		{"from the future", makeQuery(t, f, t0.Add(time.Hour), 4, "future"), ErrFuture},
		{"wrong topic", func() []byte { b := append([]byte(nil), good...); b[4] = 2; return b }(), ErrWrongTopic},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := New(w.opts("relay", mustIdentity(t, "relay")), nil)
			v, err := c.OnFlood(t0, "n", tc.raw)
			if !errors.Is(err, tc.want) || v != Drop {
				t.Fatalf("got %v %v, want %v", v, err, tc.want)
			}
			if len(c.Actions()) != 0 {
				t.Fatal("answered a bad query")
			}
		})
	}
	// The encoder refuses more than three digits, too.
	q := Query{Time: t0, Filter: networkFilter(Filter{})}
	q.Filter.PLZPrefix = "8033"
	q.ReplyKey[0] = 9
	if _, err := appendQueryBody(nil, &q); !errors.Is(err, ErrPrecision) {
		t.Fatalf("encoder: %v", err)
	}
	t.Run("replay", func(t *testing.T) {
		c, _ := New(w.opts("relay", mustIdentity(t, "relay")), nil)
		if _, err := c.OnFlood(t0, "n", good); err != nil {
			t.Fatal(err)
		}
		if v, err := c.OnFlood(t0.Add(time.Minute), "m", good); !errors.Is(err, ErrReplay) || v != Drop {
			t.Fatalf("%v %v", v, err)
		}
	})
	t.Run("neighbour rate", func(t *testing.T) {
		o := w.opts("relay", mustIdentity(t, "relay"))
		o.QueryRate = Rate{Burst: 3, Every: time.Minute}
		c, _ := New(o, nil)
		for i := 0; i < 4; i++ {
			_, err := c.OnFlood(t0, "noisy", makeQuery(t, f, t0, 4, "q"+string(rune('a'+i))))
			if (i < 3) != (err == nil) || (i == 3 && !errors.Is(err, ErrRateLimited)) {
				t.Fatalf("query %d: %v", i, err)
			}
		}
		// Another neighbour is not affected.
		if _, err := c.OnFlood(t0, "quiet", makeQuery(t, f, t0, 4, "qz")); err != nil {
			t.Fatal(err)
		}
	})
}

// ---- reservations ----

func makeReservation(t testing.TB, therapist envelope.PublicKey, m reservation, bits int) []byte {
	t.Helper()
	b, err := appendReservation(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	in := reservationPoWInput(therapist, b)
	var n uint64
	if bits >= 0 {
		n, _ = solve(nil, in, bits, 0)
	} else {
		for stampBits(in, n) >= -bits {
			n++
		}
	}
	for i := 0; i < 8; i++ {
		b[len(b)-8+i] = byte(n >> (56 - 8*i))
	}
	return b
}

func TestBadReservations(t *testing.T) {
	w := newWorld(t)
	th, id := w.therapistCore(t, "t1", testProfile(), false, 2)
	th.Actions()
	slot := th.Slots()[0]
	ok := reservation{ID: RequestID{1}, Made: t0, Slot: slot.ID, SlotStart: slot.Start, Contact: "Erika M., 0151 2345678"}
	good := makeReservation(t, id.PublicKey(), ok, 4)
	reply := func(b byte) envelope.ReplyTo {
		var r envelope.ReplyTo
		r.Token[0], r.Key[0] = b, 9
		return r
	}
	if err := th.OnAnon(t0, good, reply(1)); err != nil {
		t.Fatal(err)
	}
	th.Actions()
	mod := func(f func(m *reservation)) reservation { m := ok; m.ID = RequestID{2}; f(&m); return m }
	// Contact bytes that are not UTF-8 cannot be built by the encoder:
	// patch them in and re-solve.
	notUTF8 := makeReservation(t, id.PublicKey(), mod(func(m *reservation) { m.Contact = "ab" }), 4)
	notUTF8[20] = 0xff
	if n, err := solve(nil, reservationPoWInput(id.PublicKey(), notUTF8), 4, 0); err == nil {
		for i := 0; i < 8; i++ {
			notUTF8[len(notUTF8)-8+i] = byte(n >> (56 - 8*i))
		}
	}
	tests := []struct {
		name    string
		payload []byte
		reply   envelope.ReplyTo
		want    error
	}{
		{"replayed", good, reply(1), ErrReplay},
		{"request id reused for another slot", makeReservation(t, id.PublicKey(), func() reservation { m := ok; m.Slot++; return m }(), 4), reply(3), ErrReplay},
		{"truncated", good[:20], reply(4), ErrMalformed},
		{"trailing bytes", append(append([]byte(nil), good...), 0), reply(5), ErrMalformed},
		{"not a reservation", append([]byte{msgAnswer}, good[1:]...), reply(6), ErrMalformed},
		{"contact not UTF-8", notUTF8, reply(7), ErrMalformed},
		{"no proof of work", makeReservation(t, id.PublicKey(), mod(func(m *reservation) {}), -4), reply(8), ErrProofOfWork},
		{"proof of work for another therapist", makeReservation(t, mustIdentity(t, "x").PublicKey(), mod(func(m *reservation) {}), 12), reply(9), ErrProofOfWork},
		{"too old", makeReservation(t, id.PublicKey(), mod(func(m *reservation) { m.Made = t0.Add(-200 * time.Hour) }), 4), reply(10), ErrExpired},
		{"from the future", makeReservation(t, id.PublicKey(), mod(func(m *reservation) { m.Made = t0.Add(2 * time.Hour) }), 4), reply(11), ErrFuture},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := th.MarshalState()
			err := th.OnAnon(t0, tc.payload, tc.reply)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			after, _ := th.MarshalState()
			if string(before) != string(after) {
				t.Fatal("therapist state changed")
			}
			if len(th.Actions()) != 0 {
				t.Fatal("actions after a refused reservation")
			}
		})
	}
	t.Run("not a therapist", func(t *testing.T) {
		c, _ := New(w.opts("p", mustIdentity(t, "p")), nil)
		if err := c.OnAnon(t0, good, reply(12)); !errors.Is(err, ErrNotTherapist) {
			t.Fatal(err)
		}
	})
	t.Run("too many pending for a slot", func(t *testing.T) {
		for i := 0; i < 8; i++ {
			m := mod(func(m *reservation) { m.ID = RequestID{0x40, byte(i)} })
			err := th.OnAnon(t0, makeReservation(t, id.PublicKey(), m, 4), reply(byte(0x40+i)))
			if (i < 7) != (err == nil) || (i == 7 && !errors.Is(err, ErrRateLimited)) {
				t.Fatalf("request %d: %v", i, err)
			}
		}
	})
}

// TestSkeletons: after a therapist's pages are evicted its sequence state
// stays (bounded), so replaying its old announce is still refused.
func TestSkeletons(t *testing.T) {
	w := newWorld(t)
	o := w.opts("relay", mustIdentity(t, "relay"))
	o.CacheEntries = 1
	c, _ := New(o, nil)
	var raws [][]byte
	for i := 0; i < 8; i++ {
		id := mustIdentity(t, fmt.Sprint("sk", i))
		a := sampleAnnounce(t, w, id, false, 1)
		a.Expires = t0.Add(time.Duration(i+1) * time.Hour) // each outranks the one before
		raw, err := SignAnnounce(id, a, 8)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.OnFlood(t0, "n", raw); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		raws = append(raws, raw)
	}
	if err := cacheConsistent(c); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.CachePages != 1 || st.Evicted != 7 {
		t.Fatalf("%+v", st)
	}
	if n := len(c.cache.byKey); n != 5 { // 1 live + 4 skeletons
		t.Fatalf("%d therapists remembered", n)
	}
	if _, err := c.OnFlood(t0, "n", raws[6]); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("replay of an evicted page: %v", err)
	}
}

// TestCacheStress feeds a small cache a seeded random mix of therapists,
// pages, sequence numbers (some stale), lifetimes and endorsements, and
// checks its bookkeeping after every step.
func TestCacheStress(t *testing.T) {
	w := newWorld(t)
	o := w.opts("relay", mustIdentity(t, "relay"))
	o.CacheEntries, o.CacheBytes = 6, 6*(254+entryOverhead)-100
	o.AnnounceRate = Rate{Burst: 1000, Every: time.Second}
	c, _ := New(o, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	type th struct {
		id  *envelope.Identity
		att Attestation
		end Endorsement
		seq uint32
	}
	var ths []th
	for i := 0; i < 10; i++ {
		id := mustIdentity(t, fmt.Sprint("st", i))
		att := testAttestation(t, fmt.Sprint("st", i))
		ths = append(ths, th{id: id, att: att, end: w.endorse(t, id, att, testProfile())})
	}
	now := t0
	for step := 0; step < 250; step++ {
		x := &ths[rng.IntN(len(ths))]
		pages := 1 + rng.IntN(3)
		seq := x.seq + 1
		if rng.IntN(5) == 0 && x.seq > 2 {
			seq = x.seq - uint32(rng.IntN(2)) // stale or duplicate
		} else {
			x.seq = seq
		}
		p := testProfile()
		issued := now.Truncate(TickDuration)
		a := &Announce{Seq: seq, Page: rng.IntN(pages), Pages: pages, Issued: issued,
			Expires: issued.Add(time.Duration(1+rng.IntN(24)) * TickDuration * 12), Profile: p, Commitment: x.att.Commit(x.id.PublicKey())}
		if rng.IntN(2) == 0 {
			a.Endorsements = []Endorsement{x.end}
		}
		for s := 0; s < rng.IntN(5); s++ {
			a.Slots = append(a.Slots, Slot{ID: SlotID(s + 1), Start: issued.Add(time.Duration(s+1) * time.Hour), Duration: time.Hour, Setting: Einzel, Modalitaet: Praxis})
		}
		raw, err := SignAnnounce(x.id, a, 8)
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.OnFlood(now, "n", raw)
		if err != nil {
			checkKnownT(t, err)
		} else if v != Relay {
			t.Fatalf("step %d: verdict %s", step, v)
		}
		if err := cacheConsistent(c); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if rng.IntN(10) == 0 {
			now = now.Add(time.Duration(rng.IntN(90)) * time.Minute)
			c.Tick(now)
		}
	}
	if s := c.Stats(); s.Accepted == 0 || s.Evicted == 0 || s.Rejected["cache_full"] == 0 {
		t.Fatalf("stress did not exercise eviction: %+v", s)
	}
}

func checkKnownT(t *testing.T, err error) {
	t.Helper()
	if Reason(err) == "other" {
		t.Fatalf("undocumented error: %v", err)
	}
}
