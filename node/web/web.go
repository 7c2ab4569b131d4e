// Package web serves meshd's web UI: embedded static assets (plain HTML,
// CSS and JavaScript), a password login with sessions, and the node's own
// API behind the session check. docs/webui.md describes the design.
//
// The node is single-user: whoever logs in acts as the node's one identity,
// with the whole API, exactly as the unix socket's owner does.
package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	http "github.com/openmeshd/meshd/node/httpd"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openmeshd/meshd/node/web/qr"
)

// Options configure a Server.
type Options struct {
	// API is the node's API handler, without authentication of its own;
	// the server exposes it under /v1/ and /metrics to logged-in sessions.
	API http.Handler
	// PasswordFile holds the argon2id hash (see PasswordFile). A missing
	// file refuses every login.
	PasswordFile string
	// TLS says the server is reached over HTTPS: cookies get Secure and the
	// __Host- prefix, and the expected origin is https://.
	TLS bool
	// Hosts are host names (besides IP literals, localhost, single-label
	// names and names under .lan, .local, .home.arpa and .internal) the UI
	// answers to; other Host headers are refused (DNS rebinding). Config
	// key web.hosts. Empty: just the defaults.
	Hosts []string
	// IdleTimeout ends a session unused this long. Zero: 7 days.
	IdleTimeout time.Duration
	// MaxAge ends a session this long after login. Zero: 30 days.
	MaxAge time.Duration
	// MaxSessions bounds open sessions (the least recently used goes).
	// Zero: 64.
	MaxSessions int
	// Limits are the login rate limits (zero fields: defaults).
	Limits LimitOptions
	// Logger receives the server's logs. Nil: discarded.
	Logger *slog.Logger
	// Now is the time source. Nil: time.Now.
	Now func() time.Time
}

// Server is the web UI's HTTP handler.
type Server struct {
	o        Options
	log      *slog.Logger
	now      func() time.Time
	assets   map[string]*asset
	sessions *sessions
	limit    *limiter
	hashSem  chan struct{} // one argon2id computation at a time

	mu       sync.Mutex
	pwRaw    string // password file content last read
	pwExists bool
	pw       *passwordHash
	pwErr    error
	gen      uint64 // bumped whenever the password file changes
	pwCheck  time.Time

	failMu    sync.Mutex
	failCount int
	failLast  time.Time
}

// New builds the server and reads the password file once (a missing one is
// logged: logins are refused until `meshd web passwd` writes it).
func New(o Options) (*Server, error) {
	if o.API == nil {
		return nil, errors.New("web: Options.API is required")
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 7 * 24 * time.Hour
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 30 * 24 * time.Hour
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 64
	}
	s := &Server{o: o, log: o.Logger, now: o.Now, sessions: newSessions(o.MaxSessions), limit: newLimiter(o.Limits), hashSem: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if s.assets, err = loadAssets(); err != nil {
		return nil, err
	}
	if _, _, pwErr := s.refreshPassword(true); pwErr != nil {
		s.log.Warn("web UI: logins are refused until a password is set", "err", pwErr, "file", o.PasswordFile)
	}
	return s, nil
}

// refreshPassword re-reads the password file (at most once a second unless
// forced); when it changed, the generation moves on, which ends every
// session opened before (get refuses them, Watch drops them and their
// streams).
func (s *Server) refreshPassword(force bool) (*passwordHash, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !force && now.Sub(s.pwCheck) < time.Second && now.Sub(s.pwCheck) >= 0 {
		return s.pw, s.gen, s.pwErr
	}
	s.pwCheck = now
	raw, err := readSmall(s.o.PasswordFile)
	exists := err == nil
	if errors.Is(err, os.ErrNotExist) {
		err = ErrNoPassword
	}
	if s.gen != 0 && raw == s.pwRaw && exists == s.pwExists {
		return s.pw, s.gen, s.pwErr
	}
	s.gen++
	s.pwRaw, s.pwExists, s.pw, s.pwErr = raw, exists, nil, err
	if exists {
		s.pw, s.pwErr = parseHash([]byte(raw))
	}
	if s.gen > 1 {
		s.log.Info("web UI: password file changed; all sessions ended")
	}
	return s.pw, s.gen, s.pwErr
}

func readSmall(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	return string(b), err
}

// Watch expires idle sessions, ends them all when the password file
// changes, and forgets old rate-limit entries, until ctx is done.
func (s *Server) Watch(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.sessions.expire(s.now(), 0, 0, 0) // gen 0 matches none: end all
			return
		case <-t.C:
			_, gen, _ := s.refreshPassword(true)
			now := s.now()
			s.sessions.expire(now, gen, s.o.IdleTimeout, s.o.MaxAge)
			s.limit.prune(now)
			s.flushFailures(now, false)
		}
	}
}

