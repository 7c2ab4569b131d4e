package httpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DialFunc opens a connection for the client: network is "tcp" and addr
// the URL's host:port (port 80 by default). net.Dialer's DialContext is
// one; a function that ignores both and dials a unix socket is another.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DefaultMaxResponseHeaderBytes bounds a response's status line and header
// (Client.MaxHeaderBytes zero).
const DefaultMaxResponseHeaderBytes = 64 << 10

// Client sends HTTP/1.1 requests, one connection per request (it sends
// "Connection: close"; there is no connection reuse). The zero value is
// usable: it dials TCP.
type Client struct {
	// Transport opens the connections. Nil: TCP to the URL's host.
	Transport DialFunc
	// Timeout bounds a whole exchange, reading the response body
	// included. Zero: none (the request's context still applies).
	Timeout time.Duration
	// MaxHeaderBytes bounds a response's status line and header. Zero:
	// 64 KiB.
	MaxHeaderBytes int
}

// Response is a response to a client request.
type Response struct {
	// Status is "200 OK"; StatusCode is 200.
	Status     string
	StatusCode int
	// Proto is "HTTP/1.1" or "HTTP/1.0".
	Proto      string
	ProtoMajor int
	ProtoMinor int
	Header     Header
	// Body streams the response body; always non-nil. The caller must
	// close it (that closes the connection). Reading it ends with the
	// request's context (its error is then the context's).
	Body io.ReadCloser
	// ContentLength is the body's length, -1 when unknown (chunked or
	// until the connection closes).
	ContentLength int64
	// Request is the request this answers.
	Request *Request
}

