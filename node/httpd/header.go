package httpd

import (
	"slices"
	"strings"
)

// Header holds the fields of a request or response header, keyed by
// canonical name (CanonicalHeaderKey). It is net/http's Header: the methods
// canonicalise the key; direct map access does not.
type Header map[string][]string

// Add appends value to the field's values.
func (h Header) Add(key, value string) {
	k := CanonicalHeaderKey(key)
	h[k] = append(h[k], value)
}

// Set replaces the field's values with value.
func (h Header) Set(key, value string) { h[CanonicalHeaderKey(key)] = []string{value} }

// Get is the field's first value, "" if it has none.
func (h Header) Get(key string) string {
	if v := h[CanonicalHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values are all of the field's values (the map's slice, not a copy).
func (h Header) Values(key string) []string { return h[CanonicalHeaderKey(key)] }

// Del removes the field.
func (h Header) Del(key string) { delete(h, CanonicalHeaderKey(key)) }

// Clone is a deep copy (nil for nil).
func (h Header) Clone() Header {
	if h == nil {
		return nil
	}
	c := make(Header, len(h))
	for k, v := range h {
		c[k] = slices.Clone(v)
	}
	return c
}

// has reports whether the comma-separated list in the field's values
// contains token (case-insensitive), as in "Connection: keep-alive, close".
func (h Header) has(key, token string) bool {
	for _, v := range h[key] {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.Trim(item, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// CanonicalHeaderKey is key with its first letter and each letter after a
// hyphen in upper case, the rest in lower case ("content-type" becomes
// "Content-Type"). A key that is not a valid field name (RFC 9110 token) is
// returned unchanged, as net/http does.
func CanonicalHeaderKey(key string) string {
	upper := true
	canonical := true
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !isTokenChar(c) {
			return key
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if canonical {
		return key
	}
	b := []byte(key)
	upper = true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c - 'A' + 'a'
		}
		upper = c == '-'
	}
	return string(b)
}

// tokenChars marks the tchar bytes of RFC 9110 §5.6.2.
var tokenChars = [256]bool{
	'!': true, '#': true, '$': true, '%': true, '&': true, '\'': true, '*': true,
	'+': true, '-': true, '.': true, '^': true, '_': true, '`': true, '|': true, '~': true,
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true, 'I': true,
	'J': true, 'K': true, 'L': true, 'M': true, 'N': true, 'O': true, 'P': true, 'Q': true, 'R': true,
	'S': true, 'T': true, 'U': true, 'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true,
	'j': true, 'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true, 'q': true, 'r': true,
	's': true, 't': true, 'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
}

func isTokenChar(c byte) bool { return tokenChars[c] }

// validToken reports whether s is a non-empty RFC 9110 token (a field name
// or a method).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChars[s[i]] {
			return false
		}
	}
	return true
}

// validFieldValue reports whether s may be a field value: visible ASCII,
// space, tab and obs-text (bytes ≥ 0x80); no other control character (CR,
// LF and NUL in particular).
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// sanitizeFieldValue replaces the control characters a handler may have
// put in a response field value with spaces, so that no value can split
// the header (as net/http does for CR and LF).
func sanitizeFieldValue(s string) string {
	if validFieldValue(s) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}

// appendHeader writes the fields in h, sorted by name, skipping those whose
// name is not a token or that skip reports; values are sanitised.
func appendHeader(b []byte, h Header, skip func(string) bool) []byte {
	var small [24]string
	keys := small[:0]
	for k := range h {
		if validToken(k) && (skip == nil || !skip(k)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, sanitizeFieldValue(strings.Trim(v, " \t"))...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}
