package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// A field's tags:
//
//	key:"name"   the key in the file (a nested struct is a [section])
//	doc:"text"   what it means, its default and its unit: shown in the
//	             file `meshd init` writes and in docs/configuration.md
//
// Supported types: string, bool, int kinds, float64, []string,
// time.Duration (written as "90s", "10m").

var durationType = reflect.TypeOf(time.Duration(0))

// Field describes one key, for documentation.
type Field struct {
	Key     string // section.key
	Doc     string
	Type    string
	Default string
}

// field is a settable key in a struct value.
type field struct {
	key string
	doc string
	v   reflect.Value
}

// fields lists the keys of the struct pointed to by ptr, sections flattened
// as "section.key", in declaration order.
func fields(ptr any) ([]field, error) {
	rv := reflect.ValueOf(ptr)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil, errors.New("config: want a pointer to a struct")
	}
	var out []field
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			key := sf.Tag.Get("key")
			if key == "" || !sf.IsExported() {
				continue
			}
			fv := v.Field(i)
			if sf.Type.Kind() == reflect.Struct && sf.Type != durationType {
				walk(prefix+key+".", fv)
				continue
			}
			out = append(out, field{prefix + key, sf.Tag.Get("doc"), fv})
		}
	}
	walk("", rv.Elem())
	return out, nil
}

// Decode reads src onto dst, a pointer to a struct already holding the
// defaults: keys in the file replace them, keys absent keep them. On error
// dst is unchanged.
func Decode(src []byte, dst any) error {
	entries, err := parse(src)
	if err != nil {
		return err
	}
	// Decode onto a copy so a failure leaves dst untouched.
	cp := reflect.New(reflect.TypeOf(dst).Elem())
	cp.Elem().Set(reflect.ValueOf(dst).Elem())
	fs, err := fields(cp.Interface())
	if err != nil {
		return err
	}
	byKey := map[string]field{}
	for _, f := range fs {
		byKey[f.key] = f
	}
	for _, e := range entries {
		f, ok := byKey[e.key]
		if !ok {
			return &LineError{e.v.line, ErrUnknownKey, fmt.Sprintf("%q%s", e.key, suggest(e.key, fs))}
		}
		if err := set(f.v, e.v); err != nil {
			return &LineError{e.v.line, ErrType, fmt.Sprintf("%s: %v", e.key, err)}
		}
	}
	reflect.ValueOf(dst).Elem().Set(cp.Elem())
	return nil
}

