// Package vradio is a virtual radio: N pseudo-terminals that each behave as
// an RNode modem (same KISS protocol, detect answers, configuration
// echoes), all on one simulated air. Airtime follows the configured
// modulation (transport/lora/airtime, with RNode's preamble); transmissions
// that overlap at a receiver collide; each link has a loss probability and
// a range (a loss matrix or positions); RSSI and SNR are reported before
// each received frame, as the firmware does. Modems can be unplugged and
// replugged (their pty closed and reopened behind a stable symlink).
//
// It lets tests and demos run the real serial code path with no hardware.
// It runs in real time: it is an edge, not a sans-IO core.
package vradio

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/openmeshd/meshd/firmware-bridge/kiss"
	"github.com/openmeshd/meshd/firmware-bridge/rnode"
	"github.com/openmeshd/meshd/transport/lora/airtime"
)

// Position is a modem's place in metres.
type Position struct{ X, Y float64 }

// Options configure the air.
type Options struct {
	// N is the number of modems (1..64).
	N int
	// Dir is where the stable symlinks rnode0..rnodeN-1 are made. Empty
	// means a new directory under os.TempDir().
	Dir string
	// Loss is the probability that a frame is lost on every link, 0..1.
	// Zero means no random loss.
	Loss float64
	// Positions, if set (one per modem), give RSSI/SNR by free-space path
	// loss and cut links longer than Range metres (zero Range: 10 km).
	Positions []Position
	Range     float64
	// Seed seeds the loss and jitter random source. Zero means 1.
	Seed int64
	// Chip selects the SF5/SF6 airtime formula. Zero: SX127x.
	Chip airtime.Chip
	// QueueFrames is each modem's transmit queue; a full queue drops frames
	// silently, like RNode firmware. Zero means 16.
	QueueFrames int
	// NoCSMA turns off listen-before-talk (then every overlap collides).
	NoCSMA bool
	// Logger; nil discards.
	Logger *slog.Logger
}

// Stats counts what happened on the air.
type Stats struct {
	Transmissions, Delivered, Lost, Collisions, HalfDuplex, Dropped, OutOfRange uint64
	Unknown                                                                     uint64 // unknown host commands ignored
}

// Air is the simulated channel and its modems.
type Air struct {
	o      Options
	log    *slog.Logger
	dir    string
	ownDir bool

	mu     sync.Mutex
	rng    *rand.Rand
	modems []*modem
	txs    []*txn // recent and current transmissions
	loss   [][]float64
	stats  Stats
	ctx    context.Context
	wg     sync.WaitGroup
}

type txn struct {
	from       int
	start, end time.Time
	freq, bw   uint32
	sf         int
	data       []byte
}

// radio is a modem's configuration, reset to power-on defaults on replug.
type radio struct {
	freq, bw         uint32
	txp, sf, cr      int
	on               bool
	stLock, ltLock   uint16
	rxCount, txCount uint32
}

type modem struct {
	air  *Air
	idx  int
	link string // stable symlink

	mu      sync.Mutex
	master  *os.File
	slave   *os.File
	path    string
	r       radio
	queue   chan []byte
	gen     int // bumps on unplug, stopping the old session's goroutines
	txUntil time.Time
}

