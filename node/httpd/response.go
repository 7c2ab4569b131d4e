package httpd

import (
	"errors"
	"io"
	"strconv"
	"time"
)

// ResponseWriter is how a handler answers: set Header fields, then
// WriteHeader (optional: the first Write sends 200), then Write the body.
// Flush sends what is written so far (the header included) at once: a
// response that was flushed, or outgrew the 4 KiB buffer, is sent chunked;
// one written whole before the handler returns gets a Content-Length. A
// handler that sets Content-Length itself must write exactly that many
// bytes. HEAD responses carry the header only.
type ResponseWriter interface {
	Header() Header
	Write([]byte) (int, error)
	WriteHeader(statusCode int)
	Flush()
}

// Flusher is implemented by every ResponseWriter of this package; it is
// here so that code written for net/http (w.(http.Flusher)) converts as is.
type Flusher interface {
	Flush()
}

var (
	// ErrBodyNotAllowed is Write's error for HEAD-less responses that may
	// not have a body: 204 and 304.
	ErrBodyNotAllowed = errors.New("httpd: request method or response status code does not allow body")
	// ErrContentLength is Write's error beyond the Content-Length the
	// handler declared.
	ErrContentLength = errors.New("httpd: wrote more than the declared Content-Length")
	// ErrBodyReadAfterClose is a body's Read error after Close.
	ErrBodyReadAfterClose = errors.New("httpd: invalid Read on closed Body")
	// ErrHandlerDone is a ResponseWriter's error once the handler returned.
	ErrHandlerDone = errors.New("httpd: response used after the handler returned")
)

type response struct {
	c        *conn
	req      *Request
	header   Header
	status   int   // 0 until WriteHeader
	declared int64 // the handler's Content-Length, -1 without
	written  int64 // body bytes the handler wrote
	body     *body // nil without a request body
	cancel   func()
	err      error // sticky write error

	headerSent     bool
	chunked        bool
	closeAfter     bool // close the connection after this response
	aborted        bool // a panic after the header went out: cut the response short
	done           bool
	expectContinue bool
	sentContinue   bool
}

func (w *response) Header() Header { return w.header }

func bodyAllowed(status int) bool {
	return status >= 200 && status != StatusNoContent && status != StatusNotModified
}

func (w *response) WriteHeader(code int) {
	if w.status != 0 || w.done {
		return
	}
	if code < 100 || code > 999 {
		w.c.srv.logger().Error("httpd: invalid status code, sending 500", "code", code)
		code = StatusInternalServerError
	}
	if code < 200 {
		return // informational responses are not supported: ignored
	}
	w.status = code
	if v, ok := w.header["Content-Length"]; ok {
		n, valid := int64(0), len(v) == 1
		if valid {
			n, valid = parseContentLength(v[0])
		}
		if valid && bodyAllowed(code) {
			w.declared = n
		} else {
			delete(w.header, "Content-Length")
		}
	}
	if w.header.has("Connection", "close") {
		w.closeAfter = true
	}
}

