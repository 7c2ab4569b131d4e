package httpd

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// recorder is a ResponseWriter for tests.
type recorder struct {
	header Header
	status int
	body   strings.Builder
}

func newRecorder() *recorder { return &recorder{header: Header{}} }

func (r *recorder) Header() Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(StatusOK)
	return r.body.Write(p)
}
func (r *recorder) Flush() {}

// meshdPatterns are the API's patterns (node/api.go, channels.go,
// fapp.go, views.go) with its catch-all.
var meshdPatterns = []string{
	"GET /v1/id", "GET /v1/status", "GET /v1/links", "GET /v1/peers", "GET /v1/routes",
	"GET /v1/contacts", "POST /v1/contacts", "GET /v1/contacts/{name}", "POST /v1/contacts/{name}/verify",
	"DELETE /v1/contacts/{name}", "POST /v1/messages", "GET /v1/outbox", "GET /v1/outbox/{id}", "GET /v1/inbox",
	"POST /v1/inbox/{seq}/read", "GET /v1/events", "GET /metrics",
	"GET /v1/radio", "GET /v1/conversations", "GET /v1/conversations/{peer}",
	"GET /v1/channels", "POST /v1/channels", "POST /v1/channels/join", "GET /v1/channels/{ch}",
	"DELETE /v1/channels/{ch}", "GET /v1/channels/{ch}/members", "POST /v1/channels/{ch}/members/remove",
	"POST /v1/channels/{ch}/members/role", "GET /v1/channels/{ch}/requests", "POST /v1/channels/{ch}/requests/admit",
	"POST /v1/channels/{ch}/requests/reject", "POST /v1/channels/{ch}/invites", "POST /v1/channels/{ch}/messages",
	"GET /v1/channels/{ch}/messages", "POST /v1/channels/{ch}/catchup",
	"GET /v1/fapp/profile", "PUT /v1/fapp/profile", "GET /v1/fapp/slots", "POST /v1/fapp/slots",
	"DELETE /v1/fapp/slots/{id}", "POST /v1/fapp/publish", "GET /v1/fapp/requests",
	"POST /v1/fapp/requests/{id}/confirm", "POST /v1/fapp/requests/{id}/decline", "POST /v1/fapp/search",
	"GET /v1/fapp/searches/{id}", "POST /v1/fapp/reservations", "GET /v1/fapp/reservations",
	"GET /v1/fapp/reservations/{id}", "GET /v1/fapp/stats", "GET /v1/fapp/anchors", "POST /v1/fapp/endorse",
	"/",
}

// genericPatterns exercise the rest of the syntax.
var genericPatterns = []string{
	"/static/", "GET /static/{file}", "GET /files/{path...}", "POST /files/{path...}", "/{$}",
	"GET /a/{x}/c", "GET /a/b/c", "/dir/", "GET /exact/{$}", "HEAD /h", "GET /h/{x}",
	"GET /esc/a%2Fb", "GET /uni/{ü}", "PUT /only-put", "/any/{v}", "GET /any/{v}/x",
}

var muxRequests = []struct{ method, target string }{
	{"GET", "/"}, {"POST", "/"}, {"GET", "/v1/id"}, {"HEAD", "/v1/id"}, {"POST", "/v1/id"}, {"DELETE", "/v1/id"},
	{"GET", "/v1/contacts/alice"}, {"DELETE", "/v1/contacts/alice"}, {"PUT", "/v1/contacts/alice"},
	{"POST", "/v1/contacts/al%2Fice/verify"}, {"GET", "/v1/contacts/alice/"}, {"GET", "/v1/contacts/"},
	{"GET", "/v1/channels/join"}, {"POST", "/v1/channels/join"}, {"GET", "/v1/channels/abc/messages"},
	{"POST", "/v1/channels/abc/messages"}, {"PATCH", "/v1/channels/abc/messages"}, {"GET", "/v1/fapp/profile"},
	{"PUT", "/v1/fapp/profile"}, {"GET", "/v1//id"}, {"GET", "/v1/./id"}, {"GET", "/v1/x/../id?a=b"},
	{"GET", "/nope"}, {"GET", "/metrics"}, {"OPTIONS", "/metrics"},
	{"GET", "/static"}, {"GET", "/static/"}, {"GET", "/static/x.js"}, {"POST", "/static/x.js"},
	{"GET", "/static/a/b"}, {"GET", "/files"}, {"GET", "/files/"}, {"GET", "/files/a/b%20c"}, {"POST", "/files/x"},
	{"DELETE", "/files/x"}, {"GET", "/a/b/c"}, {"GET", "/a/z/c"}, {"GET", "/a/b/z"}, {"HEAD", "/a/b/c"},
	{"GET", "/dir"}, {"GET", "/dir?x=1"}, {"GET", "/dir/"}, {"GET", "/dir/sub"}, {"GET", "/exact"}, {"GET", "/exact/"},
	{"GET", "/exact/x"}, {"HEAD", "/h"}, {"GET", "/h"}, {"GET", "/h/1"}, {"HEAD", "/h/1"}, {"GET", "/esc/a%2Fb"},
	{"GET", "/esc/a/b"}, {"GET", "/uni/%C3%BC"}, {"GET", "/only-put"}, {"PUT", "/only-put"}, {"GET", "/any/1"},
	{"DELETE", "/any/1"}, {"GET", "/any/1/x"}, {"POST", "/any/1/x"}, {"GET", "/any/1/y"}, {"GET", ""},
}

