package mdns

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func testService() Service {
	return Service{
		Instance: "meshd-0123456789abcdef-1a2b-3", Service: "_meshd._tcp", Domain: "local",
		Host: "meshd-0123456789abcdef-1a2b-3", Port: 4731,
		Text:  []string{"v=1", "addr=0123456789abcdef0123456789abcdef"},
		Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::ffff:198.18.0.1")},
	}
}

func newTestResponder(t testing.TB, s Service) *Responder {
	t.Helper()
	r, err := NewResponder(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func query(t testing.TB, flags uint16, qs ...Question) *Message {
	t.Helper()
	m := &Message{Flags: flags, Questions: qs}
	b, err := m.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err = Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestResponderAnswer(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	r := newTestResponder(t, testService())
	n := r.Names()
	noV6 := testService()
	noV6.Addrs = noV6.Addrs[:1]
	rV4 := newTestResponder(t, noV6)
	q := func(name Name, typ Type) Question { return Question{Name: name, Type: typ, Class: ClassIN} }
	qu := func(name Name, typ Type) Question { return Question{Name: name, Type: typ, Class: ClassIN | ClassTop} }
	other := mustName(t, "_http._tcp.local")
	knownPTR := func(ttl uint32) *Message {
		m := query(t, 0, q(n.Service, TypePTR))
		m.Answers = []Record{{Name: n.Service, Type: TypePTR, Class: ClassIN, TTL: ttl, Target: n.Instance}}
		return m
	}
	for _, tc := range []struct {
		name string
		r    *Responder
		q    *Message
		port uint16
		want Reply
	}{
		{"service PTR", r, query(t, 0, q(n.Service, TypePTR)), Port, Reply{Answers: SetPTR, Wait: WaitShort}},
		{"service ANY", r, query(t, 0, q(n.Service, TypeANY)), Port, Reply{Answers: SetPTR, Wait: WaitShort}},
		{"service, case differs", r, query(t, 0, q(mustName(t, "_MESHD._TCP.Local"), TypePTR)), Port, Reply{Answers: SetPTR, Wait: WaitShort}},
		{"service type enumeration", r, query(t, 0, q(n.Enum, TypePTR)), Port, Reply{Answers: SetEnum, Wait: WaitShort}},
		{"instance SRV: unique, at once", r, query(t, 0, q(n.Instance, TypeSRV)), Port, Reply{Answers: SetSRV}},
		{"instance TXT", r, query(t, 0, q(n.Instance, TypeTXT)), Port, Reply{Answers: SetTXT}},
		{"instance ANY", r, query(t, 0, q(n.Instance, TypeANY)), Port, Reply{Answers: SetSRV | SetTXT}},
		{"instance A: negative", r, query(t, 0, q(n.Instance, TypeA)), Port, Reply{Answers: SetNSECInstance}},
		{"host A", r, query(t, 0, q(n.Host, TypeA)), Port, Reply{Answers: SetA}},
		{"host AAAA", r, query(t, 0, q(n.Host, TypeAAAA)), Port, Reply{Answers: SetAAAA}},
		{"host ANY", r, query(t, 0, q(n.Host, TypeANY)), Port, Reply{Answers: SetA | SetAAAA}},
		{"host AAAA without IPv6: negative", rV4, query(t, 0, q(n.Host, TypeAAAA)), Port, Reply{Answers: SetNSECHost}},
		{"two questions", r, query(t, 0, q(n.Service, TypePTR), q(n.Host, TypeA)), Port, Reply{Answers: SetPTR | SetA, Wait: WaitShort}},
		{"another service", r, query(t, 0, q(other, TypePTR)), Port, Reply{}},
		{"class CHAOS", r, query(t, 0, Question{Name: n.Service, Type: TypePTR, Class: 3}), Port, Reply{}},
		{"class ANY", r, query(t, 0, Question{Name: n.Service, Type: TypePTR, Class: ClassANY}), Port, Reply{Answers: SetPTR, Wait: WaitShort}},
		{"a response is not a query", r, query(t, FlagResponse, q(n.Service, TypePTR)), Port, Reply{}},
		{"opcode 1 ignored", r, query(t, 0x0800, q(n.Service, TypePTR)), Port, Reply{}},
		{"truncated query: more known answers follow", r, query(t, FlagTruncated, q(n.Service, TypePTR)), Port, Reply{Answers: SetPTR, Wait: WaitLong}},
		{"legacy querier", r, query(t, 0, q(n.Service, TypePTR)), 40000, Reply{Answers: SetPTR, Unicast: true, Legacy: true}},
		{"QU, never multicast: multicast to refresh caches", r, query(t, 0, qu(n.Service, TypePTR)), Port, Reply{Answers: SetPTR, Wait: WaitShort}},
		{"known answer, full TTL", r, knownPTR(OtherTTL), Port, Reply{Suppressed: SetPTR}},
		{"known answer, half TTL", r, knownPTR(OtherTTL / 2), Port, Reply{Suppressed: SetPTR}},
		{"known answer, under half TTL", r, knownPTR(OtherTTL/2 - 1), Port, Reply{Answers: SetPTR, Wait: WaitShort}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Answer(tc.q, tc.port, t0); got != tc.want {
				t.Fatalf("Answer = %+v, want %+v", got, tc.want)
			}
		})
	}

	// QU after a multicast within a quarter of the TTL: unicast.
	if _, err := r.Multicast(SetPTR, t0); err != nil {
		t.Fatal(err)
	}
	got := r.Answer(query(t, 0, qu(n.Service, TypePTR)), Port, t0.Add(time.Minute))
	if want := (Reply{Answers: SetPTR, Unicast: true}); got != want {
		t.Fatalf("QU after a recent multicast: %+v, want %+v", got, want)
	}
	got = r.Answer(query(t, 0, qu(n.Service, TypePTR)), Port, t0.Add(OtherTTL*time.Second/4+time.Second))
	if want := (Reply{Answers: SetPTR, Wait: WaitShort}); got != want {
		t.Fatalf("QU after a quarter TTL: %+v, want %+v", got, want)
	}
	// A mixed QU/QM query is answered to the group.
	got = r.Answer(query(t, 0, qu(n.Service, TypePTR), q(n.Host, TypeA)), Port, t0.Add(time.Second))
	if got.Unicast {
		t.Fatalf("QU and QM questions: %+v, want multicast", got)
	}
}

func TestResponderPackets(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	r := newTestResponder(t, testService())
	n := r.Names()
	v4, ll := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("fe80::1")

	// Announcement: everything in the answer section, unique records with
	// the cache-flush bit.
	b, err := r.Announcement(t0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != 0 || m.Flags != FlagResponse|FlagAuthoritative || len(m.Questions) != 0 || len(m.Additionals) != 0 {
		t.Fatalf("announcement header %+v", m)
	}
	type rr struct {
		typ   Type
		name  Name
		flush bool
		ttl   uint32
	}
	var got []rr
	for _, a := range m.Answers {
		got = append(got, rr{a.Type, a.Name, a.CacheFlush(), a.TTL})
	}
	want := []rr{
		{TypePTR, n.Service, false, OtherTTL}, {TypePTR, n.Enum, false, OtherTTL},
		{TypeSRV, n.Instance, true, HostTTL}, {TypeTXT, n.Instance, true, OtherTTL},
		{TypeA, n.Host, true, HostTTL}, {TypeAAAA, n.Host, true, HostTTL},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("announcement records\n got %+v\nwant %+v", got, want)
	}
	if a := m.Answers[4].Addr; a != v4 {
		t.Errorf("A %v (the IPv4-mapped duplicate must be dropped)", a)
	}
	if a := m.Answers[5].Addr; a != ll {
		t.Errorf("AAAA %v (zone dropped)", a)
	}
	ins := Instances(m, n.Service)
	if len(ins) != 1 || ins[0].Port != 4731 || !reflect.DeepEqual(ins[0].Text, testService().Text) ||
		!reflect.DeepEqual(ins[0].Addrs, []netip.Addr{v4, ll}) || ins[0].TTL != OtherTTL {
		t.Fatalf("instances %+v", ins)
	}

	// Within a second of the announcement nothing is multicast again.
	if _, err := r.Multicast(SetPTR, t0.Add(999*time.Millisecond)); !errors.Is(err, ErrNothing) {
		t.Fatalf("multicast 999 ms after: %v", err)
	}
	b, err = r.Multicast(SetPTR, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m, _ = Parse(b)
	if len(m.Answers) != 1 || m.Answers[0].Type != TypePTR {
		t.Fatalf("answers %+v", m.Answers)
	}
	var addTypes []Type
	for _, a := range m.Additionals {
		addTypes = append(addTypes, a.Type)
	}
	if want := []Type{TypeSRV, TypeTXT, TypeA, TypeAAAA, TypeNSEC, TypeNSEC}; !reflect.DeepEqual(addTypes, want) {
		t.Fatalf("additional %v, want %v", addTypes, want)
	}
	nsecHost := m.Additionals[5]
	if !nsecHost.Next.Equal(n.Host) || !nsecHost.Types.Has(TypeA) || !nsecHost.Types.Has(TypeAAAA) || nsecHost.Types.Has(TypeTXT) {
		t.Errorf("host NSEC %+v", nsecHost)
	}

	// Legacy unicast: ID and question echoed, TTL ≤ 10 s, no cache-flush.
	q := query(t, 0, Question{Name: n.Service, Type: TypePTR, Class: ClassIN})
	q.ID = 0x1234
	rep := r.Answer(q, 53000, t0)
	b, err = r.Unicast(rep, q)
	if err != nil {
		t.Fatal(err)
	}
	m, _ = Parse(b)
	if m.ID != 0x1234 || !reflect.DeepEqual(m.Questions, q.Questions) {
		t.Fatalf("legacy reply ID %#x questions %+v", m.ID, m.Questions)
	}
	for _, a := range append(m.Answers, m.Additionals...) {
		if a.TTL > LegacyTTL || a.CacheFlush() {
			t.Errorf("legacy reply record %s TTL %d cache-flush %v", a.Type, a.TTL, a.CacheFlush())
		}
	}

	// Goodbye: TTL 0, without the shared enumeration record.
	b, _ = r.Goodbye()
	m, _ = Parse(b)
	for _, a := range m.Answers {
		if a.TTL != 0 || a.Name.Equal(n.Enum) {
			t.Errorf("goodbye record %s %s TTL %d", a.Name, a.Type, a.TTL)
		}
	}
	if ins := Instances(m, n.Service); len(ins) != 1 || ins[0].TTL != 0 {
		t.Errorf("goodbye instances %+v", ins)
	}
}

func TestNewResponderErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Service)
	}{
		{"empty instance", func(s *Service) { s.Instance = "" }},
		{"instance of 64 bytes", func(s *Service) { s.Instance = string(make([]byte, 64)) }},
		{"empty host", func(s *Service) { s.Host = "" }},
		{"bad service", func(s *Service) { s.Service = "a..b" }},
		{"TXT string of 256 bytes", func(s *Service) { s.Text = []string{string(make([]byte, 256))} }},
		{"too much to fit in a message", func(s *Service) {
			for i := 0; i < 40; i++ {
				s.Text = append(s.Text, string(make([]byte, 250)))
			}
		}},
	} {
		s := testService()
		tc.edit(&s)
		if _, err := NewResponder(s); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
