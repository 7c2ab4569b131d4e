// Package kiss implements KISS framing (FEND/FESC byte stuffing) as used by
// TNCs and by RNode firmware on its serial port: encoding, and a bounded
// streaming decoder for bytes from outside.
//
// Byte values: FEND 0xC0, FESC 0xDB, TFEND 0xDC, TFESC 0xDD (KISS, Chepponis
// and Karn 1987; RNode_Firmware Framing.h lines 19-22). See
// docs/firmware-bridge.md.
package kiss

// Framing bytes.
const (
	FEND  = 0xC0 // frame end (and start)
	FESC  = 0xDB // frame escape
	TFEND = 0xDC // transposed FEND, after FESC
	TFESC = 0xDD // transposed FESC, after FESC
)

// Append appends one frame — FEND, cmd, data escaped, FEND — to dst.
func Append(dst []byte, cmd byte, data []byte) []byte {
	dst = append(dst, FEND)
	dst = appendEscaped(dst, cmd)
	for _, b := range data {
		dst = appendEscaped(dst, b)
	}
	return append(dst, FEND)
}

func appendEscaped(dst []byte, b byte) []byte {
	switch b {
	case FEND:
		return append(dst, FESC, TFEND)
	case FESC:
		return append(dst, FESC, TFESC)
	}
	return append(dst, b)
}

// Stats counts what a Decoder saw.
type Stats struct {
	// Frames is complete frames delivered.
	Frames uint64
	// Oversized is frames dropped for exceeding the size limit.
	Oversized uint64
	// BadEscape is frames dropped for a FESC not followed by TFEND/TFESC.
	BadEscape uint64
	// Noise is bytes received outside any frame (before the first FEND).
	Noise uint64
}

// Decoder turns a byte stream into frames. Memory is bounded by the limit
// given to NewDecoder whatever the input. Not safe for concurrent use.
type Decoder struct {
	max     int
	buf     []byte
	synced  bool // a FEND has been seen: bytes belong to a frame
	esc     bool
	discard bool // the current frame is being dropped
	stats   Stats
}

// NewDecoder returns a decoder that delivers frames of at most maxFrame
// bytes (command byte included, after unescaping); longer ones are dropped
// and counted. maxFrame below 1 means 1.
func NewDecoder(maxFrame int) *Decoder {
	if maxFrame < 1 {
		maxFrame = 1
	}
	return &Decoder{max: maxFrame, buf: make([]byte, 0, min(maxFrame, 1024))}
}

// Feed consumes p and calls fn for each complete, well-formed, non-empty
// frame with its command byte and unescaped data. data is only valid during
// the call.
func (d *Decoder) Feed(p []byte, fn func(cmd byte, data []byte)) {
	for _, b := range p {
		if b == FEND {
			if d.synced && !d.discard && !d.esc && len(d.buf) > 0 {
				d.stats.Frames++
				fn(d.buf[0], d.buf[1:])
			} else if d.esc && !d.discard {
				d.stats.BadEscape++
			}
			d.synced, d.esc, d.discard = true, false, false
			d.buf = d.buf[:0]
			continue
		}
		if !d.synced {
			d.stats.Noise++
			continue
		}
		if d.discard {
			continue
		}
		if d.esc {
			d.esc = false
			switch b {
			case TFEND:
				b = FEND
			case TFESC:
				b = FESC
			default:
				d.stats.BadEscape++
				d.drop()
				continue
			}
		} else if b == FESC {
			d.esc = true
			continue
		}
		if len(d.buf) >= d.max {
			d.stats.Oversized++
			d.drop()
			continue
		}
		d.buf = append(d.buf, b)
	}
}

func (d *Decoder) drop() {
	d.discard = true
	d.esc = false
	d.buf = d.buf[:0]
}

// Reset forgets any partial frame and waits for the next FEND (after a port
// is reopened).
func (d *Decoder) Reset() {
	d.synced, d.esc, d.discard = false, false, false
	d.buf = d.buf[:0]
}

// Stats returns the counters.
func (d *Decoder) Stats() Stats { return d.stats }
