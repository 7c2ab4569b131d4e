package rnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/openmeshd/meshd/firmware-bridge/kiss"
)

// Errors.
var (
	// ErrNotRNode: the device did not answer the detect handshake in time.
	ErrNotRNode = errors.New("rnode: no RNode answered the detect handshake")
	// ErrOldFirmware: the firmware is older than MinFirmware.
	ErrOldFirmware = errors.New("rnode: firmware too old")
	// ErrConfigMismatch: the radio did not confirm a setting.
	ErrConfigMismatch = errors.New("rnode: radio did not confirm configuration")
	// ErrClosed: the device was closed or its port failed.
	ErrClosed = errors.New("rnode: device closed")
	// ErrTooLarge: a data frame above MaxPayload.
	ErrTooLarge = errors.New("rnode: frame larger than 254 bytes")
)

// Config is the radio configuration a host sets.
type Config struct {
	// FrequencyHz, e.g. 869525000.
	FrequencyHz uint32
	// BandwidthHz, e.g. 125000.
	BandwidthHz uint32
	// TxPowerDBm is the transmit power (the firmware clamps to its board's
	// maximum and reports what it set).
	TxPowerDBm int
	// SF is the spreading factor 5..12 (firmware clamps to 5..12).
	SF int
	// CR is the coding-rate denominator 5..8.
	CR int
	// ShortTermAirtimeLimit and LongTermAirtimeLimit are the firmware's own
	// airtime locks in percent (e.g. 1.0 = 1 %; resolution 0.01 %). The
	// firmware refuses to transmit above them: a second line of defence
	// behind the host's duty-cycle budget. Zero leaves them unset.
	ShortTermAirtimeLimit float64
	LongTermAirtimeLimit  float64
}

// Info is what detection learned.
type Info struct {
	FirmwareMajor, FirmwareMinor int
	Platform, MCU                byte
	PlatformName, MCUName        string
}

// Signal is the link quality of a received frame.
type Signal struct {
	RSSI, SNR float32
	Valid     bool
}

// ChannelStats is the firmware's CMD_STAT_CHTM report.
type ChannelStats struct {
	AirtimeShort, AirtimeLong         float64 // percent
	ChannelLoadShort, ChannelLoadLong float64 // percent
	CurrentRSSI, NoiseFloor           int     // dBm
	Interference                      int     // dBm; 0 when none detected
}

// Stats counts what the device saw.
type Stats struct {
	FramesIn, FramesOut uint64
	BytesIn, BytesOut   uint64
	Errors              [8]uint64 // by firmware error code (index 0: unknown codes)
	Unknown             uint64    // frames with commands this driver does not use
	Short               uint64    // known commands with too few bytes
	KISS                kiss.Stats
}

// Options for a Device. Callbacks are called from the Run goroutine and
// must not block for long.
type Options struct {
	// OnFrame receives each data frame with its signal report.
	OnFrame func(data []byte, s Signal)
	// OnChannelStats receives channel statistics reports.
	OnChannelStats func(ChannelStats)
	// OnError receives firmware error reports.
	OnError func(code byte)
	// Logger; nil discards.
	Logger *slog.Logger
	// Timeout bounds each exchange (detect, configure). Zero: 3 s.
	Timeout time.Duration
}

// Device is one RNode on an open port. Safe for concurrent use.
type Device struct {
	port io.ReadWriteCloser
	o    Options
	log  *slog.Logger

	wmu sync.Mutex // serialises writes
	wb  []byte

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a report arrives
	rep     reports
	pending Signal
	stats   Stats
	closed  bool
	err     error
}

// reports holds the latest value of each report; has marks which arrived.
type reports struct {
	has                map[byte]bool
	detect             bool
	fwMaj, fwMin       int
	platform, mcu      byte
	freq, bw           uint32
	txp, sf, cr, state int
	stLock, ltLock     int // hundredths of a percent
}

// New wraps an open port. Call Run to read from it.
func New(port io.ReadWriteCloser, o Options) *Device {
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Device{port: port, o: o, log: log, changed: make(chan struct{}), rep: reports{has: map[byte]bool{}}}
}

