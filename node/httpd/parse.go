package httpd

import (
	"bufio"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// ErrMalformed is wrapped by every error for bytes that are not the HTTP/1.1
// this package accepts (see docs/httpd.md for what it rejects).
var ErrMalformed = errors.New("httpd: malformed HTTP message")

// protoError is a malformed or refused message; status is what the server
// answers (400, 414, 431, 501, 505...).
type protoError struct {
	status int
	msg    string
}

func (e *protoError) Error() string { return "httpd: " + e.msg }
func (e *protoError) Unwrap() error { return ErrMalformed }

func malformed(msg string) error { return &protoError{status: StatusBadRequest, msg: msg} }

var (
	errLineTooLong   = &protoError{status: StatusRequestHeaderFieldsTooLarge, msg: "header too large"}
	errBareLF        = malformed("line not terminated by CRLF")
	errTooManyFields = &protoError{status: StatusRequestHeaderFieldsTooLarge, msg: "too many header fields"}
)

const (
	// maxRequestLine bounds the request line (414 beyond).
	maxRequestLine = 8 << 10
	// maxFields bounds the number of header fields of a message (431
	// beyond) and of a chunked body's trailer.
	maxFields = 100
	// maxLeadingEmptyLines are the empty lines tolerated before a request
	// line (RFC 9112 §2.2: some clients send CRLF after a POST body).
	maxLeadingEmptyLines = 4
)

// readLine reads one line ending in CRLF and returns it without the CRLF.
// It consumes at most *budget bytes (beyond that: errLineTooLong) and
// rejects a bare LF and a CR anywhere else in the line. The result may
// alias br's buffer: it is valid until the next read.
func readLine(br *bufio.Reader, budget *int) ([]byte, error) {
	var acc []byte
	for {
		chunk, err := br.ReadSlice('\n')
		*budget -= len(chunk)
		if *budget < 0 {
			return nil, errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			acc = append(acc, chunk...)
			continue
		}
		if err != nil {
			if err == io.EOF && (len(acc) > 0 || len(chunk) > 0) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if acc != nil {
			chunk = append(acc, chunk...)
		}
		n := len(chunk)
		if n < 2 || chunk[n-2] != '\r' {
			return nil, errBareLF
		}
		line := chunk[:n-2]
		for _, c := range line {
			if c == '\r' {
				return nil, malformed("CR inside a line")
			}
		}
		return line, nil
	}
}

// readFields reads header fields up to the empty line that ends them,
// within *budget bytes and maxFields fields, into h (canonical keys).
// Obsolete line folding, whitespace before the colon, names that are not
// tokens and values with control characters are errors.
func readFields(br *bufio.Reader, budget *int, h Header) error {
	n := 0
	for {
		line, err := readLine(br, budget)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if n++; n > maxFields {
			return errTooManyFields
		}
		if line[0] == ' ' || line[0] == '\t' {
			return malformed("obsolete line folding")
		}
		colon := -1
		for i, c := range line {
			if c == ':' {
				colon = i
				break
			}
			if !tokenChars[c] {
				return malformed("invalid header field name")
			}
		}
		if colon <= 0 {
			return malformed("header field without a name and colon")
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return malformed("control character in a header field value")
			}
		}
		k := canonicalBytes(line[:colon])
		h[k] = append(h[k], string(value))
	}
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// commonKeys avoids allocating the names most requests carry.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Date", "Expect", "Host", "If-None-Match",
		"Origin", "Referer", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Transfer-Encoding",
		"User-Agent", "X-Csrf-Token", "Last-Event-Id", "Pragma", "Upgrade-Insecure-Requests"} {
		m[k] = k
	}
	return m
}()

// canonicalBytes is CanonicalHeaderKey for a validated token.
func canonicalBytes(name []byte) string {
	upper := true
	for i, c := range name {
		if upper && 'a' <= c && c <= 'z' {
			name[i] = c - 'a' + 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			name[i] = c - 'A' + 'a'
		}
		upper = c == '-'
	}
	if k, ok := commonKeys[string(name)]; ok { // no allocation for the lookup
		return k
	}
	return string(name)
}

// framing is how a message's body is delimited.
type framing struct {
	chunked bool
	length  int64 // Content-Length; -1: none (chunked, or until close)
}

// bodyFraming reads Content-Length and Transfer-Encoding strictly: both
// together, a repeated or list-valued Content-Length, and any coding but
// a single "chunked" are errors (request smuggling defences).
func bodyFraming(h Header) (framing, error) {
	f := framing{length: -1}
	te, hasTE := h["Transfer-Encoding"]
	cl, hasCL := h["Content-Length"]
	if hasTE && hasCL {
		return f, malformed("both Transfer-Encoding and Content-Length")
	}
	if hasTE {
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return f, &protoError{status: StatusNotImplemented, msg: "unsupported Transfer-Encoding (only chunked)"}
		}
		f.chunked = true
		return f, nil
	}
	if hasCL {
		if len(cl) != 1 {
			return f, malformed("repeated Content-Length")
		}
		n, ok := parseContentLength(cl[0])
		if !ok {
			return f, malformed("invalid Content-Length")
		}
		f.length = n
	}
	return f, nil
}

// parseContentLength accepts 1 to 18 decimal digits and nothing else.
func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// requestLimits bound what readRequest reads.
type requestLimits struct {
	maxHeaderBytes int // request line and fields together
}