func (w *response) Write(p []byte) (int, error) {
	if w.done {
		return 0, ErrHandlerDone
	}
	if w.status == 0 {
		w.WriteHeader(StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !bodyAllowed(w.status) {
		return 0, ErrBodyNotAllowed
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, ErrContentLength
	}
	w.written += int64(len(p))
	if w.req.Method == MethodHead {
		return len(p), nil
	}
	if !w.headerSent {
		if len(w.c.wbuf)+len(p) <= cap(w.c.wbuf) {
			w.c.wbuf = append(w.c.wbuf, p...)
			return len(p), nil
		}
		w.sendHeader(false)
		if err := w.flushBuffered(); err != nil {
			return 0, err
		}
	}
	return w.writeBody(p)
}

// flushBuffered writes the buffered body after the header.
func (w *response) flushBuffered() error {
	if len(w.c.wbuf) == 0 || w.err != nil {
		return w.err
	}
	_, err := w.writeBody(w.c.wbuf)
	w.c.wbuf = w.c.wbuf[:0]
	return err
}

func (w *response) writeBody(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	bw := w.c.bw
	var err error
	n := len(p)
	if w.chunked {
		w.c.hbuf = appendChunkHeader(w.c.hbuf[:0], len(p))
		if _, err = bw.Write(w.c.hbuf); err == nil {
			if _, err = bw.Write(p); err == nil {
				_, err = bw.WriteString("\r\n")
			}
		}
	} else {
		n, err = bw.Write(p)
	}
	if err != nil {
		w.fail(err)
		return 0, err
	}
	return n, nil
}

// fail records a write error: the client is gone or too slow.
func (w *response) fail(err error) {
	if w.err == nil {
		w.err = err
	}
	w.closeAfter = true
	w.cancel()
}

func (w *response) Flush() {
	if w.done {
		return
	}
	if w.status == 0 {
		w.WriteHeader(StatusOK)
	}
	if !w.headerSent {
		w.sendHeader(false)
		if w.flushBuffered() != nil {
			return
		}
	}
	if w.err == nil {
		if err := w.c.bw.Flush(); err != nil {
			w.fail(err)
		}
	}
}

// sendHeader writes the status line and header; final says the handler
// has returned, so the buffered body is all there is.
func (w *response) sendHeader(final bool) {
	w.headerSent = true
	req, s := w.req, w.c.srv
	if s.inShutdown.Load() {
		w.closeAfter = true
	}
	b := w.c.hbuf[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	b = append(b, StatusText(w.status)...)
	b = append(b, "\r\n"...)
	b = appendHeader(b, w.header, skipFraming)
	if _, ok := w.header["Date"]; !ok {
		b = append(b, s.dateField(time.Now())...)
	}
	if bodyAllowed(w.status) {
		switch {
		case w.declared >= 0:
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, w.declared, 10)
			b = append(b, "\r\n"...)
		case final && (req.Method != MethodHead || w.written > 0):
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, w.written, 10)
			b = append(b, "\r\n"...)
		case final:
		case req.ProtoMinor == 1:
			w.chunked = true
			b = append(b, "Transfer-Encoding: chunked\r\n"...)
		default:
			w.closeAfter = true // HTTP/1.0 stream: the close ends it
		}
	}
	if w.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	w.c.hbuf = b
	if _, err := w.c.bw.Write(b); err != nil {
		w.fail(err)
	}
	if req.Method == MethodHead {
		w.chunked = false // no body, no last chunk
	}
}

func skipFraming(k string) bool {
	return k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection"
}

// finish completes the response once the handler returned.
func (w *response) finish() {
	if w.done {
		return
	}
	if w.status == 0 {
		w.WriteHeader(StatusOK)
	}
	if !w.headerSent {
		if b := w.body; b != nil && !b.sawEOF && !w.closeAfter {
			// Read what the handler left of the body now, so that the
			// header can say whether the connection stays open.
			if w.expectContinue && !w.sentContinue || !b.drain() {
				w.closeAfter = true
			}
		}
		w.sendHeader(true)
		_ = w.flushBuffered()
	} else if w.chunked && !w.aborted && w.err == nil {
		if _, err := w.c.bw.WriteString("0\r\n\r\n"); err != nil {
			w.fail(err)
		}
	}
	if w.declared >= 0 && w.written < w.declared && w.req.Method != MethodHead || w.aborted {
		w.closeAfter = true // the client cannot find the end of this response
	}
	if w.err == nil {
		if err := w.c.bw.Flush(); err != nil {
			w.fail(err)
		}
	}
	w.done = true
}

// recovered handles a handler panic: an answer not yet started becomes a
// 500, one already started is cut short.
func (w *response) recovered() {
	w.closeAfter = true
	if w.headerSent {
		w.aborted = true
		return
	}
	w.header = Header{}
	w.c.wbuf = w.c.wbuf[:0]
	w.status, w.declared, w.written = 0, -1, 0
	Error(w, "500 internal server error", StatusInternalServerError)
}

// sendContinue answers "100 Continue" before the first read of a body
// the client announced with Expect: 100-continue.
func (w *response) sendContinue() error {
	w.sentContinue = true
	if w.headerSent {
		w.closeAfter = true
		return errors.New("httpd: request body read after the response started")
	}
	if _, err := w.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
		w.fail(err)
		return err
	}
	if err := w.c.bw.Flush(); err != nil {
		w.fail(err)
		return err
	}
	return nil
}

