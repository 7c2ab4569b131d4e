package core

import (
	"errors"
	"fmt"
	"math/rand"
	"time"

	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/lora/airtime"
	"github.com/openmeshd/meshd/transport/lora/dutycycle"
)

// Errors from Enqueue.
var (
	// ErrNoRegion: no regulatory region is configured, so the radio must not
	// transmit. It wraps transport.ErrRefused.
	ErrNoRegion = fmt.Errorf("%w: no LoRa region configured; set the region (for example EU868 or US915) so meshd knows the legal duty cycle and dwell time", transport.ErrRefused)
	// ErrQueueFull: the send queue is full; retry after frames went out.
	ErrQueueFull = errors.New("lora: send queue full")
	// ErrBadAddr: Frame.To is neither Broadcast nor a 4-byte hint.
	ErrBadAddr = errors.New("lora: link address must be empty (broadcast) or a 4-byte hint")
)

// Options configure an Engine. Durations and sizes have defaults for zero.
type Options struct {
	// Self is this node's link-layer address (its envelope address hint).
	Self Hint
	// Modulation is the radio's modulation, with the preamble the firmware
	// really programs, for airtime accounting. Required.
	Modulation airtime.Modulation
	// AirHeader is how many bytes the firmware adds to each frame on air
	// (1 for RNode). Zero: none.
	AirHeader int
	// Budget is the duty-cycle budget of the radio's sub-band. Nil means no
	// region is configured: Enqueue refuses with ErrNoRegion.
	Budget *dutycycle.Budget
	// Key is the network key; the zero Key means an open network.
	Key Key
	// MTU is the largest message Enqueue accepts. Zero means 8192; at most
	// MaxFragments full fragments.
	MTU int
	// QueueBytes bounds the bytes of messages accepted and not yet finished
	// (sent, acknowledged or given up). Zero means 4*MTU.
	QueueBytes int
	// MaxRounds bounds the retransmission rounds of a unicast message that
	// make no progress (a SACK timeout, or a SACK acknowledging nothing
	// new); rounds that get fragments through are bounded by the fragment
	// count. Each silent round doubles the SACK timeout. Zero means 8.
	MaxRounds int
	// AckTimeout is how long to wait for a SACK after the last fragment of
	// a round went out. Zero: computed from the modulation.
	AckTimeout time.Duration
	// Guard is added after each frame's airtime before the next frame is
	// handed to the radio (serial transfer, firmware turnaround). Zero means
	// 15 ms.
	Guard time.Duration
	// ReassemblyTimeout drops a partial message this long after its last
	// fragment. Zero means one hour: a sender held back by its duty-cycle
	// budget may pause mid-message for that long; memory stays bounded by
	// the limits below.
	ReassemblyTimeout time.Duration
	// MaxReassemblies bounds partial messages held (zero: 32), MaxPerSource
	// those from one sender (zero: 8) and MaxReassemblyBytes their bytes
	// (zero: 4*MTU). Beyond them the oldest partial message is dropped.
	MaxReassemblies    int
	MaxPerSource       int
	MaxReassemblyBytes int
	// Rand jitters SACK timing and picks the first message id. Nil means a
	// source seeded from Self (deterministic).
	Rand *rand.Rand
	// Overhear makes Receive also return complete one-fragment unicast
	// messages addressed to other nodes, with Meta.Overheard set and
	// Delivery.To naming the addressee (passive hop acknowledgements for
	// the router). Zero: such frames are dropped (counted in NotForUs).
	// SetOverhear changes it later.
	Overhear bool
}

// Delivery is a message received complete, or (Meta.Overheard, with
// Options.Overhear) a one-fragment unicast message overheard on its way to
// another node, To.
type Delivery struct {
	From transport.Addr
	To   transport.Addr // the addressee of an overheard message; empty otherwise
	Data []byte
	Meta transport.Meta
}

// TxInfo describes a frame Next returned.
type TxInfo struct {
	Kind     Kind
	Priority transport.Priority
	Airtime  time.Duration
	// Payload is the message bytes the frame carries (0 for SACKs).
	Payload int
	// Retransmission is true when the fragment was sent before.
	Retransmission bool
}