// Sessions is the number of open sessions.
func (s *Server) Sessions() int { return s.sessions.count() }

func (s *Server) cookieName() string {
	if s.o.TLS {
		return "__Host-meshd_session"
	}
	return "meshd_session"
}

func (s *Server) origin(r *http.Request) string {
	if s.o.TLS {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// ServeHTTP routes: static assets, /web/ (login, session, logout, QR), and
// the API behind the session.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !s.hostAllowed(r.Host) {
		http.Error(w, "meshd: this host name is not one the web UI answers to; add it to web.hosts in meshd.conf", http.StatusMisdirectedRequest)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/web/login":
		s.handleLogin(w, r)
	case p == "/web/session":
		s.handleSession(w, r)
	case p == "/web/logout":
		s.withSession(w, r, s.handleLogout)
	case p == "/web/qr":
		s.withSession(w, r, s.handleQR)
	case strings.HasPrefix(p, "/v1/") || p == "/metrics":
		s.withSession(w, r, func(w http.ResponseWriter, r *http.Request, _ *session) { s.o.API.ServeHTTP(w, r) })
	case strings.HasPrefix(p, "/web/"):
		writeError(w, http.StatusNotFound, "not_found", "no such web endpoint")
	default:
		s.serveAsset(w, r)
	}
}

// hostAllowed guards against DNS rebinding: a page on an attacker's domain
// that resolves to the router must not reach the UI.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" || !strings.Contains(host, ".") {
		return true
	}
	for _, suf := range []string{".lan", ".local", ".home.arpa", ".internal", ".localhost"} {
		if strings.HasSuffix(host, suf) {
			return true
		}
	}
	for _, h := range s.o.Hosts {
		if strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}

// sameOrigin checks that a state-changing request comes from the UI's own
// pages: Origin (or, without it, Referer) must be this origin, and the
// browser's Sec-Fetch-Site, when sent, must say same-origin.
func (s *Server) sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("cross-site request (Sec-Fetch-Site: %s)", site)
	}
	want := s.origin(r)
	if o := r.Header.Get("Origin"); o != "" {
		if o != want {
			return fmt.Errorf("cross-origin request from %q", o)
		}
		return nil
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return errors.New("request without Origin or Referer")
	}
	u, err := url.Parse(ref)
	if err != nil || u.Scheme+"://"+u.Host != want {
		return errors.New("request with a foreign Referer")
	}
	return nil
}

