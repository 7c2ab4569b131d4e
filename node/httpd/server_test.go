package httpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testServer serves h on a loopback port until the test ends.
type testServer struct {
	t    *testing.T
	srv  *Server
	addr string
	done chan error
}

func startServer(t *testing.T, h Handler, configure func(*Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h}
	if configure != nil {
		configure(s)
	}
	ts := &testServer{t: t, srv: s, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case err := <-ts.done:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return ts
}

func (ts *testServer) dial() net.Conn {
	ts.t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// exchange sends raw bytes on a new connection and returns everything the
// server sends until it closes the connection.
func (ts *testServer) exchange(raw string) string {
	ts.t.Helper()
	c := ts.dial()
	if _, err := io.WriteString(c, raw); err != nil {
		ts.t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		ts.t.Fatalf("reading the answer to %q: %v (got %q)", raw, err, b)
	}
	return string(b)
}

// readResp parses one response with net/http's parser, an independent
// check of what the server writes.
func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("ReadResponse: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("response body: %v", err)
	}
	return resp, string(b)
}

func testMux() *ServeMux {
	mux := NewServeMux()
	mux.HandleFunc("GET /hello", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello "+r.URL.Query().Get("name"))
	})
	mux.HandleFunc("POST /echo", func(w ResponseWriter, r *Request) {
		b, err := io.ReadAll(MaxBytesReader(w, r.Body, 1000))
		var mbe *MaxBytesError
		if errors.As(err, &mbe) {
			Error(w, "too large", StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			Error(w, err.Error(), StatusBadRequest)
			return
		}
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /ignore", func(w ResponseWriter, r *Request) { _, _ = io.WriteString(w, "ignored") })
	mux.HandleFunc("GET /big", func(w ResponseWriter, r *Request) {
		_, _ = w.Write(bytes.Repeat([]byte("x"), 10000))
	})
	mux.HandleFunc("GET /nocontent", func(w ResponseWriter, r *Request) { w.WriteHeader(StatusNoContent) })
	mux.HandleFunc("GET /stream", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.Flush()
		}
	})
	mux.HandleFunc("GET /declared", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "12345")
	})
	mux.HandleFunc("GET /short", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "12345")
	})
	mux.HandleFunc("GET /inject", func(w ResponseWriter, r *Request) {
		w.Header().Set("X-Evil", "a\r\nSet-Cookie: pwned=1")
		w.Header()["Bad Name"] = []string{"x"}
		w.WriteHeader(StatusOK)
	})
	mux.HandleFunc("GET /panic", func(w ResponseWriter, r *Request) {
		w.Header().Set("X-Before", "1")
		panic("boom")
	})
	mux.HandleFunc("GET /panic-late", func(w ResponseWriter, r *Request) {
		_, _ = io.WriteString(w, "partial")
		w.Flush()
		panic("boom")
	})
	mux.HandleFunc("GET /close", func(w ResponseWriter, r *Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	mux.HandleFunc("GET /info", func(w ResponseWriter, r *Request) {
		fmt.Fprintf(w, "method=%s host=%s uri=%s path=%s proto=%s cl=%d ua=%s", r.Method, r.Host, r.RequestURI, r.URL.Path, r.Proto, r.ContentLength, r.Header.Get("User-Agent"))
	})
	return mux
}

func TestServerRawRequests(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	ts := startServer(t, testMux(), func(s *Server) {
		s.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	})
	tests := []struct {
		name      string
		req       string
		status    string // status line prefix
		contains  []string
		lacks     []string
		keepAlive bool // the connection stays open (a second request is answered)
	}{
		{"get", "GET /hello?name=a HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", []string{"Content-Length: 7\r\n", "\r\n\r\nhello a"}, []string{"Connection: close"}, true},
		{"leading CRLF", "\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", nil, nil, true},
		{"head", "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", []string{"Content-Length: 6\r\n"}, []string{"hello"}, true},
		{"post CL", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde", "HTTP/1.1 200 OK", []string{"\r\n\r\nabcde"}, nil, true},
		{"post chunked", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n", "HTTP/1.1 200 OK", []string{"\r\n\r\nabcde"}, nil, true},
		{"unread body drained", "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde", "HTTP/1.1 200 OK", []string{"ignored"}, []string{"Connection: close"}, true},
		{"MaxBytesReader", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + strings.Repeat("a", 2000), "HTTP/1.1 413", []string{"Connection: close"}, nil, false},
		{"big response", "GET /big HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", []string{"Transfer-Encoding: chunked"}, []string{"Content-Length"}, true},
		{"204", "GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 204 No Content", nil, []string{"Content-Length", "Transfer-Encoding"}, true},
		{"stream", "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", []string{"Transfer-Encoding: chunked", "9\r\ndata: 0\n\n\r\n", "0\r\n\r\n"}, nil, true},
		{"declared length", "GET /declared HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", []string{"Content-Length: 5\r\n", "12345"}, nil, true},
		{"short declared length closes", "GET /short HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", []string{"Content-Length: 10\r\n"}, nil, false},
		{"header injection", "GET /inject HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", []string{"X-Evil: a  Set-Cookie: pwned=1\r\n"}, []string{"\r\nSet-Cookie", "Bad Name"}, true},
		{"panic before writing", "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 500 Internal Server Error", []string{"Connection: close"}, []string{"X-Before"}, false},
		{"handler says close", "GET /close HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", []string{"Connection: close", "bye"}, nil, false},
		{"client says close", "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n", "HTTP/1.1 200 OK", []string{"Connection: close"}, nil, false},
		{"HTTP/1.0", "GET /hello HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK", []string{"Connection: close", "Content-Length: 6"}, nil, false},
		{"HTTP/1.0 stream", "GET /stream HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK", []string{"Connection: close", "data: 0\n\ndata: 1\n\ndata: 2\n\n"}, []string{"Transfer-Encoding"}, false},
		{"absolute form", "GET http://example.lan:8080/info?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", "HTTP/1.1 200 OK", []string{"host=example.lan:8080 uri=http://example.lan:8080/info?q=1 path=/info"}, nil, true},
		{"405", "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 405", []string{"Allow: GET, HEAD\r\n"}, nil, true},
		{"404", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404", nil, nil, true},
		{"unclean path redirect", "GET /a/../hello?name=b HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 307", []string{"Location: /hello?name=b\r\n"}, nil, true},
		{"expect 100", "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK", []string{"\r\n\r\nabc"}, nil, true},
		{"expect 100 unread", "POST /ignore HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", "HTTP/1.1 200 OK", []string{"Connection: close", "ignored"}, []string{"100 Continue"}, false},
		{"expect other", "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: something\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 417", []string{"Connection: close"}, nil, false},
		{"body over MaxBodyBytes", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", "HTTP/1.1 413", []string{"Connection: close"}, nil, false},

		// Malformed or refused: answered with the status, then closed.
		{"bare LF", "GET /hello HTTP/1.1\nHost: x\n\n", "HTTP/1.1 400", []string{"Connection: close"}, nil, false},
		{"bare LF in header", "GET /hello HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"CR in line", "GET /hello HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"obs-fold", "GET /hello HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"space before colon", "GET /hello HTTP/1.1\r\nHost : x\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"bad field name", "GET /hello HTTP/1.1\r\nHost: x\r\nX(y): z\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"NUL in value", "GET /hello HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"CL and TE", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"two CL", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 400", nil, nil, false},
		{"CL list", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", "HTTP/1.1 400", nil, nil, false},
		{"CL sign", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", "HTTP/1.1 400", nil, nil, false},
		{"CL hex", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc", "HTTP/1.1 400", nil, nil, false},
		{"TE gzip", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 501", nil, nil, false},
		{"TE twice", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 501", nil, nil, false},
		{"TE in 1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"bad chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", "HTTP/1.1 400", []string{"Connection: close"}, nil, false},
		{"chunk bare LF", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", "HTTP/1.1 400", []string{"Connection: close"}, nil, false},
		{"no Host", "GET /hello HTTP/1.1\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"two Host", "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"bad Host", "GET /hello HTTP/1.1\r\nHost: a/b\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"double space", "GET  /hello HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"fragment", "GET /hello#x HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"bad escape", "GET /hello%zz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 501", nil, nil, false},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 505", nil, nil, false},
		{"lowercase version", "GET /hello http/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400", nil, nil, false},
		{"long URI", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 414", nil, nil, false},
		{"many fields", "GET /hello HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X: y\r\n", 101) + "\r\n", "HTTP/1.1 431", nil, nil, false},
		{"big header", "GET /hello HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("y", 17000) + "\r\n\r\n", "HTTP/1.1 431", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.dial()
			second := "GET /hello?name=again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
			if _, err := io.WriteString(c, tt.req+second); err != nil {
				t.Fatal(err)
			}
			all, err := io.ReadAll(c)
			if err != nil && !isReset(err) {
				t.Fatalf("read: %v (got %q)", err, all)
			}
			got := string(all)
			if again := strings.Contains(got, "hello again"); again != tt.keepAlive {
				t.Errorf("second request answered: %v, want %v (answer %q)", again, tt.keepAlive, trunc(got))
			}
			if tt.keepAlive { // check the first response only
				if i := strings.LastIndex(got, "HTTP/1.1 200 OK"); i > 0 {
					got = got[:i]
				}
			}
			if !strings.HasPrefix(got, tt.status) {
				t.Fatalf("answer %q, want it to start with %q", trunc(got), tt.status)
			}
			for _, s := range tt.contains {
				if !strings.Contains(got, s) {
					t.Errorf("answer %q lacks %q", trunc(got), s)
				}
			}
			for _, s := range tt.lacks {
				if strings.Contains(got, s) {
					t.Errorf("answer %q contains %q", trunc(got), s)
				}
			}
		})
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "handler panic") {
		t.Errorf("panic not logged: %s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

func trunc(s string) string {
	if len(s) > 600 {
		return s[:600] + "..."
	}
	return s
}

// TestServerResponsesParse checks responses with net/http's parser, over
// one kept-alive connection, pipelined.
func TestServerResponsesParse(t *testing.T) {
	ts := startServer(t, testMux(), nil)
	c := ts.dial()
	reqs := []struct{ method, path, body string }{
		{"GET", "/hello?name=x", "hello x"},
		{"GET", "/big", strings.Repeat("x", 10000)},
		{"HEAD", "/big", ""},
		{"GET", "/stream", "data: 0\n\ndata: 1\n\ndata: 2\n\n"},
		{"GET", "/nocontent", ""},
		{"GET", "/declared", "12345"},
		{"HEAD", "/declared", ""},
	}
	var raw strings.Builder
	for _, r := range reqs {
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", r.method, r.path)
	}
	if _, err := io.WriteString(c, raw.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, r := range reqs {
		resp, body := readResp(t, br, r.method)
		if body != r.body {
			t.Errorf("%s %s: body %q, want %q", r.method, r.path, trunc(body), trunc(r.body))
		}
		if r.method == "HEAD" && r.path == "/declared" && resp.ContentLength != 5 {
			t.Errorf("HEAD /declared: Content-Length %d", resp.ContentLength)
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("%s %s: no Date", r.method, r.path)
		}
	}
}

func TestPanicAfterFlushCutsResponse(t *testing.T) {
	ts := startServer(t, testMux(), nil)
	got := ts.exchange("GET /panic-late HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.Contains(got, "partial") || strings.Contains(got, "0\r\n\r\n") {
		t.Fatalf("answer %q: want the partial chunk and no last chunk", got)
	}
}

func TestWriteErrors(t *testing.T) {
	errs := make(chan []error, 1)
	mux := NewServeMux()
	mux.HandleFunc("GET /a", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Length", "3")
		_, e1 := io.WriteString(w, "1234")
		_, e2 := io.WriteString(w, "123")
		errs <- []error{e1, e2}
	})
	mux.HandleFunc("GET /b", func(w ResponseWriter, r *Request) {
		w.WriteHeader(StatusNotModified)
		_, e1 := io.WriteString(w, "x")
		errs <- []error{e1}
	})
	ts := startServer(t, mux, nil)
	got := ts.exchange("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if e := <-errs; !errors.Is(e[0], ErrContentLength) || e[1] != nil {
		t.Errorf("declared length: errors %v", e)
	}
	if !strings.HasSuffix(got, "\r\n\r\n123") {
		t.Errorf("answer %q", got)
	}
	ts.exchange("GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if e := <-errs; !errors.Is(e[0], ErrBodyNotAllowed) {
		t.Errorf("304: error %v", e)
	}
}

func TestChunkedBodyLimit(t *testing.T) {
	got := make(chan error, 1)
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
		Error(w, "no", StatusRequestEntityTooLarge)
	})
	ts := startServer(t, h, func(s *Server) { s.MaxBodyBytes = 10 })
	ans := ts.exchange("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
	var mbe *MaxBytesError
	if err := <-got; !errors.As(err, &mbe) || mbe.Limit != 10 {
		t.Errorf("read error %v, want *MaxBytesError", err)
	}
	if !strings.Contains(ans, "Connection: close") {
		t.Errorf("answer %q", ans)
	}
}

func TestChunkOverheadLimit(t *testing.T) {
	got := make(chan error, 1)
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		_, err := io.Copy(io.Discard, r.Body)
		got <- err
	})
	ts := startServer(t, h, nil)
	c := ts.dial()
	go func() {
		bw := bufio.NewWriter(c)
		io.WriteString(bw, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
		ext := ";" + strings.Repeat("e", 1000)
		for i := 0; i < 100; i++ {
			io.WriteString(bw, "1"+ext+"\r\nx\r\n")
		}
		bw.Flush()
	}()
	if err := <-got; !errors.Is(err, ErrMalformed) {
		t.Fatalf("error %v, want ErrMalformed", err)
	}
}

func TestReadHeaderTimeout(t *testing.T) {
	ts := startServer(t, testMux(), func(s *Server) { s.ReadHeaderTimeout = 200 * time.Millisecond })
	// Slowloris: a header that never ends.
	c := ts.dial()
	start := time.Now()
	io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n")
	go func() {
		for i := 0; i < 50; i++ {
			if _, err := io.WriteString(c, "X: y\r\n"); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 408") {
		t.Errorf("answer %q, want 408", b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v", d)
	}
	// A connection that never sends anything is closed silently.
	c2 := ts.dial()
	b, _ = io.ReadAll(c2)
	if len(b) != 0 {
		t.Errorf("silent connection got %q", b)
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, testMux(), func(s *Server) { s.IdleTimeout = 100 * time.Millisecond })
	c := ts.dial()
	io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	readResp(t, br, "GET")
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle connection closed after %v", d)
	}
}

func TestBodyReadTimeout(t *testing.T) {
	got := make(chan error, 1)
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
	})
	ts := startServer(t, h, func(s *Server) { s.ReadTimeout = 200 * time.Millisecond })
	c := ts.dial()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
	select {
	case err := <-got:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("body read error %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("body read did not time out")
	}
}

// TestWriteTimeoutStream: a stream to a client that does not read ends
// with a write error and a cancelled context; one that reads lives longer
// than the write timeout.
func TestWriteTimeoutStream(t *testing.T) {
	result := make(chan error, 2)
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		deadline := time.Now().Add(700 * time.Millisecond)
		for time.Now().Before(deadline) || r.URL.Path == "/stuck" {
			if _, err := w.Write(chunk); err != nil {
				result <- fmt.Errorf("write: %w (ctx %v)", err, r.Context().Err())
				return
			}
			w.Flush()
			if r.URL.Path == "/reader" {
				time.Sleep(50 * time.Millisecond)
			}
		}
		result <- nil
	})
	ts := startServer(t, h, func(s *Server) { s.WriteTimeout = 300 * time.Millisecond })
	c := ts.dial()
	io.WriteString(c, "GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-result:
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("stuck client: %v, want a write error and a cancelled context", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("write to a stuck client did not time out")
	}
	c2 := ts.dial()
	io.WriteString(c2, "GET /reader HTTP/1.1\r\nHost: x\r\n\r\n")
	go io.Copy(io.Discard, c2)
	if err := <-result; err != nil {
		t.Errorf("reading client: %v", err)
	}
}

func TestClientDisconnectCancelsContext(t *testing.T) {
	started := make(chan struct{})
	ended := make(chan error, 1)
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Flush()
		close(started)
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-time.After(10 * time.Second):
			ended <- errors.New("context not cancelled")
		}
	})
	ts := startServer(t, h, nil)
	c := ts.dial()
	io.WriteString(c, "POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	<-started
	c.Close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	streaming := make(chan struct{}, 1)
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.URL.Path == "/quick" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, ": hi\n\n")
		w.Flush()
		streaming <- struct{}{}
		<-r.Context().Done()
	})
	ts := startServer(t, h, nil)
	onShutdown := make(chan struct{})
	ts.srv.RegisterOnShutdown(func() { close(onShutdown) })

	stream := ts.dial()
	io.WriteString(stream, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
	<-streaming
	idle := ts.dial()
	io.WriteString(idle, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
	ibr := bufio.NewReader(idle)
	readResp(t, ibr, "GET")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	<-onShutdown
	// The stream ended properly: last chunk, then close.
	b, _ := io.ReadAll(stream)
	if !strings.Contains(string(b), ": hi\n\n") || !strings.HasSuffix(string(b), "0\r\n\r\n") || !strings.Contains(string(b), "Transfer-Encoding: chunked") {
		t.Errorf("stream: %q", b)
	}
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after Shutdown: %v", err)
	}
	if err := <-ts.done; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	ts.done <- ErrServerClosed // for the cleanup
	if c, err := net.Dial("tcp", ts.addr); err == nil {
		c.Close()
		t.Errorf("listener still accepting after Shutdown")
	}
}

func TestShutdownDeadline(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(w ResponseWriter, r *Request) { <-release }) // ignores its context
	ts := startServer(t, h, nil)
	defer close(release)
	c := ts.dial()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want DeadlineExceeded", err)
	}
}

func TestMaxConns(t *testing.T) {
	release := make(chan struct{})
	var inHandler atomic.Int32
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.URL.Path == "/block" {
			inHandler.Add(1)
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})
	ts := startServer(t, h, func(s *Server) { s.MaxConns = 2 })
	defer close(release)

	// Two idle connections: a third one closes the one idle the longest.
	idle1 := ts.dial()
	waitFor(t, "first connection", func() bool { return ts.srv.openConns() == 1 })
	time.Sleep(10 * time.Millisecond)
	idle2 := ts.dial()
	waitFor(t, "second connection", func() bool { return ts.srv.openConns() == 2 })
	time.Sleep(minEvictIdle + 50*time.Millisecond)
	got := ts.exchange("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("third connection: %q", got)
	}
	idle1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idle1.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("oldest idle connection: %d, %v; want it closed", n, err)
	}
	idle2.Close()
	waitFor(t, "connections closed", func() bool { return ts.srv.openConns() == 0 })

	// Two busy connections: a third is refused.
	for i := 0; i < 2; i++ {
		c := ts.dial()
		io.WriteString(c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	waitFor(t, "handlers", func() bool { return inHandler.Load() == 2 })
	got = ts.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 503") {
		t.Fatalf("connection beyond MaxConns: %q", got)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func TestRequestFields(t *testing.T) {
	got := make(chan *Request, 1)
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		_, _ = io.ReadAll(r.Body)
		got <- r
	})
	ts := startServer(t, h, nil)
	ts.exchange("POST /p/a%20b?x=1&y=%41 HTTP/1.1\r\nHost: h.lan:80\r\nuser-agent:  ua 1 \r\nX-Multi: a\r\nx-multi: b\r\nContent-Length: 2\r\nCookie: a=1; b=\"2\"; c=x\\y\r\nConnection: close\r\n\r\nhi")
	var r *Request
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not called")
	}
	checks := []struct{ name, got, want string }{
		{"Method", r.Method, "POST"},
		{"Path", r.URL.Path, "/p/a b"},
		{"RawQuery", r.URL.RawQuery, "x=1&y=%41"},
		{"Query y", r.URL.Query().Get("y"), "A"},
		{"Host", r.Host, "h.lan:80"},
		{"Host field", r.Header.Get("Host"), ""},
		{"User-Agent", r.Header.Get("user-agent"), "ua 1"},
		{"X-Multi", strings.Join(r.Header.Values("X-Multi"), ","), "a,b"},
		{"Proto", r.Proto, "HTTP/1.1"},
		{"RemoteAddr", strings.Split(r.RemoteAddr, ":")[0], "127.0.0.1"},
		{"RequestURI", r.RequestURI, "/p/a%20b?x=1&y=%41"},
		{"ContentLength", fmt.Sprint(r.ContentLength), "2"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if c, err := r.Cookie("b"); err != nil || c.Value != "2" {
		t.Errorf("Cookie b: %v %v", c, err)
	}
	if _, err := r.Cookie("c"); !errors.Is(err, ErrNoCookie) {
		t.Errorf("Cookie c (invalid value): %v", err)
	}
	if r.Context().Err() == nil {
		t.Errorf("context alive after the handler returned")
	}
}

// TestBackgroundReadKeepsPipelinedByte: a request pipelined while the
// previous handler runs is not lost to the disconnect detector.
func TestBackgroundReadKeepsPipelinedByte(t *testing.T) {
	proceed := make(chan struct{})
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.URL.Path == "/wait" {
			<-proceed
			if err := r.Context().Err(); err != nil {
				t.Errorf("context cancelled by a pipelined request: %v", err)
			}
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})
	ts := startServer(t, h, nil)
	c := ts.dial()
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // the handler runs, the background read waits
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	close(proceed)
	br := bufio.NewReader(c)
	if _, body := readResp(t, br, "GET"); body != "/wait" {
		t.Errorf("first: %q", body)
	}
	if _, body := readResp(t, br, "GET"); body != "/next" {
		t.Errorf("second: %q", body)
	}
}

func TestServeAfterShutdown(t *testing.T) {
	s := &Server{}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestUnixSocket(t *testing.T) {
	sock := t.TempDir() + "/s.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: testMux()}
	go s.Serve(ln)
	defer s.Close()
	c := &Client{Transport: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	resp, err := c.Get("http://meshd/hello?name=unix")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "hello unix" {
		t.Fatalf("body %q", b)
	}
}
