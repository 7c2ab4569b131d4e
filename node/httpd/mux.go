package httpd

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// ServeMux routes requests by method and path with net/http's Go 1.22
// patterns, host names excepted:
//
//	"GET /v1/contacts/{name}"  GET (and HEAD) with exactly that shape
//	"POST /v1/items/{rest...}" POST, any path below /v1/items/
//	"/static/"                 every method, every path below /static/
//	"/{$}"                     exactly "/"
//	"/"                        everything (a catch-all)
//
// The most specific matching pattern wins; registering two patterns that
// match some request with neither more specific panics, as does an invalid
// pattern. Paths are matched cleaned (a request for an unclean path is
// redirected, 307, to the clean one, as is "/dir" when only "/dir/" is
// registered) and segment by segment unescaped, so "{name}" matches
// "a%2Fb" with PathValue "a/b". A path that matches patterns of other
// methods only is answered 405 with Allow; no match at all is 404.
//
// The zero value is ready to use.
type ServeMux struct {
	mu   sync.RWMutex
	root map[string]*node // by method, "" for method-less patterns
	pats []*pattern
}

// node is a routing tree node: a leaf holds a pattern.
type node struct {
	pat      *pattern
	h        Handler
	children map[string]*node // literal segments ("/" for {$})
	wild     *node            // a {name} segment
	multi    *node            // a {name...} or trailing-slash leaf
}

// NewServeMux is an empty ServeMux.
func NewServeMux() *ServeMux { return &ServeMux{} }

// Handle registers h for pattern; it panics when the pattern is invalid
// or conflicts with one already registered (a programming error).
func (m *ServeMux) Handle(pat string, h Handler) {
	if err := m.register(pat, h); err != nil {
		panic(err)
	}
}

// HandleFunc registers f for pattern, as Handle.
func (m *ServeMux) HandleFunc(pat string, f func(ResponseWriter, *Request)) {
	if f == nil {
		panic("httpd: nil handler for " + pat)
	}
	m.Handle(pat, HandlerFunc(f))
}

