package routing

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// On-disk records. Each starts with a version byte (1). Integers are
// big-endian; times are Unix nanoseconds. Every decoder bounds what it
// allocates by envelope.MaxSize and refuses trailing or missing bytes.

const recordVersion = 1

// Meta keys.
var (
	metaMsgID = []byte("msgid") // u64: message ids below this may have been used
	metaSeq   = []byte("seq")   // u32: highest announce sequence used
)

// outRecord is an own message in the outbox.
type outRecord struct {
	ID       MsgID
	Created  time.Time
	Expires  time.Time
	Dst      envelope.Address
	Key      envelope.PublicKey
	HasKey   bool
	Port     uint8
	Counter  uint32 // 0 until sealed
	Attempts uint16
	Payload  []byte // until sealed
	Sealed   []byte // the exact bytes every retry resends
}

const (
	outFlagKey = 1 << iota
)

func appendTime(b []byte, t time.Time) []byte {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

func appendBytes(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func (r *outRecord) marshal() []byte {
	b := make([]byte, 0, 1+8+8+8+16+1+32+1+4+2+8+len(r.Payload)+len(r.Sealed))
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.ID))
	b = appendTime(b, r.Created)
	b = appendTime(b, r.Expires)
	b = append(b, r.Dst[:]...)
	var f byte
	if r.HasKey {
		f |= outFlagKey
	}
	b = append(b, f)
	b = append(b, r.Key[:]...)
	b = append(b, r.Port)
	b = binary.BigEndian.AppendUint32(b, r.Counter)
	b = binary.BigEndian.AppendUint16(b, r.Attempts)
	b = appendBytes(b, r.Payload)
	b = appendBytes(b, r.Sealed)
	return b
}

// reader decodes with bounds; the first failure sticks.
type reader struct {
	b   []byte
	err error
}

