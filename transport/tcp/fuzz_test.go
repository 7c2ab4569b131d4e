package tcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
	"github.com/openmeshd/meshd/envelope"
)

// nullCipher "seals" by appending 16 zero bytes and "opens" by checking
// and stripping them, so the fuzzer can reach the record layer behind the
// AEAD. The real cipher is flynn/noise's ChaCha20-Poly1305.
type nullCipher struct{}

func (nullCipher) Encrypt(out, ad, pt []byte) ([]byte, error) {
	out = append(out, pt...)
	return append(out, make([]byte, tagSize)...), nil
}

func (nullCipher) Decrypt(out, ad, ct []byte) ([]byte, error) {
	if len(ct) < tagSize || !bytes.Equal(ct[len(ct)-tagSize:], make([]byte, tagSize)) {
		return nil, errors.New("bad tag")
	}
	return append(out, ct[:len(ct)-tagSize]...), nil
}

// decodeStream runs bytes from the network through the record parser the
// way readLoop does, and returns the frames.
func decodeStream(b []byte) (frames [][]byte, err error) {
	d := decoder{open: nullCipher{}}
	for len(b) > 0 {
		if len(b) < recordHeader {
			return frames, errors.New("truncated header")
		}
		n, err := recordLen(b)
		if err != nil {
			return frames, err
		}
		b = b[recordHeader:]
		if len(b) < n {
			return frames, errors.New("truncated record")
		}
		ct := append([]byte(nil), b[:n]...)
		b = b[n:]
		f, _, err := d.record(ct)
		if err != nil {
			return frames, err
		}
		if f != nil {
			frames = append(frames, f)
		}
	}
	return frames, nil
}

func recordSeeds() [][]byte {
	var seeds [][]byte
	for _, size := range []int{0, 1, 200, maxPiece, maxPiece + 1} {
		b, _ := appendFrame(nil, nullCipher{}, bytes.Repeat([]byte{0x5a}, size))
		seeds = append(seeds, b)
	}
	ka, _ := appendRecord(nil, nullCipher{}, recKeepalive, nil)
	two, _ := appendFrame(append([]byte(nil), ka...), nullCipher{}, []byte("hello"))
	bad, _ := appendRecord(nil, nullCipher{}, 0x7f, []byte("x"))
	return append(seeds, ka, two, bad, []byte{0, 0}, []byte{0xff, 0xff, 1})
}

func FuzzRecords(f *testing.F) {
	for _, s := range recordSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := decodeStream(b)
		for _, fr := range frames {
			if len(fr) > MaxFrameSize {
				t.Fatalf("frame of %d bytes", len(fr))
			}
		}
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to frames that decode the same.
		var re []byte
		for _, fr := range frames {
			re, _ = appendFrame(re, nullCipher{}, fr)
		}
		again, err := decodeStream(re)
		if err != nil || len(again) != len(frames) {
			t.Fatalf("re-encoded stream: %v, %d frames, want %d", err, len(again), len(frames))
		}
		for i := range frames {
			if !bytes.Equal(frames[i], again[i]) {
				t.Fatalf("frame %d changed on re-encoding", i)
			}
		}
	})
}

func payloadSeeds() [][]byte {
	k := payload{version: ProtocolVersion, pq: true, kem: bytes.Repeat([]byte{1}, mlkem768.PublicKeySize)}
	m1 := append([]byte{1}, k.appendTo(nil, 1)...)
	m1n := append([]byte{1}, (&payload{version: ProtocolVersion}).appendTo(nil, 1)...)
	id, _ := envelope.IdentityFromSeed(bytes.Repeat([]byte{1}, envelope.SeedSize))
	p2 := payload{version: ProtocolVersion, pq: true, key: id.PublicKey(), kem: make([]byte, mlkem768.CiphertextSize)}
	m2 := append([]byte{2}, p2.appendTo(nil, 2)...)
	p3 := payload{version: ProtocolVersion, key: id.PublicKey()}
	m3 := append([]byte{3}, p3.appendTo(nil, 3)...)
	return [][]byte{m1, m1n, m2, m3, {1}, {2, 1, 0}, {3, 2, 0}, {1, 1, 0xfe}}
}

func FuzzHandshakePayload(f *testing.F) {
	for _, s := range payloadSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 1 {
			return
		}
		msg := int(b[0]%3) + 1
		p, err := decodePayload(msg, b[1:])
		if err != nil {
			return
		}
		if re := p.appendTo(nil, msg); !bytes.Equal(re, b[1:]) {
			t.Fatalf("message %d payload re-encodes differently:\n%x\n%x", msg, b[1:], re)
		}
	})
}

// FuzzHandshake feeds what a peer could send into both sides' handshake
// state machines: the first byte picks the side, the rest is the preamble,
// length prefix and message as they come off the wire.
func FuzzHandshake(f *testing.F) {
	for _, s := range handshakeSeeds(f) {
		f.Add(s)
	}
	keys := mustKeys(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 1+preambleSize+2 {
			return
		}
		initiator := b[0]&1 == 1
		b = b[1:]
		if checkPreamble(b[:preambleSize]) != nil {
			return
		}
		b = b[preambleSize:]
		n, err := handshakeLen(b)
		if err != nil || len(b)-2 < n {
			return
		}
		msg := b[2 : 2+n]
		hs, err := newHandshake(keys, initiator, nil)
		if err != nil {
			t.Fatal(err)
		}
		if initiator {
			if _, _, err := hs.Step(nil); err != nil {
				t.Fatal(err)
			}
		}
		hs.Step(msg) // must not panic; an error is the expected outcome
	})
}

func mustKeys(tb testing.TB) *localKeys {
	k, err := newLocalKeys(newID(tb), nil, true, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// handshakeSeeds are real messages 1 and 2 as a peer sends them.
func handshakeSeeds(tb testing.TB) [][]byte {
	ki, kr := mustKeys(tb), mustKeys(tb)
	hi, _ := newHandshake(ki, true, nil)
	hr, _ := newHandshake(kr, false, nil)
	m1, _, _ := hi.Step(nil)
	m2, _, _ := hr.Step(m1)
	wire := func(side byte, m []byte) []byte {
		b := append([]byte{side}, appendPreamble(nil)...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		return append(b, m...)
	}
	return [][]byte{wire(0, m1), wire(1, m2), wire(0, m1[:40]), wire(1, bytes.Repeat([]byte{9}, 100))}
}

// TestWriteFuzzCorpus writes the seeds above into testdata/fuzz when
// MESHD_WRITE_CORPUS=1 (they are committed; rerun after a format change).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("MESHD_WRITE_CORPUS") != "1" {
		t.Skip("set MESHD_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	write := func(target string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzRecords", recordSeeds())
	write("FuzzHandshakePayload", payloadSeeds())
	write("FuzzHandshake", handshakeSeeds(t))
}