// Stats is a snapshot of an Engine's counters.
type Stats struct {
	FramesSent, FramesReceived    uint64
	BytesSent, PayloadBytesSent   uint64 // frame bytes handed to the radio / message bytes in them
	Airtime                       time.Duration
	Foreign, BadMAC, Malformed    uint64 // received frames dropped before use
	NotForUs                      uint64 // unicast fragments and SACKs for other nodes
	Overheard                     uint64 // of those, one-fragment messages handed up (Options.Overhear)
	Unacked                       uint64 // one-fragment unicast messages sent without asking for a SACK (Frame.NoAck)
	MessagesQueued, MessagesDone  uint64 // accepted / broadcast sent or unicast acknowledged
	MessagesFailed                uint64 // unicast given up after MaxRounds
	Retransmissions, Probes       uint64
	SACKsSent, SACKsReceived      uint64
	StaleSACKs                    uint64 // SACKs for nothing outstanding
	Delivered, Duplicates         uint64
	PayloadBytesReceived          uint64 // new message bytes accepted (fragments, before reassembly)
	ReassemblyTimeouts, Evictions uint64
	Oversize                      uint64 // fragments of messages that could not fit the MTU
	BudgetWaits                   uint64 // times the next frame had to wait for the duty-cycle budget
	QueueBytes, Reassemblies      int
	ReassemblyBytes               int
}

type msgKey struct {
	src   Hint
	id    uint16
	bcast bool
}

type outMsg struct {
	to       Hint
	bcast    bool
	noAck    bool // one fragment, sent once without asking for a SACK
	prio     transport.Priority
	id       uint16
	payloads [][]byte
	acked    []bool
	sent     []bool
	pending  []int
	round    int  // rounds without progress
	rounds   int  // at most this many (Options.MaxRounds or the frame's MaxRounds)
	silent   int  // consecutive SACK timeouts, for backoff
	waiting  bool // all of this round sent; waiting for a SACK
	deadline time.Time
	size     int
}

type partial struct {
	key      msgKey
	frags    [][]byte
	have     int
	bytes    int
	deadline time.Time
	seq      uint64
	meta     transport.Meta
}

// Engine is the LoRa link layer of one radio. Not safe for concurrent use.
type Engine struct {
	o        Options
	rng      *rand.Rand
	fragMax  [3]int // payload bytes per fragment by kind
	maxAir   time.Duration
	sackAir  time.Duration
	nextID   uint16
	queues   [3][]*outMsg
	byID     map[uint16]*outMsg // outstanding unicast by id
	sacks    []msgKey           // SACKs to send (key.src = peer)
	busy     time.Time          // radio busy until
	blocked  time.Time          // budget says wait until
	parts    map[msgKey]*partial
	partSeq  uint64
	done     map[msgKey]time.Time // recently completed, for duplicates and re-SACKs
	doneFIFO []msgKey
	stats    Stats
	buf      []byte
}

const doneMemory = 512

// New returns an Engine.
func New(o Options) (*Engine, error) {
	if err := o.Modulation.Validate(); err != nil {
		return nil, err
	}
	if o.AirHeader < 0 || o.AirHeader > 8 {
		return nil, fmt.Errorf("lora: AirHeader %d", o.AirHeader)
	}
	if o.Guard == 0 {
		o.Guard = 15 * time.Millisecond
	}
	if o.MaxRounds == 0 {
		o.MaxRounds = 8
	}
	if o.ReassemblyTimeout == 0 {
		o.ReassemblyTimeout = time.Hour
	}
	if o.MaxReassemblies == 0 {
		o.MaxReassemblies = 32
	}
	if o.MaxPerSource == 0 {
		o.MaxPerSource = 8
	}
	e := &Engine{o: o, byID: map[uint16]*outMsg{}, parts: map[msgKey]*partial{}, done: map[msgKey]time.Time{}}
	// Largest frame: 254 bytes, or less where a dwell limit applies.
	frame := MaxFrame
	if o.Budget != nil && o.Budget.Band().MaxDwell > 0 {
		n, _ := o.Modulation.MaxPayloadWithin(o.Budget.Band().MaxDwell)
		if n-o.AirHeader < frame {
			frame = n - o.AirHeader
		}
	}
	for k := KindBroadcast; k <= KindUnicast; k++ {
		e.fragMax[k] = frame - Overhead(k, o.Key)
	}
	if e.fragMax[KindUnicast] < 8 {
		return nil, fmt.Errorf("lora: modulation %v leaves %d bytes per frame within the dwell time", o.Modulation, frame)
	}
	maxMTU := MaxFragments * e.fragMax[KindUnicast]
	if o.MTU == 0 {
		o.MTU = min(8192, maxMTU)
	}
	if o.MTU < 1 || o.MTU > maxMTU {
		return nil, fmt.Errorf("lora: MTU %d not in 1..%d", o.MTU, maxMTU)
	}
	if o.QueueBytes == 0 {
		o.QueueBytes = 4 * o.MTU
	}
	if o.MaxReassemblyBytes == 0 {
		o.MaxReassemblyBytes = 4 * o.MTU
	}
	e.o = o
	e.maxAir, _ = o.Modulation.TimeOnAir(frame + o.AirHeader)
	e.sackAir, _ = o.Modulation.TimeOnAir(Overhead(KindSACK, o.Key) + 32 + o.AirHeader)
	if e.o.AckTimeout == 0 {
		// The peer may be mid-frame, then sends our SACK; both ends add
		// their guard; plus slack for serial latency and jitter.
		e.o.AckTimeout = e.maxAir + e.sackAir + 4*o.Guard + 300*time.Millisecond
	}
	e.rng = o.Rand
	if e.rng == nil {
		e.rng = rand.New(rand.NewSource(int64(o.Self[0])<<24 | int64(o.Self[1])<<16 | int64(o.Self[2])<<8 | int64(o.Self[3])))
	}
	e.nextID = uint16(e.rng.Intn(1 << 16))
	return e, nil
}

