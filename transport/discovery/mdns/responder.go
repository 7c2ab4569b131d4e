package mdns

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Port is the mDNS UDP port; Group4 and Group6 are the mDNS groups.
const Port = 5353

// Group4 and Group6 return the mDNS multicast groups 224.0.0.251 and
// ff02::fb.
func Group4() netip.Addr { return netip.AddrFrom4([4]byte{224, 0, 0, 251}) }

// Group6 returns ff02::fb.
func Group6() netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0xfb})
}

// TTLs (RFC 6762 §10): 120 s for records named after or pointing to a host
// name (SRV, A, AAAA, and our NSEC records), 75 minutes for the others (PTR,
// TXT); at most 10 s in a legacy unicast response (§6.7).
const (
	HostTTL   = 120
	OtherTTL  = 4500
	LegacyTTL = 10
)

// Set selects groups of a Responder's records.
type Set uint16

// Indexes of the record groups.
const (
	gPTR = iota
	gEnum
	gSRV
	gTXT
	gA
	gAAAA
	gNSECInstance
	gNSECHost
	setGroups
)

// The record groups of one service instance.
const (
	SetPTR          Set = 1 << gPTR          // <service>.<domain> PTR <instance> (shared)
	SetEnum         Set = 1 << gEnum         // _services._dns-sd._udp.<domain> PTR <service> (shared)
	SetSRV          Set = 1 << gSRV          // <instance> SRV 0 0 <port> <host>
	SetTXT          Set = 1 << gTXT          // <instance> TXT
	SetA            Set = 1 << gA            // <host> A, one record per address
	SetAAAA         Set = 1 << gAAAA         // <host> AAAA, one record per address
	SetNSECInstance Set = 1 << gNSECInstance // <instance> NSEC: only SRV and TXT exist
	SetNSECHost     Set = 1 << gNSECHost     // <host> NSEC: only A and/or AAAA exist
)

// SetAnnounce is what announcements and goodbyes carry (the service type
// enumeration PTR is shared by every meshd node, so goodbyes leave it out).
const SetAnnounce = SetPTR | SetEnum | SetSRV | SetTXT | SetA | SetAAAA

const setShared = SetPTR | SetEnum

// Service is one DNS-SD service instance as one interface advertises it.
type Service struct {
	Instance string // instance label, e.g. "meshd-0123456789abcdef-1a2b-3"
	Service  string // service type, two labels: "_meshd._tcp"
	Domain   string // "local"
	Host     string // host label: the host name is <Host>.<Domain>
	Port     uint16
	Text     []string     // TXT strings, each at most 255 bytes
	Addrs    []netip.Addr // addresses of the interface (zones are dropped)
}

// Names of a service.
type Names struct {
	Service  Name // <service>.<domain>
	Enum     Name // _services._dns-sd._udp.<domain>
	Instance Name // <instance>.<service>.<domain>
	Host     Name // <host>.<domain>
}

// ServiceName returns <service>.<domain>, e.g. _meshd._tcp.local.
func ServiceName(service, domain string) (Name, error) {
	lb, err := splitLabels(service + "." + domain)
	if err != nil {
		return Name{}, err
	}
	return NewName(lb...)
}

func splitLabels(s string) ([]string, error) {
	n, err := ParseName(s)
	if err != nil {
		return nil, err
	}
	return n.Labels(), nil
}

// Responder answers queries for one service instance on one interface and
// one IP version, and writes its announcements and goodbyes. It is not safe
// for concurrent use.
type Responder struct {
	names Names
	recs  [setGroups][]Record
	last  [setGroups]time.Time // when each group was last multicast
}

