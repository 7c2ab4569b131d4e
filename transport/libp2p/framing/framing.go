// Package framing is the envelope stream's framing: each frame is an
// unsigned varint length (the multiformats/protobuf encoding, minimal, at
// most 3 bytes) followed by that many bytes. Lengths above the limit are
// refused before anything is allocated. It has no dependency, so that its
// fuzz target builds fast.
package framing

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrLength reports a frame length prefix that is malformed or above
// the limit.
var ErrLength = errors.New("framing: bad frame length")

// MaxPrefix is the longest length prefix accepted: 3 bytes hold 2^21-1.
const MaxPrefix = 3

// Append appends the framing of data to dst.
func Append(dst, data []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(data)))
	return append(dst, data...)
}

// ReadLen reads a length prefix, refusing anything longer than
// MaxPrefix bytes, non-minimal encodings and lengths above max.
func ReadLen(r io.ByteReader, max int) (int, error) {
	var v uint64
	for i := 0; i < MaxPrefix; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, fmt.Errorf("%w: non-minimal varint", ErrLength)
			}
			if v > uint64(max) {
				return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrLength, v, max)
			}
			return int(v), nil
		}
	}
	return 0, fmt.Errorf("%w: prefix longer than %d bytes", ErrLength, MaxPrefix)
}

// Read reads one frame of at most max bytes into a new slice.
func Read(r *bufio.Reader, max int) ([]byte, error) {
	n, err := ReadLen(r, max)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// Decode splits a byte string into frames (the fuzz target's view of
// the stream decoder). It returns the frames before the first error.
func Decode(b []byte, max int) ([][]byte, error) {
	r := bufio.NewReaderSize(&sliceReader{b: b}, 16)
	var out [][]byte
	for {
		f, err := Read(r, max)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}
