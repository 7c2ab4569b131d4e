package routing

import (
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// link is the router's view of one link.
type link struct {
	id    LinkID
	info  LinkInfo
	radio bool   // airtime is scarce: budgeted control traffic, jittered floods
	cost  uint32 // per-hop routing cost, ≥ 1

	// control is the budget of announces, path requests and flood relays
	// (spendControl): airtime (radio) or frames (fast). announces is
	// announce relays' own on radio links (announceWait).
	control, announces bucket

	// Duty cycle: airtime used per minute over the last hour.
	dcSlots  [60]time.Duration
	dcMinute int64
	queue    []queuedFrame
	// queueWake is when the queue may make progress.
	queueWake time.Time

	// Passive hop acknowledgements: smoothed delay and its variation.
	hopSRTT, hopVar time.Duration

	nextAnnounce time.Time
	neighbours   map[transport.Addr]*neighbour
	// snrFloor is the weakest SNR of any frame decoded on the link: about
	// the demodulator's limit.
	snrFloor float32
	hasFloor bool
}

type queuedFrame struct {
	f       SendFrame
	control bool
}

// neighbour is what the router knows of one neighbour on a link.
type neighbour struct {
	snr    float32 // smoothed
	hasSNR bool
	// Passive hop acknowledgements: decayed counts of frames handed to
	// this neighbour (obs) and of those it was not heard passing on
	// (miss). See neighbour.loss.
	obs, miss float32
	lastHeard time.Time
}

const maxNeighbours = 512

// maxQueue bounds frames waiting for duty-cycle budget on one link.
const maxQueue = 64

func (l *link) airtime(n int) time.Duration {
	if l.info.Airtime != nil {
		return l.info.Airtime(n)
	}
	br := l.info.Bitrate
	if br <= 0 {
		if l.radio {
			br = 1000
		} else {
			return 0
		}
	}
	d := time.Duration(int64(n) * 8 * int64(time.Second) / int64(br))
	if l.radio {
		// Preamble, header and turnaround: about 16 symbols' worth.
		d += time.Duration(int64(16*8) * int64(time.Second) / int64(br))
	}
	return d
}

// LinkUp tells the router a link is ready. A point-to-point link with an
// authenticated peer gives a direct route to that peer at once, and its
// post-quantum secret is remembered for the peer's unicast keys.
func (r *Router) LinkUp(now time.Time, info LinkInfo) {
	r.begin(now)
	defer r.end()
	id := LinkID(info.ID)
	if old := r.linkByID[id]; old != nil {
		r.removeLink(old)
	}
	l := &link{id: id, info: info, neighbours: map[transport.Addr]*neighbour{}}
	l.radio = info.Broadcast || (info.Bitrate > 0 && info.Bitrate < 1_000_000) || info.DutyCycle > 0
	l.cost = uint32(max(1, info.Cost))
	if l.radio {
		l.control.setShare(r.o.AnnounceShare)
	} else {
		l.control.rate, l.control.capacity = 50, 500
	}
	l.control.start(now)
	r.links = append(r.links, l)
	r.linkByID[id] = l
	delay := r.o.AnnounceDelay
	if delay <= 0 {
		delay = time.Second
		if l.radio {
			delay = 10 * time.Minute
		}
	}
	l.nextAnnounce = now.Add(time.Duration(r.rnd.Int64N(int64(delay)) + 1))
	if info.HasPeer && !info.Broadcast {
		if _, err := info.Peer.X25519(); err == nil && info.Peer.Address() != r.addr {
			p := r.peerForKey(info.Peer, now)
			if len(info.PQSecret) == envelope.PQSecretSize {
				s := p.e2eState()
				if s.pq == nil || string(s.pq) != string(info.PQSecret) {
					s.pqOld = s.pq
					s.pq = append([]byte(nil), info.PQSecret...)
					s.pair, s.pairPQ, s.pairPQOld = nil, nil, s.pairPQ
					r.savePeer(p)
				}
			}
			r.considerRoute(now, p, l, transport.Broadcast, 0, p.seq, false, transport.Meta{})
		}
	}
}

// LinkDown tells the router a link is gone.
func (r *Router) LinkDown(now time.Time, id LinkID) {
	r.begin(now)
	defer r.end()
	if l := r.linkByID[id]; l != nil {
		r.removeLink(l)
	}
}

func (r *Router) removeLink(l *link) {
	delete(r.linkByID, l.id)
	for i, x := range r.links {
		if x == l {
			r.links = append(r.links[:i], r.links[i+1:]...)
			break
		}
	}
	for _, p := range r.peers {
		r.dropLink(p, l)
	}
	keep := r.relays[:0]
	for _, pr := range r.relays {
		if pr.link != l {
			keep = append(keep, pr)
		}
	}
	clear(r.relays[len(keep):])
	r.relays = keep
	for range l.queue {
		r.drop(DropLinkDown)
	}
	for t, c := range r.crumbs {
		if c.link == l {
			delete(r.crumbs, t)
		}
	}
}

// hear updates what we know of the neighbour a frame came from.
func (r *Router) hear(now time.Time, l *link, m transport.Meta) *neighbour {
	nb := l.neighbours[m.From]
	if nb == nil {
		if len(l.neighbours) >= maxNeighbours {
			// Forget the longest silent neighbour.
			var oldK transport.Addr
			var old *neighbour
			for k, n := range l.neighbours {
				if old == nil || n.lastHeard.Before(old.lastHeard) || (n.lastHeard.Equal(old.lastHeard) && k < oldK) {
					oldK, old = k, n
				}
			}
			delete(l.neighbours, oldK)
		}
		nb = &neighbour{}
		l.neighbours[m.From] = nb
	}
	nb.lastHeard = now
	if m.HasSignal && (!l.hasFloor || m.SNR < l.snrFloor) {
		l.snrFloor, l.hasFloor = m.SNR, true
	}
	if m.HasSignal {
		if !nb.hasSNR {
			nb.snr, nb.hasSNR = m.SNR, true
		} else {
			nb.snr += (m.SNR - nb.snr) / 4
		}
	}
	return nb
}

// bucket is a token bucket: level refills at rate per second up to
// capacity; spending may take it into debt.
type bucket struct {
	level, rate, capacity float64
	at                    time.Time
}

// setShare makes b a radio budget of share of the airtime (seconds per
// second), holding ten minutes' worth.
func (b *bucket) setShare(share float64) {
	b.rate, b.capacity = share, share*600
	b.level = min(b.level, b.capacity)
}

// start fills b to a quarter of its capacity at now.
func (b *bucket) start(now time.Time) { b.level, b.at = b.capacity/4, now }

// fill refills b up to now.
func (b *bucket) fill(now time.Time) {
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.level = min(b.capacity, b.level+el*b.rate)
		b.at = now
	}
}

