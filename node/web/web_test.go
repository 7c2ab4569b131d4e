package web

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	http "github.com/openmeshd/meshd/node/httpd"
	httptest "github.com/openmeshd/meshd/node/httpd/httpdtest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testParams keep argon2id fast in tests.
var testParams = Params{MemoryKiB: 1024, Time: 1, Threads: 1}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// apiStub stands in for the node's API: it answers every path with what it
// was asked.
func apiStub() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.Path})
	})
}

func newTestServer(t *testing.T, o Options) (*Server, *fakeClock, string) {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, PasswordFile)
	if err := SetPassword(pw, []byte("correct horse"), testParams); err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	o.API, o.PasswordFile, o.Now = apiStub(), pw, clk.now
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk, pw
}

type req struct {
	method, path, body string
	hdr                map[string]string
	cookie             string
}

func do(s *Server, r req) *httptest.ResponseRecorder {
	var body *strings.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	} else {
		body = strings.NewReader("")
	}
	hr := httptest.NewRequest(r.method, "http://192.168.1.1"+r.path, body)
	hr.RemoteAddr = "192.168.1.50:40000"
	for k, v := range r.hdr {
		hr.Header.Set(k, v)
	}
	if r.cookie != "" {
		hr.Header.Set("Cookie", r.cookie)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, hr)
	return w
}

var sameOriginJSON = map[string]string{"Origin": "http://192.168.1.1", "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}

func login(t *testing.T, s *Server, password string) (cookie, csrf string, code int) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"password": password})
	w := do(s, req{method: "POST", path: "/web/login", body: string(b), hdr: sameOriginJSON})
	if w.Code != http.StatusOK {
		return "", "", w.Code
	}
	var v sessionView
	_ = json.Unmarshal(w.Body.Bytes(), &v)
	c := w.Cookies()
	if len(c) != 1 {
		t.Fatalf("login set %d cookies", len(c))
	}
	return c[0].Name + "=" + c[0].Value, v.CSRF, w.Code
}

