package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// openData parses and opens raw as bob would, returning the first error.
func openData(p *Pair, raw []byte) ([]byte, uint8, error) {
	e, err := Parse(raw)
	if err != nil {
		return nil, 0, err
	}
	return p.Open(nil, &e)
}

func TestSealOpen(t *testing.T) {
	alice, bob := mustIdentity(t, "alice"), mustIdentity(t, "bob")
	ab, ba := mustPair(t, alice, bob, nil), mustPair(t, bob, alice, nil)
	for _, o := range []SealOptions{{}, {Full: true}, {IncludeKey: true}, {Port: 200}, {Full: true, IncludeKey: true, Port: 1, TTL: 9}} {
		for _, payload := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("m"), 1000)} {
			t.Run(fmt.Sprintf("%+v/%d", o, len(payload)), func(t *testing.T) {
				raw, err := ab.Seal([]byte("prefix"), 77, payload, o)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(raw, []byte("prefix")) {
					t.Fatal("Seal did not append")
				}
				raw = raw[len("prefix"):]
				got, port, err := openData(ba, raw)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, payload) || port != o.Port {
					t.Fatalf("opened %q port %d, want %q port %d", got, port, payload, o.Port)
				}
				// Relays change hops and TTL; that must not break authentication.
				Relay(raw)
				if _, _, err := openData(ba, raw); err != nil {
					t.Fatalf("after relay: %v", err)
				}
			})
		}
	}
}

