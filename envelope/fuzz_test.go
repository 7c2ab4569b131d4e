package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Every decoder of outside bytes in this package has a fuzz target here. The
// seed corpus is the valid samples (f.Add) plus the files under
// testdata/fuzz/<Target>/, written by `go test ./envelope -run FuzzCorpus -update`.

func addSamples(f *testing.F) {
	for _, s := range samples(f) {
		f.Add(s.raw)
	}
	f.Add([]byte{})
	f.Add([]byte{Version})
	f.Add([]byte{Version, 0, 0, 0xff})
}

// knownErrors is the documented set every decoder failure must belong to.
var knownErrors = []error{ErrTruncated, ErrTooLarge, ErrVersion, ErrKind, ErrFlags, ErrBadKey,
	ErrKeyMismatch, ErrAuth, ErrSignature, ErrReplay, ErrStale, ErrCounter, ErrNotForUs}

func checkKnown(t *testing.T, err error) {
	t.Helper()
	for _, k := range knownErrors {
		if errors.Is(err, k) {
			return
		}
	}
	t.Fatalf("undocumented error: %v", err)
}

func FuzzParse(f *testing.F) {
	addSamples(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			checkKnown(t, err)
			return
		}
		// Parsing is exact: a valid envelope re-encodes to the same bytes.
		again, err := e.Append(nil)
		if err != nil {
			t.Fatalf("parsed but does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
		if len(e.Sig) > 0 {
			if err := e.Verify(); err != nil {
				checkKnown(t, err)
			}
		}
		Relay(append([]byte(nil), b...))
	})
}

func FuzzOpen(f *testing.F) {
	addSamples(f)
	alice, bob := mustIdentity(f, "alice"), mustIdentity(f, "bob")
	ba := mustPair(f, bob, alice, nil)
	ab := mustPair(f, alice, bob, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		switch e.Kind {
		case KindData:
			if _, _, err := ba.Open(nil, &e); err != nil {
				checkKnown(t, err)
			}
		case KindAck:
			if err := ab.VerifyAck(&e); err != nil {
				checkKnown(t, err)
			}
		case KindAnon:
			if _, _, _, err := bob.OpenAnonymous(&e); err != nil {
				checkKnown(t, err)
			}
		case KindAnonReply:
			k, _ := NewReplyKey(newDetRand("fuzz"))
			if _, _, err := k.OpenReply(&e); err != nil {
				checkKnown(t, err)
			}
		}
	})
}

func FuzzDecodeKeyFile(f *testing.F) {
	kf, _ := EncodeKeyFile(seedOf("alice"))
	f.Add(kf)
	f.Add(kf[:10])
	f.Add([]byte("MESHDKEY"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := DecodeKeyFile(b)
		if err != nil {
			if !errors.Is(err, ErrKeyFileCorrupt) && !errors.Is(err, ErrBadKey) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		again, _ := EncodeKeyFile(id.Seed())
		if !bytes.Equal(again, b) {
			t.Fatal("accepted a key file that does not re-encode to itself")
		}
	})
}

func FuzzReplayWindow(f *testing.F) {
	var w ReplayWindow
	for _, c := range []uint32{1, 5, 70, 2000} {
		_ = w.Accept(c)
	}
	good, _ := w.MarshalBinary()
	f.Add(good, []byte{0, 0, 0, 3, 0, 0, 8, 0})
	f.Add([]byte{}, []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, state, counters []byte) {
		var w ReplayWindow
		if err := w.UnmarshalBinary(state); err != nil {
			checkKnown(t, err)
			if w != (ReplayWindow{}) {
				t.Fatal("refused state changed the window")
			}
		}
		for len(counters) >= 4 {
			c := uint32(counters[0])<<24 | uint32(counters[1])<<16 | uint32(counters[2])<<8 | uint32(counters[3])
			counters = counters[4:]
			before := w
			if err := w.Accept(c); err != nil {
				checkKnown(t, err)
				if w != before {
					t.Fatal("refused counter changed the window")
				}
				continue
			}
			if err := w.Check(c); !errors.Is(err, ErrReplay) {
				t.Fatalf("counter %d accepted twice: %v", c, err)
			}
		}
	})
}

// TestFuzzCorpus writes the seed corpus files under -update and otherwise
// checks they exist, so the corpus is visible in the tree and reviewable.
func TestFuzzCorpus(t *testing.T) {
	targets := map[string][][]byte{}
	for _, s := range samples(t) {
		targets["FuzzParse"] = append(targets["FuzzParse"], s.raw)
		targets["FuzzOpen"] = append(targets["FuzzOpen"], s.raw)
	}
	kf, _ := EncodeKeyFile(seedOf("alice"))
	targets["FuzzDecodeKeyFile"] = [][]byte{kf}
	for name, inputs := range targets {
		dir := filepath.Join("testdata", "fuzz", name)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for i, in := range inputs {
				content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", in)
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) == 0 {
			t.Fatalf("no seed corpus in %s (run with -update): %v", dir, err)
		}
	}
}