func (m *ServeMux) register(s string, h Handler) error {
	if h == nil {
		return fmt.Errorf("httpd: nil handler for %q", s)
	}
	p, err := parsePattern(s)
	if err != nil {
		return fmt.Errorf("httpd: pattern %q: %w", s, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, q := range m.pats {
		if p.conflicts(q) {
			return fmt.Errorf("httpd: pattern %q conflicts with %q: both match some requests and neither is more specific", s, q.str)
		}
	}
	if m.root == nil {
		m.root = map[string]*node{}
	}
	n := m.root[p.method]
	if n == nil {
		n = &node{}
		m.root[p.method] = n
	}
	for _, seg := range p.segments {
		switch {
		case seg.multi:
			n.multi = &node{}
			n = n.multi
		case seg.wild:
			if n.wild == nil {
				n.wild = &node{}
			}
			n = n.wild
		default:
			c := n.children[seg.s]
			if c == nil {
				if n.children == nil {
					n.children = map[string]*node{}
				}
				c = &node{}
				n.children[seg.s] = c
			}
			n = c
		}
	}
	n.pat, n.h = p, h
	m.pats = append(m.pats, p)
	return nil
}

// ServeHTTP dispatches r to the handler of the most specific matching
// pattern, setting r.Pattern and the path values.
func (m *ServeMux) ServeHTTP(w ResponseWriter, r *Request) {
	h, pat, p, matches := m.find(r)
	r.Pattern = pat
	if p != nil {
		r.pat, r.matches = p, matches
	}
	h.ServeHTTP(w, r)
}

// Handler is the handler ServeHTTP would call for r and its pattern:
// for a redirect the pattern that matches after it, for 404 and 405 "".
// It does not change r (PathValue stays empty).
func (m *ServeMux) Handler(r *Request) (h Handler, pattern string) {
	h, pattern, _, _ = m.find(r)
	return h, pattern
}

func (m *ServeMux) find(r *Request) (Handler, string, *pattern, []string) {
	escaped := "/"
	rawQuery := ""
	if r.URL != nil {
		escaped, rawQuery = r.URL.EscapedPath(), r.URL.RawQuery
	}
	clean := cleanPath(escaped)
	m.mu.RLock()
	defer m.mu.RUnlock()
	n, matches := m.match(r.Method, clean)
	if !exactMatch(n, clean) && !strings.HasSuffix(clean, "/") {
		// "/dir" when "/dir/" is registered: redirect there.
		if n2, _ := m.match(r.Method, clean+"/"); exactMatch(n2, clean+"/") {
			return redirectHandler(withQuery(clean+"/", rawQuery)), n2.pat.str, nil, nil
		}
	}
	if clean != escaped {
		pat := ""
		if n != nil {
			pat = n.pat.str
		}
		return redirectHandler(withQuery(clean, rawQuery)), pat, nil, nil
	}
	if n == nil {
		if allow := m.allowed(clean); len(allow) > 0 {
			return methodNotAllowed(strings.Join(allow, ", ")), "", nil, nil
		}
		return NotFoundHandler(), "", nil, nil
	}
	return n.h, n.pat.str, n.pat, matches
}

func withQuery(p, q string) string {
	if q == "" {
		return p
	}
	return p + "?" + q
}

// match finds the most specific pattern for method and a clean escaped
// path: the method's own patterns first, GET's for HEAD, then the
// method-less ones; within them literals before {name} before {name...}.
// Registration rejected every pair where that order could differ from
// specificity.
func (m *ServeMux) match(method, path string) (*node, []string) {
	if n, ms := m.root[method].matchPath(path, nil); n != nil {
		return n, ms
	}
	if method == "HEAD" {
		if n, ms := m.root["GET"].matchPath(path, nil); n != nil {
			return n, ms
		}
	}
	if method != "" {
		return m.root[""].matchPath(path, nil)
	}
	return nil, nil
}

func (n *node) matchPath(path string, matches []string) (*node, []string) {
	if n == nil {
		return nil, nil
	}
	if path == "" {
		if n.pat == nil {
			return nil, nil
		}
		return n, matches
	}
	seg, rest := firstSegment(path)
	if c, ms := n.children[seg].matchPath(rest, matches); c != nil {
		return c, ms
	}
	if seg != "/" {
		if c, ms := n.wild.matchPath(rest, append(matches, seg)); c != nil {
			return c, ms
		}
	}
	if c := n.multi; c != nil {
		if c.pat.last().s != "" {
			matches = append(matches, pathUnescape(path[1:]))
		}
		return c, matches
	}
	return nil, nil
}

// firstSegment splits "/a/b" into the unescaped "a" and "/b"; "/" is the
// trailing-slash segment "/".
func firstSegment(path string) (seg, rest string) {
	if path == "/" {
		return "/", ""
	}
	path = path[1:]
	i := strings.IndexByte(path, '/')
	if i < 0 {
		i = len(path)
	}
	return pathUnescape(path[:i]), path[i:]
}

// exactMatch: the node's pattern matches path without a multi wildcard
// taking a non-empty rest (net/http's definition).
func exactMatch(n *node, path string) bool {
	if n == nil {
		return false
	}
	if !n.pat.last().multi {
		return true
	}
	if len(path) > 0 && path[len(path)-1] != '/' {
		return false
	}
	return len(n.pat.segments) == strings.Count(path, "/")
}

// allowed lists the methods whose patterns match path (or path+"/"),
// sorted, HEAD with GET.
func (m *ServeMux) allowed(path string) []string {
	var out []string
	for method, n := range m.root {
		if method == "" {
			continue
		}
		if c, _ := n.matchPath(path, nil); c != nil {
			out = append(out, method)
		} else if !strings.HasSuffix(path, "/") {
			if c, _ := n.matchPath(path+"/", nil); c != nil {
				out = append(out, method)
			}
		}
	}
	if slices.Contains(out, "GET") && !slices.Contains(out, "HEAD") {
		out = append(out, "HEAD")
	}
	slices.Sort(out)
	return out
}

func methodNotAllowed(allow string) Handler {
	return HandlerFunc(func(w ResponseWriter, r *Request) {
		w.Header().Set("Allow", allow)
		Error(w, StatusText(StatusMethodNotAllowed), StatusMethodNotAllowed)
	})
}

func redirectHandler(location string) Handler {
	return HandlerFunc(func(w ResponseWriter, r *Request) {
		w.Header().Set("Location", location)
		Error(w, StatusText(StatusTemporaryRedirect), StatusTemporaryRedirect)
	})
}

// Handler responds to a request.
type Handler interface {
	ServeHTTP(ResponseWriter, *Request)
}

// HandlerFunc is a function as a Handler.
type HandlerFunc func(ResponseWriter, *Request)

// ServeHTTP calls f(w, r).
func (f HandlerFunc) ServeHTTP(w ResponseWriter, r *Request) { f(w, r) }

// Error answers with code and msg as plain text.
func Error(w ResponseWriter, msg string, code int) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg + "\n"))
}

// NotFound answers 404.
func NotFound(w ResponseWriter, r *Request) { Error(w, "404 page not found", StatusNotFound) }

// NotFoundHandler answers every request 404.
func NotFoundHandler() Handler { return HandlerFunc(NotFound) }