// wait is how long until b holds cost at its rate (0: it does now).
func (b *bucket) wait(cost float64) time.Duration {
	if b.level >= cost {
		return 0
	}
	return time.Duration((cost - b.level) / b.rate * float64(time.Second))
}

// controlCost is what a control frame of n bytes takes from l.control:
// its airtime on radio, one frame on a fast link.
func (l *link) controlCost(n int) float64 {
	if l.radio {
		return l.airtime(n).Seconds()
	}
	return 1
}

// spendControl takes a frame of n bytes from the control budget. force
// spends even into debt (own announces and requests are rare and must go
// out; the debt delays relays).
func (r *Router) spendControl(now time.Time, l *link, n int, force bool) bool {
	if l.radio {
		l.control.setShare(r.controlShare(l))
	}
	l.control.fill(now)
	cost := l.controlCost(n)
	if l.control.level < cost && !force {
		return false
	}
	l.control.level -= cost
	return true
}

// dcUsed returns the airtime used in the rolling hour ending at now.
func (l *link) dcUsed(now time.Time) time.Duration {
	l.dcAdvance(now)
	var s time.Duration
	for _, v := range l.dcSlots {
		s += v
	}
	return s
}

func (l *link) dcAdvance(now time.Time) {
	m := now.Unix() / 60
	if m <= l.dcMinute {
		return
	}
	if m-l.dcMinute >= 60 {
		l.dcSlots = [60]time.Duration{}
	} else {
		for i := l.dcMinute + 1; i <= m; i++ {
			l.dcSlots[i%60] = 0
		}
	}
	l.dcMinute = m
}

