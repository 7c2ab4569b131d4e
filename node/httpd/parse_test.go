package httpd

import (
	"bufio"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"testing"
	"time"
)

func parseReq(raw string, maxHeader int) (*Request, framing, error) {
	return readRequest(bufio.NewReaderSize(strings.NewReader(raw), 256), requestLimits{maxHeaderBytes: maxHeader})
}

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		status int // 0: accepted
		check  func(*Request, framing) string
	}{
		{"minimal", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, func(r *Request, f framing) string {
			if r.Method != "GET" || r.URL.Path != "/" || r.Host != "a" || f.length != 0 || f.chunked || r.ContentLength != 0 {
				return "fields"
			}
			return ""
		}},
		{"tabs and obs-text in values", "GET / HTTP/1.1\r\nHost: a\r\nX:\t a\tb \xff\t\r\n\r\n", 0, func(r *Request, _ framing) string {
			if r.Header.Get("X") != "a\tb \xff" {
				return "value " + r.Header.Get("X")
			}
			return ""
		}},
		{"empty value", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n", 0, func(r *Request, _ framing) string {
			if v, ok := r.Header["X"]; !ok || v[0] != "" {
				return "empty value lost"
			}
			return ""
		}},
		{"canonical keys", "GET / HTTP/1.1\r\nhost: a\r\nCONTENT-type: x\r\nx-csrf-token: t\r\n\r\n", 0, func(r *Request, _ framing) string {
			if r.Header["Content-Type"] == nil || r.Header["X-Csrf-Token"] == nil || r.Host != "a" {
				return "keys"
			}
			return ""
		}},
		{"CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0012\r\n\r\n", 0, func(r *Request, f framing) string {
			if f.length != 12 || r.ContentLength != 12 {
				return "length"
			}
			return ""
		}},
		{"chunked any case", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", 0, func(r *Request, f framing) string {
			if !f.chunked || r.ContentLength != -1 {
				return "chunked"
			}
			return ""
		}},
		{"HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", 0, func(r *Request, _ framing) string {
			if r.Proto != "HTTP/1.0" || r.ProtoMinor != 0 || r.Host != "" {
				return "1.0"
			}
			return ""
		}},
		{"HTTP/1.2 served as 1.1", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0, nil},
		{"IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0, nil},
		{"query", "GET /a?b=c&d HTTP/1.1\r\nHost: a\r\n\r\n", 0, func(r *Request, _ framing) string {
			if r.URL.RawQuery != "b=c&d" {
				return r.URL.RawQuery
			}
			return ""
		}},
		{"https absolute", "GET https://h/x HTTP/1.1\r\nHost: a\r\n\r\n", 0, func(r *Request, _ framing) string {
			if r.Host != "h" || r.URL.Path != "/x" {
				return "absolute"
			}
			return ""
		}},
		{"five empty lines", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil},
		{"ftp absolute", "GET ftp://h/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil},
		{"userinfo", "GET http://u@h/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil},
		{"relative", "GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil},
		{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil},
		{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, nil},
		{"no version", "GET /\r\nHost: a\r\n\r\n", 400, nil},
		{"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505, nil},
		{"HTTP/3", "GET / HTTP/3.0\r\n\r\n", 505, nil},
		{"UTF-8 target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil},
		{"DEL in target", "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400, nil},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", 400, nil},
		{"tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nX\t: y\r\n\r\n", 400, nil},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n", 400, nil},
		{"empty CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, nil},
		{"negative CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, nil},
		{"huge CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n", 400, nil},
		{"CL space inside", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400, nil},
		{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501, nil},
		{"TE chunked list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501, nil},
		{"TE with CL zero", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, nil},
		{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, nil},
		{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, nil},
		{"Host with at", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, nil},
		{"fields limit", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", 100) + "\r\n", 431, nil},
		{"bytes limit", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("y", 1100) + "\r\n\r\n", 431, nil},
		{"request line over MaxHeaderBytes", "GET /" + strings.Repeat("y", 1100) + " HTTP/1.1\r\nHost: a\r\n\r\n", 431, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, f, err := parseReq(tt.raw, 1024)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if tt.check != nil {
					if msg := tt.check(r, f); msg != "" {
						t.Errorf("%s: %+v %+v", msg, r, f)
					}
				}
				return
			}
			var pe *protoError
			if !errors.As(err, &pe) || pe.status != tt.status {
				t.Fatalf("error %v, want status %d", err, tt.status)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%v is not ErrMalformed", err)
			}
		})
	}
}

func TestReadRequestTruncated(t *testing.T) {
	full := "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n"
	for i := 0; i < len(full); i++ {
		_, _, err := parseReq(full[:i], 1024)
		switch {
		case i == 0 && err != io.EOF:
			t.Errorf("empty: %v, want io.EOF", err)
		case i > 0 && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrMalformed):
			t.Errorf("%q: %v", full[:i], err)
		}
	}
}

func TestChunkedReader(t *testing.T) {
	tests := []struct {
		name, in, out string
		ok            bool
	}{
		{"simple", "3\r\nabc\r\n0\r\n\r\n", "abc", true},
		{"two", "1\r\na\r\n2\r\nbc\r\n0\r\n\r\n", "abc", true},
		{"upper hex", "A\r\n0123456789\r\n0\r\n\r\n", "0123456789", true},
		{"leading zeros", "0003\r\nabc\r\n000\r\n\r\n", "abc", true},
		{"extension", "3;a=b;c=\"d e\"\r\nabc\r\n0;x\r\n\r\n", "abc", true},
		{"space before extension", "3 ;a\r\nabc\r\n0\r\n\r\n", "", false}, // BWS: RFC 9112 allows it, net/http refuses it
		{"trailer", "3\r\nabc\r\n0\r\nX: y\r\nZ: w\r\n\r\n", "abc", true},
		{"empty body", "0\r\n\r\n", "", true},
		{"0x prefix", "0x3\r\nabc\r\n0\r\n\r\n", "", false},
		{"negative", "-3\r\nabc\r\n0\r\n\r\n", "", false},
		{"leading space", " 3\r\nabc\r\n0\r\n\r\n", "", false},
		{"trailing space", "3 \r\nabc\r\n0\r\n\r\n", "", false},
		{"empty size", "\r\nabc\r\n0\r\n\r\n", "", false},
		{"16 digits", "0000000000000003\r\nabc\r\n0\r\n\r\n", "", false},
		{"bare LF size", "3\nabc\r\n0\r\n\r\n", "", false},
		{"bare LF after data", "3\r\nabc\n0\r\n\r\n", "abc", false},
		{"data too long", "3\r\nabcd\r\n0\r\n\r\n", "abc", false},
		{"no last chunk", "3\r\nabc\r\n", "abc", false},
		{"no final CRLF", "3\r\nabc\r\n0\r\n", "abc", false},
		{"CR in extension", "3;a\rb\r\nabc\r\n0\r\n\r\n", "", false},
		{"NUL in extension", "3;a\x00\r\nabc\r\n0\r\n\r\n", "", false},
		{"bad trailer", "3\r\nabc\r\n0\r\nX y\r\n\r\n", "abc", false},
		{"folded trailer", "3\r\nabc\r\n0\r\nX: y\r\n z\r\n\r\n", "abc", false},
		{"long size line", "3;" + strings.Repeat("e", 1100) + "\r\nabc\r\n0\r\n\r\n", "", false},
	}
	for _, tt := range tests {
		for _, bufSize := range []int{16, 4096} {
			cr := newChunkedReader(bufio.NewReaderSize(strings.NewReader(tt.in), bufSize))
			got, err := io.ReadAll(oneByte{cr})
			if tt.ok != (err == nil) || string(got) != tt.out {
				t.Errorf("%s (buffer %d): %q %v, want %q ok=%v", tt.name, bufSize, got, err, tt.out, tt.ok)
			}
			if err != nil && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: error %v neither ErrMalformed nor unexpected EOF", tt.name, err)
			}
		}
	}
}

// oneByte reads one byte at a time, to exercise every state boundary.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func TestChunkedEOFWithLastData(t *testing.T) {
	cr := newChunkedReader(bufio.NewReader(strings.NewReader("3\r\nabc\r\n0\r\n\r\nNEXT")))
	buf := make([]byte, 10)
	n, err := cr.Read(buf)
	if n != 3 || err != io.EOF {
		t.Fatalf("Read: %d %v, want 3 io.EOF", n, err)
	}
}

func TestChunkedRoundTrip(t *testing.T) {
	for _, data := range []string{"", "a", strings.Repeat("xyz", 5000)} {
		var b strings.Builder
		cw := &chunkedWriter{w: &b}
		for i := 0; i < len(data); i += 1000 {
			cw.Write([]byte(data[i:min(i+1000, len(data))]))
		}
		cw.Close()
		// net/http's decoder reads what ours writes...
		std, err := io.ReadAll(httputil.NewChunkedReader(strings.NewReader(b.String())))
		if err != nil || string(std) != data {
			t.Errorf("net/http decoder: %v", err)
		}
		// ...and ours reads it too.
		got, err := io.ReadAll(newChunkedReader(bufio.NewReader(strings.NewReader(b.String()))))
		if err != nil || string(got) != data {
			t.Errorf("our decoder: %v", err)
		}
	}
}

func TestReadResponseHead(t *testing.T) {
	tests := []struct {
		raw    string
		status int
		reason string
		ok     bool
	}{
		{"HTTP/1.1 200 OK\r\n\r\n", 200, "OK", true},
		{"HTTP/1.0 404 Not Found\r\nX: y\r\n\r\n", 404, "Not Found", true},
		{"HTTP/1.1 299\r\n\r\n", 299, "", true},
		{"HTTP/1.1 200 \r\n\r\n", 200, "", true},
		{"HTTP/1.1 200 Weird reason: yes\r\n\r\n", 200, "Weird reason: yes", true},
		{"HTTP/1.1 20 OK\r\n\r\n", 0, "", false},
		{"HTTP/1.1 2000 OK\r\n\r\n", 0, "", false},
		{"HTTP/1.1 099 X\r\n\r\n", 0, "", false},
		{"HTTP/2 200 OK\r\n\r\n", 0, "", false},
		{"http/1.1 200 OK\r\n\r\n", 0, "", false},
		{"HTTP/1.1 200 OK\n\n", 0, "", false},
		{"HTTP/1.1 200 O\x00K\r\n\r\n", 0, "", false},
	}
	for _, tt := range tests {
		rh, err := readResponseHead(bufio.NewReader(strings.NewReader(tt.raw)), 1024)
		if (err == nil) != tt.ok || rh.status != tt.status || rh.reason != tt.reason {
			t.Errorf("%q: %+v %v", tt.raw, rh, err)
		}
	}
}

func TestCanonicalHeaderKey(t *testing.T) {
	for _, k := range []string{"content-type", "CONTENT-TYPE", "x-csrf-token", "Www-Authenticate", "a", "-a-", "a b", "ü", "", "X_Y", "sec-fetch-site", "1abc"} {
		if got, want := CanonicalHeaderKey(k), http.CanonicalHeaderKey(k); got != want {
			t.Errorf("CanonicalHeaderKey(%q) = %q, net/http %q", k, got, want)
		}
	}
}

func TestHeader(t *testing.T) {
	h := Header{}
	h.Set("content-type", "a")
	h.Add("X-Multi", "1")
	h.Add("x-multi", "2")
	if h.Get("Content-Type") != "a" || len(h.Values("X-MULTI")) != 2 || h.Get("nope") != "" {
		t.Fatalf("%v", h)
	}
	c := h.Clone()
	c.Add("x-multi", "3")
	h.Del("CONTENT-TYPE")
	if len(h.Values("x-multi")) != 2 || c.Get("content-type") != "a" || h.Get("content-type") != "" {
		t.Fatalf("clone not deep: %v %v", h, c)
	}
	if !(Header{"Connection": {"keep-alive, Close"}}).has("Connection", "close") {
		t.Error("has")
	}
}

func TestCookieStringLikeNetHTTP(t *testing.T) {
	log.SetOutput(io.Discard) // net/http logs the bytes it drops
	defer log.SetOutput(os.Stderr)
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	cases := []struct {
		ours Cookie
		std  http.Cookie
	}{
		{Cookie{Name: "meshd_session", Value: "abc", Path: "/", MaxAge: 3600, HttpOnly: true, SameSite: SameSiteStrictMode},
			http.Cookie{Name: "meshd_session", Value: "abc", Path: "/", MaxAge: 3600, HttpOnly: true, SameSite: http.SameSiteStrictMode}},
		{Cookie{Name: "__Host-meshd_session", Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: SameSiteStrictMode},
			http.Cookie{Name: "__Host-meshd_session", Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}},
		{Cookie{Name: "a", Value: "b c,d", Expires: exp, SameSite: SameSiteLaxMode, Domain: ".example.lan"},
			http.Cookie{Name: "a", Value: "b c,d", Expires: exp, SameSite: http.SameSiteLaxMode, Domain: ".example.lan"}},
		{Cookie{Name: "a", Value: "x\"y;z\\w\x01", SameSite: SameSiteNoneMode, Secure: true},
			http.Cookie{Name: "a", Value: "x\"y;z\\w\x01", SameSite: http.SameSiteNoneMode, Secure: true}},
		{Cookie{Name: "a", Value: "v", Path: "/p;q"}, http.Cookie{Name: "a", Value: "v", Path: "/p;q"}},
		{Cookie{Name: "bad name", Value: "v"}, http.Cookie{Name: "bad name", Value: "v"}},
	}
	for _, c := range cases {
		if got, want := c.ours.String(), c.std.String(); got != want {
			t.Errorf("Cookie.String() = %q, net/http %q", got, want)
		}
	}
}

func TestRequestCookiesLikeNetHTTP(t *testing.T) {
	for _, line := range []string{"a=1; b=2", `a="1"; b=x y`, "a=1;;b=2; =3; c", "a=\x01; b=2", `a="x`, "a=b=c", " a = 1 "} {
		std := &http.Request{Header: http.Header{"Cookie": {line}}}
		ours := &Request{Header: Header{"Cookie": {line}}}
		var got, want []string
		for _, c := range ours.Cookies() {
			got = append(got, c.Name+"="+c.Value)
		}
		for _, c := range std.Cookies() {
			want = append(want, c.Name+"="+c.Value)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("Cookie %q: %q, net/http %q", line, got, want)
		}
	}
}

func TestStatusText(t *testing.T) {
	for _, code := range []int{100, 200, 201, 202, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 406, 408,
		409, 410, 411, 412, 413, 414, 415, 417, 421, 422, 429, 431, 500, 501, 502, 503, 504, 505} {
		if got, want := StatusText(code), http.StatusText(code); got != want {
			t.Errorf("StatusText(%d) = %q, net/http %q", code, got, want)
		}
	}
}
