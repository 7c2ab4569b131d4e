package httpd

import (
	"bufio"
	"io"
)

const (
	// maxChunkLine bounds a chunk-size line, extensions included.
	maxChunkLine = 1024
	// maxTrailerBytes bounds a chunked body's trailer section.
	maxTrailerBytes = 8 << 10
	// chunkOverheadAllowance is the framing (size lines, CRLFs, trailer)
	// a chunked request body may carry beyond one byte per data byte.
	chunkOverheadAllowance = 16 << 10
)

// chunkedReader decodes a chunked body (RFC 9112 §7.1): hexadecimal sizes
// of at most 15 digits, extensions checked for control characters and
// otherwise ignored, CRLF line ends only, trailer fields validated and
// discarded.
type chunkedReader struct {
	br       *bufio.Reader
	n        int64 // bytes left in the current chunk
	needCRLF bool  // the current chunk's data is read, its CRLF is not
	err      error // sticky
	// limitOverhead makes framing beyond chunkOverheadAllowance plus the
	// data read an error (a server reading a hostile client's body).
	limitOverhead bool
	overhead      int64
	data          int64
}

func newChunkedReader(br *bufio.Reader) *chunkedReader { return &chunkedReader{br: br} }

func (cr *chunkedReader) Read(p []byte) (int, error) {
	if cr.err != nil {
		return 0, cr.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for cr.n == 0 {
		if err := cr.nextChunk(); err != nil {
			cr.err = err
			return 0, err
		}
		if cr.err != nil { // the last chunk
			return 0, cr.err
		}
	}
	if int64(len(p)) > cr.n {
		p = p[:cr.n]
	}
	n, err := cr.br.Read(p)
	cr.n -= int64(n)
	cr.data += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		cr.err = err
		return n, err
	}
	if cr.n == 0 {
		cr.needCRLF = true
		// Look ahead without blocking: when the end of the body is already
		// buffered, report io.EOF with the last data.
		if cr.br.Buffered() >= 7 {
			if b, _ := cr.br.Peek(7); string(b) == "\r\n0\r\n\r\n" {
				if err := cr.nextChunk(); err != nil {
					cr.err = err
					return n, err
				}
				return n, cr.err
			}
		}
	}
	return n, nil
}

// nextChunk reads the CRLF that ends the previous chunk and the next
// chunk's size line; on the last chunk, the trailer, setting cr.err to
// io.EOF.
func (cr *chunkedReader) nextChunk() error {
	if cr.needCRLF {
		b, err := cr.br.Peek(2)
		if err != nil {
			return unexpected(err)
		}
		if b[0] != '\r' || b[1] != '\n' {
			return malformed("chunk data not followed by CRLF")
		}
		cr.br.Discard(2)
		cr.needCRLF = false
		if err := cr.spend(2); err != nil {
			return err
		}
	}
	budget := maxChunkLine
	line, err := readLine(cr.br, &budget)
	if err != nil {
		if err == errLineTooLong {
			return malformed("chunk size line too long")
		}
		return unexpected(err)
	}
	if err := cr.spend(int64(len(line) + 2)); err != nil {
		return err
	}
	size, err := parseChunkSize(line)
	if err != nil {
		return err
	}
	if size > 0 {
		cr.n = size
		return nil
	}
	budget = maxTrailerBytes
	before := budget
	err = readFields(cr.br, &budget, Header{})
	if err == errLineTooLong || err == errTooManyFields {
		return malformed("chunked trailer too large")
	}
	if err != nil {
		return unexpected(err)
	}
	if err := cr.spend(int64(before - budget)); err != nil {
		return err
	}
	cr.err = io.EOF
	return nil
}

func (cr *chunkedReader) spend(n int64) error {
	cr.overhead += n
	if cr.limitOverhead && cr.overhead > chunkOverheadAllowance+cr.data {
		return malformed("chunked framing overhead too large")
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseChunkSize parses chunk-size [chunk-ext]: 1 to 15 hex digits, then
// nothing or ";" followed by extension text without control characters.
// RFC 9112 allows whitespace (BWS) before the ";"; net/http refuses it, and
// a parser that accepts what another on the path refuses is how requests
// get smuggled, so it is refused here too (found by FuzzChunked).
func parseChunkSize(line []byte) (int64, error) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		d := unhex(line[i])
		if d < 0 {
			break
		}
		if i == 15 {
			return 0, malformed("chunk size too large")
		}
		n = n<<4 | int64(d)
	}
	if i == 0 {
		return 0, malformed("invalid chunk size")
	}
	rest := line[i:]
	if len(rest) > 0 {
		if rest[0] != ';' {
			return 0, malformed("invalid chunk size")
		}
		for _, c := range rest {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, malformed("control character in chunk extension")
			}
		}
	}
	return n, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// appendChunkHeader appends the size line of an n-byte chunk.
func appendChunkHeader(b []byte, n int) []byte {
	const hex = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = hex[n&15]
		n >>= 4
		if n == 0 {
			break
		}
	}
	b = append(b, tmp[i:]...)
	return append(b, '\r', '\n')
}

// chunkedWriter encodes a chunked body onto w; Close writes the last chunk
// (without trailer) but does not close w.
type chunkedWriter struct {
	w   io.Writer
	hdr []byte
}

func (cw *chunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	cw.hdr = appendChunkHeader(cw.hdr[:0], len(p))
	if _, err := cw.w.Write(cw.hdr); err != nil {
		return 0, err
	}
	n, err := cw.w.Write(p)
	if err != nil {
		return n, err
	}
	if _, err := io.WriteString(cw.w, "\r\n"); err != nil {
		return n, err
	}
	return n, nil
}

func (cw *chunkedWriter) Close() error {
	_, err := io.WriteString(cw.w, "0\r\n\r\n")
	return err
}
