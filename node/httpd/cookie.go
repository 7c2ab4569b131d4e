package httpd

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ErrNoCookie is Request.Cookie's error when the cookie is absent.
var ErrNoCookie = errors.New("httpd: named cookie not present")

// SameSite is a cookie's SameSite attribute.
type SameSite int

// SameSite values; SameSiteDefaultMode (and the zero value) send no
// attribute.
const (
	SameSiteDefaultMode SameSite = iota + 1
	SameSiteLaxMode
	SameSiteStrictMode
	SameSiteNoneMode
)

// Cookie is a cookie (RFC 6265): one sent by a client (Name and Value) or
// one Set-Cookie sets.
type Cookie struct {
	Name  string
	Value string
	// Path and Domain are the attributes; empty: not sent.
	Path   string
	Domain string
	// Expires is sent when not zero (and after 1601).
	Expires time.Time
	// MaxAge: 0 sends no Max-Age; negative sends Max-Age=0 (delete now);
	// positive is seconds.
	MaxAge   int
	Secure   bool
	HttpOnly bool
	SameSite SameSite
}

// TimeFormat is the HTTP date format (IMF-fixdate), always in GMT.
const TimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// String is the cookie as a Set-Cookie value, "" when the name is not a
// valid token. Bytes a value may not hold are dropped; a value with a
// space or comma is quoted.
func (c *Cookie) String() string {
	if c == nil || !validToken(c.Name) {
		return ""
	}
	b := make([]byte, 0, 64+len(c.Name)+len(c.Value)+len(c.Path))
	b = append(b, c.Name...)
	b = append(b, '=')
	b = appendCookieValue(b, c.Value)
	if c.Path != "" {
		b = append(b, "; Path="...)
		for i := 0; i < len(c.Path); i++ {
			if ch := c.Path[i]; ch >= 0x20 && ch < 0x7f && ch != ';' {
				b = append(b, ch)
			}
		}
	}
	if c.Domain != "" && validCookieDomain(c.Domain) {
		b = append(b, "; Domain="...)
		b = append(b, strings.TrimPrefix(c.Domain, ".")...)
	}
	if !c.Expires.IsZero() && c.Expires.Year() >= 1601 {
		b = append(b, "; Expires="...)
		b = c.Expires.UTC().AppendFormat(b, TimeFormat)
	}
	if c.MaxAge > 0 {
		b = append(b, "; Max-Age="...)
		b = strconv.AppendInt(b, int64(c.MaxAge), 10)
	} else if c.MaxAge < 0 {
		b = append(b, "; Max-Age=0"...)
	}
	if c.HttpOnly {
		b = append(b, "; HttpOnly"...)
	}
	if c.Secure {
		b = append(b, "; Secure"...)
	}
	switch c.SameSite {
	case SameSiteLaxMode:
		b = append(b, "; SameSite=Lax"...)
	case SameSiteStrictMode:
		b = append(b, "; SameSite=Strict"...)
	case SameSiteNoneMode:
		b = append(b, "; SameSite=None"...)
	}
	return string(b)
}

func validCookieValueByte(c byte) bool {
	return 0x20 <= c && c < 0x7f && c != '"' && c != ';' && c != '\\'
}

func appendCookieValue(b []byte, v string) []byte {
	quote := strings.ContainsAny(v, " ,")
	if quote {
		b = append(b, '"')
	}
	for i := 0; i < len(v); i++ {
		if validCookieValueByte(v[i]) {
			b = append(b, v[i])
		}
	}
	if quote {
		b = append(b, '"')
	}
	return b
}

// validCookieDomain accepts host names (letters, digits, '-', '.'), with
// an optional leading dot.
func validCookieDomain(d string) bool {
	d = strings.TrimPrefix(d, ".")
	if d == "" || len(d) > 255 {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// SetCookie adds a Set-Cookie field to w's header; a cookie with an
// invalid name is not set.
func SetCookie(w ResponseWriter, c *Cookie) {
	if v := c.String(); v != "" {
		w.Header().Add("Set-Cookie", v)
	}
}

// Cookie is the first cookie named name in the request's Cookie fields,
// or ErrNoCookie.
func (r *Request) Cookie(name string) (*Cookie, error) {
	if name == "" {
		return nil, ErrNoCookie
	}
	for _, c := range readCookies(r.Header, name) {
		return c, nil
	}
	return nil, ErrNoCookie
}

// Cookies are all the request's well-formed cookies.
func (r *Request) Cookies() []*Cookie { return readCookies(r.Header, "") }

// readCookies parses the Cookie fields, keeping those named filter (all
// when filter is ""). Pairs whose name is not a token or whose value holds
// a byte a cookie value may not are skipped.
func readCookies(h Header, filter string) []*Cookie {
	var out []*Cookie
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.Trim(part, " \t")
			name, val, _ := strings.Cut(part, "=")
			name = strings.Trim(name, " \t")
			if !validToken(name) || filter != "" && name != filter {
				continue
			}
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			good := true
			for i := 0; i < len(val); i++ {
				if !validCookieValueByte(val[i]) {
					good = false
					break
				}
			}
			if good {
				out = append(out, &Cookie{Name: name, Value: val})
			}
		}
	}
	return out
}
