package mdns

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustName(t testing.TB, s string) Name {
	t.Helper()
	n, err := ParseName(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		in     string
		labels []string
		out    string
	}{
		{"_meshd._tcp.local.", []string{"_meshd", "_tcp", "local"}, "_meshd._tcp.local."},
		{"_meshd._tcp.local", []string{"_meshd", "_tcp", "local"}, "_meshd._tcp.local."},
		{`My\.Printer\0322.local`, []string{"My.Printer 2", "local"}, `My\.Printer\0322.local.`},
		{`back\\slash.local.`, []string{`back\slash`, "local"}, `back\\slash.local.`},
		{".", nil, "."},
	} {
		n, err := ParseName(tc.in)
		if err != nil {
			t.Fatalf("ParseName(%q): %v", tc.in, err)
		}
		if got := n.Labels(); !reflect.DeepEqual(got, tc.labels) {
			t.Errorf("ParseName(%q) labels %q, want %q", tc.in, got, tc.labels)
		}
		if got := n.String(); got != tc.out {
			t.Errorf("ParseName(%q).String() = %q, want %q", tc.in, got, tc.out)
		}
	}
	for _, bad := range []string{"a..b", ".a", strings.Repeat("x", 64) + ".local", strings.Repeat("abcdefg.", 32) + "local", `a\`} {
		if _, err := ParseName(bad); !errors.Is(err, ErrName) {
			t.Errorf("ParseName(%q) = %v, want ErrName", bad, err)
		}
	}
	a, b := mustName(t, "Meshd-ABC._meshd._TCP.local"), mustName(t, "meshd-abc._MESHD._tcp.LOCAL.")
	if !a.Equal(b) || a.Key() != b.Key() {
		t.Error("names differing only in ASCII case must be equal")
	}
	// Only ASCII folds: bytes above 0x7f compare exactly.
	c, _ := NewName("\xc3\x84", "local")
	d, _ := NewName("\xc3\xa4", "local")
	if c.Equal(d) {
		t.Error("non-ASCII bytes must not fold")
	}
	first, parent := a.First()
	if first != "Meshd-ABC" || parent.String() != "_meshd._TCP.local." {
		t.Errorf("First = %q, %q", first, parent)
	}
}

// The compression example of RFC 1035 §4.1.4: F.ISI.ARPA at offset 20,
// FOO.F.ISI.ARPA at 40 (FOO and a pointer to 20), ARPA at 64 (a pointer to
// 26), the root at 92.
func TestReadNameRFC1035Example(t *testing.T) {
	b := make([]byte, 93)
	copy(b[20:], "\x01F\x03ISI\x04ARPA\x00")
	copy(b[40:], "\x03FOO\xc0\x14")
	copy(b[64:], "\xc0\x1a")
	b[92] = 0
	for _, tc := range []struct {
		off  int
		name string
		end  int
	}{
		{20, "F.ISI.ARPA.", 32},
		{40, "FOO.F.ISI.ARPA.", 46},
		{64, "ARPA.", 66},
		{92, ".", 93},
	} {
		n, end, err := readName(b, tc.off)
		if err != nil || n.String() != tc.name || end != tc.end {
			t.Errorf("readName at %d = %q, %d, %v; want %q, %d", tc.off, n, end, err, tc.name, tc.end)
		}
	}
}

func hdr(qd, an, ns, ar int) []byte {
	return []byte{0, 0, 0x84, 0, 0, byte(qd), 0, byte(an), 0, byte(ns), 0, byte(ar)}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParseMalformed(t *testing.T) {
	q := cat(hdr(1, 0, 0, 0), []byte("\x05local\x00\x00\x0c\x00\x01"))
	if _, err := Parse(q); err != nil {
		t.Fatalf("the base question does not parse: %v", err)
	}
	rr := func(typ byte, rdata string) []byte {
		return cat(hdr(0, 1, 0, 0), []byte("\x05local\x00\x00"), []byte{typ, 0, 1, 0, 0, 0, 120, 0, byte(len(rdata))}, []byte(rdata))
	}
	// A chain of pointers, each to the one before: 40 hops.
	chain := cat(hdr(1, 0, 0, 0), []byte("\x00"))
	for i := 0; i < 40; i++ {
		p := len(chain) - 2
		if i == 0 {
			p = 12
		}
		chain = append(chain, 0xc0|byte(p>>8), byte(p))
	}
	chain = append(chain, 0, 12, 0, 1)
	chain[5] = 1
	long := hdr(1, 0, 0, 0)
	for i := 0; i < 5; i++ {
		long = append(long, 60)
		long = append(long, strings.Repeat("a", 60)...)
	}
	long = append(long, 0, 0, 12, 0, 1)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", []byte{0, 0, 0, 0}},
		{"counts larger than the message", hdr(200, 200, 0, 0)},
		{"question truncated", q[:len(q)-1]},
		{"label truncated", cat(hdr(1, 0, 0, 0), []byte("\x09local\x00\x00\x0c\x00\x01"))},
		{"pointer to itself", cat(hdr(1, 0, 0, 0), []byte("\xc0\x0c\x00\x0c\x00\x01"))},
		{"pointer forward", cat(hdr(1, 0, 0, 0), []byte("\xc0\x10\x00\x0c\x00\x01\x00"))},
		{"pointer loop through a label", cat(hdr(1, 0, 0, 0), []byte("\x01a\xc0\x0c\x00\x0c\x00\x01"))},
		{"more than 32 pointers", chain},
		{"name longer than 255 bytes", long},
		{"label type 01", cat(hdr(1, 0, 0, 0), []byte("\x45local\x00\x00\x0c\x00\x01"))},
		{"label type 10", cat(hdr(1, 0, 0, 0), []byte("\x85local\x00\x00\x0c\x00\x01"))},
		{"A of 5 bytes", rr(1, "\x01\x02\x03\x04\x05")},
		{"AAAA of 4 bytes", rr(28, "\x01\x02\x03\x04")},
		{"PTR with bytes after its name", rr(12, "\x01a\x00\xff")},
		{"PTR name running past its data", rr(12, "\x05ab")},
		{"SRV of 6 bytes", rr(33, "\x00\x00\x00\x00\x12\x34")},
		{"TXT string past its data", rr(16, "\x05v=1")},
		{"NSEC block of 0 bytes", rr(47, "\xc0\x0c\x00\x00")},
		{"NSEC block of 33 bytes", rr(47, "\xc0\x0c\x00\x21"+strings.Repeat("\xff", 33))},
		{"NSEC block truncated", rr(47, "\xc0\x0c\x00\x04\x40")},
		{"record data past the message", cat(hdr(0, 1, 0, 0), []byte("\x00\x00\x01\x00\x01\x00\x00\x00\x78\x00\x04\x01"))},
		{"bytes after the last record", append(append([]byte{}, q...), 0)},
		{"9001 bytes", make([]byte, 9001)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.b)
			if err == nil {
				t.Fatalf("parsed: %+v", m)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrTooLarge", err)
			}
		})
	}
}

func sampleMessage(t testing.TB) *Message {
	inst := mustName(t, "meshd-0123456789abcdef-1a2b-3._meshd._tcp.local.")
	host := mustName(t, "meshd-0123456789abcdef-1a2b-3.local.")
	svc := mustName(t, "_meshd._tcp.local.")
	var types Bitmap
	types.Set(TypeA)
	types.Set(TypeAAAA)
	return &Message{
		Flags:     FlagResponse | FlagAuthoritative,
		Questions: []Question{{Name: svc, Type: TypePTR, Class: ClassIN | ClassTop}},
		Answers:   []Record{{Name: svc, Type: TypePTR, Class: ClassIN, TTL: 4500, Target: inst}},
		Authorities: []Record{
			{Name: inst, Type: TypeSRV, Class: ClassIN, TTL: 120, Priority: 1, Weight: 2, Port: 4731, Target: host},
		},
		Additionals: []Record{
			{Name: inst, Type: TypeSRV, Class: ClassIN | ClassTop, TTL: 120, Port: 4731, Target: host},
			{Name: inst, Type: TypeTXT, Class: ClassIN | ClassTop, TTL: 4500, Text: []string{"v=1", "addr=0123456789abcdef0123456789abcdef", "", "x"}},
			{Name: host, Type: TypeA, Class: ClassIN | ClassTop, TTL: 120, Addr: netip.MustParseAddr("198.18.0.1")},
			{Name: host, Type: TypeAAAA, Class: ClassIN | ClassTop, TTL: 120, Addr: netip.MustParseAddr("fe80::1")},
			{Name: host, Type: TypeNSEC, Class: ClassIN | ClassTop, TTL: 120, Next: host, Types: types},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	m := sampleMessage(t)
	b, err := m.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
	}
	// Every name after the first occurrence of its suffix is compressed:
	// the service name is written once in full, the instance and host
	// names once each as a label and a pointer.
	if n := bytes.Count(b, []byte("\x06_meshd")); n != 1 {
		t.Errorf("_meshd written %d times", n)
	}
	if n := bytes.Count(b, []byte("meshd-0123456789abcdef-1a2b-3")); n != 2 {
		t.Errorf("the instance label written %d times, want 2 (instance, host)", n)
	}
	// The NSEC next name is the owner name: a 2-byte pointer (RFC 6762 §6.1).
	nsec := b[len(b)-2-2-4:]
	if !bytes.Equal(nsec[:2], []byte{0xc0, nsec[1]}) || nsec[2] != 0 || nsec[3] != 4 {
		t.Errorf("NSEC data % x, want a pointer then window 0 of 4 bytes", nsec)
	}
	if len(b) > 300 {
		t.Errorf("%d bytes: compression missing", len(b))
	}
}

func TestAppendErrors(t *testing.T) {
	svc := mustName(t, "_meshd._tcp.local.")
	for _, tc := range []struct {
		name string
		r    Record
	}{
		{"A with an IPv6 address", Record{Name: svc, Type: TypeA, Addr: netip.MustParseAddr("::1")}},
		{"AAAA with an IPv4 address", Record{Name: svc, Type: TypeAAAA, Addr: netip.MustParseAddr("1.2.3.4")}},
		{"TXT string of 256 bytes", Record{Name: svc, Type: TypeTXT, Text: []string{strings.Repeat("x", 256)}}},
		{"unknown type", Record{Name: svc, Type: 99}},
		{"zero name", Record{Type: TypePTR, Target: svc}},
		{"zero target", Record{Name: svc, Type: TypePTR}},
	} {
		m := Message{Answers: []Record{tc.r}}
		if _, err := m.Append(nil); err == nil {
			t.Errorf("%s: encoded", tc.name)
		}
	}
	big := Message{}
	for i := 0; i < 40; i++ {
		big.Answers = append(big.Answers, Record{Name: svc, Type: TypeTXT, Text: []string{strings.Repeat("x", 255)}})
	}
	if _, err := big.Append(nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("10 KB message: %v, want ErrTooLarge", err)
	}
}

// A response as another responder (Apple's, avahi) writes one, built by
// hand from RFC 1035 §4.1 and RFC 6762/6763: an answer PTR for a printer
// instance whose label holds a space and a dot, then SRV, TXT (a boolean
// attribute and a key=value), A, AAAA and NSEC in the additional section,
// every name after the first compressed. An unknown record type (HINFO)
// is skipped.
const printerResponse = "" +
	"0000 8400 0000 0001 0000 0005" + // ID 0, QR AA, 1 answer, 5 additional
	// 12: _ipp._tcp.local. PTR, TTL 4500
	"045f697070 045f746370 056c6f63616c 00" + // 12: _ipp 17: _tcp 22: local 28: root
	"000c 0001 00001194 000f" +
	"0c 4d79 2050 726e 2e20 4c69 6e6b" + // 39: "My Prn. Link" (12 bytes)
	"c00c" + // → _ipp._tcp.local.
	// 54: SRV, cache-flush, TTL 120, 0 0 631 host.local. (host at 72)
	"c027 0021 8001 00000078 000d 0000 0000 0277 0468 6f73 74 c016" +
	// TXT: "duplex" "rp=ipp/print"
	"c027 0010 8001 00001194 0014 06 6475706c6578 0c 72703d6970702f7072696e74" +
	// host.local. A 198.51.100.7
	"c048 0001 8001 00000078 0004 c6336407" +
	// host.local. AAAA 2001:db8::7
	"c048 001c 8001 00000078 0010 20010db8000000000000000000000007" +
	// host.local. HINFO (type 13): skipped
	"c048 000d 8001 00000078 0004 0158 0159"

func decodeHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandwrittenResponse(t *testing.T) {
	b := decodeHex(t, printerResponse)
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Skipped != 1 || len(m.Answers) != 1 || len(m.Additionals) != 4 {
		t.Fatalf("skipped %d, %d answers, %d additional", m.Skipped, len(m.Answers), len(m.Additionals))
	}
	svc := mustName(t, "_ipp._tcp.local")
	ins := Instances(m, svc)
	if len(ins) != 1 {
		t.Fatalf("%d instances", len(ins))
	}
	in := ins[0]
	if first, _ := in.Name.First(); first != "My Prn. Link" || in.Name.String() != `My\032Prn\.\032Link._ipp._tcp.local.` {
		t.Errorf("instance %q (%q)", in.Name, first)
	}
	want := Instance{
		Name: in.Name, TTL: 4500, Host: mustName(t, "host.local"), Port: 631,
		Text:    []string{"duplex", "rp=ipp/print"},
		Addrs:   []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")},
		HaveSRV: true, HaveTXT: true,
	}
	if !reflect.DeepEqual(in, want) {
		t.Errorf("instance\n got %+v\nwant %+v", in, want)
	}
	if !m.Additionals[0].CacheFlush() || m.Answers[0].CacheFlush() {
		t.Error("cache-flush bits")
	}
}

func TestQueryKnownAnswers(t *testing.T) {
	svc := mustName(t, "_meshd._tcp.local.")
	var known []Record
	for i := 0; i < 100; i++ {
		inst, _ := NewName(strings.Repeat("n", 20)+string(rune('a'+i%26))+string(rune('a'+i/26)), "_meshd", "_tcp", "local")
		known = append(known, Record{Name: svc, Type: TypePTR, Class: ClassIN, TTL: 4000, Target: inst})
	}
	b, err := Query(svc, known)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxQuery {
		t.Fatalf("query of %d bytes", len(b))
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Response() || len(m.Questions) != 1 || m.Questions[0].Unicast() || m.Questions[0].Type != TypePTR {
		t.Fatalf("query %+v", m)
	}
	if len(m.Answers) == 0 || len(m.Answers) == len(known) {
		t.Fatalf("%d of %d known answers: want as many as fit", len(m.Answers), len(known))
	}
	b, _ = Query(svc, known[:3])
	if m, _ := Parse(b); len(m.Answers) != 3 {
		t.Fatalf("3 known answers: %d sent", len(m.Answers))
	}
}

func readVector(t *testing.T, name string) *Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(decodeHex(t, strings.TrimSpace(string(b))))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// Datagrams avahi 0.8 sent in TestAvahiInterop (MESHD_CAPTURE_AVAHI=1):
// its answer to our PTR query for an instance published with
// avahi-publish (every record in the answer section), and its own query
// while avahi-browse ran, listing a meshd node's instance and its own as
// known answers.
func TestAvahiVectors(t *testing.T) {
	svc := mustName(t, "_meshd._tcp.local")
	resp := readVector(t, "avahi-response.hex")
	ins := Instances(resp, svc)
	if len(ins) != 1 {
		t.Fatalf("%d instances in avahi's response", len(ins))
	}
	in := ins[0]
	if first, _ := in.Name.First(); first != "avahi-published" || in.Port != 4243 || in.TTL != OtherTTL ||
		!reflect.DeepEqual(in.Text, []string{"v=1", "addr=0123456789abcdef0123456789abcdef"}) || len(in.Addrs) != 2 {
		t.Fatalf("avahi's instance %+v", in)
	}
	for _, a := range in.Addrs {
		if !a.IsLinkLocalUnicast() && !a.Is4() {
			t.Errorf("address %v", a)
		}
	}

	q := readVector(t, "avahi-query.hex")
	if q.Response() || len(q.Questions) != 1 || !q.Questions[0].Name.Equal(svc) || len(q.Answers) != 2 {
		t.Fatalf("avahi's query %+v", q)
	}
	// The meshd instance it lists is not answered again; another is.
	listed := testService()
	listed.Instance = "meshd-84b27f529beea37c-075f-2"
	t0 := time.Unix(1e9, 0)
	if rep := newTestResponder(t, listed).Answer(q, Port, t0); rep.Answers != 0 || rep.Suppressed != SetPTR {
		t.Errorf("the listed instance answers %+v", rep)
	}
	if rep := newTestResponder(t, testService()).Answer(q, Port, t0); rep.Answers != SetPTR {
		t.Errorf("another instance answers %+v", rep)
	}
}

// RFC 6763 §6.1: a TXT record with no data is the same as one holding a
// single empty string, which is what Append writes for no strings.
func TestEmptyTXT(t *testing.T) {
	for _, rdata := range []string{"", "\x00"} {
		b := cat(hdr(0, 1, 0, 0), []byte("\x05local\x00\x00\x10\x00\x01\x00\x00\x00\x78\x00"), []byte{byte(len(rdata))}, []byte(rdata))
		m, err := Parse(b)
		if err != nil || !reflect.DeepEqual(m.Answers[0].Text, []string{""}) {
			t.Fatalf("TXT data %q: %v %q", rdata, err, m.Answers[0].Text)
		}
	}
	m := Message{Answers: []Record{{Name: mustName(t, "local"), Type: TypeTXT, Class: ClassIN}}}
	b, _ := m.Append(nil)
	if !bytes.HasSuffix(b, []byte{0, 1, 0}) {
		t.Fatalf("no strings encoded as % x, want one empty string", b)
	}
}