// NewResponder builds the records of s.
func NewResponder(s Service) (*Responder, error) {
	svc, err := ServiceName(s.Service, s.Domain)
	if err != nil {
		return nil, err
	}
	dom, err := splitLabels(s.Domain)
	if err != nil {
		return nil, err
	}
	enum, err := NewName(append([]string{"_services", "_dns-sd", "_udp"}, dom...)...)
	if err != nil {
		return nil, err
	}
	inst, err := NewName(append([]string{s.Instance}, svc.Labels()...)...)
	if err != nil {
		return nil, err
	}
	host, err := NewName(append([]string{s.Host}, dom...)...)
	if err != nil {
		return nil, err
	}
	for _, t := range s.Text {
		if len(t) > 255 {
			return nil, fmt.Errorf("mdns: TXT string of %d bytes", len(t))
		}
	}
	r := &Responder{names: Names{Service: svc, Enum: enum, Instance: inst, Host: host}}
	const unique = ClassIN | ClassTop
	r.recs[gPTR] = []Record{{Name: svc, Type: TypePTR, Class: ClassIN, TTL: OtherTTL, Target: inst}}
	r.recs[gEnum] = []Record{{Name: enum, Type: TypePTR, Class: ClassIN, TTL: OtherTTL, Target: svc}}
	r.recs[gSRV] = []Record{{Name: inst, Type: TypeSRV, Class: unique, TTL: HostTTL, Port: s.Port, Target: host}}
	r.recs[gTXT] = []Record{{Name: inst, Type: TypeTXT, Class: unique, TTL: OtherTTL, Text: append([]string(nil), s.Text...)}}
	nsecInst := Record{Name: inst, Type: TypeNSEC, Class: unique, TTL: HostTTL, Next: inst}
	nsecInst.Types.Set(TypeTXT)
	nsecInst.Types.Set(TypeSRV)
	r.recs[gNSECInstance] = []Record{nsecInst}
	nsecHost := Record{Name: host, Type: TypeNSEC, Class: unique, TTL: HostTTL, Next: host}
	seen := map[netip.Addr]bool{}
	for _, a := range s.Addrs {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || seen[a] {
			continue
		}
		seen[a] = true
		if a.Is4() {
			r.recs[gA] = append(r.recs[gA], Record{Name: host, Type: TypeA, Class: unique, TTL: HostTTL, Addr: a})
			nsecHost.Types.Set(TypeA)
		} else {
			r.recs[gAAAA] = append(r.recs[gAAAA], Record{Name: host, Type: TypeAAAA, Class: unique, TTL: HostTTL, Addr: a})
			nsecHost.Types.Set(TypeAAAA)
		}
	}
	r.recs[gNSECHost] = []Record{nsecHost}
	// The largest response (everything) must fit in one message.
	if _, err := r.build(SetAnnounce|SetNSECInstance|SetNSECHost, 0, false, nil, -1); err != nil {
		return nil, err
	}
	return r, nil
}

// Names returns the names the responder answers for.
func (r *Responder) Names() Names { return r.names }

// Records returns copies of the records of the groups in set.
func (r *Responder) Records(set Set) []Record {
	var out []Record
	for g := 0; g < setGroups; g++ {
		if set&(1<<g) != 0 {
			out = append(out, r.recs[g]...)
		}
	}
	return out
}

// Wait is how long to wait before multicasting a reply (RFC 6762 §6).
type Wait uint8

const (
	WaitNone  Wait = iota // unique records only: answer at once
	WaitShort             // shared records: a random 20–120 ms
	WaitLong              // the query was truncated (more known answers follow): 400–500 ms
)

// Reply is how a query is to be answered.
type Reply struct {
	Answers    Set  // the answer section; 0 means no reply
	Suppressed Set  // answers left out because the query listed them as known
	Unicast    bool // send to the querier's address and port rather than the group
	Legacy     bool // a legacy unicast reply (§6.7): query ID and questions echoed, TTL ≤ 10 s
	Wait       Wait // for a multicast reply
}

// Answer decides how to reply to query q, received from source port
// srcPort at now: which records answer its questions (minus those the
// querier listed as known answers with at least half their TTL left,
// §7.1), and whether the reply goes to the querier alone (a legacy
// querier's source port is not 5353, §6.7; or every question asked for a
// unicast reply and the records were multicast within a quarter of their
// TTL, §5.4) or to the group, and after how long.
func (r *Responder) Answer(q *Message, srcPort uint16, now time.Time) Reply {
	var rep Reply
	if q.Response() || !q.Standard() {
		return rep
	}
	allQU := true
	for _, qu := range q.Questions {
		if c := qu.Class &^ ClassTop; c != ClassIN && c != ClassANY {
			continue
		}
		s := r.match(qu)
		if s == 0 {
			continue
		}
		rep.Answers |= s
		allQU = allQU && qu.Unicast()
	}
	if rep.Answers == 0 {
		return rep
	}
	for g := 0; g < setGroups; g++ {
		if rep.Answers&(1<<g) != 0 && r.known(g, q.Answers) {
			rep.Suppressed |= 1 << g
		}
	}
	rep.Answers &^= rep.Suppressed
	if rep.Answers == 0 {
		return rep
	}
	switch {
	case srcPort != Port:
		rep.Unicast, rep.Legacy = true, true
	case allQU:
		rep.Unicast = true
		for g := 0; g < setGroups; g++ {
			if rep.Answers&(1<<g) == 0 {
				continue
			}
			quarter := time.Duration(r.recs[g][0].TTL) * time.Second / 4
			if r.last[g].IsZero() || now.Sub(r.last[g]) > quarter {
				rep.Unicast = false // refresh the caches of everyone on the link
			}
		}
	}
	if !rep.Unicast {
		switch {
		case q.Flags&FlagTruncated != 0:
			rep.Wait = WaitLong
		case rep.Answers&setShared != 0:
			rep.Wait = WaitShort
		}
	}
	return rep
}

