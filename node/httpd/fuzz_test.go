package httpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// Fuzz targets: each bounds its input, never panics, and checks the
// decoder against net/http's (ours is the stricter: what it accepts,
// net/http must accept alike). Seeds: f.Add here and testdata/fuzz/.

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /v1/messages HTTP/1.1\r\nHost: meshd\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"to\":\"x\"}\r\n",
	"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: v\r\n\r\n",
	"GET http://h:1/p?q=%41 HTTP/1.1\r\nHost: a\r\nCookie: a=b; c=\"d\"\r\n\r\n",
	"\r\nGET /a/../b HTTP/1.0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}

func FuzzReadRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			return
		}
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		r, fr, err := readRequest(br, requestLimits{maxHeaderBytes: 4096})
		if err != nil {
			var pe *protoError
			if !errors.As(err, &pe) && err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		if !validToken(r.Method) || r.URL == nil || !validHost(r.Host) {
			t.Fatalf("accepted %+v", r)
		}
		for k, vs := range r.Header {
			if k != CanonicalHeaderKey(k) || !validToken(k) || k == "Host" {
				t.Fatalf("header key %q", k)
			}
			for _, v := range vs {
				if !validFieldValue(v) || strings.Trim(v, " \t") != v {
					t.Fatalf("header value %q", v)
				}
			}
		}
		var body []byte
		var bodyErr error
		if fr.chunked {
			cr := newChunkedReader(br)
			cr.limitOverhead = true
			body, bodyErr = io.ReadAll(io.LimitReader(cr, 1<<20))
		} else {
			body, bodyErr = io.ReadAll(io.LimitReader(br, fr.length))
			if bodyErr == nil && int64(len(body)) != fr.length {
				bodyErr = io.ErrUnexpectedEOF
			}
		}

		// net/http must read the same request.
		// (net/http's server, not ReadRequest, skips leading empty lines.)
		std, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(bytes.TrimLeft(data, "\r\n"))))
		if err != nil {
			t.Fatalf("net/http rejects what we accept: %v\n%q", err, data)
		}
		if std.Method != r.Method || std.RequestURI != r.RequestURI || std.Host != r.Host || min(std.ProtoMinor, 1) != r.ProtoMinor {
			t.Fatalf("request differs: ours %s %s %s %s, net/http %s %s %s %s", r.Method, r.RequestURI, r.Host, r.Proto,
				std.Method, std.RequestURI, std.Host, std.Proto)
		}
		for k, vs := range r.Header {
			if k == "Content-Length" || k == "Transfer-Encoding" {
				continue // net/http moves these into fields
			}
			if !slices.Equal(vs, std.Header[k]) {
				t.Fatalf("header %s: ours %q, net/http %q", k, vs, std.Header[k])
			}
		}
		if bodyErr == nil {
			stdBody, err := io.ReadAll(std.Body)
			if err != nil || !bytes.Equal(stdBody, body) {
				t.Fatalf("body: ours %q, net/http %q (%v)", body, stdBody, err)
			}
		}
	})
}

func FuzzChunked(f *testing.F) {
	for _, s := range []string{"3\r\nabc\r\n0\r\n\r\n", "1;x=y\r\na\r\n0\r\nT: v\r\n\r\n", "0\r\n\r\n",
		"A\r\n0123456789\r\n0\r\n\r\n", "3\nabc\r\n0\r\n\r\n", "fffffffffffffff\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		cr := newChunkedReader(bufio.NewReaderSize(bytes.NewReader(data), 16))
		got, err := io.ReadAll(io.LimitReader(cr, 1<<20))
		if err != nil {
			if err != io.ErrUnexpectedEOF && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v", err)
			}
			return
		}
		std, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data)))
		if err != nil || !bytes.Equal(std, got) {
			t.Fatalf("ours %q, net/http %q (%v)", got, std, err)
		}
		var enc bytes.Buffer
		cw := &chunkedWriter{w: &enc}
		cw.Write(got)
		cw.Close()
		again, err := io.ReadAll(newChunkedReader(bufio.NewReader(&enc)))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("round trip: %q %v", again, err)
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			return
		}
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		c := &Client{MaxHeaderBytes: 4096}
		resp, err := c.readResponse(br, nil, "GET")
		if err != nil {
			return
		}
		fr, err := responseFraming(resp, "GET")
		if err != nil {
			return
		}
		var body []byte
		switch {
		case fr.chunked:
			body, err = io.ReadAll(newChunkedReader(br))
		case fr.length >= 0:
			body, err = io.ReadAll(&lengthReader{r: br, n: fr.length})
		default:
			body, err = io.ReadAll(br)
		}
		if err != nil {
			return
		}
		// Skip the informational responses net/http's ReadResponse
		// returns one by one.
		sbr := bufio.NewReader(bytes.NewReader(data))
		var std *http.Response
		for {
			std, err = http.ReadResponse(sbr, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("net/http rejects what we accept: %v\n%q", err, data)
			}
			if std.StatusCode >= 200 {
				break
			}
		}
		stdBody, err := io.ReadAll(std.Body)
		if err != nil {
			t.Fatalf("net/http body: %v\n%q", err, data)
		}
		if std.StatusCode != resp.StatusCode || !bytes.Equal(stdBody, body) {
			t.Fatalf("ours %d %q, net/http %d %q", resp.StatusCode, body, std.StatusCode, stdBody)
		}
	})
}