// emit sends a frame on l, or queues it while the duty cycle is spent.
func (r *Router) emit(now time.Time, l *link, to transport.Addr, prio transport.Priority, data []byte, kind envelope.Kind, control bool) {
	r.emitFrame(now, l, SendFrame{Link: l.id, To: to, Priority: prio, Data: data, Kind: kind}, control)
}

// emitFrame is emit for a frame built by the caller (NoAck). A unicast
// frame that asks for the link's acknowledgement gets the round bound of
// its kind on l (linkRounds), whichever path sent it.
func (r *Router) emitFrame(now time.Time, l *link, f SendFrame, control bool) {
	if !f.NoAck && f.To != transport.Broadcast {
		f.MaxRounds = r.linkRounds(l, f.Kind)
	}
	if l.info.DutyCycle > 0 && (len(l.queue) > 0 || !r.dcAllows(now, l, len(f.Data))) {
		r.enqueue(now, l, queuedFrame{f: f, control: control})
		return
	}
	r.transmit(now, l, &f, control)
}

// dcAllows reports whether a frame of n bytes fits the duty cycle. The
// router keeps to half the legal limit: the link adds acknowledgements and
// retransmissions of its own, and must never have to refuse a frame.
func (r *Router) dcAllows(now time.Time, l *link, n int) bool {
	limit := time.Duration(l.info.DutyCycle / 2 * float64(time.Hour))
	return l.dcUsed(now)+l.airtime(n) <= limit
}

func (r *Router) transmit(now time.Time, l *link, f *SendFrame, control bool) {
	at := l.airtime(len(f.Data))
	if l.info.DutyCycle > 0 {
		if f.To != transport.Broadcast && !f.NoAck {
			at += l.airtime(12) // the link's acknowledgement
		}
		l.dcAdvance(now)
		l.dcSlots[l.dcMinute%60] += at
	}
	if l.radio {
		if control {
			r.stats.ControlAirtime += at
		} else {
			r.stats.DataAirtime += at
		}
	}
	if int(f.Kind) < NumKinds {
		r.stats.FramesOut[f.Kind]++
	}
	r.stats.BytesOut += uint64(len(f.Data))
	r.actions = append(r.actions, f)
}

func (r *Router) enqueue(now time.Time, l *link, q queuedFrame) {
	if len(l.queue) >= maxQueue {
		// Drop the lowest-priority, newest frame (possibly q itself).
		worst := -1
		for i := range l.queue {
			if worst < 0 || l.queue[i].f.Priority >= l.queue[worst].f.Priority {
				worst = i
			}
		}
		if l.queue[worst].f.Priority < q.f.Priority {
			r.drop(DropQueueFull)
			return
		}
		l.queue = append(l.queue[:worst], l.queue[worst+1:]...)
		r.drop(DropQueueFull)
	}
	// Stable insert by priority.
	i := len(l.queue)
	for i > 0 && l.queue[i-1].f.Priority > q.f.Priority {
		i--
	}
	l.queue = append(l.queue, queuedFrame{})
	copy(l.queue[i+1:], l.queue[i:])
	l.queue[i] = q
	r.setQueueWake(now, l)
}

func (r *Router) setQueueWake(now time.Time, l *link) {
	// The budget frees up when the oldest minute slot leaves the window.
	l.queueWake = time.Unix((now.Unix()/60+1)*60, 0)
}

func (r *Router) drainQueue(now time.Time, l *link) {
	for len(l.queue) > 0 && r.dcAllows(now, l, len(l.queue[0].f.Data)) {
		q := l.queue[0]
		l.queue = l.queue[1:]
		r.transmit(now, l, &q.f, q.control)
	}
	if len(l.queue) > 0 {
		r.setQueueWake(now, l)
	} else {
		l.queue = nil
	}
}
