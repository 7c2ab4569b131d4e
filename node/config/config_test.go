package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name    string        `key:"name" doc:"display name"`
	Listen  []string      `key:"listen" doc:"addresses"`
	MDNS    bool          `key:"mdns" doc:"discovery"`
	Port    int           `key:"port" doc:"a port"`
	Ratio   float64       `key:"ratio" doc:"a share"`
	Every   time.Duration `key:"every" doc:"an interval"`
	Ignored string
	Radio   struct {
		Device string `key:"device" doc:"serial port"`
		SF     uint8  `key:"sf" doc:"spreading factor"`
	} `key:"radio"`
}

func defaults() sample {
	var s sample
	s.Name = "node"
	s.Listen = []string{":4731"}
	s.MDNS = true
	s.Port = 1
	s.Every = time.Minute
	s.Radio.SF = 9
	return s
}

func TestDecode(t *testing.T) {
	src := `
# a comment
name = "bob # not a comment" # a comment
listen = [":1", "[::]:2",
          "x"]   # continued
mdns = false
port = 0x10
ratio = 0.25
every = "90s"

[radio]
device = "/dev/ttyUSB0"
sf = 12
`
	got := defaults()
	if err := Decode([]byte(src), &got); err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.Name, want.Listen, want.MDNS, want.Port, want.Ratio, want.Every = "bob # not a comment", []string{":1", "[::]:2", "x"}, false, 16, 0.25, 90*time.Second
	want.Radio.Device, want.Radio.SF = "/dev/ttyUSB0", 12
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, src string
		want      error
		line      int
	}{
		{"unknown key", "nmae = \"x\"", ErrUnknownKey, 1},
		{"unknown section key", "[radio]\nbaud = 1", ErrUnknownKey, 2},
		{"unquoted string", "name = bob", ErrSyntax, 1},
		{"wrong type", "mdns = \"yes\"", ErrType, 1},
		{"int for list", "listen = 3", ErrType, 1},
		{"overflow", "[radio]\nsf = 300", ErrType, 2},
		{"negative unsigned", "[radio]\nsf = -1", ErrType, 2},
		{"bad duration", "every = \"soon\"", ErrType, 1},
		{"duplicate", "port = 1\nport = 2", ErrDuplicate, 2},
		{"no equals", "port", ErrSyntax, 1},
		{"bad section", "[radio", ErrSyntax, 1},
		{"array of tables", "[[radio]]", ErrSyntax, 1},
		{"unterminated string", "name = \"bob", ErrSyntax, 1},
		{"bad escape", `name = "\q"`, ErrSyntax, 1},
		{"junk after string", `name = "a" b`, ErrSyntax, 1},
		{"unquoted list item", "listen = [a]", ErrSyntax, 1},
		{"unclosed list", "listen = [\"a\",", ErrSyntax, 1},
		{"bad key", "na me = 1", ErrSyntax, 1},
		{"nan", "ratio = nan", ErrSyntax, 1},
		{"inf", "ratio = -inf", ErrSyntax, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := defaults()
			err := Decode([]byte(tc.src), &got)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %v, want %v", err, tc.want)
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line != tc.line {
				t.Fatalf("error %v does not name line %d", err, tc.line)
			}
			if !reflect.DeepEqual(got, defaults()) {
				t.Fatal("a refused file changed the config")
			}
		})
	}
	got := defaults()
	if err := Decode(make([]byte, MaxFileSize+1), &got); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	err := Decode([]byte("mnds = true"), &got)
	if err == nil || !strings.Contains(err.Error(), `did you mean "mdns"`) {
		t.Fatalf("no suggestion for a typo: %v", err)
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{"MESHD_NAME": "envname", "MESHD_LISTEN": ":1, :2", "MESHD_RADIO_SF": "7", "MESHD_MDNS": "0", "MESHD_EVERY": "2h"}
	got := defaults()
	used, err := ApplyEnv("MESHD_", func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &got)
	if err != nil {
		t.Fatal(err)
	}
	if len(used) != 5 || got.Name != "envname" || !reflect.DeepEqual(got.Listen, []string{":1", ":2"}) || got.Radio.SF != 7 || got.MDNS || got.Every != 2*time.Hour {
		t.Fatalf("got %+v used %v", got, used)
	}
	before := got
	env["MESHD_PORT"] = "many"
	if _, err := ApplyEnv("MESHD_", func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &got); err == nil || !strings.Contains(err.Error(), "MESHD_PORT") {
		t.Fatalf("bad env value: %v", err)
	}
	if !reflect.DeepEqual(got, before) {
		t.Fatal("a refused environment changed the config")
	}
}

func TestTemplateRoundTrip(t *testing.T) {
	d := defaults()
	custom := defaults()
	custom.Name = "with \"quotes\"\nand newline"
	custom.Listen = []string{"a", "b"}
	custom.Radio.Device = "/dev/ttyACM0"
	for _, v := range []sample{d, custom} {
		b, err := Template("meshd test\nsecond line", &v, &d)
		if err != nil {
			t.Fatal(err)
		}
		got := defaults()
		if err := Decode(b, &got); err != nil {
			t.Fatalf("template does not parse: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("round trip:\n got %+v\nwant %+v\n%s", got, v, b)
		}
		for _, doc := range []string{"# display name", "# serial port", "[radio]"} {
			if !strings.Contains(string(b), doc) {
				t.Fatalf("template lacks %q:\n%s", doc, b)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("name = \"x\"\n[radio]\nsf = 7\n"))
	f.Add([]byte("listen = [\"a\",\n\"b\"]\n"))
	f.Add([]byte("every = \"1m\" # c\n"))
	f.Add([]byte("[[x]]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := defaults()
		if err := Decode(b, &got); err != nil {
			if !reflect.DeepEqual(got, defaults()) {
				t.Fatal("a refused file changed the config")
			}
			return
		}
		// Whatever was accepted can be written and read back identically.
		d := defaults()
		out, err := Template("fuzz", &got, &d)
		if err != nil {
			t.Fatal(err)
		}
		again := defaults()
		if err := Decode(out, &again); err != nil {
			t.Fatalf("re-read: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip differs")
		}
	})
}