// New opens the pseudo-terminals.
func New(o Options) (*Air, error) {
	if o.N < 1 || o.N > 64 {
		return nil, fmt.Errorf("vradio: N %d not in 1..64", o.N)
	}
	if o.Positions != nil && len(o.Positions) != o.N {
		return nil, fmt.Errorf("vradio: %d positions for %d modems", len(o.Positions), o.N)
	}
	if o.Range == 0 {
		o.Range = 10000
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.QueueFrames == 0 {
		o.QueueFrames = 16
	}
	a := &Air{o: o, log: o.Logger, rng: rand.New(rand.NewSource(o.Seed))}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.dir = o.Dir
	if a.dir != "" {
		if err := os.MkdirAll(a.dir, 0o755); err != nil {
			return nil, err
		}
	} else {
		d, err := os.MkdirTemp("", "meshd-vradio-")
		if err != nil {
			return nil, err
		}
		a.dir, a.ownDir = d, true
	}
	a.loss = make([][]float64, o.N)
	for i := range a.loss {
		a.loss[i] = make([]float64, o.N)
		for j := range a.loss[i] {
			a.loss[i][j] = o.Loss
		}
	}
	for i := 0; i < o.N; i++ {
		m := &modem{air: a, idx: i, link: filepath.Join(a.dir, fmt.Sprintf("rnode%d", i))}
		a.modems = append(a.modems, m)
		if err := m.plug(); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

// Paths returns the stable paths (symlinks) of the modems.
func (a *Air) Paths() []string {
	out := make([]string, len(a.modems))
	for i, m := range a.modems {
		out[i] = m.link
	}
	return out
}

// PTY returns modem i's current /dev/pts path ("" while unplugged).
func (a *Air) PTY(i int) string {
	m := a.modems[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.path
}

// SetLoss sets the loss probability from modem i to modem j (1 cuts the
// link).
func (a *Air) SetLoss(i, j int, p float64) {
	a.mu.Lock()
	a.loss[i][j] = p
	a.mu.Unlock()
}

// Stats returns the counters.
func (a *Air) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Run serves the modems until ctx is done, then closes everything.
func (a *Air) Run(ctx context.Context) error {
	a.mu.Lock()
	a.ctx = ctx
	for _, m := range a.modems {
		m.start()
	}
	a.mu.Unlock()
	<-ctx.Done()
	a.Close()
	a.wg.Wait()
	return nil
}

// Close closes every pty and removes the symlinks.
func (a *Air) Close() {
	for _, m := range a.modems {
		m.unplug()
	}
	if a.ownDir {
		os.RemoveAll(a.dir)
	}
}

// Unplug closes modem i's pty, as if its USB cable were pulled: the host
// sees its port fail, and the symlink disappears.
func (a *Air) Unplug(i int) { a.modems[i].unplug() }

// Replug opens a new pty for modem i behind the same symlink, with the
// radio back at power-on defaults (off, unconfigured).
func (a *Air) Replug(i int) error {
	m := a.modems[i]
	if err := m.plug(); err != nil {
		return err
	}
	a.mu.Lock()
	if a.ctx != nil {
		m.start()
	}
	a.mu.Unlock()
	return nil
}

func (m *modem) plug() error {
	master, slave, path, err := openPTY()
	if err != nil {
		return err
	}
	tmp := m.link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(path, tmp); err != nil {
		master.Close()
		slave.Close()
		return err
	}
	if err := os.Rename(tmp, m.link); err != nil {
		master.Close()
		slave.Close()
		return err
	}
	m.mu.Lock()
	m.master, m.slave, m.path = master, slave, path
	m.r = radio{freq: 0, bw: 0, txp: 2, sf: 7, cr: 5}
	m.queue = make(chan []byte, m.air.o.QueueFrames)
	m.gen++
	m.mu.Unlock()
	return nil
}

// start launches the session goroutines (caller holds air.mu).
func (m *modem) start() {
	m.mu.Lock()
	master, q, gen := m.master, m.queue, m.gen
	m.mu.Unlock()
	if master == nil {
		return
	}
	a := m.air
	a.wg.Add(2)
	go func() { defer a.wg.Done(); m.readLoop(master, gen) }()
	go func() { defer a.wg.Done(); m.txLoop(a.ctx, q, gen) }()
}

func (m *modem) unplug() {
	m.mu.Lock()
	master, slave := m.master, m.slave
	m.master, m.slave, m.path = nil, nil, ""
	m.gen++
	m.r.on = false
	if m.queue != nil {
		close(m.queue)
		m.queue = nil
	}
	m.mu.Unlock()
	if master != nil {
		os.Remove(m.link)
		master.Close()
		slave.Close()
	}
}

func (m *modem) write(b []byte) {
	m.mu.Lock()
	f := m.master
	m.mu.Unlock()
	if f != nil {
		f.Write(b)
	}
}

func (m *modem) readLoop(f *os.File, gen int) {
	dec := kiss.NewDecoder(1 + 600)
	buf := make([]byte, 1024)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			dec.Feed(buf[:n], func(cmd byte, data []byte) { m.command(cmd, data, gen) })
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			// EIO while no host has the slave open cannot happen (we hold
			// the slave); anything else ends the session.
			time.Sleep(10 * time.Millisecond)
			m.mu.Lock()
			stale := m.gen != gen
			m.mu.Unlock()
			if stale {
				return
			}
		}
	}
}

// command answers one host command the way RNode firmware does.
func (m *modem) command(cmd byte, data []byte, gen int) {
	var out []byte
	var dropped, unknown bool
	rnd := byte(m.air.rand63())
	m.mu.Lock()
	if m.gen != gen {
		m.mu.Unlock()
		return
	}
	r := &m.r
	arg := byte(0)
	if len(data) > 0 {
		arg = data[0]
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	switch cmd {
	case rnode.CmdData:
		if r.on && len(data) > 0 && len(data) <= rnode.MaxPayload && m.queue != nil {
			select {
			case m.queue <- append([]byte(nil), data...):
			default:
				dropped = true // firmware drops silently
			}
		}
	case rnode.CmdDetect:
		if arg == rnode.DetectReq {
			out = kiss.Append(out, rnode.CmdDetect, []byte{rnode.DetectResp})
		}
	case rnode.CmdFWVersion:
		out = kiss.Append(out, rnode.CmdFWVersion, []byte{1, 82})
	case rnode.CmdPlatform:
		out = kiss.Append(out, rnode.CmdPlatform, []byte{rnode.PlatformESP32})
	case rnode.CmdMCU:
		out = kiss.Append(out, rnode.CmdMCU, []byte{rnode.MCUESP32})
	case rnode.CmdBoard:
		out = kiss.Append(out, rnode.CmdBoard, []byte{0x00})
	case rnode.CmdFrequency:
		if len(data) >= 4 {
			if v := binary.BigEndian.Uint32(data); v != 0 {
				r.freq = v
			}
			out = kiss.Append(out, rnode.CmdFrequency, u32(r.freq))
		}
	case rnode.CmdBandwidth:
		if len(data) >= 4 {
			if v := binary.BigEndian.Uint32(data); v != 0 {
				r.bw = v
			}
			out = kiss.Append(out, rnode.CmdBandwidth, u32(r.bw))
		}
	case rnode.CmdTxPower:
		if arg != rnode.RadioStateAsk {
			r.txp = min(int(arg), 22)
		}
		out = kiss.Append(out, rnode.CmdTxPower, []byte{byte(r.txp)})
	case rnode.CmdSF:
		if arg != rnode.RadioStateAsk {
			r.sf = max(5, min(12, int(arg)))
		}
		out = kiss.Append(out, rnode.CmdSF, []byte{byte(r.sf)})
	case rnode.CmdCR:
		if arg != rnode.RadioStateAsk {
			r.cr = max(5, min(8, int(arg)))
		}
		out = kiss.Append(out, rnode.CmdCR, []byte{byte(r.cr)})
	case rnode.CmdRadioState:
		switch arg {
		case rnode.RadioStateOn:
			r.on = r.freq != 0 && r.bw != 0
			if !r.on {
				out = kiss.Append(out, rnode.CmdError, []byte{rnode.ErrorInitRadio})
			}
		case rnode.RadioStateOff:
			r.on = false
		}
		st := byte(0)
		if r.on {
			st = 1
		}
		out = kiss.Append(out, rnode.CmdRadioState, []byte{st})
	case rnode.CmdSTALock, rnode.CmdLTALock:
		if len(data) >= 2 {
			v := binary.BigEndian.Uint16(data)
			if v >= 10000 {
				v = 0
			}
			if cmd == rnode.CmdSTALock {
				r.stLock = v
			} else {
				r.ltLock = v
			}
			out = kiss.Append(out, cmd, u16(v))
		}
	case rnode.CmdStatRX:
		out = kiss.Append(out, cmd, u32(r.rxCount))
	case rnode.CmdStatTX:
		out = kiss.Append(out, cmd, u32(r.txCount))
	case rnode.CmdReady:
		out = kiss.Append(out, cmd, []byte{1})
	case rnode.CmdRandom:
		out = kiss.Append(out, cmd, []byte{rnd})
	case rnode.CmdLeave, rnode.CmdBlink, rnode.CmdPromisc, rnode.CmdImplicit:
	default:
		unknown = true
	}
	m.mu.Unlock()
	if dropped || unknown {
		m.air.count(func(s *Stats) {
			if dropped {
				s.Dropped++
			}
			if unknown {
				s.Unknown++
			}
		})
	}
	if out != nil {
		m.write(out)
	}
}

func (a *Air) count(f func(*Stats)) {
	a.mu.Lock()
	f(&a.stats)
	a.mu.Unlock()
}

func (a *Air) rand63() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rng.Int63()
}

func (m *modem) txLoop(ctx context.Context, q chan []byte, gen int) {
	a := m.air
	for {
		var data []byte
		var ok bool
		select {
		case data, ok = <-q:
			if !ok {
				return
			}
		case <-ctx.Done():
			return
		}
		m.mu.Lock()
		r := m.r
		live := m.gen == gen
		m.mu.Unlock()
		if !live {
			return
		}
		if !r.on {
			continue
		}
		mod := rnode.Modulation(r.sf, int(r.bw), r.cr, a.o.Chip)
		d, err := mod.TimeOnAir(len(data) + rnode.HeaderLen)
		if err != nil {
			continue
		}
		// Listen before talk: wait while the channel is busy here.
		if !a.o.NoCSMA {
			for i := 0; i < 100; i++ {
				busy := a.busyAt(m.idx, time.Now())
				if busy.IsZero() {
					break
				}
				slot := time.Duration(a.rand63()%int64(4*mod.SymbolTime()+time.Millisecond)) + time.Millisecond
				if !sleepCtx(ctx, time.Until(busy)+slot) {
					return
				}
			}
		}
		t := &txn{from: m.idx, start: time.Now(), freq: r.freq, bw: r.bw, sf: r.sf, data: data}
		t.end = t.start.Add(d)
		a.mu.Lock()
		a.txs = append(a.txs, t)
		a.stats.Transmissions++
		a.mu.Unlock()
		m.mu.Lock()
		m.r.txCount++
		m.txUntil = t.end
		m.mu.Unlock()
		if !sleepCtx(ctx, d) {
			return
		}
		a.finish(t)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// busyAt returns when the latest transmission audible at modem i ends, or
// zero when the channel is clear.
func (a *Air) busyAt(i int, now time.Time) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var until time.Time
	for _, t := range a.txs {
		if t.from != i && t.end.After(now) && a.loss[t.from][i] < 1 && a.inRange(t.from, i) && t.end.After(until) {
			until = t.end
		}
	}
	return until
}

func (a *Air) inRange(i, j int) bool {
	if a.o.Positions == nil {
		return true
	}
	return a.dist(i, j) <= a.o.Range
}

func (a *Air) dist(i, j int) float64 {
	p, q := a.o.Positions[i], a.o.Positions[j]
	return math.Hypot(p.X-q.X, p.Y-q.Y)
}

// signal returns RSSI and SNR at j of a frame from i.
func (a *Air) signal(i, j int, t *txn, txp int) (rssi, snr float64) {
	if a.o.Positions == nil {
		return -80, 8
	}
	d := math.Max(a.dist(i, j), 1) / 1000
	fmhz := float64(t.freq) / 1e6
	rssi = float64(txp) - (32.44 + 20*math.Log10(d) + 20*math.Log10(fmhz))
	noise := -174 + 10*math.Log10(float64(t.bw)) + 6
	return rssi, rssi - noise
}

// finish delivers a transmission that ended to every modem that could hear
// it.
func (a *Air) finish(t *txn) {
	a.mu.Lock()
	// Forget transmissions long over.
	keep := a.txs[:0]
	for _, x := range a.txs {
		if time.Since(x.end) < 30*time.Second || x == t {
			keep = append(keep, x)
		}
	}
	a.txs = keep
	type rx struct {
		m         *modem
		rssi, snr float64
	}
	var out []rx
	for j, m := range a.modems {
		if j == t.from {
			continue
		}
		if !a.inRange(t.from, j) || a.loss[t.from][j] >= 1 {
			a.stats.OutOfRange++
			continue
		}
		m.mu.Lock()
		r, attached := m.r, m.master != nil
		m.mu.Unlock()
		if !attached || !r.on || r.freq != t.freq || r.bw != t.bw || r.sf != t.sf {
			continue
		}
		collided, deaf := false, false
		for _, x := range a.txs {
			if x == t || !x.start.Before(t.end) || !t.start.Before(x.end) {
				continue
			}
			if x.from == j {
				deaf = true // half duplex: j was sending
			} else if a.inRange(x.from, j) && a.loss[x.from][j] < 1 && x.freq == t.freq {
				collided = true
			}
		}
		switch {
		case deaf:
			a.stats.HalfDuplex++
			continue
		case collided:
			a.stats.Collisions++
			continue
		case a.rng.Float64() < a.loss[t.from][j]:
			a.stats.Lost++
			continue
		}
		a.stats.Delivered++
		rssi, snr := a.signal(t.from, j, t, a.modems[t.from].txPower())
		out = append(out, rx{m, rssi, snr})
	}
	a.mu.Unlock()
	for _, x := range out {
		x.m.mu.Lock()
		x.m.r.rxCount++
		x.m.mu.Unlock()
		rb := byte(int(math.Round(x.rssi)) + rnode.RSSIOffset)
		sb := byte(int8(math.Max(-128, math.Min(127, math.Round(x.snr*4)))))
		b := kiss.Append(nil, rnode.CmdStatRSSI, []byte{rb})
		b = kiss.Append(b, rnode.CmdStatSNR, []byte{sb})
		b = kiss.Append(b, rnode.CmdData, t.data)
		x.m.write(b)
	}
}

func (m *modem) txPower() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.r.txp
}
