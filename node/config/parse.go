// Package config reads and writes meshd's configuration file: a small,
// strict subset of TOML (sections, key = value, strings, integers, floats,
// booleans, arrays of strings, comments) decoded into a struct whose fields
// carry their key name and documentation in tags. Unknown keys, duplicate
// keys and type mismatches are errors that name the line, so a typo never
// silently falls back to a default.
package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxFileSize bounds a config file; anything larger is refused unread.
const MaxFileSize = 1 << 20

// ErrSyntax and ErrUnknownKey are wrapped by *LineError.
var (
	ErrSyntax     = errors.New("syntax error")
	ErrUnknownKey = errors.New("unknown key")
	ErrType       = errors.New("wrong type")
	ErrDuplicate  = errors.New("duplicate key")
	ErrTooLarge   = errors.New("config file too large")
)

// LineError locates a problem in the file.
type LineError struct {
	Line int
	Err  error
	Msg  string
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v: %s", e.Line, e.Err, e.Msg) }
func (e *LineError) Unwrap() error { return e.Err }

// value is one parsed right-hand side.
type value struct {
	kind   valueKind
	s      string
	i      int64
	f      float64
	b      bool
	list   []string
	line   int
	quoted bool
}

type valueKind uint8

const (
	kString valueKind = iota
	kInt
	kFloat
	kBool
	kList
)

func (k valueKind) String() string {
	return [...]string{"string", "integer", "number", "boolean", "list of strings"}[k]
}

// entry is "section.key" → value.
type entry struct {
	key string
	v   value
}

// parse turns the file into an ordered list of section.key entries.
func parse(src []byte) ([]entry, error) {
	if len(src) > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, len(src), MaxFileSize)
	}
	var out []entry
	seen := map[string]int{}
	section := ""
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		ln := i + 1
		line := strings.TrimSpace(stripComment(lines[i]))
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") || strings.HasPrefix(line, "[[") {
				return nil, &LineError{ln, ErrSyntax, fmt.Sprintf("bad section header %q", line)}
			}
			name := strings.TrimSpace(line[1 : len(line)-1])
			if !validKey(name) {
				return nil, &LineError{ln, ErrSyntax, fmt.Sprintf("bad section name %q", name)}
			}
			section = name
			continue
		}
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			return nil, &LineError{ln, ErrSyntax, fmt.Sprintf("expected key = value, got %q", line)}
		}
		key := strings.TrimSpace(line[:eq])
		if !validKey(key) {
			return nil, &LineError{ln, ErrSyntax, fmt.Sprintf("bad key %q", key)}
		}
		rhs := strings.TrimSpace(line[eq+1:])
		// A list may continue over several lines until its closing bracket.
		if strings.HasPrefix(rhs, "[") {
			for !listClosed(rhs) && i+1 < len(lines) {
				i++
				rhs += " " + strings.TrimSpace(stripComment(lines[i]))
			}
		}
		v, err := parseValue(rhs)
		if err != nil {
			return nil, &LineError{ln, ErrSyntax, err.Error()}
		}
		v.line = ln
		full := key
		if section != "" {
			full = section + "." + key
		}
		if prev, dup := seen[full]; dup {
			return nil, &LineError{ln, ErrDuplicate, fmt.Sprintf("%s already set on line %d", full, prev)}
		}
		seen[full] = ln
		out = append(out, entry{full, v})
	}
	return out, nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// stripComment removes a # comment that is not inside a string.
func stripComment(s string) string {
	inStr, esc := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case c == '\\' && inStr:
			esc = true
		case c == '"':
			inStr = !inStr
		case c == '#' && !inStr:
			return s[:i]
		}
	}
	return s
}

func listClosed(s string) bool {
	inStr, esc := false, false
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case c == '\\' && inStr:
			esc = true
		case c == '"':
			inStr = !inStr
		case c == '[' && !inStr:
			depth++
		case c == ']' && !inStr:
			depth--
			if depth == 0 {
				return true
			}
		}
	}
	return false
}

func parseValue(s string) (value, error) {
	switch {
	case s == "":
		return value{}, errors.New("missing value")
	case s == "true" || s == "false":
		return value{kind: kBool, b: s == "true"}, nil
	case s[0] == '"':
		str, rest, err := parseString(s)
		if err != nil {
			return value{}, err
		}
		if strings.TrimSpace(rest) != "" {
			return value{}, fmt.Errorf("unexpected %q after string", rest)
		}
		return value{kind: kString, s: str, quoted: true}, nil
	case s[0] == '[':
		return parseList(s)
	}
	if i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64); err == nil {
		return value{kind: kInt, i: i, f: float64(i)}, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		return value{kind: kFloat, f: f}, nil
	}
	return value{}, fmt.Errorf("cannot read %q: strings need double quotes", s)
}

// parseString reads a double-quoted string with \" \\ \n \t escapes and
// returns the rest of the input.
func parseString(s string) (string, string, error) {
	var sb strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return sb.String(), s[i+1:], nil
		case '\\':
			if i+1 >= len(s) {
				return "", "", errors.New("unterminated escape")
			}
			i++
			switch s[i] {
			case '"', '\\':
				sb.WriteByte(s[i])
			case 'n':
				sb.WriteByte('\n')
			case 't':
				sb.WriteByte('\t')
			default:
				return "", "", fmt.Errorf("unknown escape \\%c", s[i])
			}
		default:
			sb.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated string")
}

func parseList(s string) (value, error) {
	v := value{kind: kList, list: []string{}}
	rest := strings.TrimSpace(s[1:])
	for {
		if strings.HasPrefix(rest, "]") {
			if strings.TrimSpace(rest[1:]) != "" {
				return value{}, fmt.Errorf("unexpected %q after list", rest[1:])
			}
			return v, nil
		}
		if rest == "" || rest[0] != '"' {
			return value{}, errors.New("list items must be double-quoted strings")
		}
		str, r, err := parseString(rest)
		if err != nil {
			return value{}, err
		}
		v.list = append(v.list, str)
		rest = strings.TrimSpace(r)
		if strings.HasPrefix(rest, ",") {
			rest = strings.TrimSpace(rest[1:])
		} else if !strings.HasPrefix(rest, "]") {
			return value{}, errors.New("expected , or ] in list")
		}
	}
}
