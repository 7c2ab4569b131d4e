// Package mdns is the slice of multicast DNS (RFC 6762) and DNS-based
// service discovery (RFC 6763) that meshd's discovery needs, written for
// meshd instead of using a general DNS library: a message codec, a responder
// for one service instance, and what a browser needs to send queries and read
// the instances out of responses.
//
// Everything here is sans-IO: no sockets, goroutines or clocks; the caller
// passes the current time where it matters. transport/discovery owns the
// sockets.
//
// # Why not a library
//
// hashicorp/mdns (with miekg/dns and golang.org/x/net/ipv4 and ipv6 under
// it) cost 1,442 KB of a small MIPS binary and 772 KB of meshd's router
// build, whose budget is 8 MB; this package and the sockets in
// transport/discovery cost 194 KB there (docs/transports.md has the
// measurements). The library also answered on the wrong interfaces and
// neither announced nor said goodbye. This package is a codec and a
// responder for exactly the records meshd advertises.
//
// # The codec
//
// Parse decodes a message of at most MaxMessage bytes: the header, the
// questions, and the records of types A, AAAA, PTR, SRV, TXT and NSEC in
// all three record sections; records of any other type are checked for
// bounds and skipped (counted in Message.Skipped). Names may be compressed
// anywhere RFC 6762 §18.14 allows it (owner names and the names inside
// PTR, SRV and NSEC data). Every compression pointer must point before the
// labels that contain it, so a name cannot loop, and a name follows at most
// maxPointers of them; a name is at most 255 bytes and a label 63. Nothing
// is allocated from a length or count in the message before the bytes it
// describes have been seen to be there.
//
// Append encodes a message, compressing every name (owner and rdata) whose
// suffix was already written.
package mdns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxMessage is the largest message Parse accepts and Append writes
// (RFC 6762 §17: 9000 bytes including the IP and UDP headers would be
// slightly less; 9000 bytes of DNS message is the bound receivers use).
const MaxMessage = 9000

const (
	maxName     = 255 // wire form, including the root label
	maxLabel    = 63
	maxPointers = 32 // compression pointers followed for one name
	headerLen   = 12
)

// Errors returned by Parse and Append. Parse wraps ErrMalformed with the
// reason.
var (
	ErrMalformed = errors.New("mdns: malformed message")
	ErrTooLarge  = errors.New("mdns: message larger than 9000 bytes")
	ErrName      = errors.New("mdns: invalid name")
)

// Type is a DNS resource record type.
type Type uint16

// The types this package decodes, and ANY for questions.
const (
	TypeA    Type = 1
	TypePTR  Type = 12
	TypeTXT  Type = 16
	TypeAAAA Type = 28
	TypeSRV  Type = 33
	TypeNSEC Type = 47
	TypeANY  Type = 255
)