// readRequest reads a request line and header. On success the request has
// no Body yet; framing says how to read it. Errors are *protoError (the
// status to answer), io.EOF before any byte of a request, or a read error.
func readRequest(br *bufio.Reader, lim requestLimits) (*Request, framing, error) {
	budget := lim.maxHeaderBytes
	var line []byte
	var err error
	for i := 0; ; i++ {
		lineBudget := min(budget, maxRequestLine)
		before := lineBudget
		line, err = readLine(br, &lineBudget)
		budget -= before - lineBudget
		if err == errLineTooLong {
			if budget > 0 {
				return nil, framing{}, &protoError{status: StatusRequestURITooLong, msg: "request line too long"}
			}
			return nil, framing{}, err
		}
		if err != nil {
			if err == io.EOF && i > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, framing{}, err
		}
		if len(line) > 0 {
			break
		}
		if i >= maxLeadingEmptyLines {
			return nil, framing{}, malformed("empty request line")
		}
	}
	r, err := parseRequestLine(line)
	if err != nil {
		return nil, framing{}, err
	}
	h := Header{}
	if err := readFields(br, &budget, h); err != nil {
		return nil, framing{}, err
	}
	r.Header = h

	hosts := h["Host"]
	delete(h, "Host")
	if len(hosts) > 1 {
		return nil, framing{}, malformed("repeated Host")
	}
	if len(hosts) == 0 && r.ProtoMinor == 1 {
		return nil, framing{}, malformed("missing Host")
	}
	if len(hosts) == 1 {
		r.Host = hosts[0]
	}
	if r.URL.Host != "" { // absolute form: its authority wins (RFC 9112 §3.2.2)
		r.Host = r.URL.Host
	}
	if !validHost(r.Host) {
		return nil, framing{}, malformed("invalid Host")
	}
	f, err := bodyFraming(h)
	if err != nil {
		return nil, framing{}, err
	}
	if f.chunked && r.ProtoMinor == 0 {
		return nil, framing{}, malformed("Transfer-Encoding in an HTTP/1.0 request")
	}
	switch {
	case f.chunked:
		r.ContentLength = -1
	case f.length > 0:
		r.ContentLength = f.length
	default:
		f.length = 0 // a request without framing has no body (RFC 9112 §6.3)
	}
	return r, f, nil
}

// parseRequestLine parses "METHOD SP request-target SP HTTP/1.x", single
// spaces, origin-form ("/path?query") or absolute-form ("http://host/path")
// targets only.
func parseRequestLine(line []byte) (*Request, error) {
	sp1 := indexByte(line, ' ')
	if sp1 <= 0 {
		return nil, malformed("malformed request line")
	}
	rest := line[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 <= 0 {
		return nil, malformed("malformed request line")
	}
	method, target, version := line[:sp1], rest[:sp2], rest[sp2+1:]
	for _, c := range method {
		if !tokenChars[c] {
			return nil, malformed("invalid method")
		}
	}
	major, minor, ok := parseVersion(version)
	if !ok {
		if len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]) {
			return nil, &protoError{status: StatusHTTPVersionNotSupported, msg: "unsupported HTTP version"}
		}
		return nil, malformed("malformed HTTP version")
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return nil, malformed("invalid character in request target")
		}
	}
	r := &Request{Method: string(method), RequestURI: string(target), ProtoMajor: major, ProtoMinor: minor}
	r.Proto = "HTTP/1.1"
	if minor == 0 {
		r.Proto = "HTTP/1.0"
	}
	if r.Method == "CONNECT" {
		return nil, &protoError{status: StatusNotImplemented, msg: "CONNECT is not supported"}
	}
	if target[0] == '/' {
		u, err := url.ParseRequestURI(r.RequestURI)
		if err != nil || u.Host != "" || u.Scheme != "" {
			return nil, malformed("invalid request target")
		}
		r.URL = u
		return r, nil
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" {
		return nil, malformed("invalid request target")
	}
	r.URL = u
	return r, nil
}

// parseVersion accepts "HTTP/1.0" and "HTTP/1.1" (and later 1.x minors,
// served as 1.1).
func parseVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != 8 || string(v[:7]) != "HTTP/1." || v[7] < '0' || v[7] > '9' {
		return 0, 0, false
	}
	if v[7] == '0' {
		return 1, 0, true
	}
	return 1, 1, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// validHost accepts the characters of uri-host [":" port] (RFC 3986
// reg-name, IPv4 and IP-literal), empty included (an HTTP/1.0 request
// without Host).
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:[]%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// responseHead is a parsed status line and header.
type responseHead struct {
	status int
	reason string
	minor  int
	header Header
}

// readResponseHead reads a status line and header within maxBytes.
func readResponseHead(br *bufio.Reader, maxBytes int) (responseHead, error) {
	budget := maxBytes
	line, err := readLine(br, &budget)
	if err != nil {
		return responseHead{}, err
	}
	// HTTP-version SP 3DIGIT SP reason-phrase; the SP before an empty
	// reason is tolerated missing.
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[7] < '0' || line[7] > '9' || line[8] != ' ' {
		return responseHead{}, malformed("malformed status line")
	}
	var rh responseHead
	if line[7] != '0' {
		rh.minor = 1
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return responseHead{}, malformed("malformed status code")
		}
		rh.status = rh.status*10 + int(c-'0')
	}
	if rh.status < 100 {
		return responseHead{}, malformed("malformed status code")
	}
	if len(line) > 12 {
		if line[12] != ' ' {
			return responseHead{}, malformed("malformed status line")
		}
		reason := line[13:]
		for _, c := range reason {
			if c < ' ' && c != '\t' || c == 0x7f {
				return responseHead{}, malformed("control character in reason phrase")
			}
		}
		rh.reason = string(reason)
	}
	rh.header = Header{}
	if err := readFields(br, &budget, rh.header); err != nil {
		return responseHead{}, err
	}
	return rh, nil
}

// statusLine is "code reason", net/http's Response.Status.
func statusLine(code int, reason string) string {
	if reason == "" {
		reason = StatusText(code)
	}
	return strconv.Itoa(code) + " " + reason
}
