package mdns

import (
	"net/netip"
)

// MaxQuery bounds the queries Query writes: the payload of a UDP datagram
// in the minimum IPv6 MTU (1280 − 40 − 8), so a query is never fragmented.
const MaxQuery = 1232

// Query returns a multicast query for the PTR records of service (a
// "QM" question: answers go to the group, RFC 6762 §5.4) listing the known
// records as known answers (§7.1), as many as fit in MaxQuery bytes; the
// rest are left out rather than sent in a second, truncated packet.
func Query(service Name, known []Record) ([]byte, error) {
	m := Message{Questions: []Question{{Name: service, Type: TypePTR, Class: ClassIN}}}
	b, err := m.Append(make([]byte, 0, 512))
	if err != nil {
		return nil, err
	}
	for len(known) > 0 {
		m.Answers = known
		out, err := m.Append(b[:0])
		if err == nil && len(out) <= MaxQuery {
			return out, nil
		}
		known = known[:len(known)/2]
	}
	m.Answers = nil
	return m.Append(b[:0])
}

// Instance is a service instance read from a response.
type Instance struct {
	Name  Name   // <instance>.<service>.<domain>
	TTL   uint32 // of the PTR record; 0 is a goodbye
	Host  Name   // SRV target
	Port  uint16
	Text  []string
	Addrs []netip.Addr // of Host, in the order given

	HaveSRV, HaveTXT bool
}

// Bounds on what one message yields.
const (
	maxInstances = 64
	maxAddrs     = 16
)

// Instances returns the instances of service that response m names in PTR
// records of its answer or additional section, completed with the SRV, TXT
// and address records the same message carries (RFC 6763 §12.1: responders
// add them as additional records). At most 64 instances with 16
// addresses each.
func Instances(m *Message, service Name) []Instance {
	if !m.Response() || !m.Standard() {
		return nil
	}
	var out []Instance
	each := func(f func(r *Record) bool) {
		for _, sec := range [][]Record{m.Answers, m.Additionals} {
			for i := range sec {
				if !f(&sec[i]) {
					return
				}
			}
		}
	}
	each(func(r *Record) bool {
		if r.Type != TypePTR || r.Class&classValue != ClassIN || !r.Name.Equal(service) {
			return true
		}
		for i := range out {
			if out[i].Name.Equal(r.Target) {
				return true
			}
		}
		out = append(out, Instance{Name: r.Target, TTL: r.TTL})
		return len(out) < maxInstances
	})
	for i := range out {
		in := &out[i]
		each(func(r *Record) bool {
			if r.Class&classValue != ClassIN || !r.Name.Equal(in.Name) {
				return true
			}
			switch {
			case r.Type == TypeSRV && !in.HaveSRV:
				in.Host, in.Port, in.HaveSRV = r.Target, r.Port, true
			case r.Type == TypeTXT && !in.HaveTXT:
				in.Text, in.HaveTXT = r.Text, true
			}
			return true
		})
		if !in.HaveSRV {
			continue
		}
		each(func(r *Record) bool {
			if (r.Type == TypeA || r.Type == TypeAAAA) && r.Class&classValue == ClassIN && r.Name.Equal(in.Host) && len(in.Addrs) < maxAddrs {
				in.Addrs = append(in.Addrs, r.Addr)
			}
			return true
		})
	}
	return out
}
