// Package lora is the LoRa transport: one broadcast-medium Link per radio
// (an RNode modem on a serial port, driven by firmware-bridge/rnode). It
// fragments envelopes into frames of at most 254 bytes, acknowledges
// unicast selectively, paces frames by airtime within the region's
// duty-cycle budget by priority, drops foreign and (with a network key)
// outsiders' frames before parsing, and survives the port being unplugged
// and replugged. The protocol logic is the sans-IO transport/lora/core;
// this package is its edge: goroutines, the serial port and the clock.
package lora

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/firmware-bridge/rnode"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/lora/airtime"
	"github.com/openmeshd/meshd/transport/lora/core"
	"github.com/openmeshd/meshd/transport/lora/dutycycle"
	"github.com/openmeshd/meshd/transport/serialport"
)

// ErrNoRegion is returned (wrapped) by Send when no region is configured.
// It wraps transport.ErrRefused.
var ErrNoRegion = core.ErrNoRegion

// Options configure a Transport. Config keys are under "lora.".
type Options struct {
	// Port is the serial device, e.g. /dev/ttyACM0 or a
	// /dev/serial/by-id/ path (lora.port). Required.
	Port string
	// Self is this node's address hint, its link-layer address. Required.
	Self envelope.Hint
	// Region is the regulatory region, e.g. "EU868", "US915" (lora.region).
	// Empty: the radio listens but Send refuses with ErrNoRegion.
	Region string
	// FrequencyHz, BandwidthHz, SF, CR (denominator 5..8), TxPowerDBm
	// (lora.frequency, lora.bandwidth, lora.sf, lora.cr, lora.txpower).
	// Zero CR means 5; zero TxPowerDBm means 14.
	FrequencyHz uint32
	BandwidthHz uint32
	SF, CR      int
	TxPowerDBm  int
	// Chip selects the SF5/SF6 airtime formula (lora.chip). Zero: SX127x.
	Chip airtime.Chip
	// NetworkKey makes this a private mesh: frames carry a MAC and frames
	// without the right one are dropped before parsing (lora.network_key).
	// Empty: open mesh.
	NetworkKey []byte
	// MTU is the largest envelope Send accepts (lora.mtu). Zero: 8192.
	MTU int
	// QueueBytes bounds what Send may queue before it blocks. Zero: 4*MTU.
	QueueBytes int
	// MaxRounds bounds unicast retransmission rounds. Zero: 8.
	MaxRounds int
	// NoFirmwareLocks leaves RNode's own airtime locks unset. Zero: the
	// long-term lock is set to the sub-band's duty cycle, a second line of
	// defence behind the host budget.
	NoFirmwareLocks bool
	// ReconnectInterval is the wait between attempts to open the port.
	// Zero: 1 s.
	ReconnectInterval time.Duration
	// Clock; nil means the system clock.
	Clock clock.Clock
	// Open opens the port; nil means serialport.Open at 115200 baud.
	Open func(path string) (io.ReadWriteCloser, error)
	// Logger; nil discards.
	Logger *slog.Logger
}

// Stats is a snapshot of the transport's counters.
type Stats struct {
	Core                                                core.Stats
	Budget                                              dutycycle.Stats
	Device                                              rnode.Stats // of the current session
	Sessions                                            uint64      // successful detect+configure runs
	OpenErrors, DetectErrors, ConfigErrors, Disconnects uint64
	FirmwareErrors                                      uint64
	Connected                                           bool
}

// Transport drives one radio.
type Transport struct {
	o    Options
	log  *slog.Logger
	clk  clock.Clock
	mod  airtime.Modulation
	band *dutycycle.SubBand
	open func(string) (io.ReadWriteCloser, error)

	mu    sync.Mutex
	eng   *core.Engine
	space chan struct{} // closed when queue space may have freed
	kick  chan struct{}
	stats Stats
	dev   *rnode.Device
}

