package core

import (
	"bytes"
	"math/rand"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/lora/airtime"
	"github.com/openmeshd/meshd/transport/lora/dutycycle"
)

// air is a tiny virtual-time harness: engines on one channel, each frame
// reaches every other engine after its airtime unless lost at random or
// collided (overlapping transmissions), and no engine hears while it sends.
type air struct {
	t        *testing.T
	now      time.Time
	engines  []*Engine
	rng      *rand.Rand
	loss     float64
	inflight []tx
	got      [][]Delivery
	audits   []*dutycycle.Audit
	collide  bool
}

type tx struct {
	from       int
	start, end time.Time
	data       []byte
}

func newAir(t *testing.T, n int, loss float64, o Options) *air {
	a := &air{t: t, now: clock.Epoch(), rng: rand.New(rand.NewSource(7)), loss: loss, got: make([][]Delivery, n), collide: true}
	for i := 0; i < n; i++ {
		oo := o
		oo.Self = Hint{0xA0, 0, 0, byte(i + 1)}
		oo.Rand = rand.New(rand.NewSource(int64(i)))
		if o.Budget != nil {
			b, err := dutycycle.New(dutycycle.Options{Band: o.Budget.Band()})
			if err != nil {
				t.Fatal(err)
			}
			oo.Budget = b
			a.audits = append(a.audits, dutycycle.NewAudit(o.Budget.Band()))
		}
		e, err := New(oo)
		if err != nil {
			t.Fatal(err)
		}
		a.engines = append(a.engines, e)
	}
	return a
}

func addr(i int) transport.Addr { return transport.Addr([]byte{0xA0, 0, 0, byte(i + 1)}) }

// run advances virtual time until every engine is idle or until limit.
func (a *air) run(limit time.Time, feed func(now time.Time)) {
	for a.now.Before(limit) {
		if feed != nil {
			feed(a.now)
		}
		for i, e := range a.engines {
			for {
				f, info, ok := e.Next(a.now)
				if !ok {
					break
				}
				if a.audits != nil && a.audits[i].Add(a.now, info.Airtime) {
					a.t.Fatalf("duty-cycle violation by %d at %v", i, a.now)
				}
				a.inflight = append(a.inflight, tx{i, a.now, a.now.Add(info.Airtime), append([]byte(nil), f...)})
			}
		}
		// Next event: a frame ends or an engine wakes.
		next := limit
		for _, x := range a.inflight {
			if x.end.Before(next) {
				next = x.end
			}
		}
		idle := len(a.inflight) == 0
		for _, e := range a.engines {
			if w := e.Wake(a.now); !w.IsZero() {
				idle = false
				if w.Before(next) {
					next = w
				}
			}
		}
		if idle && feed == nil {
			return
		}
		if !next.After(a.now) {
			next = a.now.Add(time.Microsecond)
		}
		a.now = next
		// Deliver frames that ended.
		sort.Slice(a.inflight, func(i, j int) bool { return a.inflight[i].end.Before(a.inflight[j].end) })
		keep := a.inflight[:0]
		var ended []tx
		for _, x := range a.inflight {
			if x.end.After(a.now) {
				keep = append(keep, x)
			} else {
				ended = append(ended, x)
			}
		}
		all := append(append([]tx(nil), keep...), ended...)
		a.inflight = keep
		for _, x := range ended {
			for j, e := range a.engines {
				if j == x.from || a.rng.Float64() < a.loss {
					continue
				}
				if a.collide && overlaps(all, x, j) {
					continue
				}
				for _, d := range e.Receive(a.now, x.data, transport.Meta{HasSignal: true, RSSI: -90, SNR: 5}) {
					a.got[j] = append(a.got[j], d)
				}
			}
		}
	}
}

// overlaps: another transmission overlapped x in time, or the receiver j
// itself was sending.
func overlaps(all []tx, x tx, j int) bool {
	for _, y := range all {
		if y.start == x.start && y.from == x.from {
			continue
		}
		if y.start.Before(x.end) && x.start.Before(y.end) {
			return true
		}
	}
	return false
}

func fastMod() airtime.Modulation {
	return airtime.Modulation{SF: 7, BandwidthHz: 500000, PreambleSymbols: 18}
}