func (d *reader) need(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated", ErrCorrupt)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *reader) u8() uint8 {
	if v := d.need(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *reader) u16() uint16 {
	if v := d.need(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *reader) u32() uint32 {
	if v := d.need(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *reader) u64() uint64 {
	if v := d.need(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *reader) time() time.Time {
	n := int64(d.u64())
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (d *reader) bytes() []byte {
	n := d.u32()
	if d.err == nil && n > envelope.MaxSize {
		d.err = fmt.Errorf("%w: field of %d bytes", ErrCorrupt, n)
		return nil
	}
	v := d.need(int(n))
	if v == nil || len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *reader) version() {
	if v := d.u8(); d.err == nil && v != recordVersion {
		d.err = fmt.Errorf("%w: record version %d", ErrCorrupt, v)
	}
}

func (d *reader) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return d.err
}

func decodeOut(b []byte) (outRecord, error) {
	var r outRecord
	d := reader{b: b}
	d.version()
	r.ID = MsgID(d.u64())
	r.Created = d.time()
	r.Expires = d.time()
	copy(r.Dst[:], d.need(envelope.AddressSize))
	f := d.u8()
	copy(r.Key[:], d.need(envelope.PublicKeySize))
	r.Port = d.u8()
	r.Counter = d.u32()
	r.Attempts = d.u16()
	r.Payload = d.bytes()
	r.Sealed = d.bytes()
	if err := d.end(); err != nil {
		return outRecord{}, err
	}
	r.HasKey = f&outFlagKey != 0
	if f&^outFlagKey != 0 {
		return outRecord{}, fmt.Errorf("%w: outbox flags %#x", ErrCorrupt, f)
	}
	if r.HasKey && r.Key.Address() != r.Dst {
		return outRecord{}, fmt.Errorf("%w: outbox key does not match address", ErrCorrupt)
	}
	if r.Sealed != nil {
		if _, err := envelope.Parse(r.Sealed); err != nil {
			return outRecord{}, fmt.Errorf("%w: sealed envelope: %v", ErrCorrupt, err)
		}
		if r.Counter == 0 {
			return outRecord{}, fmt.Errorf("%w: sealed without counter", ErrCorrupt)
		}
	}
	return r, nil
}

func msgKey(id MsgID) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// heldRecord is another node's envelope held until a route appears.
type heldRecord struct {
	Received time.Time
	Expires  time.Time
	Raw      []byte
}

func (r *heldRecord) marshal() []byte {
	b := make([]byte, 0, 1+16+len(r.Raw))
	b = append(b, recordVersion)
	b = appendTime(b, r.Received)
	b = appendTime(b, r.Expires)
	return append(b, r.Raw...)
}

func decodeHeld(b []byte) (heldRecord, envelope.Envelope, error) {
	var r heldRecord
	d := reader{b: b}
	d.version()
	r.Received = d.time()
	r.Expires = d.time()
	if d.err != nil {
		return r, envelope.Envelope{}, d.err
	}
	r.Raw = append([]byte(nil), d.b...)
	e, err := envelope.Parse(r.Raw)
	if err != nil {
		return heldRecord{}, e, fmt.Errorf("%w: held envelope: %v", ErrCorrupt, err)
	}
	if !holdable(e.Kind) {
		return heldRecord{}, e, fmt.Errorf("%w: held %s", ErrCorrupt, e.Kind)
	}
	return r, e, nil
}

// peerRecord is the end-to-end state kept per peer.
type peerRecord struct {
	Key       envelope.PublicKey
	Acked     bool   // the peer acknowledged once: it knows our key
	Reserved  uint32 // send counters up to this may have been used
	Window    envelope.ReplayWindow
	HasWindow bool
	PQ        []byte // post-quantum pairwise secret, if ever learned
}

const (
	peerFlagAcked = 1 << iota
	peerFlagWindow
	peerFlagPQ
)

func (r *peerRecord) marshal() []byte {
	b := make([]byte, 0, 1+32+1+4+140)
	b = append(b, recordVersion)
	b = append(b, r.Key[:]...)
	var f byte
	if r.Acked {
		f |= peerFlagAcked
	}
	if r.HasWindow {
		f |= peerFlagWindow
	}
	if len(r.PQ) == envelope.PQSecretSize {
		f |= peerFlagPQ
	}
	b = append(b, f)
	b = binary.BigEndian.AppendUint32(b, r.Reserved)
	if f&peerFlagPQ != 0 {
		b = append(b, r.PQ...)
	}
	if r.HasWindow {
		w, _ := r.Window.MarshalBinary()
		b = append(b, w...)
	}
	return b
}

func decodePeer(key, b []byte) (peerRecord, error) {
	var r peerRecord
	if len(key) != envelope.AddressSize {
		return r, fmt.Errorf("%w: peer key of %d bytes", ErrCorrupt, len(key))
	}
	d := reader{b: b}
	d.version()
	copy(r.Key[:], d.need(envelope.PublicKeySize))
	f := d.u8()
	r.Reserved = d.u32()
	if d.err != nil {
		return peerRecord{}, d.err
	}
	if f&^(peerFlagAcked|peerFlagWindow|peerFlagPQ) != 0 {
		return peerRecord{}, fmt.Errorf("%w: peer flags %#x", ErrCorrupt, f)
	}
	r.Acked = f&peerFlagAcked != 0
	if f&peerFlagPQ != 0 {
		r.PQ = append([]byte(nil), d.need(envelope.PQSecretSize)...)
		if d.err != nil {
			return peerRecord{}, d.err
		}
	}
	if f&peerFlagWindow != 0 {
		if err := r.Window.UnmarshalBinary(d.b); err != nil {
			return peerRecord{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		r.HasWindow = true
	} else if len(d.b) != 0 {
		return peerRecord{}, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	if r.Key.Address() != envelope.Address(key) {
		return peerRecord{}, fmt.Errorf("%w: peer key does not match address", ErrCorrupt)
	}
	return r, nil
}

// inboxRecord is a delivered message the application has not acknowledged.
type inboxRecord struct {
	From    envelope.PublicKey
	Port    uint8
	Payload []byte
}

func inboxKey(id InboundID) []byte {
	return binary.BigEndian.AppendUint32(append(make([]byte, 0, 20), id.From[:]...), id.Counter)
}

func (r *inboxRecord) marshal() []byte {
	b := make([]byte, 0, 1+32+1+len(r.Payload))
	b = append(b, recordVersion)
	b = append(b, r.From[:]...)
	b = append(b, r.Port)
	return append(b, r.Payload...)
}

func decodeInbox(key, b []byte) (InboundID, inboxRecord, error) {
	var r inboxRecord
	var id InboundID
	if len(key) != envelope.AddressSize+4 {
		return id, r, fmt.Errorf("%w: inbox key of %d bytes", ErrCorrupt, len(key))
	}
	copy(id.From[:], key)
	id.Counter = binary.BigEndian.Uint32(key[envelope.AddressSize:])
	d := reader{b: b}
	d.version()
	copy(r.From[:], d.need(envelope.PublicKeySize))
	r.Port = d.u8()
	if d.err != nil {
		return id, inboxRecord{}, d.err
	}
	if len(d.b) > envelope.MaxSize {
		return id, inboxRecord{}, fmt.Errorf("%w: inbox payload of %d bytes", ErrCorrupt, len(d.b))
	}
	r.Payload = append([]byte{}, d.b...)
	if r.From.Address() != id.From || id.Counter == 0 {
		return id, inboxRecord{}, fmt.Errorf("%w: inbox key does not match record", ErrCorrupt)
	}
	return id, r, nil
}