// New checks the options and returns a Transport.
func New(o Options) (*Transport, error) {
	if o.Port == "" {
		return nil, errors.New("lora: no serial port configured (lora.port)")
	}
	if o.CR == 0 {
		o.CR = 5
	}
	if o.TxPowerDBm == 0 {
		o.TxPowerDBm = 14
	}
	if o.ReconnectInterval == 0 {
		o.ReconnectInterval = time.Second
	}
	t := &Transport{o: o, log: o.Logger, clk: o.Clock, open: o.Open, kick: make(chan struct{}, 1), space: make(chan struct{})}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.clk == nil {
		t.clk = clock.System{}
	}
	if t.open == nil {
		t.open = func(p string) (io.ReadWriteCloser, error) {
			f, err := serialport.Open(p, 115200)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return f, nil
		}
	}
	t.mod = rnode.Modulation(o.SF, int(o.BandwidthHz), o.CR, o.Chip)
	if err := t.mod.Validate(); err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	var budget *dutycycle.Budget
	if o.Region != "" {
		r, err := dutycycle.Lookup(o.Region)
		if err != nil {
			return nil, err
		}
		band, err := r.SubBand(o.FrequencyHz, int(o.BandwidthHz))
		if err != nil {
			return nil, err
		}
		t.band = &band
		if budget, err = dutycycle.New(dutycycle.Options{Band: band}); err != nil {
			return nil, err
		}
	}
	eng, err := core.New(core.Options{
		Self: core.Hint(o.Self), Modulation: t.mod, AirHeader: rnode.HeaderLen, Budget: budget,
		Key: core.NewKey(o.NetworkKey), MTU: o.MTU, QueueBytes: o.QueueBytes, MaxRounds: o.MaxRounds,
	})
	if err != nil {
		return nil, err
	}
	t.eng = eng
	return t, nil
}

// Modulation returns the modulation used for airtime accounting.
func (t *Transport) Modulation() airtime.Modulation { return t.mod }

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Core = t.eng.Stats()
	if b := t.eng.Budget(); b != nil {
		s.Budget = b.Stats()
	}
	if t.dev != nil {
		s.Device = t.dev.Stats()
	}
	return s
}

// link is one session's Link.
type link struct {
	t      *Transport
	info   transport.Info
	mu     sync.Mutex
	closed bool
	done   chan struct{}
	closeF func()
}

func (l *link) Info() transport.Info { return l.info }

func (l *link) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		l.closeF()
	}
	return nil
}

var _ transport.Overhearer = (*link)(nil)

// Overhear implements transport.Overhearer: one-fragment unicast messages
// addressed to other nodes are handed to the handler with Meta.Overheard.
func (l *link) Overhear(on bool) {
	l.t.mu.Lock()
	l.t.eng.SetOverhear(on)
	l.t.mu.Unlock()
}

