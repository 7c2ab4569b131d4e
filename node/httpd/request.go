package httpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// Request is an HTTP request: one the server received, or one the client
// sends. It mirrors the fields of net/http's Request that meshd uses.
type Request struct {
	// Method is the request method ("GET", "POST", ...). Empty means GET
	// for a client request.
	Method string
	// URL is the request target: for a server request only Path, RawPath
	// and RawQuery are set (and Scheme and Host for an absolute-form
	// target); for a client request, the URL to fetch.
	URL *url.URL
	// Proto is "HTTP/1.1" or "HTTP/1.0"; ProtoMajor and ProtoMinor its
	// numbers.
	Proto      string
	ProtoMajor int
	ProtoMinor int
	// Header holds the header fields, canonical keys. The server removes
	// Host (see Host); a client request's Host, Content-Length,
	// Transfer-Encoding and Connection fields are set by the client.
	Header Header
	// Body is the request body. The server always sets it (NoBody when
	// there is none) and closes it; a handler may leave it unread. For a
	// client request nil means no body; the client closes it.
	Body io.ReadCloser
	// ContentLength is the body's length: -1 for a chunked body on the
	// server. On the client, 0 with a non-nil Body means unknown (the body
	// is sent chunked).
	ContentLength int64
	// Host is the host the request is for: the Host field or the
	// absolute-form target's authority. The client sends it in place of
	// URL.Host when set.
	Host string
	// RemoteAddr is the peer's network address ("" on unix sockets), set
	// by the server.
	RemoteAddr string
	// RequestURI is the unmodified request target the server received.
	RequestURI string
	// Pattern is the ServeMux pattern that matched the request, set by
	// ServeMux.ServeHTTP.
	Pattern string

	ctx     context.Context
	pat     *pattern
	matches []string          // values of pat's wildcards, in order
	other   map[string]string // SetPathValue for names pat lacks
}

// NoBody is an empty request or response body.
var NoBody = noBody{}

type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }
func (noBody) Close() error             { return nil }

// Context is the request's context: on the server it is cancelled when the
// client's connection closes, when the handler returns and when the server
// shuts down; on the client it bounds the whole exchange, reading the body
// included. Never nil.
func (r *Request) Context() context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	return context.Background()
}

// WithContext is a shallow copy of r with its context changed to ctx.
func (r *Request) WithContext(ctx context.Context) *Request {
	if ctx == nil {
		panic("httpd: nil context")
	}
	r2 := *r
	r2.ctx = ctx
	return &r2
}

// Clone is a deep copy of r (the body is shared) with ctx as its context.
func (r *Request) Clone(ctx context.Context) *Request {
	if ctx == nil {
		panic("httpd: nil context")
	}
	r2 := *r
	r2.ctx = ctx
	if r.URL != nil {
		u := *r.URL
		if r.URL.User != nil {
			uu := *r.URL.User
			u.User = &uu
		}
		r2.URL = &u
	}
	r2.Header = r.Header.Clone()
	r2.matches = append([]string(nil), r.matches...)
	if r.other != nil {
		r2.other = make(map[string]string, len(r.other))
		for k, v := range r.other {
			r2.other[k] = v
		}
	}
	return &r2
}

// ProtoAtLeast reports whether the request's protocol is at least
// major.minor.
func (r *Request) ProtoAtLeast(major, minor int) bool {
	return r.ProtoMajor > major || r.ProtoMajor == major && r.ProtoMinor >= minor
}

// PathValue is the value of the wildcard name in the pattern that matched
// the request ("" if there is none), unescaped.
func (r *Request) PathValue(name string) string {
	if r.pat != nil {
		i := 0
		for _, s := range r.pat.segments {
			if s.wild && s.s != "" {
				if s.s == name && i < len(r.matches) {
					return r.matches[i]
				}
				i++
			}
		}
	}
	return r.other[name]
}

// SetPathValue sets the value PathValue returns for name (for tests and
// middleware).
func (r *Request) SetPathValue(name, value string) {
	if r.pat != nil {
		i := 0
		for _, s := range r.pat.segments {
			if s.wild && s.s != "" {
				if s.s == name && i < len(r.matches) {
					r.matches[i] = value
					return
				}
				i++
			}
		}
	}
	if r.other == nil {
		r.other = map[string]string{}
	}
	r.other[name] = value
}

// NewRequest is NewRequestWithContext with context.Background.
func NewRequest(method, url string, body io.Reader) (*Request, error) {
	return NewRequestWithContext(context.Background(), method, url, body)
}

// NewRequestWithContext builds a client request. For a body of type
// *bytes.Buffer, *bytes.Reader or *strings.Reader ContentLength is set; any
// other body is sent chunked unless the caller sets ContentLength.
func NewRequestWithContext(ctx context.Context, method, rawURL string, body io.Reader) (*Request, error) {
	if ctx == nil {
		return nil, errors.New("httpd: nil context")
	}
	if method == "" {
		method = MethodGet
	}
	if !validToken(method) {
		return nil, fmt.Errorf("httpd: invalid method %q", method)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	r := &Request{Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: Header{}, Host: u.Host, ctx: ctx}
	if body != nil {
		switch b := body.(type) {
		case *bytes.Buffer:
			r.ContentLength = int64(b.Len())
		case *bytes.Reader:
			r.ContentLength = int64(b.Len())
		case *strings.Reader:
			r.ContentLength = int64(b.Len())
		}
		rc, ok := body.(io.ReadCloser)
		if !ok {
			rc = io.NopCloser(body)
		}
		r.Body = rc
		if r.ContentLength == 0 && (body == NoBody || isEmptyKnown(body)) {
			r.Body = NoBody
		}
	}
	return r, nil
}

func isEmptyKnown(body io.Reader) bool {
	switch body.(type) {
	case *bytes.Buffer, *bytes.Reader, *strings.Reader:
		return true // ContentLength 0 already
	}
	return false
}