// MTU returns the largest message Enqueue accepts.
func (e *Engine) MTU() int { return e.o.MTU }

// FragmentPayload returns the message bytes one fragment carries.
func (e *Engine) FragmentPayload(bcast bool) int {
	if bcast {
		return e.fragMax[KindBroadcast]
	}
	return e.fragMax[KindUnicast]
}

// MaxFrameAirtime is the airtime of the largest frame.
func (e *Engine) MaxFrameAirtime() time.Duration { return e.maxAir }

// Budget returns the duty-cycle budget (nil when no region is set).
func (e *Engine) Budget() *dutycycle.Budget { return e.o.Budget }

// QueueFree reports how many bytes Enqueue can accept now.
func (e *Engine) QueueFree() int { return e.o.QueueBytes - e.stats.QueueBytes }

// Idle reports whether nothing is queued, in flight or awaiting a SACK.
func (e *Engine) Idle() bool { return e.stats.QueueBytes == 0 && len(e.sacks) == 0 }

// SetOverhear turns the reporting of overheard messages on or off
// (Options.Overhear).
func (e *Engine) SetOverhear(on bool) { e.o.Overhear = on }

// Enqueue accepts a message for to (Broadcast or a 4-byte hint) at
// priority p. Errors: ErrNoRegion, *transport.FrameTooLargeError,
// ErrBadAddr, ErrQueueFull.
func (e *Engine) Enqueue(now time.Time, to transport.Addr, p transport.Priority, data []byte) error {
	return e.EnqueueFrame(now, transport.Frame{To: to, Priority: p, Data: data})
}

// EnqueueFrame is Enqueue for a transport.Frame. With f.NoAck, a unicast
// message that fits one fragment is sent once, without the flag that asks
// for a SACK (the caller acknowledges it by other means); the receiver
// then sends none. A longer message is acknowledged as usual. A non-zero
// f.MaxRounds below Options.MaxRounds bounds the message's rounds.
func (e *Engine) EnqueueFrame(now time.Time, f transport.Frame) error {
	to, p, data := f.To, f.Priority, f.Data
	if e.o.Budget == nil {
		return ErrNoRegion
	}
	if err := transport.CheckMTU(data, e.o.MTU); err != nil {
		return err
	}
	if to != transport.Broadcast && len(to) != HintSize {
		return ErrBadAddr
	}
	if e.stats.QueueBytes > 0 && e.stats.QueueBytes+len(data) > e.o.QueueBytes {
		return ErrQueueFull
	}
	if p > transport.PriorityBackground {
		p = transport.PriorityBackground
	}
	m := &outMsg{bcast: to == transport.Broadcast, prio: p, size: len(data)}
	copy(m.to[:], to)
	kind := KindUnicast
	if m.bcast {
		kind = KindBroadcast
	}
	per := e.fragMax[kind]
	buf := append([]byte(nil), data...)
	for len(buf) > per {
		m.payloads = append(m.payloads, buf[:per:per])
		buf = buf[per:]
	}
	m.payloads = append(m.payloads, buf)
	m.noAck = f.NoAck && !m.bcast && len(m.payloads) == 1
	m.rounds = e.o.MaxRounds
	if f.MaxRounds > 0 && int(f.MaxRounds) < m.rounds {
		m.rounds = int(f.MaxRounds)
	}
	m.acked = make([]bool, len(m.payloads))
	m.sent = make([]bool, len(m.payloads))
	m.pending = make([]int, len(m.payloads))
	for i := range m.pending {
		m.pending[i] = i
	}
	// Pick an id not outstanding.
	for i := 0; i < 1<<16; i++ {
		e.nextID++
		if _, busy := e.byID[e.nextID]; !busy {
			break
		}
	}
	m.id = e.nextID
	if !m.bcast {
		e.byID[m.id] = m
	}
	e.queues[p] = append(e.queues[p], m)
	e.stats.QueueBytes += len(data)
	e.stats.MessagesQueued++
	return nil
}