func (t Type) String() string {
	switch t {
	case TypeA:
		return "A"
	case TypePTR:
		return "PTR"
	case TypeTXT:
		return "TXT"
	case TypeAAAA:
		return "AAAA"
	case TypeSRV:
		return "SRV"
	case TypeNSEC:
		return "NSEC"
	case TypeANY:
		return "ANY"
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// Classes, and the top bit of the class field: in a question the querier
// asks for a unicast response (QU, RFC 6762 §5.4), in a record the
// responder says this is the whole set of records of that name and type
// (cache-flush, §10.2).
const (
	ClassIN    = 1
	ClassANY   = 255
	ClassTop   = 0x8000
	classValue = 0x7fff
)

// Header flag bits (RFC 1035 §4.1.1).
const (
	FlagResponse      = 0x8000
	FlagAuthoritative = 0x0400
	FlagTruncated     = 0x0200
	flagOpcode        = 0x7800
	flagRcode         = 0x000f
)

// Name is a domain name, kept in its uncompressed wire form (length-prefixed
// labels ending with the empty root label), so labels may hold any byte,
// dots included, as DNS-SD instance names may. The zero Name is invalid.
type Name struct{ wire string }

// NewName builds a name from its labels, the root excluded:
// NewName("_meshd", "_tcp", "local").
func NewName(labels ...string) (Name, error) {
	var b []byte
	for _, l := range labels {
		if len(l) == 0 || len(l) > maxLabel {
			return Name{}, fmt.Errorf("%w: label of %d bytes", ErrName, len(l))
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0)
	if len(b) > maxName {
		return Name{}, fmt.Errorf("%w: %d bytes", ErrName, len(b))
	}
	return Name{string(b)}, nil
}

// IsZero reports whether n is the zero (invalid) Name.
func (n Name) IsZero() bool { return n.wire == "" }

// Wire returns the uncompressed wire form.
func (n Name) Wire() string { return n.wire }

// Labels returns the labels, the root excluded.
func (n Name) Labels() []string {
	var out []string
	for i := 0; i < len(n.wire) && n.wire[i] != 0; i += 1 + int(n.wire[i]) {
		out = append(out, n.wire[i+1:i+1+int(n.wire[i])])
	}
	return out
}

// First returns the first label and the name of its parent; for the root,
// "" and the zero Name.
func (n Name) First() (string, Name) {
	if len(n.wire) < 2 || n.wire[0] == 0 {
		return "", Name{}
	}
	l := int(n.wire[0])
	return n.wire[1 : 1+l], Name{n.wire[1+l:]}
}

// Equal compares names the DNS way: ASCII letters without regard to case
// (RFC 1035 §2.3.3), every other byte exactly.
func (n Name) Equal(m Name) bool {
	if len(n.wire) != len(m.wire) {
		return false
	}
	for i := 0; i < len(n.wire); i++ {
		if lower(n.wire[i]) != lower(m.wire[i]) {
			return false
		}
	}
	return true
}

// Key is a string equal for names that are Equal: a map key.
func (n Name) Key() string {
	for i := 0; i < len(n.wire); i++ {
		if c := n.wire[i]; c >= 'A' && c <= 'Z' {
			b := []byte(n.wire)
			for j := i; j < len(b); j++ {
				b[j] = lower(b[j])
			}
			return string(b)
		}
	}
	return n.wire
}

// Length bytes are at most 63, below 'A', so folding the whole wire form
// only touches label bytes.
func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// String returns the presentation form: labels joined by dots, ending with
// a dot; a dot or backslash inside a label is escaped with a backslash, and
// bytes outside printable ASCII are written \DDD.
func (n Name) String() string {
	if n.IsZero() {
		return ""
	}
	var sb strings.Builder
	for _, l := range n.Labels() {
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case c == '.' || c == '\\':
				sb.WriteByte('\\')
				sb.WriteByte(c)
			case c < 0x21 || c > 0x7e:
				fmt.Fprintf(&sb, "\\%03d", c)
			default:
				sb.WriteByte(c)
			}
		}
		sb.WriteByte('.')
	}
	if sb.Len() == 0 {
		return "."
	}
	return sb.String()
}

// ParseName reads the presentation form String writes (the final dot is
// optional).
func ParseName(s string) (Name, error) {
	if s == "." {
		return Name{"\x00"}, nil
	}
	var labels []string
	var cur []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '.':
			if len(cur) == 0 {
				return Name{}, fmt.Errorf("%w: empty label in %q", ErrName, s)
			}
			labels = append(labels, string(cur))
			cur = cur[:0]
		case '\\':
			if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
				v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
				if v > 255 {
					return Name{}, fmt.Errorf("%w: escape in %q", ErrName, s)
				}
				cur = append(cur, byte(v))
				i += 3
			} else if i+1 < len(s) {
				cur = append(cur, s[i+1])
				i++
			} else {
				return Name{}, fmt.Errorf("%w: trailing backslash in %q", ErrName, s)
			}
		default:
			cur = append(cur, c)
		}
	}
	if len(cur) > 0 {
		labels = append(labels, string(cur))
	}
	return NewName(labels...)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Question is one entry of the question section.
type Question struct {
	Name  Name
	Type  Type
	Class uint16 // the top bit is the QU bit
}

// Unicast reports whether the querier asked for a unicast response (QU).
func (q Question) Unicast() bool { return q.Class&ClassTop != 0 }

// Record is a resource record. Which of the data fields are meaningful
// depends on Type.
type Record struct {
	Name  Name
	Type  Type
	Class uint16 // the top bit is the cache-flush bit
	TTL   uint32

	Target                 Name       // PTR; SRV
	Priority, Weight, Port uint16     // SRV
	Text                   []string   // TXT, one string per element
	Addr                   netip.Addr // A (4 bytes), AAAA (16)
	Next                   Name       // NSEC next domain name
	Types                  Bitmap     // NSEC types present (types 0–255 only)
}

// CacheFlush reports whether the cache-flush bit is set.
func (r *Record) CacheFlush() bool { return r.Class&ClassTop != 0 }

