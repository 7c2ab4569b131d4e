package framing

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// maxFrame is the envelope stream's limit (envelope.MaxSize).
const maxFrame = 65535

func TestFrameRoundTrip(t *testing.T) {
	var stream []byte
	sizes := []int{0, 1, 127, 128, 300, 16383, 16384, maxFrame}
	for _, n := range sizes {
		stream = Append(stream, bytes.Repeat([]byte{byte(n)}, n))
	}
	got, err := Decode(stream, maxFrame)
	if err != nil || len(got) != len(sizes) {
		t.Fatalf("decoded %d frames, err %v", len(got), err)
	}
	for i, n := range sizes {
		if len(got[i]) != n || (n > 0 && got[i][0] != byte(n)) {
			t.Fatalf("frame %d: %d bytes", i, len(got[i]))
		}
	}
}

func TestFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"over the limit", []byte{0x80, 0x80, 0x04}, ErrLength},                // 65536
		{"prefix too long", []byte{0xff, 0xff, 0xff, 0x01}, ErrLength},         // 4 bytes
		{"non-minimal", []byte{0x81, 0x00}, ErrLength},                         // 1 as two bytes
		{"truncated prefix", []byte{0x80}, io.ErrUnexpectedEOF},                //
		{"truncated body", []byte{0x05, 'a', 'b'}, io.ErrUnexpectedEOF},        //
		{"huge claim, no body", []byte{0xff, 0xff, 0x03}, io.ErrUnexpectedEOF}, // 65535: allowed, then EOF
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.in, maxFrame)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzFrames: the stream decoder never panics, never returns a frame above
// the limit, and re-encoding what it accepted gives back the input prefix.
func FuzzFrames(f *testing.F) {
	// testdata/fuzz/FuzzFrames holds more seeds; go test runs them too.
	f.Add([]byte{})
	f.Add(Append(nil, []byte("hello")))
	f.Add(Append(Append(nil, nil), bytes.Repeat([]byte{1}, 200)))
	f.Add([]byte{0xff, 0xff, 0x03})
	f.Add([]byte{0x80, 0x80, 0x04, 0})
	f.Add([]byte{0x81, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 1000
		frames, err := Decode(b, limit)
		var re []byte
		for _, fr := range frames {
			if len(fr) > limit {
				t.Fatalf("frame of %d bytes above the limit", len(fr))
			}
			re = Append(re, fr)
		}
		if !bytes.HasPrefix(b, re) {
			t.Fatalf("re-encoding differs from the input")
		}
		if err == nil && len(re) != len(b) {
			t.Fatalf("no error but %d of %d bytes consumed", len(re), len(b))
		}
	})
}