func budget(t testing.TB, region string, f uint32, bw int) *dutycycle.Budget {
	r, _ := dutycycle.Lookup(region)
	band, err := r.SubBand(f, bw)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dutycycle.New(dutycycle.Options{Band: band})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnicastWithLoss(t *testing.T) {
	for _, c := range []struct {
		size   int
		loss   float64
		rounds int
	}{{1024, 0.1, 0}, {4096, 0.1, 0}, {4096, 0.3, 20}, {10, 0, 0}, {0, 0.1, 0}} {
		a := newAir(t, 3, c.loss, Options{Modulation: fastMod(), AirHeader: 1, Budget: budget(t, "US915", 915000000, 500000), MaxRounds: c.rounds})
		msg := bytes.Repeat([]byte{0x5A}, c.size)
		for i := range msg {
			msg[i] = byte(i * 7)
		}
		if err := a.engines[0].Enqueue(a.now, addr(2), transport.PriorityOwn, msg); err != nil {
			t.Fatal(err)
		}
		a.run(a.now.Add(10*time.Minute), nil)
		if len(a.got[2]) != 1 || !bytes.Equal(a.got[2][0].Data, msg) || a.got[2][0].From != addr(0) {
			t.Fatalf("size %d loss %v: got %d deliveries; sender %+v receiver %+v", c.size, c.loss, len(a.got[2]), a.engines[0].Stats(), a.engines[2].Stats())
		}
		if len(a.got[1]) != 0 {
			t.Fatal("bystander delivered a unicast")
		}
		st := a.engines[0].Stats()
		if st.MessagesDone != 1 || st.QueueBytes != 0 {
			t.Fatalf("sender stats %+v", st)
		}
		t.Logf("%d B, loss %.0f%%: %d frames, %d retransmissions, %d probes, airtime %v", c.size, c.loss*100, st.FramesSent, st.Retransmissions, st.Probes, st.Airtime)
	}
}

func TestBroadcastNoAck(t *testing.T) {
	a := newAir(t, 3, 0, Options{Modulation: fastMod(), AirHeader: 1, Budget: budget(t, "US915", 915000000, 500000)})
	msg := bytes.Repeat([]byte{1, 2, 3}, 700)
	if err := a.engines[1].Enqueue(a.now, transport.Broadcast, transport.PriorityBackground, msg); err != nil {
		t.Fatal(err)
	}
	a.run(a.now.Add(time.Minute), nil)
	for _, j := range []int{0, 2} {
		if len(a.got[j]) != 1 || !bytes.Equal(a.got[j][0].Data, msg) {
			t.Fatalf("receiver %d: %d", j, len(a.got[j]))
		}
	}
	if s := a.engines[0].Stats(); s.SACKsSent != 0 {
		t.Fatal("SACK for broadcast")
	}
}

func TestUnicastGivesUp(t *testing.T) {
	a := newAir(t, 2, 1.0, Options{Modulation: fastMod(), AirHeader: 1, Budget: budget(t, "US915", 915000000, 500000), MaxRounds: 3})
	a.engines[0].Enqueue(a.now, addr(1), transport.PriorityOwn, make([]byte, 600))
	a.run(a.now.Add(time.Hour), nil)
	st := a.engines[0].Stats()
	if st.MessagesFailed != 1 || st.QueueBytes != 0 || st.Probes != 2 {
		t.Fatalf("%+v", st)
	}
}

// TestFrameMaxRounds: a frame's MaxRounds lowers the engine's limit for that
// message only (a lossless link never reaches it; a dead one gives up after
// that many rounds); one above the engine's limit changes nothing.
func TestFrameMaxRounds(t *testing.T) {
	for _, c := range []struct {
		engine, frame int
		probes        uint64
	}{{8, 0, 7}, {8, 3, 2}, {8, 1, 0}, {3, 5, 2}} {
		a := newAir(t, 2, 1.0, Options{Modulation: fastMod(), AirHeader: 1, Budget: budget(t, "US915", 915000000, 500000), MaxRounds: c.engine})
		err := a.engines[0].EnqueueFrame(a.now, transport.Frame{To: addr(1), Priority: transport.PriorityOwn, Data: make([]byte, 60), MaxRounds: uint8(c.frame)})
		if err != nil {
			t.Fatal(err)
		}
		a.run(a.now.Add(time.Hour), nil)
		if st := a.engines[0].Stats(); st.MessagesFailed != 1 || st.Probes != c.probes {
			t.Errorf("engine %d, frame %d: failed %d, probes %d, want 1, %d", c.engine, c.frame, st.MessagesFailed, st.Probes, c.probes)
		}
	}
}

// TestSACKTimeoutSpread: after a unicast round the sender waits AckTimeout
// (doubled per silent round) plus up to one more AckTimeout at random
// before it probes. Two senders whose frames collided, and who would otherwise probe
// at the same instant and collide again, draw different waits.
func TestSACKTimeoutSpread(t *testing.T) {
	const ackTimeout = time.Second
	var waits []time.Duration
	for seed := int64(0); seed < 20; seed++ {
		now := clock.Epoch()
		e, err := New(Options{Self: Hint{0xA0, 0, 0, 1}, Modulation: fastMod(), AirHeader: 1, Budget: budget(t, "US915", 915000000, 500000),
			AckTimeout: ackTimeout, Rand: rand.New(rand.NewSource(seed))})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Enqueue(now, addr(1), transport.PriorityOwn, make([]byte, 60)); err != nil {
			t.Fatal(err)
		}
		_, info, ok := e.Next(now)
		if !ok {
			t.Fatal("nothing to send")
		}
		waits = append(waits, e.Wake(now).Sub(now.Add(info.Airtime)))
	}
	lo, hi := slices.Min(waits), slices.Max(waits)
	if lo < ackTimeout || hi > 2*ackTimeout+time.Second/10 || hi-lo < ackTimeout/2 {
		t.Fatalf("waits from %v to %v: want within [%v, %v] and spread over half of it at least", lo, hi, ackTimeout, 2*ackTimeout)
	}
}

func TestNoRegionRefuses(t *testing.T) {
	e, err := New(Options{Modulation: fastMod()})
	if err != nil {
		t.Fatal(err)
	}
	err = e.Enqueue(clock.Epoch(), transport.Broadcast, 0, []byte("x"))
	if err != ErrNoRegion || !errorsIs(err, transport.ErrRefused) {
		t.Fatal(err)
	}
}

// TestNoAck: a one-fragment unicast message sent with Frame.NoAck goes once,
// without the flag, and the receiver sends no SACK; a longer one is
// acknowledged as usual; an old-style flagged one-fragment message still is.
func TestNoAck(t *testing.T) {
	for _, c := range []struct {
		size  int
		noAck bool
		sacks uint64
	}{{60, true, 0}, {60, false, 1}, {600, true, 1}} {
		a := newAir(t, 2, 0, Options{Modulation: fastMod(), AirHeader: 1, Budget: budget(t, "US915", 915000000, 500000)})
		msg := bytes.Repeat([]byte{7}, c.size)
		if err := a.engines[0].EnqueueFrame(a.now, transport.Frame{To: addr(1), Data: msg, NoAck: c.noAck}); err != nil {
			t.Fatal(err)
		}
		a.run(a.now.Add(time.Minute), nil)
		if len(a.got[1]) != 1 || !bytes.Equal(a.got[1][0].Data, msg) {
			t.Fatalf("%+v: got %d deliveries", c, len(a.got[1]))
		}
		snd, rcv := a.engines[0].Stats(), a.engines[1].Stats()
		if rcv.SACKsSent != c.sacks || snd.MessagesDone != 1 || snd.QueueBytes != 0 || snd.Retransmissions != 0 {
			t.Fatalf("%+v: sender %+v receiver %+v", c, snd, rcv)
		}
		if unacked := c.noAck && c.size == 60; (snd.Unacked == 1) != unacked {
			t.Fatalf("%+v: Unacked %d", c, snd.Unacked)
		}
	}
	// NoAck frames are not retransmitted: lost is lost.
	a := newAir(t, 2, 1.0, Options{Modulation: fastMod(), AirHeader: 1, Budget: budget(t, "US915", 915000000, 500000)})
	if err := a.engines[0].EnqueueFrame(a.now, transport.Frame{To: addr(1), Data: []byte("x"), NoAck: true}); err != nil {
		t.Fatal(err)
	}
	a.run(a.now.Add(time.Minute), nil)
	if st := a.engines[0].Stats(); st.FramesSent != 1 || st.MessagesFailed != 0 || st.QueueBytes != 0 {
		t.Fatalf("%+v", st)
	}
}

// TestOverhear: with Options.Overhear a bystander is handed one-fragment
// unicast messages for others, marked Overheard and naming the addressee;
// without it, or for longer messages, nothing.
func TestOverhear(t *testing.T) {
	a := newAir(t, 3, 0, Options{Modulation: fastMod(), AirHeader: 1, Budget: budget(t, "US915", 915000000, 500000)})
	a.engines[2].SetOverhear(true)
	if err := a.engines[0].EnqueueFrame(a.now, transport.Frame{To: addr(1), Data: []byte("short"), NoAck: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.engines[0].Enqueue(a.now, addr(1), transport.PriorityOwn, bytes.Repeat([]byte{9}, 600)); err != nil {
		t.Fatal(err)
	}
	a.run(a.now.Add(time.Minute), nil)
	if len(a.got[1]) != 2 || a.got[1][0].Meta.Overheard || a.got[1][0].To != "" {
		t.Fatalf("addressee got %+v", a.got[1])
	}
	if len(a.got[2]) != 1 {
		t.Fatalf("overhearing bystander got %d messages", len(a.got[2]))
	}
	d := a.got[2][0]
	if !d.Meta.Overheard || d.To != addr(1) || d.From != addr(0) || string(d.Data) != "short" || !d.Meta.HasSignal {
		t.Fatalf("overheard %+v", d)
	}
	if st := a.engines[2].Stats(); st.Overheard != 1 || st.Delivered != 0 {
		t.Fatalf("bystander stats %+v", st)
	}
	a.engines[2].SetOverhear(false)
	a.got[2] = nil
	if err := a.engines[0].EnqueueFrame(a.now, transport.Frame{To: addr(1), Data: []byte("again"), NoAck: true}); err != nil {
		t.Fatal(err)
	}
	a.run(a.now.Add(time.Minute), nil)
	if len(a.got[2]) != 0 {
		t.Fatalf("bystander with overhearing off got %+v", a.got[2])
	}
}