// SameData reports whether r and o are the same record apart from the TTL
// and the cache-flush bit: same name, type, class and data.
func (r *Record) SameData(o *Record) bool {
	if r.Type != o.Type || r.Class&classValue != o.Class&classValue || !r.Name.Equal(o.Name) {
		return false
	}
	switch r.Type {
	case TypePTR:
		return r.Target.Equal(o.Target)
	case TypeSRV:
		return r.Priority == o.Priority && r.Weight == o.Weight && r.Port == o.Port && r.Target.Equal(o.Target)
	case TypeTXT:
		if len(r.Text) != len(o.Text) {
			return false
		}
		for i := range r.Text {
			if r.Text[i] != o.Text[i] {
				return false
			}
		}
		return true
	case TypeA, TypeAAAA:
		return r.Addr == o.Addr
	case TypeNSEC:
		return r.Next.Equal(o.Next) && r.Types == o.Types
	}
	return false
}

// Bitmap is the NSEC type bitmap, restricted as RFC 6762 §6.1 allows to
// types below 256 (window block 0): bit t is set when type t exists.
type Bitmap [32]byte

// Set marks type t present; types above 255 are ignored.
func (b *Bitmap) Set(t Type) {
	if t < 256 {
		b[t/8] |= 0x80 >> (t % 8)
	}
}

// Has reports whether type t is marked present.
func (b *Bitmap) Has(t Type) bool { return t < 256 && b[t/8]&(0x80>>(t%8)) != 0 }

// Message is a decoded DNS message.
type Message struct {
	ID    uint16
	Flags uint16

	Questions   []Question
	Answers     []Record
	Authorities []Record
	Additionals []Record

	// Skipped counts records of other types, which Parse skips and Append
	// cannot write.
	Skipped int
}

// Response reports whether the QR bit is set.
func (m *Message) Response() bool { return m.Flags&FlagResponse != 0 }

// Standard reports whether the opcode and the response code are both zero;
// mDNS ignores other messages (RFC 6762 §18.3, §18.11).
func (m *Message) Standard() bool { return m.Flags&(flagOpcode|flagRcode) == 0 }