func FuzzMux(f *testing.F) {
	for _, r := range muxRequests {
		f.Add(r.method, r.target)
	}
	f.Add("GET", "/v1/contacts/%2e%2e")
	f.Add("GET", "/files/%2F/x/..")
	type muxes struct {
		ours  *ServeMux
		std   *http.ServeMux
		names []string
	}
	var sets []muxes
	for _, ps := range [][]string{meshdPatterns, genericPatterns} {
		o, s := buildMuxes(ps)
		sets = append(sets, muxes{o, s, wildcardNames(ps)})
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		if !validToken(method) || method == "CONNECT" || len(target) > 200 {
			return
		}
		for i := 0; i < len(target); i++ {
			if target[i] <= ' ' || target[i] >= 0x7f || target[i] == '#' {
				return // the server's parser refuses these
			}
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(target, "/") {
			return
		}
		for _, m := range sets {
			got, want := ourOutcome(m.ours, method, target), stdOutcome(m.std, m.names, method, target)
			got.location, want.location = unescapeAll(got.location), unescapeAll(want.location)
			if lt := strings.ToLower(target); (strings.Contains(lt, "%2f") || strings.Contains(lt, "%2e")) && got.status == 307 {
				// net/http builds a trailing-slash redirect from the
				// unescaped path, where %2F is a slash and %2E%2E a ".."
				// that path cleaning acts on; ours stays with the escaped
				// path the match used.
				got.location, want.location = "", ""
			}
			if got != want {
				t.Fatalf("%s %q: got %+v, net/http %+v", method, target, got, want)
			}
		}
	})
}

func FuzzPattern(f *testing.F) {
	for _, p := range append(append([]string{"/{x}/{y...}", "GET /a/{$}", "/{ü}", "POST  /x", "example.com/", "/a/{x}b"}, meshdPatterns...), genericPatterns...) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 200 {
			return
		}
		ourErr := panics(func() {
			m := NewServeMux()
			m.HandleFunc(s, func(ResponseWriter, *Request) {})
		})
		stdErr := panics(func() {
			m := http.NewServeMux()
			m.HandleFunc(s, func(http.ResponseWriter, *http.Request) {})
		})
		rest := s
		if i := strings.IndexAny(s, " \t"); i >= 0 {
			rest = strings.TrimLeft(s[i+1:], " \t")
		}
		hostPattern := !stdErr && !strings.HasPrefix(rest, "/")
		if hostPattern {
			if !ourErr {
				t.Fatalf("host pattern %q accepted", s)
			}
			return
		}
		if ourErr != stdErr {
			t.Fatalf("pattern %q: ours rejects %v, net/http %v", s, ourErr, stdErr)
		}
		if ourErr {
			return
		}
		// Registered next to meshd's patterns, it conflicts alike.
		ourConflict := panics(func() {
			m, _ := buildMuxes(meshdPatterns)
			m.HandleFunc(s, func(ResponseWriter, *Request) {})
		})
		stdConflict := panics(func() {
			_, m := buildMuxes(meshdPatterns)
			m.HandleFunc(s, func(http.ResponseWriter, *http.Request) {})
		})
		if ourConflict != stdConflict {
			t.Fatalf("pattern %q: conflict %v, net/http %v", s, ourConflict, stdConflict)
		}
	})
}

// FuzzServe drives a whole server connection with the input as the
// client's bytes: no panic, no hang, and what the server answers parses
// with net/http's response reader.
func FuzzServe(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("GET /stream HTTP/1.1\r\nHost: a\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := &Server{Handler: testMux(), ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second}
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 || bytes.Contains(data, []byte("/panic")) {
			return
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = c.Write(data)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if err != nil && !isReset(err) {
			t.Fatalf("reading the answer: %v", err)
		}
		// The methods of the requests, to know which answers have no body.
		var methods []string
		rbr := bufio.NewReader(bytes.NewReader(data))
		for {
			r, fr, err := readRequest(rbr, requestLimits{maxHeaderBytes: DefaultMaxHeaderBytes})
			if err != nil {
				break
			}
			methods = append(methods, r.Method)
			if fr.chunked {
				_, err = io.Copy(io.Discard, newChunkedReader(rbr))
			} else {
				_, err = io.CopyN(io.Discard, rbr, fr.length)
			}
			if err != nil {
				break
			}
		}
		br := bufio.NewReader(bytes.NewReader(out))
		for i := 0; ; {
			if _, err := br.Peek(1); err == io.EOF {
				return
			}
			method := "GET"
			if i < len(methods) {
				method = methods[i]
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				if strings.Contains(string(out), "partial") {
					return // the panic-late handler's cut response
				}
				t.Fatalf("unparseable answer %v: %q", err, out)
			}
			if _, err := io.ReadAll(resp.Body); err != nil {
				return // a response cut by an error (the connection closes)
			}
			if resp.StatusCode != 100 {
				i++
			}
		}
	})
}