// suggest names the closest known key, for typos.
func suggest(key string, fs []field) string {
	best, bestD := "", 4
	for _, f := range fs {
		if d := editDistance(key, f.key); d < bestD {
			best, bestD = f.key, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func set(fv reflect.Value, v value) error {
	want := func(k valueKind) error {
		return fmt.Errorf("want %s, got %s", k, v.kind)
	}
	switch {
	case fv.Type() == durationType:
		if v.kind != kString {
			return fmt.Errorf("want a duration such as \"90s\" or \"10m\", got %s", v.kind)
		}
		d, err := time.ParseDuration(v.s)
		if err != nil || d < 0 {
			return fmt.Errorf("bad duration %q (use e.g. \"90s\", \"10m\", \"2h\")", v.s)
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		if v.kind != kString {
			return want(kString)
		}
		fv.SetString(v.s)
	case fv.Kind() == reflect.Bool:
		if v.kind != kBool {
			return want(kBool)
		}
		fv.SetBool(v.b)
	case fv.Kind() >= reflect.Int && fv.Kind() <= reflect.Int64:
		if v.kind != kInt {
			return want(kInt)
		}
		if fv.OverflowInt(v.i) {
			return fmt.Errorf("%d out of range", v.i)
		}
		fv.SetInt(v.i)
	case fv.Kind() >= reflect.Uint && fv.Kind() <= reflect.Uint64:
		if v.kind != kInt {
			return want(kInt)
		}
		if v.i < 0 || fv.OverflowUint(uint64(v.i)) {
			return fmt.Errorf("%d out of range", v.i)
		}
		fv.SetUint(uint64(v.i))
	case fv.Kind() == reflect.Float64:
		if v.kind != kInt && v.kind != kFloat {
			return want(kFloat)
		}
		fv.SetFloat(v.f)
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
		if v.kind != kList {
			return want(kList)
		}
		fv.Set(reflect.ValueOf(append([]string(nil), v.list...)))
	default:
		return fmt.Errorf("unsupported field type %s", fv.Type())
	}
	return nil
}

// EnvName is the environment variable that overrides key (section.key):
// prefix + upper-case key with dots and dashes as underscores.
func EnvName(prefix, key string) string {
	return prefix + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(key))
}

// ApplyEnv overrides fields of dst from the environment (lookup is
// os.LookupEnv in production). Lists are comma-separated. It returns the
// names of the variables it used. On error dst is unchanged.
func ApplyEnv(prefix string, lookup func(string) (string, bool), dst any) ([]string, error) {
	cp := reflect.New(reflect.TypeOf(dst).Elem())
	cp.Elem().Set(reflect.ValueOf(dst).Elem())
	fs, err := fields(cp.Interface())
	if err != nil {
		return nil, err
	}
	var used []string
	for _, f := range fs {
		name := EnvName(prefix, f.key)
		s, ok := lookup(name)
		if !ok {
			continue
		}
		v, err := envValue(f.v, s)
		if err == nil {
			err = set(f.v, v)
		}
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", name, err)
		}
		used = append(used, name)
	}
	reflect.ValueOf(dst).Elem().Set(cp.Elem())
	return used, nil
}

func envValue(fv reflect.Value, s string) (value, error) {
	switch {
	case fv.Type() == durationType || fv.Kind() == reflect.String:
		return value{kind: kString, s: s}, nil
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		return value{kind: kBool, b: b}, err
	case fv.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		return value{kind: kFloat, f: f}, err
	case fv.Kind() == reflect.Slice:
		var list []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		return value{kind: kList, list: list}, nil
	default:
		i, err := strconv.ParseInt(s, 0, 64)
		return value{kind: kInt, i: i}, err
	}
}

// Fields documents every key of the struct pointed to by ptr, with the
// value ptr holds as its default.
func Fields(ptr any) ([]Field, error) {
	fs, err := fields(ptr)
	if err != nil {
		return nil, err
	}
	out := make([]Field, len(fs))
	for i, f := range fs {
		out[i] = Field{Key: f.key, Doc: f.doc, Type: typeName(f.v), Default: format(f.v)}
	}
	return out, nil
}

func typeName(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return "duration"
	case v.Kind() == reflect.Slice:
		return "list of strings"
	case v.Kind() == reflect.Bool:
		return "boolean"
	case v.Kind() == reflect.Float64:
		return "number"
	case v.Kind() == reflect.String:
		return "string"
	}
	return "integer"
}

// format writes a value the way the parser reads it back.
func format(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return strconv.Quote(time.Duration(v.Int()).String())
	case v.Kind() == reflect.String:
		return quote(v.String())
	case v.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case v.Kind() == reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case v.Kind() >= reflect.Int && v.Kind() <= reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case v.Kind() >= reflect.Uint && v.Kind() <= reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case v.Kind() == reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = quote(v.Index(i).String())
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return ""
}

// quote writes a string with only the escapes the parser knows.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// Template writes a complete, commented configuration file holding the
// values of ptr. Keys whose value equals the default are written commented
// out, so the file shows every option without pinning defaults.
func Template(header string, ptr, defaults any) ([]byte, error) {
	fs, err := Fields(ptr)
	if err != nil {
		return nil, err
	}
	def, err := Fields(defaults)
	if err != nil {
		return nil, err
	}
	defaultOf := map[string]string{}
	for _, f := range def {
		defaultOf[f.Key] = f.Default
	}
	var sb strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(header), "\n") {
		sb.WriteString("# " + l + "\n")
	}
	// Top-level keys first, then sections in order of appearance.
	var sections []string
	bySection := map[string][]Field{}
	for _, f := range fs {
		sec, key := "", f.Key
		if i := strings.LastIndexByte(f.Key, '.'); i >= 0 {
			sec, key = f.Key[:i], f.Key[i+1:]
		}
		if _, ok := bySection[sec]; !ok && sec != "" {
			sections = append(sections, sec)
		}
		f.Key = key
		bySection[sec] = append(bySection[sec], f)
	}
	write := func(sec string) {
		for _, f := range bySection[sec] {
			sb.WriteString("\n")
			for _, l := range wrap(f.Doc, 76) {
				sb.WriteString("# " + l + "\n")
			}
			full := f.Key
			if sec != "" {
				full = sec + "." + f.Key
			}
			line := f.Key + " = " + f.Default
			if f.Default == defaultOf[full] {
				line = "#" + line
			}
			sb.WriteString(line + "\n")
		}
	}
	write("")
	for _, s := range sections {
		sb.WriteString("\n[" + s + "]\n")
		write(s)
	}
	return []byte(sb.String()), nil
}

func wrap(s string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, w := range strings.Fields(s) {
		if cur.Len() > 0 && cur.Len()+1+len(w) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(w)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}