// match returns the groups that answer one question.
func (r *Responder) match(q Question) Set {
	n := &r.names
	t := q.Type
	switch {
	case q.Name.Equal(n.Service):
		if t == TypePTR || t == TypeANY {
			return SetPTR
		}
	case q.Name.Equal(n.Enum):
		if t == TypePTR || t == TypeANY {
			return SetEnum
		}
	case q.Name.Equal(n.Instance):
		switch t {
		case TypeSRV:
			return SetSRV
		case TypeTXT:
			return SetTXT
		case TypeANY:
			return SetSRV | SetTXT
		}
		return SetNSECInstance // we own the name: say what it does not have
	case q.Name.Equal(n.Host):
		var s Set
		if (t == TypeA || t == TypeANY) && len(r.recs[gA]) > 0 {
			s |= SetA
		}
		if (t == TypeAAAA || t == TypeANY) && len(r.recs[gAAAA]) > 0 {
			s |= SetAAAA
		}
		if s == 0 {
			s = SetNSECHost
		}
		return s
	}
	return 0
}

// known reports whether every record of group g is among the known answers
// with at least half its TTL left.
func (r *Responder) known(g int, ka []Record) bool {
	if len(r.recs[g]) == 0 {
		return false
	}
	for i := range r.recs[g] {
		rec := &r.recs[g][i]
		found := false
		for j := range ka {
			if ka[j].TTL >= rec.TTL/2 && rec.SameData(&ka[j]) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// additional returns the groups worth adding to answers (RFC 6763 §12,
// RFC 6762 §6.2).
func (r *Responder) additional(answers Set) Set {
	var s Set
	if answers&SetPTR != 0 {
		s |= SetSRV | SetTXT | SetA | SetAAAA | SetNSECInstance | SetNSECHost
	}
	if answers&SetSRV != 0 {
		s |= SetA | SetAAAA | SetNSECHost
	}
	if answers&(SetA|SetAAAA) != 0 {
		s |= SetA | SetAAAA | SetNSECHost
	}
	return s &^ answers
}

// ErrNothing is returned by Multicast when every record asked for was
// multicast less than a second ago.
var ErrNothing = errors.New("mdns: nothing to send")

// Multicast returns the response to multicast for the answer groups in
// set, leaving out those multicast on this interface less than a second
// ago (RFC 6762 §6), and notes the time.
func (r *Responder) Multicast(set Set, now time.Time) ([]byte, error) {
	for g := 0; g < setGroups; g++ {
		if set&(1<<g) != 0 && !r.last[g].IsZero() && now.Sub(r.last[g]) < time.Second && now.Sub(r.last[g]) >= 0 {
			set &^= 1 << g
		}
	}
	if set == 0 {
		return nil, ErrNothing
	}
	b, err := r.build(set, r.additional(set), false, nil, -1)
	if err != nil {
		return nil, err
	}
	r.mark(set, now)
	return b, nil
}

// Unicast returns the reply rep to send to the querier of q.
func (r *Responder) Unicast(rep Reply, q *Message) ([]byte, error) {
	if rep.Answers == 0 {
		return nil, ErrNothing
	}
	ttl := -1
	if rep.Legacy {
		ttl = LegacyTTL
	}
	return r.build(rep.Answers, r.additional(rep.Answers), rep.Legacy, q, ttl)
}

// Announcement returns the unsolicited response announcing every record
// (RFC 6762 §8.3); the caller sends it twice, a second apart.
func (r *Responder) Announcement(now time.Time) ([]byte, error) {
	r.mark(SetAnnounce, now)
	return r.build(SetAnnounce, 0, false, nil, -1)
}

// Goodbye returns the response withdrawing the records (TTL 0, §10.1).
func (r *Responder) Goodbye() ([]byte, error) {
	return r.build(SetAnnounce&^SetEnum, 0, false, nil, 0)
}

func (r *Responder) mark(set Set, now time.Time) {
	for g := 0; g < setGroups; g++ {
		if set&(1<<g) != 0 {
			r.last[g] = now
		}
	}
}

// build writes a response: answers, then additional. A legacy reply echoes
// q's ID and questions and clears the cache-flush bits. ttl ≥ 0 caps every
// TTL.
func (r *Responder) build(answers, additional Set, legacy bool, q *Message, ttl int) ([]byte, error) {
	m := Message{Flags: FlagResponse | FlagAuthoritative}
	if legacy && q != nil {
		m.ID = q.ID
		m.Questions = q.Questions
	}
	add := func(dst *[]Record, set Set) {
		for g := 0; g < setGroups; g++ {
			if set&(1<<g) == 0 {
				continue
			}
			for _, rec := range r.recs[g] {
				if ttl >= 0 && rec.TTL > uint32(ttl) {
					rec.TTL = uint32(ttl)
				}
				if legacy {
					rec.Class &^= ClassTop
				}
				*dst = append(*dst, rec)
			}
		}
	}
	add(&m.Answers, answers)
	add(&m.Additionals, additional)
	return m.Append(make([]byte, 0, 512))
}