type muxOutcome struct {
	status   int
	pattern  string
	location string
	allow    string
	values   string
}

func ourOutcome(m *ServeMux, method, target string) muxOutcome {
	u, _ := url.ParseRequestURI(target)
	if target == "" {
		u = &url.URL{}
	}
	r := &Request{Method: method, URL: u, Host: "x", Header: Header{}}
	_, pat := m.Handler(r)
	w := newRecorder()
	var values []string
	m.ServeHTTP(w, r)
	if r.pat != nil {
		for _, s := range r.pat.segments {
			if s.wild && s.s != "" {
				values = append(values, s.s+"="+r.PathValue(s.s))
			}
		}
	}
	if w.status == 0 {
		w.status = 200
	}
	return muxOutcome{w.status, pat, w.header.Get("Location"), w.header.Get("Allow"), strings.Join(values, ",")}
}

func stdOutcome(m *http.ServeMux, names []string, method, target string) muxOutcome {
	u, _ := url.ParseRequestURI(target)
	if target == "" {
		u = &url.URL{}
	}
	r := &http.Request{Method: method, URL: u, Host: "x", Header: http.Header{}}
	_, pat := m.Handler(r)
	w := httptest.NewRecorder()
	m.ServeHTTP(w, r)
	var values []string
	for _, n := range names {
		if w.Code != 200 {
			break
		}
		if v := r.PathValue(n); v != "" || strings.Contains(r.Pattern, "{"+n) {
			values = append(values, n+"="+v)
		}
	}
	return muxOutcome{w.Code, pat, w.Header().Get("Location"), w.Header().Get("Allow"), strings.Join(values, ",")}
}

func wildcardNames(patterns []string) []string {
	var names []string
	for _, p := range patterns {
		pp, err := parsePattern(p)
		if err != nil {
			continue
		}
		for _, s := range pp.segments {
			if s.wild && s.s != "" && !slices.Contains(names, s.s) {
				names = append(names, s.s)
			}
		}
	}
	return names
}

func buildMuxes(patterns []string) (*ServeMux, *http.ServeMux) {
	ours, std := NewServeMux(), http.NewServeMux()
	for _, p := range patterns {
		ours.HandleFunc(p, func(w ResponseWriter, r *Request) {})
		std.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {})
	}
	return ours, std
}

// TestMuxLikeNetHTTP compares the routing decision, pattern, path values,
// redirect and Allow with net/http's ServeMux.
func TestMuxLikeNetHTTP(t *testing.T) {
	for _, set := range []struct {
		name     string
		patterns []string
	}{{"meshd", meshdPatterns}, {"generic", genericPatterns}, {"meshd without catch-all", meshdPatterns[:len(meshdPatterns)-1]}} {
		ours, std := buildMuxes(set.patterns)
		names := wildcardNames(set.patterns)
		for _, rq := range muxRequests {
			got, want := ourOutcome(ours, rq.method, rq.target), stdOutcome(std, names, rq.method, rq.target)
			// net/http escapes a cleaned path's redirect target again.
			got.location, want.location = unescapeAll(got.location), unescapeAll(want.location)
			if got != want {
				t.Errorf("%s: %s %q: got %+v, net/http %+v", set.name, rq.method, rq.target, got, want)
			}
		}
	}
}

// unescapeAll unescapes a Location's path until it no longer changes.
func unescapeAll(s string) string {
	s, q, hasQ := strings.Cut(s, "?")
	if hasQ {
		return unescapeAll(s) + "?" + q
	}
	for {
		u, err := url.PathUnescape(s)
		if err != nil || u == s {
			return s
		}
		s = u
	}
}