// Parse decodes a message. It returns an error wrapping ErrMalformed for
// anything malformed, ErrTooLarge above MaxMessage bytes. The Message does
// not keep b.
func Parse(b []byte) (*Message, error) {
	if len(b) > MaxMessage {
		return nil, ErrTooLarge
	}
	if len(b) < headerLen {
		return nil, malformed("%d bytes, shorter than a header", len(b))
	}
	m := &Message{
		ID:    binary.BigEndian.Uint16(b[0:]),
		Flags: binary.BigEndian.Uint16(b[2:]),
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	counts := [3]int{
		int(binary.BigEndian.Uint16(b[6:])),
		int(binary.BigEndian.Uint16(b[8:])),
		int(binary.BigEndian.Uint16(b[10:])),
	}
	// Each question takes at least 5 bytes and each record 11: refuse
	// counts the message cannot hold before reading (and allocating).
	if need := qd*5 + (counts[0]+counts[1]+counts[2])*11; need > len(b)-headerLen {
		return nil, malformed("counts need %d bytes, %d left", need, len(b)-headerLen)
	}
	off := headerLen
	if qd > 0 {
		m.Questions = make([]Question, 0, qd)
	}
	for i := 0; i < qd; i++ {
		n, next, err := readName(b, off)
		if err != nil {
			return nil, err
		}
		if next+4 > len(b) {
			return nil, malformed("question truncated")
		}
		m.Questions = append(m.Questions, Question{
			Name:  n,
			Type:  Type(binary.BigEndian.Uint16(b[next:])),
			Class: binary.BigEndian.Uint16(b[next+2:]),
		})
		off = next + 4
	}
	sections := [3]*[]Record{&m.Answers, &m.Authorities, &m.Additionals}
	for s, cnt := range counts {
		for i := 0; i < cnt; i++ {
			var r Record
			var known bool
			var err error
			r, known, off, err = readRecord(b, off)
			if err != nil {
				return nil, err
			}
			if !known {
				m.Skipped++
				continue
			}
			*sections[s] = append(*sections[s], r)
		}
	}
	if off != len(b) {
		return nil, malformed("%d bytes after the last record", len(b)-off)
	}
	return m, nil
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// readName decodes the name at off and returns it with the offset after it
// (after the first pointer, if it has one).
func readName(b []byte, off int) (Name, int, error) {
	var buf [maxName]byte
	n := 0
	end := -1
	pos := off
	segStart := off // start of the labels being read: a pointer must go below it
	hops := 0
	for {
		if pos >= len(b) {
			return Name{}, 0, malformed("name truncated")
		}
		c := b[pos]
		switch c & 0xc0 {
		case 0x00:
			if c == 0 {
				buf[n] = 0
				n++
				if end < 0 {
					end = pos + 1
				}
				return Name{string(buf[:n])}, end, nil
			}
			l := int(c)
			if pos+1+l > len(b) {
				return Name{}, 0, malformed("label truncated")
			}
			if n+1+l+1 > maxName {
				return Name{}, 0, malformed("name longer than %d bytes", maxName)
			}
			copy(buf[n:], b[pos:pos+1+l])
			n += 1 + l
			pos += 1 + l
		case 0xc0:
			if pos+1 >= len(b) {
				return Name{}, 0, malformed("pointer truncated")
			}
			ptr := int(c&0x3f)<<8 | int(b[pos+1])
			if end < 0 {
				end = pos + 2
			}
			if ptr >= segStart {
				return Name{}, 0, malformed("compression pointer to %d does not point back", ptr)
			}
			hops++
			if hops > maxPointers {
				return Name{}, 0, malformed("more than %d compression pointers in a name", maxPointers)
			}
			pos, segStart = ptr, ptr
		default:
			return Name{}, 0, malformed("label type %#x", c&0xc0)
		}
	}
}

// readRecord decodes the record at off. known is false for a type this
// package skips.
func readRecord(b []byte, off int) (r Record, known bool, next int, err error) {
	r.Name, off, err = readName(b, off)
	if err != nil {
		return r, false, 0, err
	}
	if off+10 > len(b) {
		return r, false, 0, malformed("record header truncated")
	}
	r.Type = Type(binary.BigEndian.Uint16(b[off:]))
	r.Class = binary.BigEndian.Uint16(b[off+2:])
	r.TTL = binary.BigEndian.Uint32(b[off+4:])
	rdlen := int(binary.BigEndian.Uint16(b[off+8:]))
	start := off + 10
	end := start + rdlen
	if end > len(b) {
		return r, false, 0, malformed("%s data of %d bytes truncated", r.Type, rdlen)
	}
	rd := b[start:end]
	switch r.Type {
	case TypeA, TypeAAAA:
		want := 4
		if r.Type == TypeAAAA {
			want = 16
		}
		if rdlen != want {
			return r, false, 0, malformed("%s data of %d bytes", r.Type, rdlen)
		}
		r.Addr, _ = netip.AddrFromSlice(rd)
	case TypePTR:
		var p int
		r.Target, p, err = readName(b[:end], start)
		if err != nil {
			return r, false, 0, err
		}
		if p != end {
			return r, false, 0, malformed("PTR data of %d bytes holds a %d-byte name", rdlen, p-start)
		}
	case TypeSRV:
		if rdlen < 7 {
			return r, false, 0, malformed("SRV data of %d bytes", rdlen)
		}
		r.Priority = binary.BigEndian.Uint16(rd)
		r.Weight = binary.BigEndian.Uint16(rd[2:])
		r.Port = binary.BigEndian.Uint16(rd[4:])
		var p int
		r.Target, p, err = readName(b[:end], start+6)
		if err != nil {
			return r, false, 0, err
		}
		if p != end {
			return r, false, 0, malformed("SRV data longer than its target")
		}
	case TypeTXT:
		// RFC 6763 §6.1: no data, one empty string and no TXT record at
		// all mean the same; Append writes one empty string.
		if len(rd) == 0 {
			r.Text = []string{""}
		}
		for i := 0; i < len(rd); {
			l := int(rd[i])
			if i+1+l > len(rd) {
				return r, false, 0, malformed("TXT string truncated")
			}
			r.Text = append(r.Text, string(rd[i+1:i+1+l]))
			i += 1 + l
		}
	case TypeNSEC:
		var p int
		r.Next, p, err = readName(b[:end], start)
		if err != nil {
			return r, false, 0, err
		}
		for p < end {
			if p+2 > end {
				return r, false, 0, malformed("NSEC bitmap truncated")
			}
			win, l := b[p], int(b[p+1])
			if l < 1 || l > 32 || p+2+l > end {
				return r, false, 0, malformed("NSEC bitmap block of %d bytes", l)
			}
			if win == 0 {
				copy(r.Types[:], b[p+2:p+2+l])
			}
			p += 2 + l
		}
	default:
		return r, false, end, nil
	}
	return r, true, end, nil
}

// Append encodes m after b and returns the extended slice. Names are
// compressed against the names of m written before them.
func (m *Message) Append(b []byte) ([]byte, error) {
	w := writer{b: b, start: len(b)}
	w.u16(m.ID)
	w.u16(m.Flags)
	for _, n := range []int{len(m.Questions), len(m.Answers), len(m.Authorities), len(m.Additionals)} {
		if n > 0xffff {
			return b, ErrTooLarge
		}
		w.u16(uint16(n))
	}
	for _, q := range m.Questions {
		if err := w.name(q.Name); err != nil {
			return b, err
		}
		w.u16(uint16(q.Type))
		w.u16(q.Class)
	}
	for _, sec := range [][]Record{m.Answers, m.Authorities, m.Additionals} {
		for i := range sec {
			if err := w.record(&sec[i]); err != nil {
				return b, err
			}
			if len(w.b)-w.start > MaxMessage {
				return b, ErrTooLarge
			}
		}
	}
	if len(w.b)-w.start > MaxMessage {
		return b, ErrTooLarge
	}
	return w.b, nil
}

type writer struct {
	b     []byte
	start int
	names map[string]int // name suffix (wire form) → its offset in the message
}

func (w *writer) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }

func (w *writer) name(n Name) error {
	s := n.wire
	if s == "" || len(s) > maxName || s[len(s)-1] != 0 {
		return ErrName
	}
	for i := 0; ; {
		l := int(s[i])
		if l == 0 {
			if i != len(s)-1 {
				return ErrName
			}
			w.b = append(w.b, 0)
			return nil
		}
		if l > maxLabel || i+1+l >= len(s) {
			return ErrName
		}
		if off, ok := w.names[s[i:]]; ok {
			w.b = append(w.b, 0xc0|byte(off>>8), byte(off))
			return nil
		}
		if off := len(w.b) - w.start; off < 0x4000 {
			if w.names == nil {
				w.names = make(map[string]int)
			}
			w.names[s[i:]] = off
		}
		w.b = append(w.b, s[i:i+1+l]...)
		i += 1 + l
	}
}

func (w *writer) record(r *Record) error {
	if err := w.name(r.Name); err != nil {
		return err
	}
	w.u16(uint16(r.Type))
	w.u16(r.Class)
	w.b = binary.BigEndian.AppendUint32(w.b, r.TTL)
	lenAt := len(w.b)
	w.u16(0)
	switch r.Type {
	case TypeA:
		if !r.Addr.Is4() {
			return fmt.Errorf("mdns: A record with address %v", r.Addr)
		}
		a := r.Addr.As4()
		w.b = append(w.b, a[:]...)
	case TypeAAAA:
		if !r.Addr.Is6() || r.Addr.Is4In6() {
			return fmt.Errorf("mdns: AAAA record with address %v", r.Addr)
		}
		a := r.Addr.As16()
		w.b = append(w.b, a[:]...)
	case TypePTR:
		if err := w.name(r.Target); err != nil {
			return err
		}
	case TypeSRV:
		w.u16(r.Priority)
		w.u16(r.Weight)
		w.u16(r.Port)
		if err := w.name(r.Target); err != nil {
			return err
		}
	case TypeTXT:
		if len(r.Text) == 0 {
			w.b = append(w.b, 0) // RFC 6763 §6.1: one empty string
		}
		for _, t := range r.Text {
			if len(t) > 255 {
				return fmt.Errorf("mdns: TXT string of %d bytes", len(t))
			}
			w.b = append(w.b, byte(len(t)))
			w.b = append(w.b, t...)
		}
	case TypeNSEC:
		if err := w.name(r.Next); err != nil {
			return err
		}
		last := -1
		for i, v := range r.Types {
			if v != 0 {
				last = i
			}
		}
		if last >= 0 {
			w.b = append(w.b, 0, byte(last+1))
			w.b = append(w.b, r.Types[:last+1]...)
		}
	default:
		return fmt.Errorf("mdns: cannot encode a %s record", r.Type)
	}
	rdlen := len(w.b) - lenAt - 2
	if rdlen > 0xffff {
		return ErrTooLarge
	}
	binary.BigEndian.PutUint16(w.b[lenAt:], uint16(rdlen))
	return nil
}
