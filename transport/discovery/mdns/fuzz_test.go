package mdns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// seeds are messages of every kind this package meets: its own queries,
// replies, announcements and goodbyes, a hand-written response of another
// implementation, responses avahi sent (testdata/avahi-*.hex), and a few
// malformed ones.
func seeds(t testing.TB) [][]byte {
	r := newTestResponder(t, testService())
	n := r.Names()
	t0 := time.Unix(1e9, 0)
	var out [][]byte
	add := func(b []byte, err error) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	add(Query(n.Service, nil))
	add(Query(n.Service, r.Records(SetPTR)))
	add(r.Announcement(t0))
	add(r.Multicast(SetPTR, t0.Add(time.Hour)))
	add(r.Multicast(SetA|SetSRV, t0.Add(2*time.Hour)))
	add(r.Goodbye())
	q := query(t, 0, Question{Name: n.Host, Type: TypeANY, Class: ClassIN | ClassTop})
	add(q.Append(nil))
	q.ID = 7
	add(r.Unicast(r.Answer(q, 1234, t0), q))
	add(sampleMessage(t).Append(nil))
	out = append(out, decodeHex(t, printerResponse))
	files, _ := filepath.Glob(filepath.Join("testdata", "avahi-*.hex"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decodeHex(t, string(trimSpace(b))))
	}
	out = append(out,
		[]byte{},
		make([]byte, 12),
		cat(hdr(1, 0, 0, 0), []byte("\xc0\x0c\x00\x0c\x00\x01")),
		cat(hdr(1, 0, 0, 0), []byte("\x01a\xc0\x0c\x00\x0c\x00\x01")),
	)
	return out
}

func trimSpace(b []byte) []byte {
	var out []byte
	for _, c := range b {
		if c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			out = append(out, c)
		}
	}
	return out
}

// FuzzParse: whatever decodes re-encodes within the bounds, and the
// re-encoding decodes to the same message (less the skipped records).
func FuzzParse(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	svc, _ := ServiceName("_meshd._tcp", "local")
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v", err)
			}
			return
		}
		for _, in := range Instances(m, svc) {
			if len(in.Addrs) > maxAddrs {
				t.Fatalf("%d addresses", len(in.Addrs))
			}
		}
		again, err := m.Append(nil)
		if errors.Is(err, ErrTooLarge) {
			return // compression pointers into non-name bytes can make it longer
		}
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", m, err)
		}
		m2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-encoded message does not parse: %v", err)
		}
		m.Skipped = 0
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip\n got %+v\nwant %+v", m2, m)
		}
	})
}

// FuzzResponder: a datagram fed to the responder; any reply parses, carries
// only the responder's own records, and fits in a message.
func FuzzResponder(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s, uint16(Port))
		f.Add(s, uint16(40000))
	}
	t0 := time.Unix(1e9, 0)
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		r := newTestResponder(t, testService())
		own := r.Records(SetAnnounce | SetNSECInstance | SetNSECHost)
		q, err := Parse(b)
		if err != nil {
			return
		}
		rep := r.Answer(q, port, t0)
		if rep.Answers&rep.Suppressed != 0 {
			t.Fatalf("reply %+v", rep)
		}
		if rep.Answers == 0 {
			return
		}
		var out []byte
		if rep.Unicast {
			out, err = r.Unicast(rep, q)
		} else {
			out, err = r.Multicast(rep.Answers, t0)
		}
		if errors.Is(err, ErrTooLarge) && rep.Legacy {
			return // the echoed questions did not leave room
		}
		if err != nil {
			t.Fatalf("reply %+v: %v", rep, err)
		}
		m, err := Parse(out)
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if !m.Response() || len(m.Answers) == 0 {
			t.Fatalf("reply %+v", m)
		}
		for _, a := range append(m.Answers, m.Additionals...) {
			found := false
			for i := range own {
				if own[i].SameData(&a) {
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("reply carries a record that is not ours: %+v", a)
			}
		}
	})
}

func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("MESHD_WRITE_CORPUS") != "1" {
		t.Skip("set MESHD_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	for _, target := range []string{"FuzzParse", "FuzzResponder"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds(t) {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if target == "FuzzResponder" {
				body += fmt.Sprintf("uint16(%d)\n", Port)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
