package kiss

import (
	"bytes"
	"math/rand"
	"testing"
)

type got struct {
	cmd  byte
	data []byte
}

func collect(d *Decoder, chunks ...[]byte) []got {
	var out []got
	for _, c := range chunks {
		d.Feed(c, func(cmd byte, data []byte) { out = append(out, got{cmd, append([]byte(nil), data...)}) })
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	payloads := [][]byte{nil, {0}, {FEND}, {FESC}, {FEND, FESC, TFEND, TFESC}, bytes.Repeat([]byte{FEND}, 300)}
	for _, p := range payloads {
		for _, cmd := range []byte{0x00, 0x01, FEND, FESC} {
			enc := Append(nil, cmd, p)
			if bytes.Count(enc, []byte{FEND}) != 2 {
				t.Fatalf("FEND inside %x", enc)
			}
			d := NewDecoder(1024)
			// byte at a time
			var chunks [][]byte
			for i := range enc {
				chunks = append(chunks, enc[i:i+1])
			}
			out := collect(d, chunks...)
			if len(out) != 1 || out[0].cmd != cmd || !bytes.Equal(out[0].data, p) {
				t.Fatalf("cmd %x payload %x: got %+v", cmd, p, out)
			}
		}
	}
}

func TestMalformed(t *testing.T) {
	cases := []struct {
		name  string
		in    []byte
		want  int
		stats Stats
	}{
		{"noise before sync", []byte{1, 2, 3, FEND, 5, 6, FEND}, 1, Stats{Frames: 1, Noise: 3}},
		{"empty frames", []byte{FEND, FEND, FEND}, 0, Stats{}},
		{"bad escape", []byte{FEND, 0, FESC, 0x41, 2, FEND, 0, 1, FEND}, 1, Stats{Frames: 1, BadEscape: 1}},
		{"escape at end", []byte{FEND, 0, 1, FESC, FEND}, 0, Stats{BadEscape: 1}},
		{"oversized", append(append([]byte{FEND}, bytes.Repeat([]byte{7}, 20)...), FEND, 0, 1, FEND), 1, Stats{Frames: 1, Oversized: 1}},
		{"truncated", []byte{FEND, 0, 1, 2}, 0, Stats{}},
	}
	for _, c := range cases {
		d := NewDecoder(10)
		out := collect(d, c.in)
		if len(out) != c.want || d.Stats() != c.stats {
			t.Errorf("%s: %d frames, stats %+v", c.name, len(out), d.Stats())
		}
	}
}

func TestRandomBytesBounded(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	d := NewDecoder(300)
	buf := make([]byte, 4096)
	for i := 0; i < 200; i++ {
		rng.Read(buf)
		d.Feed(buf, func(cmd byte, data []byte) {
			if len(data)+1 > 300 {
				t.Fatal("over limit")
			}
		})
		if cap(d.buf) > 1024 {
			t.Fatalf("buffer grew to %d", cap(d.buf))
		}
	}
	d.Reset()
	if out := collect(d, []byte{9, FEND, 1, 2, FEND}); len(out) != 1 {
		t.Fatal("no resync after reset")
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add([]byte{FEND, 0, 1, 2, FEND})
	f.Add([]byte{FEND, 0, FESC, TFEND, FESC, TFESC, FEND})
	f.Add([]byte{FEND, 0, FESC, 1, FEND})
	f.Add(bytes.Repeat([]byte{FESC}, 40))
	f.Add(append(append([]byte{FEND, 0}, bytes.Repeat([]byte{FEND ^ 1}, 600)...), FEND))
	f.Fuzz(func(t *testing.T, in []byte) {
		d := NewDecoder(512)
		var frames [][]byte
		d.Feed(in, func(cmd byte, data []byte) {
			if len(data)+1 > 512 {
				t.Fatalf("frame of %d", len(data)+1)
			}
			frames = append(frames, append([]byte{cmd}, data...))
		})
		// Re-encoding every frame and decoding again yields the same frames.
		var enc []byte
		for _, fr := range frames {
			enc = Append(enc, fr[0], fr[1:])
		}
		d2 := NewDecoder(512)
		i := 0
		d2.Feed(enc, func(cmd byte, data []byte) {
			if i >= len(frames) || cmd != frames[i][0] || !bytes.Equal(data, frames[i][1:]) {
				t.Fatalf("round trip mismatch at %d", i)
			}
			i++
		})
		if i != len(frames) {
			t.Fatalf("%d of %d frames", i, len(frames))
		}
	})
}
