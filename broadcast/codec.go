package broadcast

import (
	"encoding/binary"
	"time"
)

// reader decodes big-endian fields with bounds checks. The first failure
// sticks: later reads return zero values and err keeps the first error, so
// decoders read a whole record and check err once.
type reader struct {
	b    []byte
	err  error
	what string // record name for errors
}

func (r *reader) fail(sentinel error, field string) {
	if r.err == nil {
		r.err = fieldErr(sentinel, "%s %s", r.what, field)
	}
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail(ErrTruncated, field)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(field string) uint8 {
	if b := r.take(1, field); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if b := r.take(2, field); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if b := r.take(4, field); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if b := r.take(8, field); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) copyTo(dst []byte, field string) {
	if b := r.take(len(dst), field); b != nil {
		copy(dst, b)
	}
}

// time reads a time written by appendTime.
func (r *reader) time(field string) time.Time {
	v := int64(r.u64(field))
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

// end fails when bytes are left over: every record has one encoding.
func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(ErrMalformed, "trailing bytes")
	}
	return r.err
}

// appendTime writes t as Unix nanoseconds (0 for the zero time). Times are
// local bookkeeping (epoch adoption, invite expiry); they are never sent.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.BigEndian.AppendUint64(b, 0)
	}
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
}