// Run reads and dispatches reports until the port fails or ctx is done (it
// then closes the port). It returns the read error (io.EOF or the port's
// error on unplug).
func (d *Device) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { d.Close() })
	defer stop()
	dec := kiss.NewDecoder(1 + 512)
	buf := make([]byte, 1024)
	for {
		n, err := d.port.Read(buf)
		if n > 0 {
			dec.Feed(buf[:n], d.handle)
			d.mu.Lock()
			d.stats.KISS = dec.Stats()
			d.mu.Unlock()
		}
		if err != nil || (n == 0 && d.isClosed()) {
			if err == nil {
				err = io.EOF
			}
			d.fail(err)
			return err
		}
	}
}

func (d *Device) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

func (d *Device) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
	d.Close()
}

// Close closes the port (idempotent).
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.changed)
	d.mu.Unlock()
	return d.port.Close()
}

// Leave tells the firmware the host is going away (CMD_LEAVE), as
// Reticulum does on shutdown.
func (d *Device) Leave() error { return d.write(CmdLeave, []byte{LeaveByte}) }

func (d *Device) handle(cmd byte, data []byte) {
	var frame []byte
	var sig Signal
	var chStats *ChannelStats
	var errCode byte = 0
	isErr := false

	d.mu.Lock()
	r := &d.rep
	short := false
	u8 := func() int {
		if len(data) < 1 {
			short = true
			return 0
		}
		return int(data[0])
	}
	u32 := func() uint32 {
		if len(data) < 4 {
			short = true
			return 0
		}
		return binary.BigEndian.Uint32(data)
	}
	u16 := func(i int) int {
		if len(data) < i+2 {
			short = true
			return 0
		}
		return int(binary.BigEndian.Uint16(data[i:]))
	}
	known := true
	switch cmd {
	case CmdData:
		d.stats.FramesIn++
		d.stats.BytesIn += uint64(len(data))
		frame = append([]byte(nil), data...)
		sig = d.pending
		d.pending = Signal{}
	case CmdStatRSSI:
		if v := u8(); !short {
			d.pending.RSSI = float32(v - RSSIOffset)
			d.pending.Valid = true
		}
	case CmdStatSNR:
		if v := u8(); !short {
			d.pending.SNR = float32(int8(v)) * 0.25
			d.pending.Valid = true
		}
	case CmdDetect:
		if u8() == DetectResp {
			r.detect = true
		}
	case CmdFWVersion:
		if len(data) >= 2 {
			r.fwMaj, r.fwMin = int(data[0]), int(data[1])
		} else {
			short = true
		}
	case CmdPlatform:
		r.platform = byte(u8())
	case CmdMCU:
		r.mcu = byte(u8())
	case CmdFrequency:
		r.freq = u32()
	case CmdBandwidth:
		r.bw = u32()
	case CmdTxPower:
		r.txp = int(int8(u8()))
	case CmdSF:
		r.sf = u8()
	case CmdCR:
		r.cr = u8()
	case CmdRadioState:
		r.state = u8()
	case CmdSTALock:
		r.stLock = u16(0)
	case CmdLTALock:
		r.ltLock = u16(0)
	case CmdStatCHTM:
		if len(data) >= 11 {
			cs := ChannelStats{
				AirtimeShort: float64(u16(0)) / 100, AirtimeLong: float64(u16(2)) / 100,
				ChannelLoadShort: float64(u16(4)) / 100, ChannelLoadLong: float64(u16(6)) / 100,
				CurrentRSSI: int(data[8]) - RSSIOffset, NoiseFloor: int(data[9]) - RSSIOffset,
			}
			if data[10] != 0xFF {
				cs.Interference = int(data[10]) - RSSIOffset
			}
			chStats = &cs
		} else {
			short = true
		}
	case CmdError:
		if v := u8(); !short {
			errCode, isErr = byte(v), true
			if int(v) < len(d.stats.Errors) {
				d.stats.Errors[v]++
			} else {
				d.stats.Errors[0]++
			}
		}
	default:
		known = false
		d.stats.Unknown++
	}
	if short {
		d.stats.Short++
	} else if known && cmd != CmdData {
		r.has[cmd] = true
		if !d.closed {
			close(d.changed)
			d.changed = make(chan struct{})
		}
	}
	d.mu.Unlock()

	switch {
	case frame != nil && d.o.OnFrame != nil:
		d.o.OnFrame(frame, sig)
	case chStats != nil && d.o.OnChannelStats != nil:
		d.o.OnChannelStats(*chStats)
	case isErr:
		d.log.Warn("rnode firmware error", "code", errCode, "error", ErrorName(errCode))
		if d.o.OnError != nil {
			d.o.OnError(errCode)
		}
	}
}

