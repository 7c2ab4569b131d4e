package httpd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestNetHTTPClientAgainstServer: net/http's client talks to our server.
func TestNetHTTPClientAgainstServer(t *testing.T) {
	var sawLength atomic.Int64
	var streamEnded = make(chan error, 1)
	mux := testMux()
	mux.HandleFunc("POST /json", func(w ResponseWriter, r *Request) {
		sawLength.Store(r.ContentLength)
		var v map[string]any
		dec := json.NewDecoder(MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			Error(w, err.Error(), StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(StatusCreated)
		_ = json.NewEncoder(w).Encode(v)
	})
	mux.HandleFunc("GET /events", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, ": hello\n\n")
		w.Flush()
		for i := 0; ; i++ {
			select {
			case <-r.Context().Done():
				streamEnded <- r.Context().Err()
				return
			case <-time.After(10 * time.Millisecond):
			}
			fmt.Fprintf(w, "id: %d\nevent: tick\ndata: {\"n\":%d}\n\n", i, i)
			w.Flush()
		}
	})
	ts := startServer(t, mux, nil)
	base := "http://" + ts.addr
	hc := &http.Client{Timeout: 10 * time.Second}

	t.Run("get", func(t *testing.T) {
		resp, err := hc.Get(base + "/hello?name=std")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello std" || resp.ContentLength != 9 {
			t.Fatalf("%s %q %d", resp.Status, b, resp.ContentLength)
		}
	})
	t.Run("keep-alive reuse", func(t *testing.T) {
		reused := 0
		for i := 0; i < 5; i++ {
			trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/big", nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if len(b) != 10000 {
				t.Fatalf("body %d bytes", len(b))
			}
		}
		if reused < 4 {
			t.Errorf("connection reused %d times of 5", reused)
		}
	})
	t.Run("post json", func(t *testing.T) {
		resp, err := hc.Post(base+"/json", "application/json", strings.NewReader(`{"a":"b"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 || strings.TrimSpace(string(b)) != `{"a":"b"}` || sawLength.Load() != 9 {
			t.Fatalf("%s %q length %d", resp.Status, b, sawLength.Load())
		}
	})
	t.Run("post chunked", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			io.WriteString(pw, `{"a":`)
			time.Sleep(10 * time.Millisecond)
			io.WriteString(pw, `"c"}`)
			pw.Close()
		}()
		resp, err := hc.Post(base+"/json", "application/json", pr)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 || strings.TrimSpace(string(b)) != `{"a":"c"}` || sawLength.Load() != -1 {
			t.Fatalf("%s %q length %d", resp.Status, b, sawLength.Load())
		}
	})
	t.Run("unknown field", func(t *testing.T) {
		resp, err := hc.Post(base+"/json", "application/json", strings.NewReader(`{"a":1}x`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("%s", resp.Status)
		}
	})
	t.Run("head and 204", func(t *testing.T) {
		resp, err := hc.Head(base + "/big")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != 10000 && resp.ContentLength != -1 {
			t.Fatalf("HEAD: %s %d", resp.Status, resp.ContentLength)
		}
		resp, err = hc.Get(base + "/nocontent")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("%s", resp.Status)
		}
	})
	t.Run("sse", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("Content-Type") != "text/event-stream" || len(resp.TransferEncoding) != 1 {
			t.Fatalf("header %v, transfer encoding %v", resp.Header, resp.TransferEncoding)
		}
		sc := bufio.NewScanner(resp.Body)
		events := 0
		for sc.Scan() && events < 3 {
			if strings.HasPrefix(sc.Text(), "data: ") {
				events++
			}
		}
		if events != 3 {
			t.Fatalf("%d events: %v", events, sc.Err())
		}
		cancel()
		select {
		case err := <-streamEnded:
			if !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the handler did not notice the client going away")
		}
	})
}

// TestClientAgainstNetHTTP: our client talks to net/http's server.
func TestClientAgainstNetHTTP(t *testing.T) {
	streamEnded := make(chan struct{}, 1)
	var lastLength atomic.Int64
	var lastTE atomic.Value
	h := http.NewServeMux()
	h.HandleFunc("GET /json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"host":%q,"conn":%q}`, r.Host, r.Header.Get("Connection"))
	})
	h.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		lastLength.Store(r.ContentLength)
		lastTE.Store(strings.Join(r.TransferEncoding, ","))
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	h.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for i := 0; ; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			fl.Flush()
			select {
			case <-r.Context().Done():
				streamEnded <- struct{}{}
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	h.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("y"), 100000)) })
	h.HandleFunc("GET /204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	h.HandleFunc("GET /304", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(304) })
	h.HandleFunc("GET /early", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</x>; rel=preload")
		w.WriteHeader(103)
		io.WriteString(w, "after hints")
	})
	h.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	h.HandleFunc("GET /close-delimited", func(w http.ResponseWriter, r *http.Request) {
		c, bw, _ := w.(http.Hijacker).Hijack()
		defer c.Close()
		bw.WriteString("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
		bw.Flush()
	})
	h.HandleFunc("GET /te-in-1.0", func(w http.ResponseWriter, r *http.Request) {
		c, bw, _ := w.(http.Hijacker).Hijack()
		defer c.Close()
		bw.WriteString("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		bw.Flush()
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := &Client{}

	get := func(t *testing.T, path string) (*Response, string) {
		t.Helper()
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	t.Run("json", func(t *testing.T) {
		resp, body := get(t, "/json")
		host := strings.TrimPrefix(srv.URL, "http://")
		if resp.StatusCode != 200 || resp.Status != "200 OK" || body != `{"host":"`+host+`","conn":"close"}` || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s %q %v", resp.Status, body, resp.Header)
		}
		if resp.ContentLength != int64(len(body)) || resp.Proto != "HTTP/1.1" {
			t.Errorf("length %d proto %s", resp.ContentLength, resp.Proto)
		}
	})
	t.Run("big chunked", func(t *testing.T) {
		resp, body := get(t, "/big")
		if len(body) != 100000 || resp.ContentLength != -1 {
			t.Fatalf("%d bytes, length %d", len(body), resp.ContentLength)
		}
	})
	t.Run("no body", func(t *testing.T) {
		for _, p := range []string{"/204", "/304"} {
			if _, body := get(t, p); body != "" {
				t.Errorf("%s: %q", p, body)
			}
		}
		req, _ := NewRequest("HEAD", srv.URL+"/big", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(b) != 0 || resp.StatusCode != 200 {
			t.Fatalf("HEAD: %s %q", resp.Status, b)
		}
	})
	t.Run("informational", func(t *testing.T) {
		resp, body := get(t, "/early")
		if resp.StatusCode != 200 || body != "after hints" {
			t.Fatalf("%s %q", resp.Status, body)
		}
	})
	t.Run("close delimited", func(t *testing.T) {
		resp, body := get(t, "/close-delimited")
		if body != "until close" || resp.Proto != "HTTP/1.0" || resp.ContentLength != -1 {
			t.Fatalf("%q %s %d", body, resp.Proto, resp.ContentLength)
		}
	})
	t.Run("transfer-encoding in HTTP/1.0", func(t *testing.T) {
		// RFC 9112 §6.1: faulty framing, refused (net/http would read the
		// chunk framing as the body).
		resp, err := c.Get(srv.URL + "/te-in-1.0")
		if err == nil {
			resp.Body.Close()
			t.Fatal("accepted")
		}
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v, want ErrMalformed", err)
		}
	})
	t.Run("post", func(t *testing.T) {
		for _, tt := range []struct {
			body   io.Reader
			length int64
			te     string
		}{
			{strings.NewReader("abc"), 3, ""},
			{bytes.NewReader([]byte("abcd")), 4, ""},
			{io.MultiReader(strings.NewReader("ab"), strings.NewReader("cde")), -1, "chunked"},
			{nil, 0, ""},
		} {
			resp, err := c.Post(srv.URL+"/echo", "text/plain", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if lastLength.Load() != tt.length || lastTE.Load() != tt.te || int64(len(b)) != max(tt.length, 0) && tt.length != -1 {
				t.Errorf("body %q: server saw length %d TE %q", b, lastLength.Load(), lastTE.Load())
			}
		}
	})
	t.Run("sse with cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		n := 0
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				if n++; n == 3 {
					break
				}
			}
		}
		cancel()
		start := time.Now()
		_, err = io.ReadAll(resp.Body)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Error("cancel took long")
		}
		select {
		case <-streamEnded:
		case <-time.After(10 * time.Second):
			t.Fatal("server did not see the client go")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		tc := &Client{Timeout: 100 * time.Millisecond}
		_, err := tc.Get(srv.URL + "/slow")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want DeadlineExceeded", err)
		}
	})
	t.Run("refused requests", func(t *testing.T) {
		req, _ := NewRequest("GET", srv.URL+"/json", nil)
		req.Header.Set("X-Evil", "a\r\nX-Injected: 1")
		if _, err := c.Do(req); err == nil {
			t.Error("header value with CRLF sent")
		}
		req, _ = NewRequest("GET", srv.URL+"/json", nil)
		req.Header["Bad Name"] = []string{"x"}
		if _, err := c.Do(req); err == nil {
			t.Error("invalid header name sent")
		}
		if _, err := c.Get("https://" + strings.TrimPrefix(srv.URL, "http://")); err == nil {
			t.Error("https accepted")
		}
		if _, err := NewRequest("GE T", srv.URL, nil); err == nil {
			t.Error("invalid method accepted")
		}
	})
	t.Run("dial error", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		_, err := c.Get("http://" + addr + "/")
		var oe *net.OpError
		if !errors.As(err, &oe) {
			t.Fatalf("error %v (%T) is not a *net.OpError", err, err)
		}
	})
}

// TestClientServerStream: our client reads our server's event stream and
// ends it with its context.
func TestClientServerStream(t *testing.T) {
	ended := make(chan struct{})
	mux := NewServeMux()
	mux.HandleFunc("GET /v1/events", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(StatusOK)
		_, _ = io.WriteString(w, ": meshd events\n\n")
		w.Flush()
		for i := 0; ; i++ {
			select {
			case <-r.Context().Done():
				close(ended)
				return
			case <-time.After(5 * time.Millisecond):
			}
			fmt.Fprintf(w, "id: %d\nevent: message\ndata: {\"seq\":%d}\n\n", i, i)
			w.Flush()
		}
	})
	ts := startServer(t, mux, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := NewRequestWithContext(ctx, MethodGet, "http://"+ts.addr+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer x")
	resp, err := (&Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var got []string
	for sc.Scan() && len(got) < 3 {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			got = append(got, d)
		}
	}
	if strings.Join(got, ",") != `{"seq":0},{"seq":1},{"seq":2}` {
		t.Fatalf("events %q", got)
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not end")
	}
}