// requestTooLarge is MaxBytesReader's signal: the rest of the body will
// not be read, so the connection closes after the response.
func (w *response) requestTooLarge() { w.closeAfter = true }

// body is a server request's body.
type body struct {
	w         *response
	chunked   *chunkedReader // nil: Content-Length
	remaining int64          // of the Content-Length
	max       int64          // MaxBodyBytes, -1 for none
	n         int64          // read so far
	sawEOF    bool
	closed    bool
	err       error
}

func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, ErrBodyReadAfterClose
	}
	return b.read(p)
}

func (b *body) read(p []byte) (int, error) {
	if b.sawEOF {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.w.expectContinue && !b.w.sentContinue {
		if err := b.w.sendContinue(); err != nil {
			b.err = err
			return 0, err
		}
	}
	var n int
	var err error
	if b.chunked != nil {
		if b.max >= 0 && int64(len(p)) > b.max-b.n+1 {
			p = p[:b.max-b.n+1]
		}
		n, err = b.chunked.Read(p)
		b.n += int64(n)
		if b.max >= 0 && b.n > b.max {
			n -= int(b.n - b.max)
			b.n = b.max
			err = &MaxBytesError{Limit: b.max}
			b.w.closeAfter = true
		}
	} else {
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err = b.w.c.br.Read(p)
		b.remaining -= int64(n)
		b.n += int64(n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == nil && b.remaining == 0 {
			err = io.EOF
		}
	}
	switch {
	case err == io.EOF:
		b.sawEOF = true
		b.w.c.bodyEOF()
	case err != nil:
		b.err = err
		b.w.closeAfter = true
	}
	return n, err
}

func (b *body) Close() error {
	b.closed = true
	return nil
}

// drain reads up to maxDrainBytes of what is left of the body and reports
// whether it reached its end.
func (b *body) drain() bool {
	if b.w.expectContinue && !b.w.sentContinue {
		return false
	}
	var buf [512]byte
	for total := 0; total <= maxDrainBytes; {
		n, err := b.read(buf[:])
		total += n
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// MaxBytesError is the error of a MaxBytesReader past its limit (and of a
// request body past Server.MaxBodyBytes).
type MaxBytesError struct {
	Limit int64
}

func (e *MaxBytesError) Error() string { return "httpd: request body too large" }

// MaxBytesReader limits r to n bytes: reading beyond fails with
// *MaxBytesError, and the connection is closed after the response instead
// of reading the rest of the body.
func MaxBytesReader(w ResponseWriter, r io.ReadCloser, n int64) io.ReadCloser {
	if n < 0 {
		n = 0
	}
	return &maxBytesReader{w: w, r: r, limit: n, n: n}
}

type maxBytesReader struct {
	w     ResponseWriter
	r     io.ReadCloser
	limit int64
	n     int64 // left
	err   error
}

func (l *maxBytesReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p))-1 > l.n {
		p = p[:l.n+1] // one more than allowed, to tell "exactly n" from "more"
	}
	n, err := l.r.Read(p)
	if int64(n) <= l.n {
		l.n -= int64(n)
		l.err = err
		return n, err
	}
	n = int(l.n)
	l.n = 0
	if tl, ok := l.w.(interface{ requestTooLarge() }); ok {
		tl.requestTooLarge()
	}
	l.err = &MaxBytesError{Limit: l.limit}
	return n, l.err
}

func (l *maxBytesReader) Close() error { return l.r.Close() }