func TestLoginAndSession(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	if _, _, code := login(t, s, "wrong password"); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", code)
	}
	cookie, csrf, code := login(t, s, "correct horse")
	if code != http.StatusOK || csrf == "" {
		t.Fatalf("login: %d %q", code, csrf)
	}
	// The cookie's attributes.
	w := do(s, req{method: "POST", path: "/web/login", body: `{"password":"correct horse"}`, hdr: sameOriginJSON})
	set := w.Header().Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(set, want) {
			t.Errorf("cookie %q lacks %s", set, want)
		}
	}
	if strings.Contains(set, "Secure") {
		t.Errorf("plain HTTP cookie marked Secure: %q", set)
	}
	tests := []struct {
		name   string
		r      req
		code   int
		reason string
	}{
		{"no session", req{method: "GET", path: "/v1/status"}, 401, "unauthorized"},
		{"forged cookie", req{method: "GET", path: "/v1/status", cookie: "meshd_session=abc"}, 401, "unauthorized"},
		{"session GET", req{method: "GET", path: "/v1/status", cookie: cookie}, 200, ""},
		{"metrics", req{method: "GET", path: "/metrics", cookie: cookie}, 200, ""},
		{"session info", req{method: "GET", path: "/web/session", cookie: cookie}, 200, ""},
		{"POST without CSRF token", req{method: "POST", path: "/v1/messages", body: "{}", cookie: cookie, hdr: sameOriginJSON}, 403, "csrf"},
		{"POST with wrong token", req{method: "POST", path: "/v1/messages", body: "{}", cookie: cookie, hdr: map[string]string{"Origin": "http://192.168.1.1", "X-CSRF-Token": "nope"}}, 403, "csrf"},
		{"POST from another origin", req{method: "POST", path: "/v1/messages", body: "{}", cookie: cookie, hdr: map[string]string{"Origin": "http://evil.example", "X-CSRF-Token": csrf}}, 403, "csrf"},
		{"POST with null origin", req{method: "POST", path: "/v1/messages", body: "{}", cookie: cookie, hdr: map[string]string{"Origin": "null", "X-CSRF-Token": csrf}}, 403, "csrf"},
		{"POST without origin or referer", req{method: "POST", path: "/v1/messages", body: "{}", cookie: cookie, hdr: map[string]string{"X-CSRF-Token": csrf}}, 403, "csrf"},
		{"POST with foreign referer", req{method: "POST", path: "/v1/messages", body: "{}", cookie: cookie, hdr: map[string]string{"Referer": "http://evil.example/x", "X-CSRF-Token": csrf}}, 403, "csrf"},
		{"cross-site fetch metadata", req{method: "GET", path: "/v1/inbox", cookie: cookie, hdr: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403, "cross_site"},
		{"same-site fetch metadata", req{method: "POST", path: "/v1/messages", body: "{}", cookie: cookie, hdr: map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://192.168.1.1", "X-CSRF-Token": csrf}}, 403, "cross_site"},
		{"POST same origin with token", req{method: "POST", path: "/v1/messages", body: "{}", cookie: cookie, hdr: map[string]string{"Origin": "http://192.168.1.1", "X-CSRF-Token": csrf}}, 200, ""},
		{"POST same-origin referer with token", req{method: "POST", path: "/v1/messages", body: "{}", cookie: cookie, hdr: map[string]string{"Referer": "http://192.168.1.1/#/chats", "X-CSRF-Token": csrf}}, 200, ""},
		{"DELETE with token", req{method: "DELETE", path: "/v1/contacts/x", cookie: cookie, hdr: map[string]string{"Origin": "http://192.168.1.1", "X-CSRF-Token": csrf}}, 200, ""},
		{"PUT without token", req{method: "PUT", path: "/v1/fapp/profile", cookie: cookie, hdr: map[string]string{"Origin": "http://192.168.1.1"}}, 403, "csrf"},
		{"login from another origin", req{method: "POST", path: "/web/login", body: `{"password":"correct horse"}`, hdr: map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}}, 403, "csrf"},
		{"login as form post", req{method: "POST", path: "/web/login", body: `password=x`, hdr: map[string]string{"Origin": "http://192.168.1.1", "Content-Type": "application/x-www-form-urlencoded"}}, 400, "bad_request"},
		{"login GET", req{method: "GET", path: "/web/login"}, 405, "method_not_allowed"},
		{"rebinding host", req{method: "GET", path: "/", hdr: map[string]string{"Host": "evil.example"}}, 421, ""},
		{"qr without session", req{method: "POST", path: "/web/qr", body: `{"text":"x"}`, hdr: sameOriginJSON}, 401, "unauthorized"},
		{"unknown web endpoint", req{method: "GET", path: "/web/nope", cookie: cookie}, 404, "not_found"},
		{"index", req{method: "GET", path: "/"}, 200, ""},
		{"asset", req{method: "GET", path: "/app.js"}, 200, ""},
		{"index by name", req{method: "GET", path: "/index.html"}, 404, ""},
		{"unknown asset", req{method: "GET", path: "/nope.js"}, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hr := tc.r
			if h := hr.hdr["Host"]; h != "" {
				delete(hr.hdr, "Host")
			}
			w := do(s, hr)
			if tc.name == "rebinding host" {
				r := httptest.NewRequest("GET", "http://evil.example/", nil)
				w = httptest.NewRecorder()
				s.ServeHTTP(w, r)
			}
			if w.Code != tc.code {
				t.Fatalf("%s %s: %d, want %d: %s", tc.r.method, tc.r.path, w.Code, tc.code, w.Body)
			}
			if tc.reason != "" && !strings.Contains(w.Body.String(), `"code":"`+tc.reason+`"`) {
				t.Fatalf("body %s lacks code %s", w.Body, tc.reason)
			}
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options"} {
				if w.Header().Get(h) == "" {
					t.Errorf("no %s header", h)
				}
			}
		})
	}
	// The QR endpoint draws SVG.
	w = do(s, req{method: "POST", path: "/web/qr", body: `{"text":"MESHD:JOIN:ABC"}`, cookie: cookie, hdr: map[string]string{"Origin": "http://192.168.1.1", "X-CSRF-Token": csrf, "Content-Type": "application/json"}})
	if w.Code != 200 || w.Header().Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(w.Body.String(), "<svg") {
		t.Fatalf("qr: %d %s", w.Code, w.Body)
	}
	// Logout ends the session.
	w = do(s, req{method: "POST", path: "/web/logout", cookie: cookie, hdr: map[string]string{"Origin": "http://192.168.1.1", "X-CSRF-Token": csrf}})
	if w.Code != http.StatusNoContent {
		t.Fatalf("logout: %d", w.Code)
	}
	if w := do(s, req{method: "GET", path: "/v1/status", cookie: cookie}); w.Code != 401 {
		t.Fatalf("after logout: %d", w.Code)
	}
}