func TestMuxConflictsLikeNetHTTP(t *testing.T) {
	pairs := [][2]string{
		{"/a", "/a"}, {"GET /a", "/a"}, {"GET /a", "GET /a"}, {"GET /{x}", "GET /{y}"}, {"GET /{x}", "/a"},
		{"GET /a/{x}", "GET /{x}/b"}, {"/a/", "/a/{x...}"}, {"/a/", "GET /a/b"}, {"GET /a/", "/a/b"},
		{"GET /", "/index.html"}, {"/{$}", "/"}, {"/a/{$}", "/a/{x...}"}, {"GET /a/{x...}", "GET /a/b/{y...}"},
		{"HEAD /x", "GET /x"}, {"POST /x", "GET /x"}, {"/a/{x}", "/a/{x}/"}, {"/{x}/{y}", "/{y}/{x}"},
		{"GET /a/{x}/c", "GET /a/b/{y}"}, {"/a/b", "/a/b/"}, {"/{x}", "/{x}/{y...}"},
	}
	for _, p := range pairs {
		ourPanic := panics(func() {
			m := NewServeMux()
			m.HandleFunc(p[0], func(ResponseWriter, *Request) {})
			m.HandleFunc(p[1], func(ResponseWriter, *Request) {})
		})
		stdPanic := panics(func() {
			m := http.NewServeMux()
			m.HandleFunc(p[0], func(http.ResponseWriter, *http.Request) {})
			m.HandleFunc(p[1], func(http.ResponseWriter, *http.Request) {})
		})
		if ourPanic != stdPanic {
			t.Errorf("%q then %q: conflict %v, net/http %v", p[0], p[1], ourPanic, stdPanic)
		}
	}
}

func panics(f func()) (p bool) {
	defer func() { p = recover() != nil }()
	f()
	return false
}

func TestMuxInvalidPatterns(t *testing.T) {
	for _, p := range []string{"", "x", "GET", "GET x", "/{", "/{}", "/{x", "/a{x}", "/{x}b", "/{1x}", "/{x}/{x}",
		"/{x...}/y", "/{$}/y", "/{...}", "GE(T /", "GET /a/../b", "GET /a//b", "example.com/"} {
		if !panics(func() { NewServeMux().HandleFunc(p, func(ResponseWriter, *Request) {}) }) {
			t.Errorf("pattern %q accepted", p)
		}
	}
	if !panics(func() { NewServeMux().Handle("/", nil) }) {
		t.Error("nil handler accepted")
	}
}

// TestMeshdAllowProbe reproduces node/api.go's catch-all, which finds the
// methods a path has by probing mux.Handler with cloned requests.
func TestMeshdAllowProbe(t *testing.T) {
	mux := NewServeMux()
	for _, p := range meshdPatterns[:len(meshdPatterns)-1] {
		mux.HandleFunc(p, func(ResponseWriter, *Request) {})
	}
	mux.HandleFunc("/", func(w ResponseWriter, r *Request) {
		var allow []string
		for _, m := range []string{MethodGet, MethodPost, MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			w.WriteHeader(StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(StatusNotFound)
	})
	for _, tt := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"PUT", "/v1/contacts/bob", 405, "GET, DELETE"},
		{"DELETE", "/v1/id", 405, "GET"},
		{"GET", "/v1/nothing", 404, ""},
		{"GET", "/v1/contacts/bob", 200, ""},
	} {
		u, _ := url.Parse(tt.path)
		w := newRecorder()
		mux.ServeHTTP(w, &Request{Method: tt.method, URL: u, Header: Header{}})
		if w.status == 0 {
			w.status = 200
		}
		if w.status != tt.status || w.header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", tt.method, tt.path, w.status, w.header.Get("Allow"), tt.status, tt.allow)
		}
	}
}

func TestPathValues(t *testing.T) {
	mux := NewServeMux()
	var got string
	mux.HandleFunc("GET /c/{name}/x/{rest...}", func(w ResponseWriter, r *Request) {
		got = fmt.Sprintf("%s|%s|%s|%s", r.PathValue("name"), r.PathValue("rest"), r.PathValue("nope"), r.Pattern)
		r.SetPathValue("name", "set")
		r.SetPathValue("other", "o")
		got += "|" + r.PathValue("name") + "|" + r.PathValue("other")
	})
	u, _ := url.ParseRequestURI("/c/a%2Fb%20c/x/d/e%3F")
	mux.ServeHTTP(newRecorder(), &Request{Method: "GET", URL: u, Header: Header{}})
	if want := "a/b c|d/e?||GET /c/{name}/x/{rest...}|set|o"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