// Get fetches url.
func (c *Client) Get(url string) (*Response, error) {
	req, err := NewRequest(MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// Post sends body to url with the given Content-Type.
func (c *Client) Post(url, contentType string, body io.Reader) (*Response, error) {
	req, err := NewRequest(MethodPost, url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	return c.Do(req)
}

// Do sends req and reads the response's status and header. An error
// means no response (a status ≥ 400 is not an error); it wraps the cause,
// so errors.As finds a dial's *net.OpError, and errors.Is the context's
// error when the context ended. The request body is closed, even on
// error.
func (c *Client) Do(req *Request) (*Response, error) {
	resp, err := c.do(req)
	if err != nil {
		u := ""
		if req.URL != nil {
			u = req.URL.Redacted()
		}
		method := req.Method
		if method == "" {
			method = MethodGet
		}
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	return resp, nil
}

func closeReqBody(req *Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

func (c *Client) do(req *Request) (*Response, error) {
	if req.URL == nil {
		closeReqBody(req)
		return nil, errors.New("httpd: nil Request.URL")
	}
	method := req.Method
	if method == "" {
		method = MethodGet
	}
	head, addr, err := c.requestHead(req, method)
	if err != nil {
		closeReqBody(req)
		return nil, err
	}
	ctx, cancel := context.WithCancel(req.Context())
	if c.Timeout > 0 {
		ctx, cancel = context.WithTimeout(req.Context(), c.Timeout)
	}
	dial := c.Transport
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		cancel()
		closeReqBody(req)
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // unblocks reads and writes; the server sees the client go
	release := func() {
		stop()
		_ = conn.Close()
		cancel()
	}
	ctxErr := func(err error) error {
		if e := ctx.Err(); e != nil {
			return e
		}
		return err
	}
	werr := writeRequest(conn, head, req)
	br := bufio.NewReaderSize(conn, bufSize)
	resp, err := c.readResponse(br, req, method)
	if err != nil {
		release()
		if werr != nil {
			err = werr // the server probably closed before reading it all
		}
		return nil, ctxErr(err)
	}
	resp.Request = req
	fr, err := responseFraming(resp, method)
	if err != nil {
		release()
		return nil, err
	}
	switch {
	case fr.length == 0:
		release()
		resp.Body = NoBody
	case fr.chunked:
		resp.Body = &clientBody{r: newChunkedReader(br), ctx: ctx, release: release}
	case fr.length > 0:
		resp.Body = &clientBody{r: &lengthReader{r: br, n: fr.length}, ctx: ctx, release: release}
	default:
		resp.Body = &clientBody{r: br, ctx: ctx, release: release}
	}
	return resp, nil
}

// requestHead formats the request line and header, and the address to
// dial.
func (c *Client) requestHead(req *Request, method string) ([]byte, string, error) {
	u := req.URL
	if u.Scheme != "http" {
		return nil, "", fmt.Errorf("httpd: unsupported protocol scheme %q (only http)", u.Scheme)
	}
	if !validToken(method) {
		return nil, "", fmt.Errorf("httpd: invalid method %q", method)
	}
	host := req.Host
	if host == "" {
		host = u.Host
	}
	if u.Host == "" || !validHost(host) {
		return nil, "", fmt.Errorf("httpd: invalid host %q", host)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(strings.Trim(u.Host, "[]"), "80")
	}
	for k, vs := range req.Header {
		if !validToken(k) {
			return nil, "", fmt.Errorf("httpd: invalid header field name %q", k)
		}
		for _, v := range vs {
			if !validFieldValue(v) {
				return nil, "", fmt.Errorf("httpd: invalid value for header field %q", k)
			}
		}
	}
	b := make([]byte, 0, 256)
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, u.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	b = appendHeader(b, req.Header, func(k string) bool { return k == "Host" || skipFraming(k) })
	switch {
	case req.Body == nil || req.Body == NoBody:
		if method == MethodPost || method == MethodPut || method == MethodPatch {
			b = append(b, "Content-Length: 0\r\n"...)
		}
	case req.ContentLength > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.ContentLength, 10)
		b = append(b, "\r\n"...)
	default:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = append(b, "Connection: close\r\n\r\n"...)
	return b, addr, nil
}

// writeRequest sends the head and body, and closes the body.
func writeRequest(conn net.Conn, head []byte, req *Request) error {
	defer closeReqBody(req)
	bw := bufio.NewWriterSize(conn, bufSize)
	if _, err := bw.Write(head); err != nil {
		return err
	}
	switch {
	case req.Body == nil || req.Body == NoBody:
	case req.ContentLength > 0:
		n, err := io.Copy(bw, io.LimitReader(req.Body, req.ContentLength))
		if err != nil {
			return err
		}
		if n != req.ContentLength {
			return fmt.Errorf("httpd: request body has %d bytes, ContentLength says %d", n, req.ContentLength)
		}
	default:
		cw := &chunkedWriter{w: bw}
		if _, err := io.Copy(cw, req.Body); err != nil {
			return err
		}
		if err := cw.Close(); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func (c *Client) readResponse(br *bufio.Reader, req *Request, method string) (*Response, error) {
	max := c.MaxHeaderBytes
	if max <= 0 {
		max = DefaultMaxResponseHeaderBytes
	}
	for i := 0; ; i++ {
		rh, err := readResponseHead(br, max)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if rh.status >= 200 {
			resp := &Response{Status: statusLine(rh.status, rh.reason), StatusCode: rh.status, Proto: "HTTP/1.1",
				ProtoMajor: 1, ProtoMinor: rh.minor, Header: rh.header, ContentLength: -1}
			if rh.minor == 0 {
				resp.Proto = "HTTP/1.0"
			}
			return resp, nil
		}
		if rh.status == 101 || i >= 8 {
			return nil, malformed("unexpected informational response")
		}
	}
}

// responseFraming is how the response's body is delimited (length 0: no
// body).
func responseFraming(resp *Response, method string) (framing, error) {
	fr, err := bodyFraming(resp.Header) // malformed framing is refused even where no body follows
	if err != nil {
		return fr, err
	}
	if fr.chunked && resp.ProtoMajor == 1 && resp.ProtoMinor == 0 {
		// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means
		// faulty framing (likely forwarded by something that did not
		// decode it). net/http reads such a body to EOF, chunk framing
		// included; refusing is the safe choice, as the server does.
		return fr, malformed("Transfer-Encoding in an HTTP/1.0 response")
	}
	if method == MethodHead || !bodyAllowed(resp.StatusCode) {
		return framing{length: 0}, nil
	}
	if !fr.chunked {
		resp.ContentLength = fr.length
	}
	return fr, nil
}

// lengthReader reads a Content-Length body, io.EOF with its last byte.
type lengthReader struct {
	r io.Reader
	n int64
}

func (l *lengthReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && l.n == 0 {
		err = io.EOF
	}
	return n, err
}

// clientBody is a response body; it owns the connection.
type clientBody struct {
	r       io.Reader
	ctx     context.Context
	release func()
	once    sync.Once
	closed  atomic.Bool
	eof     bool
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, ErrBodyReadAfterClose
	}
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
		b.once.Do(b.release)
	case err != nil:
		if e := b.ctx.Err(); e != nil {
			err = e
		}
	}
	return n, err
}

func (b *clientBody) Close() error {
	b.closed.Store(true)
	b.once.Do(b.release)
	return nil
}