func (l *link) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Send queues f; it blocks while the queue is full (backpressure).
func (l *link) Send(ctx context.Context, f transport.Frame) error {
	t := l.t
	for {
		if l.isClosed() {
			return transport.ErrClosed
		}
		t.mu.Lock()
		err := t.eng.EnqueueFrame(t.clk.Now(), f)
		space := t.space
		t.mu.Unlock()
		if err == nil {
			select {
			case t.kick <- struct{}{}:
			default:
			}
			return nil
		}
		if !errors.Is(err, core.ErrQueueFull) {
			return err
		}
		select {
		case <-space:
		case <-l.done:
			return transport.ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type rxFrame struct {
	data []byte
	sig  rnode.Signal
}

// Run opens the port, brings the link up, and keeps it up across unplug
// and replug until ctx is done.
func (t *Transport) Run(ctx context.Context, h transport.Handler) error {
	var session uint64
	for ctx.Err() == nil {
		session++
		err := t.session(ctx, h, session)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			t.log.Warn("lora radio session ended", "port", t.o.Port, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(t.o.ReconnectInterval):
		}
	}
	return nil
}

func (t *Transport) count(f func(*Stats)) {
	t.mu.Lock()
	f(&t.stats)
	t.mu.Unlock()
}

func (t *Transport) session(ctx context.Context, h transport.Handler, n uint64) error {
	port, err := t.open(t.o.Port)
	if err != nil {
		t.count(func(s *Stats) { s.OpenErrors++ })
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rx := make(chan rxFrame, 64)
	dev := rnode.New(port, rnode.Options{
		Logger: t.log,
		OnFrame: func(b []byte, s rnode.Signal) {
			select {
			case rx <- rxFrame{b, s}:
			case <-sctx.Done():
			}
		},
		OnError: func(code byte) { t.count(func(s *Stats) { s.FirmwareErrors++ }) },
	})
	runErr := make(chan error, 1)
	go func() { runErr <- dev.Run(sctx) }()
	defer func() { dev.Close(); <-runErr }()
	if _, err := dev.Detect(sctx); err != nil {
		t.count(func(s *Stats) { s.DetectErrors++ })
		return err
	}
	cfg := rnode.Config{FrequencyHz: t.o.FrequencyHz, BandwidthHz: t.o.BandwidthHz, TxPowerDBm: t.o.TxPowerDBm, SF: t.o.SF, CR: t.o.CR}
	if !t.o.NoFirmwareLocks && t.band != nil && t.band.DutyCycle > 0 {
		cfg.LongTermAirtimeLimit = t.band.DutyCycle * 100
	}
	if _, err := dev.Configure(sctx, cfg); err != nil {
		t.count(func(s *Stats) { s.ConfigErrors++ })
		return err
	}
	t.mu.Lock()
	t.dev = dev
	t.eng.SetOverhear(false) // until the new link's handler asks
	t.stats.Sessions++
	t.stats.Connected = true
	t.mu.Unlock()
	l := &link{t: t, done: make(chan struct{})}
	l.closeF = cancel
	br := t.mod.Bitrate()
	l.info = transport.Info{ID: fmt.Sprintf("lora:%s#%d", t.o.Port, n), Kind: "lora", MTU: t.eng.MTU(), Bitrate: br,
		Cost: max(10, 1000000/max(br, 1)), Broadcast: true}
	t.log.Info("lora link up", "id", l.info.ID, "modulation", t.mod.String())
	h.LinkUp(l)
	err = t.loop(sctx, h, l, dev, rx, runErr)
	close(l.done)
	l.mu.Lock()
	local := l.closed
	l.closed = true
	l.mu.Unlock()
	t.mu.Lock()
	t.stats.Connected = false
	if !local && ctx.Err() == nil {
		t.stats.Disconnects++
	}
	t.mu.Unlock()
	if local || ctx.Err() != nil {
		h.LinkDown(l, nil)
		if local && ctx.Err() == nil {
			<-ctx.Done() // a locally closed link stays closed until Run ends
		}
		return nil
	}
	h.LinkDown(l, err)
	return err
}

func (t *Transport) loop(ctx context.Context, h transport.Handler, l *link, dev *rnode.Device, rx chan rxFrame, runErr chan error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var out [][]byte
	for {
		// Hand the radio whatever may go now, then sleep until the next
		// event the engine asks for.
		t.mu.Lock()
		now := t.clk.Now()
		free := t.eng.QueueFree()
		out = out[:0]
		for {
			f, _, ok := t.eng.Next(now)
			if !ok {
				break
			}
			out = append(out, append([]byte(nil), f...))
		}
		wake := t.eng.Wake(now)
		if t.eng.QueueFree() != free || len(out) > 0 {
			close(t.space)
			t.space = make(chan struct{})
		}
		t.mu.Unlock()
		for _, f := range out {
			if err := dev.Send(f); err != nil {
				return err
			}
		}
		d := time.Hour
		if !wake.IsZero() {
			d = max(wake.Sub(now), time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-runErr:
			runErr <- err // for the deferred wait in session
			return err
		case <-t.kick:
		case <-timer.C:
		case r := <-rx:
			t.mu.Lock()
			ds := t.eng.Receive(t.clk.Now(), r.data, transport.Meta{HasSignal: r.sig.Valid, RSSI: r.sig.RSSI, SNR: r.sig.SNR})
			t.mu.Unlock()
			for _, d := range ds {
				h.Receive(l, d.Data, d.Meta)
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}