func TestSealRejects(t *testing.T) {
	alice, bob := mustIdentity(t, "alice"), mustIdentity(t, "bob")
	ab := mustPair(t, alice, bob, nil)
	if _, err := ab.Seal(nil, 0, []byte("x"), SealOptions{}); !errors.Is(err, ErrCounter) {
		t.Errorf("counter 0: %v", err)
	}
	if _, err := ab.Seal(nil, 1, make([]byte, MaxSize), SealOptions{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if _, err := ab.Ack(0, SealOptions{}); !errors.Is(err, ErrCounter) {
		t.Errorf("ack counter 0: %v", err)
	}
	if _, err := NewPair(alice, bob.PublicKey(), make([]byte, 31)); err == nil {
		t.Error("short PQ secret accepted")
	}
	var weak PublicKey
	weak[0] = 1 // the identity point
	if _, err := NewPair(alice, weak, nil); !errors.Is(err, ErrBadKey) {
		t.Errorf("small-order peer key: %v", err)
	}
}

// TestFlippedBits flips every bit of a sealed Data envelope and checks the
// documented outcome for the byte's region (docs/protocol.md, "Errors").
func TestFlippedBits(t *testing.T) {
	alice, bob := mustIdentity(t, "alice"), mustIdentity(t, "bob")
	ab, ba := mustPair(t, alice, bob, nil), mustPair(t, bob, alice, nil)
	raw, err := ab.Seal(nil, 0x01020304, []byte("a secret"), SealOptions{TTL: 5})
	if err != nil {
		t.Fatal(err)
	}
	for pos := 0; pos < len(raw); pos++ {
		for bit := 0; bit < 8; bit++ {
			m := append([]byte(nil), raw...)
			m[pos] ^= 1 << bit
			_, _, err := openData(ba, m)
			var want []error
			switch {
			case pos == 0:
				want = []error{ErrVersion}
			case pos == OffsetHops || pos == OffsetTTL:
				want = nil // mutable, deliberately unauthenticated
			case pos == 3 && bit < 4:
				// Another kind: structurally wrong, or not something Open takes.
				want = []error{ErrKind, ErrFlags, ErrTruncated, ErrTooLarge}
			case pos == 3:
				want = []error{ErrTruncated, ErrNotForUs, ErrAuth} // Full/Key change layout; PQ mismatch; Port changes AAD
			case pos < 12:
				want = []error{ErrNotForUs} // hints no longer ours
			default:
				want = []error{ErrAuth} // counter, ciphertext, tag
			}
			if want == nil {
				if err != nil {
					t.Fatalf("byte %d bit %d: %v, want success", pos, bit, err)
				}
				continue
			}
			ok := false
			for _, w := range want {
				ok = ok || errors.Is(err, w)
			}
			if !ok {
				t.Fatalf("byte %d bit %d: %v, want one of %v", pos, bit, err, want)
			}
		}
	}
}

func TestOpenWrongKeys(t *testing.T) {
	alice, bob, carol := mustIdentity(t, "alice"), mustIdentity(t, "bob"), mustIdentity(t, "carol")
	pq1, pq2 := bytes.Repeat([]byte{1}, PQSecretSize), bytes.Repeat([]byte{2}, PQSecretSize)
	raw, _ := mustPair(t, alice, bob, nil).Seal(nil, 9, []byte("hi"), SealOptions{})
	rawPQ, _ := mustPair(t, alice, bob, pq1).Seal(nil, 9, []byte("hi"), SealOptions{})
	tests := []struct {
		name string
		p    *Pair
		raw  []byte
		want error
	}{
		{"right pair", mustPair(t, bob, alice, nil), raw, nil},
		{"carol is not the recipient", mustPair(t, carol, alice, nil), raw, ErrNotForUs},
		{"bob thinks carol sent it", mustPair(t, bob, carol, nil), raw, ErrNotForUs},
		{"sender's own pair", mustPair(t, alice, bob, nil), raw, ErrNotForUs},
		{"PQ envelope, classic pair", mustPair(t, bob, alice, nil), rawPQ, ErrNotForUs},
		{"classic envelope, PQ pair", mustPair(t, bob, alice, pq1), raw, ErrNotForUs},
		{"PQ envelope, other PQ secret", mustPair(t, bob, alice, pq2), rawPQ, ErrAuth},
		{"PQ envelope, same PQ secret", mustPair(t, bob, alice, pq1), rawPQ, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := openData(tc.p, tc.raw)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPQSecretChangesKeys(t *testing.T) {
	alice, bob := mustIdentity(t, "alice"), mustIdentity(t, "bob")
	pq := bytes.Repeat([]byte{7}, PQSecretSize)
	classic, _ := mustPair(t, alice, bob, nil).Seal(nil, 1, []byte("same"), SealOptions{})
	hybrid, _ := mustPair(t, alice, bob, pq).Seal(nil, 1, []byte("same"), SealOptions{})
	// Same plaintext, counter and addresses: only the keys (and the PQ flag)
	// differ, so the ciphertexts must differ.
	if bytes.Equal(classic[HeaderSize:], hybrid[HeaderSize:]) {
		t.Fatal("PQ secret did not change the ciphertext")
	}
	ctLen := len("same") + TagSize
	if bytes.Equal(classic[len(classic)-ctLen:], hybrid[len(hybrid)-ctLen:]) {
		t.Fatal("PQ secret did not change the keys")
	}
	// And force the flag equal: the classic pair must not open the hybrid
	// ciphertext even if an attacker clears the flag.
	stripped := append([]byte(nil), hybrid...)
	stripped[3] &^= uint8(FlagPQ)
	if _, _, err := openData(mustPair(t, bob, alice, nil), stripped); !errors.Is(err, ErrAuth) {
		t.Fatalf("classic keys opened a PQ ciphertext: %v", err)
	}
}

func TestAck(t *testing.T) {
	alice, bob, carol := mustIdentity(t, "alice"), mustIdentity(t, "bob"), mustIdentity(t, "carol")
	ab, ba := mustPair(t, alice, bob, nil), mustPair(t, bob, alice, nil)
	ack, err := ba.Ack(42, SealOptions{TTL: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(ack) != 32 {
		t.Fatalf("ack is %d bytes, want 32", len(ack))
	}
	again, _ := ba.Ack(42, SealOptions{TTL: 3})
	if !bytes.Equal(ack, again) {
		t.Fatal("acks must be deterministic so resending is safe")
	}
	e := mustParse(t, ack)
	if err := ab.VerifyAck(&e); err != nil || e.Counter != 42 {
		t.Fatalf("VerifyAck = %v counter %d", err, e.Counter)
	}
	for pos := 3; pos < len(ack); pos++ {
		m := append([]byte(nil), ack...)
		m[pos] ^= 0x01
		e, err := Parse(m)
		if err == nil {
			err = ab.VerifyAck(&e)
		}
		if err == nil {
			t.Fatalf("ack with byte %d flipped verified", pos)
		}
	}
	// An ack forged by carol for bob's hint does not verify.
	forged, _ := mustPair(t, carol, alice, nil).Ack(42, SealOptions{})
	copy(forged[8:12], bob.Address().Hint().bytes())
	fe := mustParse(t, forged)
	if err := ab.VerifyAck(&fe); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged ack: %v", err)
	}
	// The sender cannot be tricked into verifying its own data as an ack.
	data, _ := ab.Seal(nil, 42, nil, SealOptions{})
	de := mustParse(t, data)
	if err := ab.VerifyAck(&de); !errors.Is(err, ErrKind) {
		t.Fatalf("VerifyAck(data) = %v", err)
	}
}

func (h Hint) bytes() []byte { return h[:] }

func TestReplayWindow(t *testing.T) {
	type step struct {
		c    uint32
		want error
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{1, nil}, {2, nil}, {3, nil}}},
		{"duplicate", []step{{5, nil}, {5, ErrReplay}}},
		{"zero", []step{{0, ErrCounter}}},
		{"reordered inside window", []step{{10, nil}, {7, nil}, {9, nil}, {7, ErrReplay}, {8, nil}}},
		{"edge of window", []step{{ReplayWindowSize, nil}, {1, nil}, {1, ErrReplay}}},
		{"beyond window", []step{{ReplayWindowSize + 1, nil}, {1, ErrStale}}},
		{"big jump clears", []step{{3, nil}, {100000, nil}, {3, ErrStale}, {99999, nil}, {100000, ErrReplay}}},
		{"shift by 64s", []step{{1, nil}, {65, nil}, {129, nil}, {1, ErrReplay}, {65, ErrReplay}, {2, nil}}},
		{"max counter", []step{{^uint32(0), nil}, {^uint32(0), ErrReplay}, {^uint32(0) - 1, nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w ReplayWindow
			for i, s := range tc.steps {
				err := w.Accept(s.c)
				if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
					t.Fatalf("step %d Accept(%d) = %v, want %v", i, s.c, err, s.want)
				}
				// Persisting and restoring keeps the verdicts.
				b, _ := w.MarshalBinary()
				var r ReplayWindow
				if err := r.UnmarshalBinary(b); err != nil || r != w {
					t.Fatalf("step %d: round trip %v", i, err)
				}
			}
		})
	}
}

func TestReplayWindowUnmarshalRejects(t *testing.T) {
	var w ReplayWindow
	_ = w.Accept(3)
	good, _ := w.MarshalBinary()
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", good[:10]},
		{"version", append([]byte{2}, good[1:]...)},
		{"bits below counter 1", func() []byte { b := append([]byte(nil), good...); b[len(b)-1] |= 0x80; return b }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := w
			if err := w.UnmarshalBinary(tc.b); err == nil {
				t.Fatal("accepted")
			}
			if w != before {
				t.Fatal("a refused input changed the window")
			}
		})
	}
}

func TestAnonymous(t *testing.T) {
	alice, bob, carol := mustIdentity(t, "alice"), mustIdentity(t, "bob"), mustIdentity(t, "carol")
	tok := Token{9, 9, 9}
	raw, rk, err := SealAnonymous(newDetRand("a"), bob.PublicKey(), tok, []byte("reserve slot 4"), AnonOptions{Port: 7, TTL: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing identifying alice is in the envelope.
	for _, secret := range [][]byte{alice.pub[:], alice.addr[:], alice.addr[:HintSize], alice.xpub[:]} {
		if bytes.Contains(raw, secret) {
			t.Fatal("anonymous envelope contains the sender's identity")
		}
	}
	e := mustParse(t, raw)
	pt, port, reply, err := bob.OpenAnonymous(&e)
	if err != nil || string(pt) != "reserve slot 4" || port != 7 || reply.Token != tok {
		t.Fatalf("OpenAnonymous = %q %d %v %v", pt, port, reply, err)
	}
	if _, _, _, err := carol.OpenAnonymous(&e); !errors.Is(err, ErrNotForUs) {
		t.Fatalf("carol opened bob's message: %v", err)
	}
	for pos := 3; pos < len(raw); pos++ {
		m := append([]byte(nil), raw...)
		m[pos] ^= 0x04
		me, err := Parse(m)
		if err == nil {
			_, _, _, err = bob.OpenAnonymous(&me)
		}
		if err == nil {
			t.Fatalf("byte %d flipped still opened", pos)
		}
	}
	rep, err := SealAnonReply(newDetRand("r"), reply, []byte("confirmed"), 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	re := mustParse(t, rep)
	if re.Token != tok {
		t.Fatal("reply not addressed to the token")
	}
	got, _, err := rk.OpenReply(&re)
	if err != nil || string(got) != "confirmed" {
		t.Fatalf("OpenReply = %q %v", got, err)
	}
	other, _ := NewReplyKey(newDetRand("other"))
	if _, _, err := other.OpenReply(&re); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong reply key: %v", err)
	}
	kb, _ := rk.MarshalBinary()
	var restored ReplyKey
	if err := restored.UnmarshalBinary(kb); err != nil {
		t.Fatal(err)
	}
	if _, _, err := restored.OpenReply(&re); err != nil {
		t.Fatalf("restored reply key: %v", err)
	}
}

func TestSignatures(t *testing.T) {
	alice := mustIdentity(t, "alice")
	for _, s := range samples(t) {
		e := mustParse(t, s.raw)
		if len(e.Sig) == 0 {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			if err := e.Verify(); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			for pos := 0; pos < len(s.raw); pos++ {
				m := append([]byte(nil), s.raw...)
				m[pos] ^= 0x20
				me, err := Parse(m)
				if err != nil {
					continue
				}
				err = me.Verify()
				mutable := pos == OffsetHops || pos == OffsetTTL || (e.Kind == KindPathReply && pos < HeaderSize+me.addrLen()+5)
				switch {
				case mutable && err != nil:
					t.Fatalf("byte %d is not signed but Verify failed: %v", pos, err)
				case !mutable && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrBadKey):
					t.Fatalf("byte %d flipped: Verify = %v", pos, err)
				}
			}
		})
	}
	// An announce signature is not valid as a flood signature.
	ann, _ := SignAnnounce(alice, AnnounceOptions{Seq: 1})
	ae := mustParse(t, ann)
	fl := Envelope{Kind: KindFlood, Topic: ae.Caps, Key: ae.Key, Seq: ae.Seq, Sig: ae.Sig}
	fb, err := fl.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	fe := mustParse(t, fb)
	if err := fe.Verify(); !errors.Is(err, ErrSignature) {
		t.Fatalf("cross-kind signature: %v", err)
	}
	ch := mustParse(t, []byte{Version, 0, 0, byte(KindChannel), 1, 2, 3, 4, 5})
	if err := ch.Verify(); !errors.Is(err, ErrKind) {
		t.Fatalf("Verify(channel) = %v", err)
	}
}
