package discovery

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openmeshd/meshd/envelope"
)

var testAddr = envelope.Address{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func TestParseTXT(t *testing.T) {
	good := Record{Version: 1, Address: testAddr}.TXT()
	for _, tc := range []struct {
		name   string
		fields []string
		err    error
	}{
		{"good", good, nil},
		{"extra keys and flags ignored", append([]string{"future=yes", "flag"}, good...), nil},
		{"upper-case keys", []string{"V=1", "ADDR=" + testAddr.String()}, nil},
		{"no version", good[1:], ErrTXT},
		{"no address", good[:1], ErrTXT},
		{"two versions", append(good, "v=1"), ErrTXT},
		{"two addresses", append(good, good[1]), ErrTXT},
		{"other version", []string{"v=2", good[1]}, ErrTXTVersion},
		{"bad version", []string{"v=x", good[1]}, ErrTXT},
		{"huge version", []string{"v=99999999999999999999", good[1]}, ErrTXT},
		{"short address", []string{"v=1", "addr=abcd"}, ErrTXT},
		{"address with spaces", []string{"v=1", "addr= " + testAddr.String()}, ErrTXT},
		{"non-hex address", []string{"v=1", "addr=" + strings.Repeat("zz", 16)}, ErrTXT},
		{"too many strings", make([]string, 17), ErrTXT},
		{"empty", nil, ErrTXT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseTXT(tc.fields, 1)
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseTXT(%q) = %v, want %v", tc.fields, err, tc.err)
			}
			if err == nil && (r.Version != 1 || r.Address != testAddr) {
				t.Fatalf("ParseTXT = %+v", r)
			}
		})
	}
}

func txtSeeds() [][]string {
	good := Record{Version: 1, Address: testAddr}.TXT()
	return [][]string{good, {"v=2", good[1]}, {"v=1"}, {"x", "=", "v=", "addr="}}
}

// FuzzParseTXT: the fuzzer's bytes are the TXT strings, NUL separated.
func FuzzParseTXT(f *testing.F) {
	for _, s := range txtSeeds() {
		f.Add(strings.Join(s, "\x00"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		fields := strings.Split(s, "\x00")
		r, err := ParseTXT(fields, Version)
		if err != nil {
			return
		}
		again, err := ParseTXT(r.TXT(), Version)
		if err != nil || again != r {
			t.Fatalf("re-encoded record %+v parses as %+v, %v", r, again, err)
		}
	})
}

func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("MESHD_WRITE_CORPUS") != "1" {
		t.Skip("set MESHD_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseTXT")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range txtSeeds() {
		body := fmt.Sprintf("go test fuzz v1\nstring(%q)\n", strings.Join(s, "\x00"))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPickEndpoint(t *testing.T) {
	_, lan, _ := net.ParseCIDR("198.18.5.1/24")
	lan.IP = net.ParseIP("198.18.5.1")
	_, ula, _ := net.ParseCIDR("fd00:1::1/64")
	nets := []*net.IPNet{lan, ula}
	_, ll, _ := net.ParseCIDR("fe80::1/64")
	v6only := []*net.IPNet{ll}
	if got, ok := pickEndpoint("eth0", v6only, net.ParseIP("198.18.5.7"), net.ParseIP("fe80::7"), 4000, false); !ok || got != "[fe80::7%eth0]:4000" {
		t.Errorf("without IPv4 on the interface, the IPv4 address is ignored: got %q", got)
	}
	for _, tc := range []struct {
		name     string
		v4, v6   string
		port     int
		preferV6 bool
		want     string
	}{
		{"v4 on link", "198.18.5.7", "", 4000, false, "198.18.5.7:4000"},
		{"v4 of another link", "198.19.0.7", "", 4000, false, ""},
		{"link-local v6 scoped to the queried interface", "", "fe80::1", 4000, false, "[fe80::1%eth0]:4000"},
		{"v4 preferred", "198.18.5.7", "fe80::1", 4000, false, "198.18.5.7:4000"},
		{"v6 preferred", "198.18.5.7", "fe80::1", 4000, true, "[fe80::1%eth0]:4000"},
		{"v6 preferred, only v4 on link", "198.18.5.7", "2001:db8::1", 4000, true, "198.18.5.7:4000"},
		{"global v6 on link", "", "fd00:1::9", 4000, false, "[fd00:1::9]:4000"},
		{"off-link v4: another link's responder, refused whole", "10.9.9.9", "fe80::2", 4000, false, ""},
		{"loopback refused", "127.0.0.1", "", 4000, false, ""},
		{"no port", "198.18.5.7", "", 0, false, ""},
		{"nothing", "", "", 4000, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pickEndpoint("eth0", nets, net.ParseIP(tc.v4), net.ParseIP(tc.v6), tc.port, tc.preferV6)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("pickEndpoint = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}
