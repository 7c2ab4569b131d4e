package envelope

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTripEveryKind(t *testing.T) {
	seen := map[Kind]bool{}
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			e := mustParse(t, s.raw)
			seen[e.Kind] = true
			again, err := e.Append(nil)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !bytes.Equal(again, s.raw) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, s.raw)
			}
		})
	}
	for k := Kind(0); k < numKinds; k++ {
		if !seen[k] {
			t.Errorf("no sample of kind %s", k)
		}
	}
}

func TestParseRejects(t *testing.T) {
	var valid = map[string][]byte{}
	for _, s := range samples(t) {
		valid[s.name] = s.raw
	}
	with := func(name string, f func([]byte) []byte) []byte {
		return f(append([]byte(nil), valid[name]...))
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"three bytes", []byte{1, 0, 0}, ErrTruncated},
		{"version 0", with("data", func(b []byte) []byte { b[0] = 0; return b }), ErrVersion},
		{"version 2", with("data", func(b []byte) []byte { b[0] = 2; return b }), ErrVersion},
		{"unknown kind", with("data", func(b []byte) []byte { b[3] = 0x0f; return b }), ErrKind},
		{"kind 11", with("data", func(b []byte) []byte { b[3] = 11; return b }), ErrKind},
		{"announce with flags", with("announce", func(b []byte) []byte { b[3] |= uint8(FlagFull); return b }), ErrFlags},
		{"ack with key flag", with("ack", func(b []byte) []byte { b[3] |= uint8(FlagKey); return b }), ErrFlags},
		{"data truncated in counter", with("data", func(b []byte) []byte { return b[:14] }), ErrTruncated},
		{"data without full tag", with("data", func(b []byte) []byte { return b[:16+TagSize-1] }), ErrTruncated},
		{"data port flag, empty", with("data empty", func(b []byte) []byte { b[3] |= uint8(FlagPort); return b }), ErrTruncated},
		{"data counter zero", with("data", func(b []byte) []byte { copy(b[12:16], []byte{0, 0, 0, 0}); return b }), ErrCounter},
		{"data key not sender's", with("data+key", func(b []byte) []byte { b[20] ^= 1; return b }), ErrKeyMismatch},
		{"announce truncated", with("announce", func(b []byte) []byte { return b[:100] }), ErrTruncated},
		{"announce app data too long", append(with("announce", func(b []byte) []byte { return b[:41] }), make([]byte, MaxAppData+1+SignatureSize)...), ErrTooLarge},
		{"ack tag too long", append(with("ack", func(b []byte) []byte { return b }), 0), ErrTooLarge},
		{"ack tag short", with("ack", func(b []byte) []byte { return b[:len(b)-1] }), ErrTruncated},
		{"held counter zero", with("held", func(b []byte) []byte { copy(b[12:16], []byte{0, 0, 0, 0}); return b }), ErrCounter},
		{"held with body", append(with("held", func(b []byte) []byte { return b }), 0), ErrTooLarge},
		{"held with key flag", with("held", func(b []byte) []byte { b[3] |= uint8(FlagKey); return b }), ErrFlags},
		{"channel without body", with("channel", func(b []byte) []byte { return b[:8] }), ErrTruncated},
		{"oversized", append([]byte{Version, 0, 0, byte(KindChannel), 1, 2, 3, 4}, make([]byte, MaxSize)...), ErrTooLarge},
		{"full address, hint-sized", with("path-request", func(b []byte) []byte { b[3] |= uint8(FlagFull); return b }), ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEveryTruncationRejected(t *testing.T) {
	for _, s := range samples(t) {
		// Cutting a valid envelope anywhere must give an error, except where
		// the cut leaves another valid envelope (a body may be shorter).
		// Signed kinds have a variable body too: a cut may parse, but then
		// the signature must fail.
		full := mustParse(t, s.raw)
		for n := 0; n < len(s.raw); n++ {
			cut, err := Parse(s.raw[:n])
			if err != nil {
				continue
			}
			switch {
			case len(full.Sig) > 0:
				if err := cut.Verify(); !errors.Is(err, ErrSignature) {
					t.Errorf("%s cut to %d bytes: Verify = %v, want ErrSignature", s.name, n, err)
				}
			case n < full.bodyOff+minBodyFor(&full):
				t.Errorf("%s cut to %d bytes parsed", s.name, n)
			}
		}
	}
}

func minBodyFor(e *Envelope) int {
	m, _, _ := bodyBounds(e.Kind, e.Flags)
	return m
}

func TestRelay(t *testing.T) {
	raw := []byte{Version, 3, 2, byte(KindChannel), 1, 2, 3, 4, 'x'}
	if !Relay(raw) || raw[OffsetHops] != 4 || raw[OffsetTTL] != 1 {
		t.Fatalf("first relay: %v", raw[:4])
	}
	if !Relay(raw) || raw[OffsetTTL] != 0 {
		t.Fatal("second relay")
	}
	if Relay(raw) {
		t.Fatal("relayed with TTL 0")
	}
	if raw[OffsetHops] != 5 {
		t.Fatal("refused relay changed hops")
	}
	if Relay([]byte{1, 2}) {
		t.Fatal("relayed a runt")
	}
	sat := []byte{Version, 255, 9, byte(KindChannel)}
	if !Relay(sat) || sat[OffsetHops] != 255 {
		t.Fatal("hop count must saturate, not wrap")
	}
	h, r := Immutable([]byte{1, 2, 3, 4, 5})
	if !bytes.Equal(h, []byte{1}) || !bytes.Equal(r, []byte{4, 5}) {
		t.Fatalf("Immutable = %v %v", h, r)
	}
}

func TestAppendRejects(t *testing.T) {
	tests := []struct {
		name string
		e    Envelope
		want error
	}{
		{"unknown kind", Envelope{Kind: 12}, ErrKind},
		{"bad flags", Envelope{Kind: KindAnnounce, Flags: FlagPQ}, ErrFlags},
		{"low flag bits", Envelope{Kind: KindData, Flags: 1}, ErrFlags},
		{"announce without signature", Envelope{Kind: KindAnnounce}, ErrTruncated},
		{"announce app data too long", Envelope{Kind: KindAnnounce, Body: make([]byte, MaxAppData+1), Sig: make([]byte, 64)}, ErrTooLarge},
		{"data zero counter", Envelope{Kind: KindData, Body: make([]byte, TagSize)}, ErrCounter},
		{"full flag with hint", Envelope{Kind: KindChannel, Flags: FlagFull, Dst: HintAddr(Hint{1}), Body: []byte{1}}, ErrTruncated},
		{"too large", Envelope{Kind: KindChannel, Dst: HintAddr(Hint{1}), Body: make([]byte, MaxSize)}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.e.Append([]byte{0xaa})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Append = %v, want %v", err, tc.want)
			}
			if !bytes.Equal(out, []byte{0xaa}) {
				t.Fatal("a refused Append changed dst")
			}
		})
	}
}
