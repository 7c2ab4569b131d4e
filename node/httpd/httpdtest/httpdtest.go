// Package httpdtest helps test httpd handlers without a network, as
// net/http/httptest does for net/http's: a server-side request and a
// ResponseWriter that records what the handler wrote. Only tests import it.
package httpdtest

import (
	"bytes"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/openmeshd/meshd/node/httpd"
)

// NewRequest returns a request as the server would hand it to a handler:
// target is a path ("/x?y") or an absolute URL ("http://host/x"), whose host
// becomes Host (else "example.com"); RemoteAddr is "192.0.2.1:1234". It
// panics on an invalid method or target: it is for tests, which pass
// constants.
func NewRequest(method, target string, body io.Reader) *httpd.Request {
	if method == "" {
		method = httpd.MethodGet
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme == "" && !strings.HasPrefix(target, "/")) {
		panic("httpdtest: invalid target " + strconv.Quote(target))
	}
	r, err := httpd.NewRequest(method, target, body)
	if err != nil {
		panic("httpdtest: " + err.Error())
	}
	r.RequestURI = target
	r.RemoteAddr = "192.0.2.1:1234"
	if r.Host == "" {
		r.Host = "example.com"
	}
	if r.Body == nil {
		r.Body = httpd.NoBody
	}
	return r
}

// ResponseRecorder is a ResponseWriter that records the status, header
// and body.
type ResponseRecorder struct {
	// Code is the status written (200 if the handler wrote a body without
	// one, 0 if it wrote nothing).
	Code int
	// HeaderMap is the header the handler set (Header returns it).
	HeaderMap httpd.Header
	// Body receives what the handler wrote.
	Body *bytes.Buffer
	// Flushed says the handler called Flush.
	Flushed bool

	wroteHeader bool
}

// NewRecorder returns an empty recorder.
func NewRecorder() *ResponseRecorder {
	return &ResponseRecorder{HeaderMap: httpd.Header{}, Body: new(bytes.Buffer), Code: 200}
}

// Header is the header the handler sets.
func (rw *ResponseRecorder) Header() httpd.Header { return rw.HeaderMap }

// WriteHeader records the status once; later calls are ignored.
func (rw *ResponseRecorder) WriteHeader(code int) {
	if rw.wroteHeader {
		return
	}
	rw.wroteHeader = true
	rw.Code = code
}

// Write records body bytes, writing a 200 header first if none was.
func (rw *ResponseRecorder) Write(p []byte) (int, error) {
	rw.WriteHeader(httpd.StatusOK)
	return rw.Body.Write(p)
}

// WriteString is Write for a string.
func (rw *ResponseRecorder) WriteString(s string) (int, error) {
	return rw.Write([]byte(s))
}

// Flush records that the handler flushed (and sends the header).
func (rw *ResponseRecorder) Flush() {
	rw.WriteHeader(httpd.StatusOK)
	rw.Flushed = true
}

// Cookies parses the Set-Cookie fields written, name and value only (the
// attributes are in Header().Values("Set-Cookie")).
func (rw *ResponseRecorder) Cookies() []*httpd.Cookie {
	var out []*httpd.Cookie
	for _, line := range rw.Header().Values("Set-Cookie") {
		nv, _, _ := strings.Cut(line, ";")
		name, value, ok := strings.Cut(strings.TrimSpace(nv), "=")
		if !ok || name == "" {
			continue
		}
		out = append(out, &httpd.Cookie{Name: name, Value: value})
	}
	return out
}

// Result is the recorded response as a client would read it.
func (rw *ResponseRecorder) Result() *httpd.Response {
	code := rw.Code
	return &httpd.Response{
		Status:        strconv.Itoa(code) + " " + httpd.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rw.Header().Clone(),
		Body:          io.NopCloser(bytes.NewReader(rw.Body.Bytes())),
		ContentLength: int64(rw.Body.Len()),
	}
}

var _ httpd.ResponseWriter = (*ResponseRecorder)(nil)