func (d *Device) write(cmd byte, data []byte) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.wb = kiss.Append(d.wb[:0], cmd, data)
	if _, err := d.port.Write(d.wb); err != nil {
		d.fail(err)
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return nil
}

// wait blocks until cond (called with d.mu held) is true, the timeout
// passes, ctx is done, or the device closes.
func (d *Device) wait(ctx context.Context, cond func(r *reports) bool) error {
	t := time.NewTimer(d.o.Timeout)
	defer t.Stop()
	for {
		d.mu.Lock()
		if d.closed {
			err := d.err
			d.mu.Unlock()
			if err == nil {
				err = ErrClosed
			}
			return fmt.Errorf("%w: %v", ErrClosed, err)
		}
		ok := cond(&d.rep)
		ch := d.changed
		d.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return context.DeadlineExceeded
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Detect runs the handshake: CMD_DETECT with DETECT_REQ plus firmware
// version, platform and MCU queries in one burst, as Reticulum does.
func (d *Device) Detect(ctx context.Context) (Info, error) {
	d.wmu.Lock()
	b := kiss.Append(nil, CmdDetect, []byte{DetectReq})
	b = kiss.Append(b, CmdFWVersion, []byte{0})
	b = kiss.Append(b, CmdPlatform, []byte{0})
	b = kiss.Append(b, CmdMCU, []byte{0})
	_, err := d.port.Write(b)
	d.wmu.Unlock()
	if err != nil {
		d.fail(err)
		return Info{}, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	err = d.wait(ctx, func(r *reports) bool {
		return r.detect && r.has[CmdFWVersion] && r.has[CmdPlatform] && r.has[CmdMCU]
	})
	d.mu.Lock()
	r := d.rep
	d.mu.Unlock()
	if errors.Is(err, context.DeadlineExceeded) {
		if r.detect {
			err = nil // old firmware without some queries: accept
		} else {
			return Info{}, ErrNotRNode
		}
	}
	if err != nil {
		return Info{}, err
	}
	info := Info{FirmwareMajor: r.fwMaj, FirmwareMinor: r.fwMin, Platform: r.platform, MCU: r.mcu,
		PlatformName: platformName(r.platform), MCUName: mcuName(r.mcu)}
	if r.has[CmdFWVersion] && (r.fwMaj < MinFirmwareMajor || r.fwMaj == MinFirmwareMajor && r.fwMin < MinFirmwareMinor) {
		return info, fmt.Errorf("%w: %d.%02d, need %d.%02d or later", ErrOldFirmware, r.fwMaj, r.fwMin, MinFirmwareMajor, MinFirmwareMinor)
	}
	return info, nil
}

func lockValue(percent float64) int {
	v := int(math.Round(percent * 100))
	if v < 0 {
		v = 0
	}
	if v > 0xFFFF {
		v = 0xFFFF
	}
	return v
}

// Configure sets frequency, bandwidth, TX power, SF, CR, the airtime locks
// and radio state on, and verifies that the radio reports back each value
// (the firmware echoes every setting). TX power may be clamped by the
// board: the value reported is accepted and returned.
func (d *Device) Configure(ctx context.Context, c Config) (txPower int, err error) {
	d.mu.Lock()
	for _, k := range []byte{CmdFrequency, CmdBandwidth, CmdTxPower, CmdSF, CmdCR, CmdRadioState, CmdSTALock, CmdLTALock} {
		delete(d.rep.has, k)
	}
	d.mu.Unlock()
	var b4 [4]byte
	binary.BigEndian.PutUint32(b4[:], c.FrequencyHz)
	if err := d.write(CmdFrequency, b4[:]); err != nil {
		return 0, err
	}
	binary.BigEndian.PutUint32(b4[:], c.BandwidthHz)
	if err := d.write(CmdBandwidth, b4[:]); err != nil {
		return 0, err
	}
	for _, x := range []struct {
		cmd byte
		v   int
	}{{CmdTxPower, c.TxPowerDBm}, {CmdSF, c.SF}, {CmdCR, c.CR}} {
		if err := d.write(x.cmd, []byte{byte(x.v)}); err != nil {
			return 0, err
		}
	}
	locks := c.ShortTermAirtimeLimit > 0 || c.LongTermAirtimeLimit > 0
	if locks {
		var b2 [2]byte
		binary.BigEndian.PutUint16(b2[:], uint16(lockValue(c.ShortTermAirtimeLimit)))
		if err := d.write(CmdSTALock, b2[:]); err != nil {
			return 0, err
		}
		binary.BigEndian.PutUint16(b2[:], uint16(lockValue(c.LongTermAirtimeLimit)))
		if err := d.write(CmdLTALock, b2[:]); err != nil {
			return 0, err
		}
	}
	if err := d.write(CmdRadioState, []byte{RadioStateOn}); err != nil {
		return 0, err
	}
	check := func(r *reports) bool {
		if !(r.has[CmdFrequency] && r.has[CmdBandwidth] && r.has[CmdTxPower] && r.has[CmdSF] && r.has[CmdCR] && r.has[CmdRadioState]) {
			return false
		}
		return !locks || (r.has[CmdSTALock] && r.has[CmdLTALock])
	}
	werr := d.wait(ctx, check)
	d.mu.Lock()
	r := d.rep
	d.mu.Unlock()
	var bad []string
	if werr != nil && !errors.Is(werr, context.DeadlineExceeded) {
		return 0, werr
	}
	diff := func(name string, ok, got bool, want, have any) {
		if !got {
			bad = append(bad, name+": no answer")
		} else if !ok {
			bad = append(bad, fmt.Sprintf("%s: set %v, radio reports %v", name, want, have))
		}
	}
	df := int64(r.freq) - int64(c.FrequencyHz)
	diff("frequency", df >= -100 && df <= 100, r.has[CmdFrequency], c.FrequencyHz, r.freq) // as Reticulum: within 100 Hz
	diff("bandwidth", r.bw == c.BandwidthHz, r.has[CmdBandwidth], c.BandwidthHz, r.bw)
	diff("spreading factor", r.sf == c.SF, r.has[CmdSF], c.SF, r.sf)
	diff("coding rate", r.cr == c.CR, r.has[CmdCR], c.CR, r.cr)
	diff("radio state", r.state == RadioStateOn, r.has[CmdRadioState], "on", r.state)
	diff("tx power", true, r.has[CmdTxPower], c.TxPowerDBm, r.txp)
	if locks {
		diff("short-term airtime lock", r.stLock == lockValue(c.ShortTermAirtimeLimit), r.has[CmdSTALock], lockValue(c.ShortTermAirtimeLimit), r.stLock)
		diff("long-term airtime lock", r.ltLock == lockValue(c.LongTermAirtimeLimit), r.has[CmdLTALock], lockValue(c.LongTermAirtimeLimit), r.ltLock)
	}
	if len(bad) > 0 {
		return r.txp, fmt.Errorf("%w: %v", ErrConfigMismatch, bad)
	}
	if r.txp != c.TxPowerDBm {
		d.log.Info("rnode clamped tx power", "asked", c.TxPowerDBm, "set", r.txp)
	}
	return r.txp, nil
}

// Send writes one data frame for transmission. The firmware queues it and
// drops frames silently when its queue is full: callers pace by airtime.
func (d *Device) Send(data []byte) error {
	if len(data) > MaxPayload {
		return ErrTooLarge
	}
	if err := d.write(CmdData, data); err != nil {
		return err
	}
	d.mu.Lock()
	d.stats.FramesOut++
	d.stats.BytesOut += uint64(len(data))
	d.mu.Unlock()
	return nil
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}