func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// withSession runs h for a request with a valid session cookie; unsafe
// methods must also pass the origin check and carry the session's CSRF
// token in X-CSRF-Token. The request's context ends with the session.
func (s *Server) withSession(w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request, *session)) {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		writeError(w, http.StatusForbidden, "cross_site", "cross-site requests are refused")
		return
	}
	_, gen, _ := s.refreshPassword(false)
	var token string
	if c, err := r.Cookie(s.cookieName()); err == nil {
		token = c.Value
	}
	ss := s.sessions.get(token, s.now(), gen, s.o.IdleTimeout, s.o.MaxAge)
	if ss == nil {
		writeError(w, http.StatusUnauthorized, "unauthorized", "log in first")
		return
	}
	if unsafeMethod(r.Method) {
		if err := s.sameOrigin(r); err != nil {
			writeError(w, http.StatusForbidden, "csrf", err.Error())
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(ss.csrf)) != 1 {
			writeError(w, http.StatusForbidden, "csrf", "missing or wrong X-CSRF-Token")
			return
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(ss.ctx, cancel)
	defer stop()
	h(w, r.WithContext(ctx), ss)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the API's error format.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

type sessionView struct {
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

func (s *Server) view(ss *session) sessionView {
	return sessionView{CSRF: ss.csrf, Expires: ss.created.Add(s.o.MaxAge).UTC()}
}

// handleLogin: POST {password} → a new session cookie and its CSRF token.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST only")
		return
	}
	if err := s.sameOrigin(r); err != nil {
		writeError(w, http.StatusForbidden, "csrf", err.Error())
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeError(w, http.StatusBadRequest, "bad_request", "Content-Type must be application/json")
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "malformed login request")
		return
	}
	client := clientKey(r.RemoteAddr)
	if ok, wait := s.limit.allow(client, s.now()); !ok {
		secs := int(wait.Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("too many login attempts; try again in %d s", secs))
		s.failure()
		return
	}
	pw, gen, err := s.refreshPassword(true)
	if err != nil {
		code := "no_password"
		if !errors.Is(err, ErrNoPassword) {
			code = "internal"
			s.log.Error("web UI: password file", "err", err)
		}
		writeError(w, http.StatusServiceUnavailable, code, err.Error())
		return
	}
	if len(req.Password) > MaxPassword || !s.verify(r.Context(), pw, []byte(req.Password)) {
		s.failure()
		writeError(w, http.StatusUnauthorized, "wrong_password", "wrong password")
		return
	}
	s.limit.reset(client)
	if c, err := r.Cookie(s.cookieName()); err == nil {
		if old := s.sessions.get(c.Value, s.now(), gen, s.o.IdleTimeout, s.o.MaxAge); old != nil {
			s.sessions.drop(old)
		}
	}
	token, ss := s.sessions.create(s.now(), gen)
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: token, Path: "/", MaxAge: int(s.o.MaxAge.Seconds()),
		HttpOnly: true, Secure: s.o.TLS, SameSite: http.SameSiteStrictMode})
	s.log.Info("web UI: login", "client", client)
	writeJSON(w, http.StatusOK, s.view(ss))
}

// verify runs argon2id, one computation at a time (each takes its memory
// cost), giving up when the client goes away.
func (s *Server) verify(ctx context.Context, pw *passwordHash, password []byte) bool {
	select {
	case s.hashSem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-s.hashSem }()
	return pw.verify(password)
}

// failure counts a refused login; failures are logged at most once every
// ten seconds.
func (s *Server) failure() {
	s.failMu.Lock()
	s.failCount++
	s.failMu.Unlock()
	s.flushFailures(s.now(), false)
}

func (s *Server) flushFailures(now time.Time, force bool) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.failCount == 0 || (!force && now.Sub(s.failLast) < 10*time.Second) {
		return
	}
	s.log.Warn("web UI: refused logins (wrong password or rate-limited)", "count", s.failCount)
	s.failCount, s.failLast = 0, now
}

// handleSession: GET → the session's CSRF token, or 401 (code
// no_password when no password is set, so the page can say so).
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "GET only")
		return
	}
	if _, _, err := s.refreshPassword(false); errors.Is(err, ErrNoPassword) {
		writeError(w, http.StatusUnauthorized, "no_password", err.Error())
		return
	}
	s.withSession(w, r, func(w http.ResponseWriter, r *http.Request, ss *session) { writeJSON(w, http.StatusOK, s.view(ss)) })
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, ss *session) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST only")
		return
	}
	s.sessions.drop(ss)
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.o.TLS, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// handleQR: POST {text} → the text as a QR code (SVG, level M). POST keeps
// invite codes out of URLs.
func (s *Server) handleQR(w http.ResponseWriter, r *http.Request, _ *session) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST only")
		return
	}
	var req struct {
		Text string `json:"text"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8192))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Text == "" || len(req.Text) > 2048 {
		writeError(w, http.StatusBadRequest, "bad_request", "want {\"text\": \"...\"} of 1 to 2048 bytes")
		return
	}
	c, err := qr.Encode(req.Text, qr.M)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, c.SVG())
}
