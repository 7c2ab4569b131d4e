package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	mrand "math/rand"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/lora/core"
	"github.com/openmeshd/meshd/transport/lora/dutycycle"
)

// Overhearer is implemented by nodes that want to see unicast frames
// addressed to other neighbours on a shared medium (passive hop
// acknowledgement). On meshd's LoRa link layer the engine reports them
// (complete one-fragment messages, their payload), as the LoRa transport
// does for a daemon that turns overhearing on (transport.Overhearer),
// unless the scenario sets radio.no_overhear; on a raw link (the frame)
// only when the scenario sets radio.overhear. Link.Overhears tells the node.
type Overhearer interface {
	Overhear(now time.Time, l LinkID, to transport.Addr, data []byte, m transport.Meta, out *Out)
}

// RawRadio is implemented by protocols that bring their own LoRa link layer
// (the Meshtastic-like baseline): when RawRadio returns true their frames go
// on the air as they are, paced by the node's duty-cycle budget, instead of
// through meshd's LoRa link layer (fragmentation, SACK, scheduler).
type RawRadio interface {
	RawRadio() bool
}

// Why a frame was not received, for the counters.
const (
	failHalfDuplex uint8 = 1 << iota // the receiver was transmitting
)

// tag is what the metrics know about a frame: its class and flow.
type tag struct {
	class Class
	flow  uint64
}

// txFrame is a frame waiting for the radio (the firmware's queue).
type txFrame struct {
	to    transport.Addr
	prio  transport.Priority
	tag   tag
	data  []byte
	ready int64 // when the radio may consider it (hand-over latency)
	air   int64
}

// transmission is a frame on the air.
type transmission struct {
	src        int32
	free       bool // off the air (a what-if): decided when it starts
	f          *txFrame
	start, end int64
}

// rxEntry is a frame arriving at a receiver.
type rxEntry struct {
	tx     *transmission
	end    int64
	rssi   float64
	mw     float64
	interf float64 // summed power of every frame overlapping this one, mW
	fail   uint8
}

