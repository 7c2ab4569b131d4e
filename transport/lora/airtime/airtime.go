// Package airtime computes how long a LoRa packet occupies the air, from the
// time-on-air formula in Semtech's SX127x and SX126x datasheets.
//
// It is a pure function of the modulation: no I/O, no clock, no goroutines,
// and integer arithmetic only, so results are bit-identical on every
// architecture (meshsim runs hundreds of these on soft-float MIPS under
// qemu in CI). Sources for every constant are in docs/lora.md.
package airtime

import (
	"errors"
	"fmt"
	"time"
)

// Chip selects the formula variant. The two families agree for SF7..SF12 and
// differ for SF5 and SF6.
type Chip uint8

const (
	// SX127x is the SX1272/73/76/77/78/79 family (the zero value). For SF5
	// and SF6 the generic datasheet formula is applied as written.
	SX127x Chip = iota
	// SX126x is the SX1261/62/68 family (and the SX1280 in LoRa mode), whose
	// SF5 and SF6 use 6.25 preamble-sync symbols and no extra 8 payload bits.
	SX126x
)

func (c Chip) String() string {
	switch c {
	case SX127x:
		return "sx127x"
	case SX126x:
		return "sx126x"
	}
	return fmt.Sprintf("chip(%d)", uint8(c))
}

// LDRO is the low-data-rate-optimisation setting.
type LDRO uint8

const (
	// LDROAuto (the zero value) turns the optimisation on when the symbol
	// time is 16 ms or more, as the datasheets mandate and as radio drivers
	// (RNode firmware included) do.
	LDROAuto LDRO = iota
	// LDROOn forces it on.
	LDROOn
	// LDROOff forces it off.
	LDROOff
)

// Limits of the modulation parameters.
const (
	MinSF = 5
	MaxSF = 12
	// MaxPayload is the largest LoRa PHY payload in bytes.
	MaxPayload = 255
	// DefaultPreamble is the Semtech default preamble length in symbols.
	DefaultPreamble = 8
	// MinBandwidthHz and MaxBandwidthHz bound Bandwidth (7.8 kHz .. 1.6 MHz,
	// the SX1280 included).
	MinBandwidthHz = 7800
	MaxBandwidthHz = 1625000
	// MaxPreamble bounds PreambleSymbols (the SX127x register is 16 bits).
	MaxPreamble = 65535
	// ldroThreshold is the symbol time from which LDROAuto turns the
	// optimisation on.
	ldroThreshold = 16 * time.Millisecond
)

// ErrInvalid is wrapped by every error about a bad Modulation or length.
var ErrInvalid = errors.New("airtime: invalid parameter")

