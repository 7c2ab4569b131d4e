package httpd

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"unicode"
)

// pattern is a parsed ServeMux pattern "[METHOD ]/path" (net/http's
// Go 1.22 syntax without host names).
type pattern struct {
	str    string
	method string // "" matches every method; "GET" also matches HEAD
	// segments: a path ending in "/" ends with an anonymous multi
	// wildcard; one ending in "{$}" ends with the literal "/".
	segments []segment
}

// segment is a literal (s, or "/" for a trailing {$}), a single wildcard
// {s} or a multi wildcard {s...} ("" for a trailing slash).
type segment struct {
	s     string
	wild  bool
	multi bool
}

func (p *pattern) String() string { return p.str }

func (p *pattern) last() segment { return p.segments[len(p.segments)-1] }

// parsePattern parses "[METHOD ]/seg/{name}/{rest...}" as net/http does,
// host names excepted.
func parsePattern(s string) (*pattern, error) {
	if s == "" {
		return nil, errors.New("empty pattern")
	}
	method, rest := "", s
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		method, rest = s[:i], strings.TrimLeft(s[i+1:], " \t")
		if method != "" && !validToken(method) {
			return nil, fmt.Errorf("invalid method %q", method)
		}
	}
	if rest == "" || rest[0] != '/' {
		if strings.IndexByte(rest, '/') > 0 {
			return nil, errors.New("host names in patterns are not supported")
		}
		return nil, errors.New("path must start with /")
	}
	if method != "" && method != "CONNECT" && rest != cleanPath(rest) {
		return nil, errors.New("pattern with an unclean path can never match")
	}
	p := &pattern{str: s, method: method}
	seen := map[string]bool{}
	for len(rest) > 0 {
		rest = rest[1:]
		if rest == "" {
			p.segments = append(p.segments, segment{wild: true, multi: true})
			break
		}
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			i = len(rest)
		}
		var seg string
		seg, rest = rest[:i], rest[i:]
		j := strings.IndexByte(seg, '{')
		if j < 0 {
			p.segments = append(p.segments, segment{s: pathUnescape(seg)})
			continue
		}
		if j != 0 || seg[len(seg)-1] != '}' {
			return nil, errors.New("a wildcard must be a whole segment {name}")
		}
		name := seg[1 : len(seg)-1]
		if name == "$" {
			if rest != "" {
				return nil, errors.New("{$} not at the end")
			}
			p.segments = append(p.segments, segment{s: "/"})
			break
		}
		name, multi := strings.CutSuffix(name, "...")
		if multi && rest != "" {
			return nil, errors.New("{name...} not at the end")
		}
		if !validWildcardName(name) {
			return nil, fmt.Errorf("bad wildcard name %q", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate wildcard name %q", name)
		}
		seen[name] = true
		p.segments = append(p.segments, segment{s: name, wild: true, multi: multi})
	}
	return p, nil
}

func validWildcardName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !unicode.IsLetter(c) && c != '_' && (i == 0 || !unicode.IsDigit(c)) {
			return false
		}
	}
	return true
}

func pathUnescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// cleanPath is path.Clean keeping a trailing slash, with "/" for "".
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		if len(p) == len(np)+1 && strings.HasPrefix(p, np) {
			return p
		}
		np += "/"
	}
	return np
}

// relation is how the sets of requests two patterns match relate.
type relation int

const (
	equivalent   relation = iota
	moreGeneral           // p1 matches everything p2 does, and more
	moreSpecific          // p2 matches everything p1 does, and more
	disjoint              // no request matches both
	overlaps              // some request matches both; neither contains the other
)

// conflicts reports whether p1 and p2 match some request with neither
// more specific: registering both is an error, as in net/http.
func (p1 *pattern) conflicts(p2 *pattern) bool {
	r := p1.compare(p2)
	return r == equivalent || r == overlaps
}

func (p1 *pattern) compare(p2 *pattern) relation {
	m := compareMethods(p1.method, p2.method)
	if m == disjoint {
		return disjoint
	}
	return combine(m, p1.comparePaths(p2))
}

func compareMethods(m1, m2 string) relation {
	switch {
	case m1 == m2:
		return equivalent
	case m1 == "":
		return moreGeneral
	case m2 == "":
		return moreSpecific
	case m1 == "GET" && m2 == "HEAD":
		return moreGeneral
	case m1 == "HEAD" && m2 == "GET":
		return moreSpecific
	}
	return disjoint
}

func (p1 *pattern) comparePaths(p2 *pattern) relation {
	s1, s2 := p1.segments, p2.segments
	if len(s1) != len(s2) && !p1.last().multi && !p2.last().multi {
		return disjoint
	}
	r := equivalent
	for ; len(s1) > 0 && len(s2) > 0; s1, s2 = s1[1:], s2[1:] {
		if r = combine(r, compareSegments(s1[0], s2[0])); r == disjoint {
			return r
		}
	}
	switch {
	case len(s1) == 0 && len(s2) == 0:
		return r
	case len(s1) < len(s2) && p1.last().multi:
		return combine(r, moreGeneral)
	case len(s2) < len(s1) && p2.last().multi:
		return combine(r, moreSpecific)
	}
	return disjoint
}

func compareSegments(a, b segment) relation {
	switch {
	case a.multi && b.multi:
		return equivalent
	case a.multi:
		return moreGeneral
	case b.multi:
		return moreSpecific
	case a.wild && b.wild:
		return equivalent
	case a.wild:
		if b.s == "/" { // a single wildcard does not match a trailing slash
			return disjoint
		}
		return moreGeneral
	case b.wild:
		if a.s == "/" {
			return disjoint
		}
		return moreSpecific
	case a.s == b.s:
		return equivalent
	}
	return disjoint
}

// combine is the relation of two patterns given the relations of two
// independent parts of them.
func combine(r1, r2 relation) relation {
	switch r1 {
	case equivalent:
		return r2
	case disjoint:
		return disjoint
	case overlaps:
		if r2 == disjoint {
			return disjoint
		}
		return overlaps
	}
	// r1 is moreGeneral or moreSpecific
	switch r2 {
	case equivalent:
		return r1
	case disjoint, overlaps:
		return r2
	case r1:
		return r1
	}
	return overlaps
}