// Next returns the next frame to hand to the radio at now, or ok false when
// nothing may be sent yet (see Wake). The frame is valid until the next call.
// The caller must hand it to the radio at once: its airtime is charged to
// the budget and the radio counted busy.
func (e *Engine) Next(now time.Time) (frame []byte, info TxInfo, ok bool) {
	e.expire(now)
	if now.Before(e.busy) || now.Before(e.blocked) {
		return nil, info, false
	}
	e.blocked = time.Time{}
	f, m, idx, prio := e.candidate()
	if f == nil {
		return nil, info, false
	}
	e.buf = AppendFrame(e.buf[:0], f, &e.o.Key)
	air, err := e.o.Modulation.TimeOnAir(len(e.buf) + e.o.AirHeader)
	if err != nil {
		return nil, info, false
	}
	okb, at, err := e.o.Budget.Take(now, air, prio)
	if err != nil {
		// Cannot happen: frames are sized to fit dwell and budget shares.
		// Drop the work rather than spin.
		e.dropCandidate(m, idx)
		return nil, info, false
	}
	if !okb {
		e.blocked = at
		e.stats.BudgetWaits++
		return nil, info, false
	}
	info = TxInfo{Kind: f.Kind, Priority: prio, Airtime: air, Payload: len(f.Payload)}
	e.busy = now.Add(air + e.o.Guard)
	if m == nil {
		e.sacks = e.sacks[1:]
		e.stats.SACKsSent++
	} else {
		info.Retransmission = m.sent[idx]
		if m.sent[idx] {
			e.stats.Retransmissions++
		}
		m.sent[idx] = true
		m.pending = m.pending[1:]
		if len(m.pending) == 0 {
			if m.bcast || m.noAck {
				if m.noAck {
					e.stats.Unacked++
				}
				e.finish(m, true)
			} else {
				m.waiting = true
				// Wait for the SACK, then up to one more AckTimeout at
				// random: two senders whose frames collided at a
				// receiver would otherwise probe at the same instant
				// and collide again.
				wait := e.o.AckTimeout << min(m.silent, 5)
				m.deadline = e.busy.Add(wait + time.Duration(e.rng.Int63n(int64(e.o.Guard)+int64(e.o.AckTimeout)+1)))
			}
		}
	}
	e.stats.FramesSent++
	e.stats.BytesSent += uint64(len(e.buf))
	e.stats.PayloadBytesSent += uint64(len(f.Payload))
	e.stats.Airtime += air
	return e.buf, info, true
}

// candidate picks the next frame: SACKs first, then messages by priority.
func (e *Engine) candidate() (*Frame, *outMsg, int, transport.Priority) {
	for len(e.sacks) > 0 {
		k := e.sacks[0]
		f := e.sackFrame(k)
		if f != nil {
			return f, nil, 0, transport.PriorityOwn
		}
		e.sacks = e.sacks[1:]
	}
	for p := range e.queues {
		for _, m := range e.queues[p] {
			if len(m.pending) == 0 {
				continue
			}
			idx := m.pending[0]
			f := &Frame{Kind: KindUnicast, Src: e.o.Self, Dst: m.to, ID: m.id, Index: idx, Count: len(m.payloads), Payload: m.payloads[idx]}
			if m.bcast {
				f.Kind, f.Dst = KindBroadcast, Hint{}
			} else if len(m.pending) == 1 && !m.noAck {
				f.Flag = true // last of the round: acknowledge now
			}
			return f, m, idx, m.prio
		}
	}
	return nil, nil, 0, 0
}

func (e *Engine) dropCandidate(m *outMsg, idx int) {
	if m == nil {
		if len(e.sacks) > 0 {
			e.sacks = e.sacks[1:]
		}
		return
	}
	e.finish(m, false)
}

