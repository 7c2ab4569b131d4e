//go:build !router

package libp2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The envelope stream carries frames, each an unsigned varint length (the
// multiformats/protobuf encoding, at most 3 bytes here) followed by that
// many bytes. Lengths above the limit are refused before anything is
// allocated.

// ErrFrameLength reports a frame length prefix that is malformed or above
// the limit.
var ErrFrameLength = errors.New("libp2p: bad frame length")

// maxVarintLen is the longest length prefix accepted: 3 bytes hold 2^21-1.
const maxVarintLen = 3

// appendFrame appends the framing of data to dst.
func appendFrame(dst, data []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(data)))
	return append(dst, data...)
}

// readFrameLen reads a length prefix, refusing anything longer than
// maxVarintLen bytes, non-minimal encodings and lengths above max.
func readFrameLen(r io.ByteReader, max int) (int, error) {
	var v uint64
	for i := 0; i < maxVarintLen; i++ {
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
				return 0, fmt.Errorf("%w: non-minimal varint", ErrFrameLength)
			}
			if v > uint64(max) {
				return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameLength, v, max)
			}
			return int(v), nil
		}
	}
	return 0, fmt.Errorf("%w: prefix longer than %d bytes", ErrFrameLength, maxVarintLen)
}

// readFrame reads one frame of at most max bytes into a new slice.
func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := readFrameLen(r, max)
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

// decodeFrames splits a byte string into frames (the fuzz target's view of
// the stream decoder). It returns the frames before the first error.
func decodeFrames(b []byte, max int) ([][]byte, error) {
	r := bufio.NewReaderSize(&sliceReader{b: b}, 16)
	var out [][]byte
	for {
		f, err := readFrame(r, max)
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