func TestGzipAndETag(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	plain := do(s, req{method: "GET", path: "/app.js"})
	if plain.Header().Get("Content-Encoding") != "" || !strings.Contains(plain.Body.String(), "use strict") {
		t.Fatalf("uncompressed asset: %v %.40q", plain.Header(), plain.Body.String())
	}
	w := do(s, req{method: "GET", path: "/app.js", hdr: map[string]string{"Accept-Encoding": "gzip, br"}})
	if w.Header().Get("Content-Encoding") != "gzip" || w.Header().Get("ETag") == "" {
		t.Fatalf("headers %v", w.Header())
	}
	w2 := do(s, req{method: "GET", path: "/app.js", hdr: map[string]string{"If-None-Match": w.Header().Get("ETag")}})
	if w2.Code != http.StatusNotModified {
		t.Fatalf("revalidation: %d", w2.Code)
	}
}

func TestSessionExpiryAndPasswordChange(t *testing.T) {
	s, clk, pw := newTestServer(t, Options{IdleTimeout: time.Hour, MaxAge: 3 * time.Hour})
	cookie, _, _ := login(t, s, "correct horse")
	ok := func() int { return do(s, req{method: "GET", path: "/v1/status", cookie: cookie}).Code }
	clk.add(50 * time.Minute)
	if ok() != 200 {
		t.Fatal("session ended before its idle timeout")
	}
	clk.add(61 * time.Minute)
	if ok() != 401 {
		t.Fatal("idle session still valid")
	}
	// Absolute lifetime, even when used all the time.
	cookie, _, _ = login(t, s, "correct horse")
	for i := 0; i < 4; i++ {
		clk.add(50 * time.Minute)
		_ = ok()
	}
	if ok() != 401 {
		t.Fatal("session outlived MaxAge")
	}
	// A new password ends every session, including its event streams.
	cookie, csrf, _ := login(t, s, "correct horse")
	_ = csrf
	ended := make(chan struct{})
	go func() {
		s.withSession(httptest.NewRecorder(), withCookie(cookie), func(w http.ResponseWriter, r *http.Request, _ *session) {
			<-r.Context().Done()
			close(ended)
		})
	}()
	time.Sleep(20 * time.Millisecond)
	if err := SetPassword(pw, []byte("battery staple"), testParams); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Second) // past the re-read interval
	if ok() != 401 {
		t.Fatal("session survived a password change")
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the open stream did not end with its session")
	}
	if _, _, code := login(t, s, "correct horse"); code != 401 {
		t.Fatalf("old password: %d", code)
	}
	if _, _, code := login(t, s, "battery staple"); code != 200 {
		t.Fatalf("new password: %d", code)
	}
	// No password file: logins are refused, and the page learns why.
	if err := RemovePassword(pw); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Second)
	if _, _, code := login(t, s, "battery staple"); code != http.StatusServiceUnavailable {
		t.Fatalf("login without a password file: %d", code)
	}
	if w := do(s, req{method: "GET", path: "/web/session"}); !strings.Contains(w.Body.String(), "no_password") {
		t.Fatalf("session without a password file: %s", w.Body)
	}
}