// fifo is a queue of frames.
type fifo struct {
	items []*txFrame
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(f *txFrame) {
	if q.head > 0 && q.head == len(q.items) {
		clear(q.items)
		q.items, q.head = q.items[:0], 0
	}
	q.items = append(q.items, f)
}

func (q *fifo) peek() *txFrame { return q.items[q.head] }

func (q *fifo) pop() *txFrame {
	f := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return f
}

// popBack removes the newest frame.
func (q *fifo) popBack() *txFrame {
	n := len(q.items) - 1
	f := q.items[n]
	q.items[n] = nil
	q.items = q.items[:n]
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return f
}

func (q *fifo) clear() {
	clear(q.items)
	q.items, q.head = q.items[:0], 0
}

// pendingTag remembers the label of a message handed to the link layer until
// its first fragment shows which link-layer message id it got.
type pendingTag struct {
	tag    tag
	to     transport.Addr
	prefix []byte
}

// maxPendingTags bounds the labels of messages handed to the link layer whose
// first fragment has not gone out yet.
const maxPendingTags = 4096

// radioNode is one node's LoRa radio and its link layer.
type radioNode struct {
	idx  int32
	link LinkID
	addr transport.Addr
	hint core.Hint
	raw  bool // the protocol's own link layer: q holds frames by priority

	// meshd's link layer (nil when raw).
	eng       *core.Engine
	engWakeAt int64
	engGen    uint64
	pending   []pendingTag
	ids       map[uint16]tag // link-layer message id -> label

	// The radio: in raw mode one queue per priority, else q[0] is the
	// firmware's queue of frames the link layer handed over.
	q       [3]fifo
	qlen    int
	txUntil int64 // end of the transmission on the air, 0 when idle

	attemptAt  int64 // scheduled attempt, -1 when none
	attemptGen uint64

	budget *dutycycle.Budget
	audit  *dutycycle.Audit
	rng    *rand.Rand // CSMA backoff
	rx     []rxEntry

	airtime int64 // total transmitted, ns
}

// addrIs reports whether a frame addressed to a (a full link address in
// raw mode, a link-layer hint otherwise) is for r.
func (r *radioNode) addrIs(a transport.Addr) bool {
	if len(a) == len(r.hint) {
		return string(a) == string(r.hint[:])
	}
	return string(a) == string(r.addr)
}

func (r *radioNode) head() *txFrame {
	for p := range r.q {
		if r.q[p].len() > 0 {
			return r.q[p].peek()
		}
	}
	return nil
}

func (r *radioNode) popHead() *txFrame {
	for p := range r.q {
		if r.q[p].len() > 0 {
			r.qlen--
			return r.q[p].pop()
		}
	}
	return nil
}

func (r *radioNode) clearQueue() {
	for p := range r.q {
		r.q[p].clear()
	}
	r.qlen = 0
}

func newRadioNode(s *Sim, i int, link LinkID, addr transport.Addr, raw bool) (*radioNode, error) {
	b, err := dutycycle.New(dutycycle.Options{Band: s.rm.band, Buckets: s.rm.budgetBuckets})
	if err != nil {
		return nil, fmt.Errorf("sim: node %d: duty-cycle budget: %w", i, err)
	}
	r := &radioNode{idx: int32(i), link: link, addr: addr, raw: raw, attemptAt: -1, engWakeAt: -1,
		budget: b, rng: s.sd.stream("csma", i)}
	copy(r.hint[:], addr)
	if s.rm.audit {
		r.audit = dutycycle.NewAudit(s.rm.band)
	}
	if !raw {
		if err := s.newEngine(r, 0); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// newEngine gives r a fresh meshd LoRa link layer (at boot, or when the node
// reboots: the daemon's transport starts over then). The duty-cycle budget
// is kept: a reboot does not make the legal limit forget airtime.
func (s *Sim) newEngine(r *radioNode, boot int) error {
	seed := s.sd.stream("lora-core", int(r.idx)*1000+boot).Int64()
	eng, err := core.New(core.Options{
		Self:       r.hint,
		Modulation: s.rm.mod,
		AirHeader:  s.rm.header,
		Budget:     r.budget,
		Rand:       mrand.New(mrand.NewSource(seed)),
		Overhear:   s.nodes[r.idx].overhear,
	})
	if err != nil {
		return fmt.Errorf("sim: node %d: LoRa link layer: %w", r.idx, err)
	}
	r.eng = eng
	r.ids = make(map[uint16]tag)
	r.pending = nil
	r.engGen++
	r.engWakeAt = -1
	return nil
}

// radioSend hands a frame from node n to its LoRa link.
func (s *Sim) radioSend(n *simNode, sd *Send) {
	r := n.radio
	prio := min(sd.Priority, transport.PriorityBackground)
	t := tag{class: sd.Class, flow: sd.Flow}
	if !r.raw {
		err := r.eng.EnqueueFrame(s.timeAt(s.now), transport.Frame{To: sd.To, Priority: prio, Data: sd.Data, NoAck: sd.NoAck, MaxRounds: sd.MaxRounds})
		switch {
		case err == nil:
			pl := r.eng.FragmentPayload(sd.To == transport.Broadcast)
			if len(r.pending) >= maxPendingTags {
				r.pending = slices.Delete(r.pending, 0, 1) // a message the engine gave up before sending
			}
			r.pending = append(r.pending, pendingTag{tag: t, to: sd.To, prefix: bytes.Clone(sd.Data[:min(len(sd.Data), pl)])})
			s.pump(r)
		case errors.Is(err, core.ErrQueueFull):
			// The daemon's Send would block here (backpressure): the
			// protocol offered more than the budget lets the link carry.
			s.m.dutyViolations++
			s.m.linkQueueFull++
		case errors.Is(err, transport.ErrFrameTooLarge):
			s.m.framesTooLarge++
		default:
			s.m.linkErrors++
		}
		return
	}
	if len(sd.Data) > s.rm.mtu {
		s.m.framesTooLarge++
		return
	}
	if r.qlen >= s.rm.maxQueue {
		// Drop the newest frame of the lowest priority present, or the new
		// frame when nothing queued ranks below it.
		low := -1
		for p := len(r.q) - 1; p >= 0; p-- {
			if r.q[p].len() > 0 {
				low = p
				break
			}
		}
		s.m.queueDrops++
		if low <= int(prio) {
			return
		}
		r.q[low].popBack()
		r.qlen--
	}
	f := &txFrame{to: sd.To, prio: prio, tag: t, data: bytes.Clone(sd.Data),
		ready: s.now + s.rm.txLatency, air: s.rm.airtime(len(sd.Data))}
	r.q[prio].push(f)
	r.qlen++
	if r.txUntil == 0 && r.attemptAt < 0 {
		s.scheduleAttempt(r, f.ready)
	}
}

// pump moves every frame the link layer may send now to the radio and
// schedules the link layer's next wake-up.
func (s *Sim) pump(r *radioNode) {
	if r.raw || !s.nodes[r.idx].online {
		return
	}
	nowT := s.timeAt(s.now)
	for {
		frame, info, ok := r.eng.Next(nowT)
		if !ok {
			break
		}
		f := &txFrame{tag: s.frameTag(r, frame), data: bytes.Clone(frame),
			ready: s.now + s.rm.txLatency, air: s.rm.airtime(len(frame))}
		switch {
		case info.Kind == core.KindSACK:
			s.m.linkSACKByClass[f.tag.class]++
		case info.Retransmission:
			s.m.linkRetxByClass[f.tag.class]++
		}
		if p, err := core.Parse(frame, &core.Key{}); err == nil && p.Kind != core.KindBroadcast {
			f.to = transport.Addr(p.Dst[:])
		}
		r.q[0].push(f)
		r.qlen++
		if r.txUntil == 0 && r.attemptAt < 0 {
			s.scheduleAttempt(r, f.ready)
		}
	}
	w := r.eng.Wake(nowT)
	if w.IsZero() {
		r.engGen++
		r.engWakeAt = -1
		return
	}
	at := max(int64(w.Sub(s.epoch)), s.now)
	if at == r.engWakeAt {
		return
	}
	r.engGen++
	r.engWakeAt = at
	s.q.push(event{at: at, kind: evLinkWake, node: r.idx, arg: int64(r.engGen)})
}

func (s *Sim) linkWake(r *radioNode, gen uint64) {
	if gen != r.engGen {
		return
	}
	r.engWakeAt = -1
	s.pump(r)
}

// frameTag labels a frame the link layer produced: a fragment carries the
// label of its message (bound the first time one of its fragments goes out,
// by matching the fragment's bytes against messages handed over), a SACK
// the label of the message it acknowledges.
func (s *Sim) frameTag(r *radioNode, frame []byte) tag {
	p, err := core.Parse(frame, &core.Key{})
	if err != nil {
		return tag{}
	}
	if p.Kind == core.KindSACK {
		peer := s.byHint[transport.Addr(p.Dst[:])]
		if peer == nil || peer.radio == nil || peer.radio.ids == nil {
			return tag{}
		}
		return peer.radio.ids[p.ID]
	}
	if t, ok := r.ids[p.ID]; ok && p.Index != 0 {
		return t
	}
	if p.Index == 0 {
		to := transport.Broadcast
		if p.Kind == core.KindUnicast {
			to = transport.Addr(p.Dst[:])
		}
		for k, pt := range r.pending {
			if pt.to == to && bytes.Equal(pt.prefix, p.Payload) {
				r.ids[p.ID] = pt.tag
				r.pending = slices.Delete(r.pending, k, k+1)
				return pt.tag
			}
		}
	}
	return r.ids[p.ID]
}

func (s *Sim) scheduleAttempt(r *radioNode, at int64) {
	if at < s.now {
		at = s.now
	}
	if r.attemptAt >= 0 && r.attemptAt <= at {
		return
	}
	r.attemptGen++
	r.attemptAt = at
	s.q.push(event{at: at, kind: evTxAttempt, node: r.idx, arg: int64(r.attemptGen)})
}

// attempt tries to start the radio's next transmission.
func (s *Sim) attempt(r *radioNode, gen uint64) {
	if gen != r.attemptGen {
		return
	}
	r.attemptAt = -1
	n := s.nodes[r.idx]
	if !n.online || r.txUntil != 0 {
		return
	}
	for {
		f := r.head()
		if f == nil {
			return
		}
		if f.ready > s.now {
			s.scheduleAttempt(r, f.ready)
			return
		}
		nowT := s.timeAt(s.now)
		if r.raw {
			// The protocol's own link layer: keep it within the budget.
			at, err := r.budget.Check(nowT, time.Duration(f.air), f.prio)
			if err != nil {
				// Can never fit (longer than the dwell time or the whole budget).
				r.popHead()
				s.m.dutyViolations++
				continue
			}
			if wait := int64(at.Sub(nowT)); wait > 0 {
				if s.now+wait-f.ready > s.rm.maxQueueDelay {
					// The budget cannot carry it in time: refused.
					r.popHead()
					s.m.dutyViolations++
					continue
				}
				s.m.dutyDeferred++
				s.scheduleAttempt(r, s.now+wait)
				return
			}
		}
		if s.rm.csma {
			if busy := s.busyUntil(r); busy > s.now {
				s.m.csmaBackoffs++
				s.scheduleAttempt(r, busy+int64(r.rng.IntN(s.rm.cw+1))*s.rm.slot)
				return
			}
		}
		r.popHead()
		if r.raw {
			r.budget.Record(nowT, time.Duration(f.air))
		}
		if r.audit != nil {
			r.audit.Add(nowT, time.Duration(f.air))
		}
		s.startTx(r, f)
		return
	}
}

// busyUntil returns when the channel as r senses it becomes free (the end of
// the last decodable frame arriving that r can already have detected), or 0
// when it seems free. A frame is detectable senseDelay after it started:
// channel activity detection needs the first symbols of the preamble, so
// two radios that start within that time of each other both find the
// channel free and collide.
func (s *Sim) busyUntil(r *radioNode) int64 {
	var until int64
	for i := range r.rx {
		e := &r.rx[i]
		if e.end > s.now && e.rssi >= s.rm.sens && e.end > until && s.now-e.tx.start >= s.rm.senseDelay {
			until = e.end
		}
	}
	return until
}

func (s *Sim) startTx(r *radioNode, f *txFrame) {
	if s.free(f) {
		tx := &transmission{src: r.idx, f: f, start: s.now, end: s.now, free: true}
		r.txUntil = tx.end
		s.q.push(event{at: tx.end, kind: evTxEnd, node: r.idx, ptr: tx})
		return
	}
	tx := &transmission{src: r.idx, f: f, start: s.now, end: s.now + f.air}
	r.txUntil = tx.end
	r.airtime += f.air
	// Half duplex: whatever r was receiving is lost.
	for i := range r.rx {
		if r.rx[i].end > s.now {
			r.rx[i].fail |= failHalfDuplex
		}
	}
	side := s.nodes[r.idx].side
	for _, nb := range s.topo.nbrs[r.idx] {
		m := s.nodes[nb.j]
		if !m.online || m.side != side {
			continue
		}
		rj := m.radio
		e := rxEntry{tx: tx, end: tx.end, rssi: float64(nb.rssi), mw: float64(nb.mw)}
		if s.rm.fadingSigma > 0 {
			k := s.rngFading.Uint64() & (fadeTableSize - 1)
			e.rssi += float64(s.fade.db[k])
			e.mw *= float64(s.fade.lin[k])
		}
		if rj.txUntil > s.now {
			e.fail |= failHalfDuplex
		}
		for k := range rj.rx {
			g := &rj.rx[k]
			if g.end > s.now {
				g.interf += e.mw
				e.interf += g.mw
			}
		}
		rj.rx = append(rj.rx, e)
	}
	s.account(f.tag, f.air, true)
	s.q.push(event{at: tx.end, kind: evTxEnd, node: r.idx, ptr: tx})
}

// rxOK is a frame decoded by one receiver.
type rxOK struct {
	j    int32
	rssi float64
}

func (s *Sim) txEnd(tx *transmission) {
	r := s.nodes[tx.src].radio
	if r.txUntil == tx.end {
		r.txUntil = 0
	}
	if tx.free {
		s.deliverDecoded(r, tx, s.inRange(tx))
		return
	}
	ok := s.rxScratch[:0]
	uni := tx.f.to != "" && tx.f.to != transport.Broadcast
	outcome := uniUnreachable
	margin := marginNoLink
	for _, nb := range s.topo.nbrs[tx.src] {
		m := s.nodes[nb.j]
		rj := m.radio
		addressee := uni && rj.addrIs(tx.f.to)
		if addressee {
			margin = marginBin(float64(nb.rssi) - s.rm.sens)
		}
		k := -1
		for i := range rj.rx {
			if rj.rx[i].tx == tx {
				k = i
				break
			}
		}
		if k < 0 {
			continue
		}
		e := rj.rx[k]
		last := len(rj.rx) - 1
		rj.rx[k] = rj.rx[last]
		rj.rx[last] = rxEntry{}
		rj.rx = rj.rx[:last]
		if !m.online || !s.rm.decodable(e.rssi) {
			continue
		}
		switch {
		case e.fail&failHalfDuplex != 0:
			s.m.lostHalfDuplex++
			if addressee {
				outcome = uniHalfDuplex
			}
			continue
		case e.interf > 0 && e.mw < e.interf*s.rm.captureLin:
			s.m.lostCollision++
			if addressee {
				outcome = uniCollision
			}
			continue
		case s.rm.frameLoss > 0 && s.rngLoss.Float64() < s.rm.frameLoss:
			s.m.lostRandom++
			if addressee {
				outcome = uniRandom
			}
			continue
		}
		if addressee {
			outcome = uniReceived
		}
		s.m.rxFrames++
		ok = append(ok, rxOK{j: nb.j, rssi: e.rssi})
	}
	s.rxScratch = ok
	if uni {
		s.m.unicast[tx.f.tag.class][outcome]++
		if tx.f.tag.class == ClassData {
			s.m.dataByMargin[margin][outcome]++
		}
	}
	s.deliverDecoded(r, tx, ok)
}

// deliverDecoded hands tx to the receivers that decoded it, and lets the
// sender's radio go on with its queue.
func (s *Sim) deliverDecoded(r *radioNode, tx *transmission, ok []rxOK) {
	for _, o := range ok {
		m := s.nodes[o.j]
		if !m.online {
			continue
		}
		meta := transport.Meta{HasSignal: true, RSSI: float32(o.rssi), SNR: float32(o.rssi - s.rm.noiseFloor)}
		s.radioDeliver(m, r, tx.f, meta)
	}
	if s.nodes[tx.src].online && r.qlen > 0 {
		s.scheduleAttempt(r, s.now)
	}
}

// free reports whether f, starting now, costs no airtime
// (RunOptions.FreeAnnounces, RunOptions.FreeAnnouncesAfter).
func (s *Sim) free(f *txFrame) bool {
	if f.tag.class != ClassAnnounce {
		return false
	}
	return s.opt.FreeAnnounces || (s.opt.FreeAnnouncesAfter > 0 && s.now >= int64(s.opt.FreeAnnouncesAfter))
}

// inRange lists, for a free frame, every neighbour in range of its mean
// signal (no fading, collision or loss).
func (s *Sim) inRange(tx *transmission) []rxOK {
	ok := s.rxScratch[:0]
	side := s.nodes[tx.src].side
	for _, nb := range s.topo.nbrs[tx.src] {
		if s.nodes[nb.j].side == side && s.rm.decodable(float64(nb.rssi)) {
			ok = append(ok, rxOK{j: nb.j, rssi: float64(nb.rssi)})
		}
	}
	s.rxScratch = ok
	return ok
}

// radioDeliver hands a decoded frame to receiver m's link layer.
func (s *Sim) radioDeliver(m *simNode, from *radioNode, f *txFrame, meta transport.Meta) {
	rj := m.radio
	if rj.raw {
		meta.From = from.addr
		if f.to != transport.Broadcast && f.to != rj.addr {
			if _, yes := m.node.(Overhearer); yes && s.rm.overhear {
				s.rxbuf = append(s.rxbuf[:0], f.data...)
				s.callOverhear(m, rj.link, f.to, s.rxbuf, meta)
			}
			return
		}
		s.rxbuf = append(s.rxbuf[:0], f.data...)
		s.callReceive(m, rj.link, s.rxbuf, meta)
		return
	}
	nowT := s.timeAt(s.now)
	for _, d := range rj.eng.Receive(nowT, f.data, meta) {
		s.rxbuf = append(s.rxbuf[:0], d.Data...)
		if d.Meta.Overheard {
			// The engine reports overheard messages only to nodes that
			// asked (Options.Overhear), which implement Overhearer.
			s.callOverhear(m, rj.link, d.To, s.rxbuf, d.Meta)
			continue
		}
		s.callReceive(m, rj.link, s.rxbuf, d.Meta)
	}
	s.pump(rj)
}

// fadeTableSize is the number of precomputed fading draws (a power of two).
const fadeTableSize = 1 << 14

// fadeTable holds per-frame fading draws, N(0, sigma) in dB and as a linear
// power factor, so the hot path needs neither exp nor log. The table is
// drawn from the seed; frames index it with the fading stream.
type fadeTable struct {
	db  [fadeTableSize]float32
	lin [fadeTableSize]float32
}

func newFadeTable(rng *rand.Rand, sigma float64) *fadeTable {
	t := &fadeTable{}
	for i := range t.db {
		x := rng.NormFloat64() * sigma
		t.db[i] = float32(x)
		t.lin[i] = float32(math.Pow(10, x/10))
	}
	return t
}