func (e *Engine) sackFrame(k msgKey) *Frame {
	f := &Frame{Kind: KindSACK, Src: e.o.Self, Dst: k.src, ID: k.id}
	if _, ok := e.done[k]; ok {
		f.Flag = true
		f.Count = 1
		if p, ok := e.parts[k]; ok {
			f.Count = len(p.frags)
		}
		return f
	}
	p, ok := e.parts[k]
	if !ok {
		return nil
	}
	f.Count = len(p.frags)
	f.Bitmap = make([]byte, (f.Count+7)/8)
	for i, b := range p.frags {
		if b != nil {
			f.Bitmap[i/8] |= 1 << (i % 8)
		}
	}
	return f
}

func (e *Engine) finish(m *outMsg, ok bool) {
	q := e.queues[m.prio]
	for i, x := range q {
		if x == m {
			copy(q[i:], q[i+1:])
			q[len(q)-1] = nil
			e.queues[m.prio] = q[:len(q)-1]
			break
		}
	}
	if !m.bcast {
		delete(e.byID, m.id)
	}
	e.stats.QueueBytes -= m.size
	if ok {
		e.stats.MessagesDone++
	} else {
		e.stats.MessagesFailed++
	}
}

// Wake returns when Next, or timeouts, next need the engine, or the zero
// time when nothing is pending.
func (e *Engine) Wake(now time.Time) time.Time {
	e.expire(now)
	var w time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	if f, _, _, _ := e.candidate(); f != nil {
		t := e.busy
		if e.blocked.After(t) {
			t = e.blocked
		}
		if t.Before(now) {
			t = now
		}
		earliest(t)
	}
	for _, m := range e.byID {
		if m.waiting {
			earliest(m.deadline)
		}
	}
	for _, p := range e.parts {
		earliest(p.deadline)
	}
	return w
}

// expire handles SACK timeouts and reassembly timeouts.
func (e *Engine) expire(now time.Time) {
	for _, m := range e.byID {
		if !m.waiting || now.Before(m.deadline) {
			continue
		}
		m.waiting = false
		m.round++
		m.silent++
		if m.round >= m.rounds {
			e.finish(m, false)
			continue
		}
		// Probe: resend the highest unacknowledged fragment, asking for a
		// SACK; the SACK then says what else is missing.
		for i := len(m.acked) - 1; i >= 0; i-- {
			if !m.acked[i] {
				m.pending = append(m.pending[:0], i)
				break
			}
		}
		e.stats.Probes++
	}
	for k, p := range e.parts {
		if !now.Before(p.deadline) {
			e.dropPartial(k)
			e.stats.ReassemblyTimeouts++
		}
	}
}

func (e *Engine) dropPartial(k msgKey) {
	if p, ok := e.parts[k]; ok {
		e.stats.ReassemblyBytes -= p.bytes
		delete(e.parts, k)
		e.stats.Reassemblies = len(e.parts)
	}
}

// Receive handles one frame from the radio and returns the messages it
// completed (at most one).
func (e *Engine) Receive(now time.Time, b []byte, meta transport.Meta) []Delivery {
	e.expire(now)
	f, err := Parse(b, &e.o.Key)
	switch {
	case errors.Is(err, ErrForeign):
		e.stats.Foreign++
		return nil
	case errors.Is(err, ErrBadMAC):
		e.stats.BadMAC++
		return nil
	case err != nil:
		e.stats.Malformed++
		return nil
	}
	if f.Src == e.o.Self {
		e.stats.Malformed++ // our own address from elsewhere: a hint collision or a loop
		return nil
	}
	e.stats.FramesReceived++
	meta.From = transport.Addr(f.Src[:])
	switch f.Kind {
	case KindSACK:
		if f.Dst != e.o.Self {
			e.stats.NotForUs++
			return nil
		}
		e.onSACK(now, &f)
		return nil
	case KindUnicast:
		if f.Dst != e.o.Self {
			e.stats.NotForUs++
			if e.o.Overhear && f.Count == 1 {
				// A whole message on its way to another node: the router
				// learns from it that the frame it handed that node's
				// sender was passed on. Not deduplicated: each copy is
				// a fresh sign of life.
				e.stats.Overheard++
				meta.Overheard = true
				return []Delivery{{From: meta.From, To: transport.Addr(f.Dst[:]), Data: append([]byte(nil), f.Payload...), Meta: meta}}
			}
			return nil
		}
	}
	return e.onFragment(now, &f, meta)
}

