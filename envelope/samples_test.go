package envelope

import "testing"

// sample is one valid envelope of some kind and shape, built the way
// production code builds it.
type sample struct {
	name    string
	raw     []byte
	payload int // application bytes carried (0 for control kinds)
}

// samples returns valid envelopes of every kind and addressing shape,
// deterministically, for round-trip tests, fuzz seeds and the overhead table.
func samples(t testing.TB) []sample {
	t.Helper()
	alice, bob := mustIdentity(t, "alice"), mustIdentity(t, "bob")
	pq := make([]byte, PQSecretSize)
	for i := range pq {
		pq[i] = byte(i)
	}
	ab, abPQ := mustPair(t, alice, bob, nil), mustPair(t, alice, bob, pq)
	ba := mustPair(t, bob, alice, nil)
	payload := []byte("hello, mesh")
	var out []sample
	add := func(name string, n int, b []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, sample{name, b, n})
	}
	b, err := SignAnnounce(alice, AnnounceOptions{Seq: 7, Caps: CapRelay, TTL: 8})
	add("announce", 0, b, err)
	b, err = SignAnnounce(alice, AnnounceOptions{Seq: 8, Caps: CapRelay | CapStore, AppData: []byte("alice"), TTL: 8})
	add("announce+appdata", 5, b, err)
	ann := mustParse(t, b)

	pr := Envelope{Kind: KindPathRequest, TTL: 4, Dst: HintAddr(bob.Address().Hint()), Src: HintAddr(alice.Address().Hint()), RequestID: 0xdeadbeef}
	b, err = pr.Append(nil)
	add("path-request", 0, b, err)
	prf := Envelope{Kind: KindPathRequest, Flags: FlagFull, TTL: 4, Dst: FullAddr(bob.Address()), Src: FullAddr(alice.Address()), RequestID: 1}
	b, err = prf.Append(nil)
	add("path-request full", 0, b, err)

	b, err = NewPathReply(&ann, PathReplyOptions{To: HintAddr(bob.Address().Hint()), RequestID: 0xdeadbeef, Dist: 2, TTL: 6})
	add("path-reply", 5, b, err)

	b, err = ab.Seal(nil, 1, payload, SealOptions{TTL: 8})
	add("data", len(payload), b, err)
	b, err = ab.Seal(nil, 2, payload, SealOptions{TTL: 8, Port: 5})
	add("data+port", len(payload), b, err)
	b, err = ab.Seal(nil, 3, payload, SealOptions{TTL: 8, Full: true})
	add("data full", len(payload), b, err)
	b, err = ab.Seal(nil, 4, payload, SealOptions{TTL: 8, IncludeKey: true})
	add("data+key", len(payload), b, err)
	b, err = abPQ.Seal(nil, 5, payload, SealOptions{TTL: 8})
	add("data pq", len(payload), b, err)
	b, err = ab.Seal(nil, 6, nil, SealOptions{TTL: 8})
	add("data empty", 0, b, err)

	b, err = ba.Ack(1, SealOptions{TTL: 8})
	add("ack", 0, b, err)
	b, err = ba.Ack(3, SealOptions{TTL: 8, Full: true})
	add("ack full", 0, b, err)

	for _, s := range out {
		if s.name == "data" || s.name == "data full" {
			d := mustParse(t, s.raw)
			b, err = NewHeld(&d, 8)
			add("held"+s.name[len("data"):], 0, b, err)
		}
	}

	tok := Token{1, 2, 3, 4, 5, 6, 7, 8}
	b, _, err = SealAnonymous(newDetRand("anon"), bob.PublicKey(), tok, payload, AnonOptions{TTL: 8, Port: 9})
	add("anon", len(payload), b, err)
	b, err = SealAnonReply(newDetRand("reply"), ReplyTo{Token: tok, Key: alice.X25519Public()}, payload, 9, 8)
	add("anon-reply", len(payload), b, err)

	ch := Envelope{Kind: KindChannel, TTL: 5, Dst: HintAddr(Hint{0xca, 0xfe, 0, 1}), Body: []byte("opaque channel body")}
	b, err = ch.Append(nil)
	add("channel", len(ch.Body), b, err)

	b, err = SignFlood(alice, FloodOptions{Topic: 1, Seq: 42, Body: []byte("slots"), TTL: 6})
	add("flood", len("slots"), b, err)

	q := Envelope{Kind: KindQuery, TTL: 3, Topic: 1, Token: tok, Body: []byte("query")}
	b, err = q.Append(nil)
	add("query", len(q.Body), b, err)
	return out
}