// InvalidError names the parameter that is out of range.
type InvalidError struct {
	Field string
	Value int
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("airtime: invalid %s %d", e.Field, e.Value)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Modulation is a LoRa radio configuration. The zero value is not valid: SF
// and BandwidthHz must be set.
type Modulation struct {
	// SF is the spreading factor, 5..12.
	SF int
	// BandwidthHz is the signal bandwidth in Hz, e.g. 125000.
	BandwidthHz int
	// CodingRate is the denominator of the 4/x coding rate, 5..8 (the RNode
	// convention). Zero means 5 (4/5).
	CodingRate int
	// PreambleSymbols is the programmed preamble length. Zero means
	// DefaultPreamble (8). RNode firmware programs a longer one; see
	// firmware-bridge/rnode.
	PreambleSymbols int
	// ImplicitHeader drops the explicit PHY header. Zero: explicit header.
	ImplicitHeader bool
	// NoCRC drops the 16-bit payload CRC. Zero: CRC on.
	NoCRC bool
	// LowDataRate is the low-data-rate-optimisation setting. Zero: automatic.
	LowDataRate LDRO
	// Chip selects the formula variant for SF5/SF6. Zero: SX127x.
	Chip Chip
}

// Validate reports the first out-of-range parameter.
func (m Modulation) Validate() error {
	switch {
	case m.SF < MinSF || m.SF > MaxSF:
		return &InvalidError{"spreading factor", m.SF}
	case m.BandwidthHz < MinBandwidthHz || m.BandwidthHz > MaxBandwidthHz:
		return &InvalidError{"bandwidth", m.BandwidthHz}
	case m.CodingRate != 0 && (m.CodingRate < 5 || m.CodingRate > 8):
		return &InvalidError{"coding rate", m.CodingRate}
	case m.PreambleSymbols < 0 || m.PreambleSymbols > MaxPreamble:
		return &InvalidError{"preamble length", m.PreambleSymbols}
	case m.LowDataRate > LDROOff:
		return &InvalidError{"low data rate setting", int(m.LowDataRate)}
	case m.Chip > SX126x:
		return &InvalidError{"chip", int(m.Chip)}
	}
	return nil
}

func (m Modulation) cr() int {
	if m.CodingRate == 0 {
		return 5
	}
	return m.CodingRate
}

func (m Modulation) preamble() int {
	if m.PreambleSymbols == 0 {
		return DefaultPreamble
	}
	return m.PreambleSymbols
}

// SymbolTime is 2^SF / BW, rounded up to the nanosecond.
func (m Modulation) SymbolTime() time.Duration {
	if m.BandwidthHz <= 0 || m.SF < 0 || m.SF > 30 {
		return 0
	}
	return time.Duration(ceilDiv(int64(1)<<m.SF*int64(time.Second), int64(m.BandwidthHz)))
}

// LowDataRateOn reports whether the optimisation is in effect.
func (m Modulation) LowDataRateOn() bool {
	switch m.LowDataRate {
	case LDROOn:
		return true
	case LDROOff:
		return false
	}
	// 2^SF/BW >= 16 ms  <=>  2^SF * 1000 >= 16 * BW, exactly.
	return int64(1)<<m.SF*1000 >= 16*int64(m.BandwidthHz)
}

// QuarterSymbols returns four times the number of symbols a packet with
// payloadLen bytes of PHY payload occupies (preamble, sync word, header,
// payload and CRC). Four times, because the preamble adds 4.25 (or 6.25)
// symbols and integers keep results exact.
func (m Modulation) QuarterSymbols(payloadLen int) (int64, error) {
	if err := m.Validate(); err != nil {
		return 0, err
	}
	if payloadLen < 0 || payloadLen > MaxPayload {
		return 0, &InvalidError{"payload length", payloadLen}
	}
	sf := int64(m.SF)
	crc := int64(16)
	if m.NoCRC {
		crc = 0
	}
	hdr := int64(20)
	if m.ImplicitHeader {
		hdr = 0
	}
	pre4 := int64(m.preamble())*4 + 17 // n_preamble + 4.25
	var num, den int64
	if m.Chip == SX126x && m.SF < 7 {
		// SX1261/2 datasheet 6.1.4: SF5/SF6 have 6.25 sync symbols and no
		// "+8" term; low-data-rate optimisation does not apply.
		pre4 = int64(m.preamble())*4 + 25
		num = 8*int64(payloadLen) + crc - 4*sf + hdr
		den = 4 * sf
	} else {
		de := int64(0)
		if m.LowDataRateOn() {
			de = 1
		}
		num = 8*int64(payloadLen) + crc - 4*sf + 8 + hdr
		den = 4 * (sf - 2*de)
	}
	n := int64(0)
	if num > 0 {
		n = ceilDiv(num, den) * int64(m.cr())
	}
	return pre4 + 4*(8+n), nil
}

// TimeOnAir returns how long a packet with payloadLen bytes of PHY payload
// is on the air, rounded up to the nanosecond.
func (m Modulation) TimeOnAir(payloadLen int) (time.Duration, error) {
	q, err := m.QuarterSymbols(payloadLen)
	if err != nil {
		return 0, err
	}
	// q/4 symbols of 2^SF/BW seconds each. q < 2^20 and 2^SF <= 4096, so
	// q * 2^SF * 1e9 < 2^20 * 2^12 * 2^30 = 2^62: no overflow.
	return time.Duration(ceilDiv(q<<m.SF*int64(time.Second), 4*int64(m.BandwidthHz))), nil
}

// MaxPayloadWithin returns the largest payload length (0..MaxPayload) whose
// time on air is at most d, or -1 when not even an empty packet fits.
func (m Modulation) MaxPayloadWithin(d time.Duration) (int, error) {
	if err := m.Validate(); err != nil {
		return 0, err
	}
	lo, hi := -1, MaxPayload
	for lo < hi {
		mid := (lo + hi + 1) / 2
		t, _ := m.TimeOnAir(mid)
		if t <= d {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

// Bitrate returns the nominal LoRa bit rate SF * (BW / 2^SF) * 4/CR in bits
// per second, rounded down.
func (m Modulation) Bitrate() int {
	if m.Validate() != nil {
		return 0
	}
	return int(int64(m.SF) * int64(m.BandwidthHz) * 4 / (int64(1) << m.SF) / int64(m.cr()))
}

// String renders the modulation compactly, e.g. "SF9/BW125k/CR4/5".
func (m Modulation) String() string {
	bw := fmt.Sprintf("%g", float64(m.BandwidthHz)/1000)
	return fmt.Sprintf("SF%d/BW%sk/CR4/%d", m.SF, bw, m.cr())
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return a / b
	}
	return (a + b - 1) / b
}