func (e *Engine) onSACK(now time.Time, f *Frame) {
	m, ok := e.byID[f.ID]
	if !ok || m.to != f.Src || (!f.Flag && f.Count != len(m.payloads)) {
		e.stats.StaleSACKs++
		return
	}
	e.stats.SACKsReceived++
	if f.Flag {
		e.finish(m, true)
		return
	}
	m.silent = 0
	progress := false
	missing := m.pending[:0]
	for i := range m.acked {
		if f.Bitmap[i/8]&(1<<(i%8)) != 0 && !m.acked[i] {
			m.acked[i] = true
			progress = true
		}
		if !m.acked[i] {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		// Every fragment arrived though the SACK is not marked complete:
		// the peer will deliver; treat as done.
		e.finish(m, true)
		return
	}
	m.pending = missing
	if m.waiting {
		m.waiting = false
		if !progress {
			m.round++
			if m.round >= m.rounds {
				e.finish(m, false)
			}
		}
	}
}

func (e *Engine) queueSACK(k msgKey) {
	for _, x := range e.sacks {
		if x == k {
			return
		}
	}
	if len(e.sacks) >= 64 {
		return // bounded; the sender will probe again
	}
	e.sacks = append(e.sacks, k)
}

func (e *Engine) onFragment(now time.Time, f *Frame, meta transport.Meta) []Delivery {
	k := msgKey{src: f.Src, id: f.ID, bcast: f.Kind == KindBroadcast}
	if _, done := e.done[k]; done {
		e.stats.Duplicates++
		if f.Flag {
			e.queueSACK(k)
		}
		return nil
	}
	if f.Count-1 > e.o.MTU || (f.Index < f.Count-1 && len(f.Payload)*(f.Count-1) > e.o.MTU) {
		// Every fragment but the last is full: this message cannot fit.
		e.stats.Oversize++
		return nil
	}
	p, ok := e.parts[k]
	if ok && len(p.frags) != f.Count {
		e.stats.Malformed++
		return nil
	}
	if !ok {
		e.makeRoom(k.src, len(f.Payload))
		p = &partial{key: k, frags: make([][]byte, f.Count)}
		e.partSeq++
		p.seq = e.partSeq
		e.parts[k] = p
		e.stats.Reassemblies = len(e.parts)
	}
	p.deadline = now.Add(e.o.ReassemblyTimeout)
	p.meta = meta
	if p.frags[f.Index] == nil {
		if p.bytes+len(f.Payload) > e.o.MTU {
			e.stats.Oversize++
			e.dropPartial(k)
			return nil
		}
		p.frags[f.Index] = append(make([]byte, 0, len(f.Payload)), f.Payload...)
		p.have++
		p.bytes += len(f.Payload)
		e.stats.PayloadBytesReceived += uint64(len(f.Payload))
		e.stats.ReassemblyBytes += len(f.Payload)
	} else {
		e.stats.Duplicates++
	}
	if p.have < len(p.frags) {
		if f.Flag {
			e.queueSACK(k)
		}
		return nil
	}
	data := make([]byte, 0, p.bytes)
	for _, b := range p.frags {
		data = append(data, b...)
	}
	e.dropPartial(k)
	e.remember(k, now)
	if !k.bcast && (f.Flag || f.Count > 1) {
		// A one-fragment message without the flag asked for no SACK.
		e.queueSACK(k)
	}
	e.stats.Delivered++
	return []Delivery{{From: transport.Addr(k.src[:]), Data: data, Meta: p.meta}}
}

// makeRoom evicts the oldest partial messages until one more from src fits.
func (e *Engine) makeRoom(src Hint, n int) {
	for {
		count, perSrc := len(e.parts), 0
		var oldest, oldestSrc *partial
		for _, p := range e.parts {
			if oldest == nil || p.seq < oldest.seq {
				oldest = p
			}
			if p.key.src == src {
				perSrc++
				if oldestSrc == nil || p.seq < oldestSrc.seq {
					oldestSrc = p
				}
			}
		}
		switch {
		case perSrc >= e.o.MaxPerSource:
			e.dropPartial(oldestSrc.key)
		case count >= e.o.MaxReassemblies || (count > 0 && e.stats.ReassemblyBytes+n > e.o.MaxReassemblyBytes):
			e.dropPartial(oldest.key)
		default:
			return
		}
		e.stats.Evictions++
	}
}

func (e *Engine) remember(k msgKey, now time.Time) {
	if len(e.doneFIFO) >= doneMemory {
		delete(e.done, e.doneFIFO[0])
		e.doneFIFO = e.doneFIFO[1:]
	}
	e.done[k] = now
	e.doneFIFO = append(e.doneFIFO, k)
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats { return e.stats }