func withCookie(c string) *http.Request {
	r := httptest.NewRequest("GET", "http://192.168.1.1/v1/events", nil)
	r.Header.Set("Cookie", c)
	return r
}

func TestLoginRateLimit(t *testing.T) {
	s, clk, _ := newTestServer(t, Options{Limits: LimitOptions{ClientBurst: 3, ClientEvery: time.Minute, GlobalBurst: 5, GlobalEvery: 10 * time.Second}})
	codes := []int{}
	for i := 0; i < 5; i++ {
		_, _, c := login(t, s, "wrong password")
		codes = append(codes, c)
	}
	if want := []int{401, 401, 401, 429, 429}; !equalInts(codes, want) {
		t.Fatalf("codes %v, want %v", codes, want)
	}
	// Even the right password waits.
	if _, _, c := login(t, s, "correct horse"); c != 429 {
		t.Fatalf("right password while limited: %d", c)
	}
	w := do(s, req{method: "POST", path: "/web/login", body: `{"password":"x"}`, hdr: sameOriginJSON})
	if w.Header().Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	clk.add(time.Minute)
	if _, _, c := login(t, s, "correct horse"); c != 200 {
		t.Fatalf("after a minute: %d", c)
	}
	// The global limit: other clients together.
	l := newLimiter(LimitOptions{ClientBurst: 5, ClientEvery: time.Minute, GlobalBurst: 4, GlobalEvery: time.Minute})
	now := clk.now()
	allowed := 0
	for i := 0; i < 10; i++ {
		if ok, _ := l.allow(clientKey("10.0.0."+string(rune('1'+i))+":1"), now); ok {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("global limit let %d through, want 4", allowed)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{"192.168.1.5:333": "192.168.1.5", "[2001:db8::1]:80": "2001:db8::/64", "[2001:db8::2]:80": "2001:db8::/64", "junk": "junk"} {
		if got := clientKey(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestHosts(t *testing.T) {
	s := &Server{o: Options{Hosts: []string{"mesh.example.org"}}}
	for host, want := range map[string]bool{"192.168.1.1": true, "192.168.1.1:8080": true, "[fe80::1]:80": true, "localhost:8080": true,
		"openwrt": true, "router.lan": true, "meshd.local": true, "x.home.arpa": true, "mesh.example.org": true, "MESH.example.org.": true,
		"evil.example": false, "192.168.1.1.evil.example": false, "": false} {
		if got := s.hostAllowed(host); got != want {
			t.Errorf("%q: %v, want %v", host, got, want)
		}
	}
}

func TestTLSCookie(t *testing.T) {
	s, _, _ := newTestServer(t, Options{TLS: true})
	r := httptest.NewRequest("POST", "https://192.168.1.1/web/login", strings.NewReader(`{"password":"correct horse"}`))
	r.Header.Set("Origin", "https://192.168.1.1")
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	set := w.Header().Get("Set-Cookie")
	if w.Code != 200 || !strings.HasPrefix(set, "__Host-meshd_session=") || !strings.Contains(set, "Secure") {
		t.Fatalf("%d %q", w.Code, set)
	}
	// http:// origin refused when served over TLS.
	r.Header.Set("Origin", "http://192.168.1.1")
	w = httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != 403 {
		t.Fatalf("plain origin to TLS server: %d", w.Code)
	}
}

func TestPasswordFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), PasswordFile)
	if err := SetPassword(path, []byte("short"), testParams); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("short password: %v", err)
	}
	if err := SetPassword(path, []byte("long enough"), testParams); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	h, err := loadHash(path)
	if err != nil || !h.verify([]byte("long enough")) || h.verify([]byte("long enougH")) {
		t.Fatalf("verify: %v", err)
	}
	if !strings.HasPrefix(h.String(), "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("format %s", h)
	}
	if _, err := loadHash(filepath.Join(t.TempDir(), "none")); !errors.Is(err, ErrNoPassword) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestParseHashRejects(t *testing.T) {
	good := "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	if _, err := parseHash([]byte(good)); err != nil {
		t.Fatalf("good: %v", err)
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, "m=19456", "m=99999999", 1), strings.Replace(good, "t=2", "t=0", 1), strings.Replace(good, "p=1", "p=200", 1),
		strings.Replace(good, "m=19456,", "", 1), strings.Replace(good, "p=1", "p=1,x=2", 1), strings.Replace(good, "$c2Fsd", "$!!", 1), good + "$more"} {
		if _, err := parseHash([]byte(bad)); !errors.Is(err, ErrBadPasswordFile) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add([]byte("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"))
	f.Add([]byte("$argon2id$v=19$m=1,t=1,p=1$$"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHash(b)
		if err != nil {
			return
		}
		if h.p.MemoryKiB > maxMemoryKiB || h.p.Time > maxTime || h.p.Threads > maxThreads || len(h.hash) > 64 {
			t.Fatalf("out of bounds: %+v", h.p)
		}
		if _, err := parseHash([]byte(h.String())); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// TestAssetBudget keeps the UI small: everything it needs, uncompressed,
// within MaxAssetBytes.
func TestAssetBudget(t *testing.T) {
	raw, gz, err := AssetBytes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("web UI assets: %d bytes, %d gzipped", raw, gz)
	if raw > MaxAssetBytes {
		t.Fatalf("web UI assets are %d bytes, over the %d budget", raw, MaxAssetBytes)
	}
	// Nothing fetched from elsewhere: no absolute URLs in the assets
	// except XML namespaces.
	as, _ := loadAssets()
	for name, a := range as {
		raw, _ := gunzip(a.gz)
		s := strings.ReplaceAll(string(raw), "http://www.w3.org/2000/svg", "")
		if strings.Contains(s, "http://") || strings.Contains(s, "https://") || strings.Contains(s, "//cdn") {
			t.Errorf("%s refers to another site", name)
		}
	}
}

func TestWatchEndsSessions(t *testing.T) {
	s, _, _ := newTestServer(t, Options{})
	cookie, _, _ := login(t, s, "correct horse")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Watch(ctx); close(done) }()
	cancel()
	<-done
	if w := do(s, req{method: "GET", path: "/v1/status", cookie: cookie}); w.Code != 401 || s.Sessions() != 0 {
		t.Fatalf("after Watch ended: %d, %d sessions", w.Code, s.Sessions())
	}
}

var update = flag.Bool("update", false, "rewrite the embedded .gz assets from their sources")

// TestAssetsCompressed keeps each embedded assets/NAME.gz equal to its
// source assets/NAME (the file people edit).
func TestAssetsCompressed(t *testing.T) {
	ents, err := os.ReadDir("assets")
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".gz") {
			continue
		}
		sources[name] = true
		src, err := os.ReadFile(filepath.Join("assets", name))
		if err != nil {
			t.Fatal(err)
		}
		gzPath := filepath.Join("assets", name+".gz")
		if *update {
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			_, _ = zw.Write(src)
			_ = zw.Close()
			if err := os.WriteFile(gzPath, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		gz, err := os.ReadFile(gzPath)
		if err != nil {
			t.Fatalf("%s has no .gz twin: run go test ./node/web -run AssetsCompressed -update", name)
		}
		raw, err := gunzip(gz)
		if err != nil || !bytes.Equal(raw, src) {
			t.Fatalf("%s.gz is stale: run go test ./node/web -run AssetsCompressed -update", name)
		}
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".gz") && !sources[strings.TrimSuffix(n, ".gz")] {
			t.Errorf("%s has no source file", n)
		}
	}
}
