package sim

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"
)

// msgIDSize is the length of the message id that leads every payload the
// simulator generates; it is how a delivery is matched to its message.
const msgIDSize = 8

// msgRec follows one application message from send to delivery.
type msgRec struct {
	id        uint64
	src, dst  int32
	size      int32
	sent      int64
	delivered int64 // -1 until delivered
	acked     int64 // -1 until the sender saw an end-to-end ack
	dups      int32
	failed    bool
	reply     bool // is itself a reply
	spec      int32

	airtime int64 // radio airtime of data and ack frames charged to it
	frames  int32 // frames (radio and IP) charged to it

	idealHops  int32 // radio hops of a shortest path; -1: none yet
	idealKnown bool
}

// trafficSource emits messages from one sender (random) or one pair.
type trafficSource struct {
	spec     int
	from     int32
	to       []int32 // candidates (pairs: exactly one)
	interval int64
	poisson  bool
	size     int
	start    int64
	stop     int64
	rng      *rand.Rand
}

type pendingReply struct {
	spec     int
	from, to int32
	size     int
}

func (s *Sim) buildTraffic() error {
	base := int64(s.sc.Warmup)
	window := int64(s.sc.Duration)
	for ti, t := range s.sc.Traffic {
		start := base + int64(t.Start)
		stop := base + window
		if t.Stop > 0 && base+int64(t.Stop) < stop {
			stop = base + int64(t.Stop)
		}
		size := t.Size
		if size == 0 {
			size = 50
		}
		mk := func(k int, from int, to []int32) {
			src := &trafficSource{spec: ti, from: int32(from), to: to, interval: int64(t.Interval),
				poisson: t.Poisson, size: size, start: start, stop: stop,
				rng: s.sd.stream(fmt.Sprintf("traffic-%d", ti), k)}
			s.traffic = append(s.traffic, src)
			// First message: a random phase within one interval (periodic) or
			// an exponential gap (Poisson).
			at := start + src.gap(true)
			if at < stop {
				s.q.push(event{at: at, kind: evTraffic, arg: int64(len(s.traffic) - 1)})
			}
		}
		switch t.Kind {
		case "random":
			from, err := s.sc.members(t.From)
			if err != nil {
				return fmt.Errorf("traffic[%d].from: %w", ti, err)
			}
			to, err := s.sc.members(t.To)
			if err != nil {
				return fmt.Errorf("traffic[%d].to: %w", ti, err)
			}
			for k, f := range from {
				var cands []int32
				for _, d := range to {
					if d != f {
						cands = append(cands, int32(d))
					}
				}
				if len(cands) == 0 {
					continue
				}
				mk(k, f, cands)
			}
		case "pairs":
			for k, p := range t.Pairs {
				a, err := s.sc.resolve(p[0])
				if err != nil {
					return fmt.Errorf("traffic[%d].pairs[%d]: %w", ti, k, err)
				}
				b, err := s.sc.resolve(p[1])
				if err != nil {
					return fmt.Errorf("traffic[%d].pairs[%d]: %w", ti, k, err)
				}
				if a == b {
					return fmt.Errorf("%w: traffic[%d].pairs[%d]: a node sending to itself", ErrScenario, ti, k)
				}
				mk(k, a, []int32{int32(b)})
			}
		}
	}
	return nil
}

func (t *trafficSource) gap(first bool) int64 {
	if t.poisson {
		return int64(t.rng.ExpFloat64() * float64(t.interval))
	}
	if first {
		return t.rng.Int64N(t.interval)
	}
	return t.interval
}

func (s *Sim) fireTraffic(k int) {
	t := s.traffic[k]
	// Draw the destination whether or not the sender is up, so that who
	// sends to whom never depends on the protocol.
	dst := t.to[0]
	if len(t.to) > 1 {
		dst = t.to[t.rng.IntN(len(t.to))]
	}
	if next := s.now + t.gap(false); next < t.stop {
		s.q.push(event{at: next, kind: evTraffic, arg: int64(k)})
	}
	if !s.nodes[t.from].online {
		s.m.skippedOffline++
		return
	}
	s.newMessage(t.spec, t.from, dst, t.size, false)
}

func (s *Sim) fireReply(p *pendingReply) {
	if !s.nodes[p.from].online || s.now >= int64(s.sc.Warmup+s.sc.Duration) {
		s.m.skippedOffline++
		return
	}
	s.newMessage(p.spec, p.from, p.to, p.size, true)
}

// newMessage creates a message and hands it to the sender's core.
func (s *Sim) newMessage(spec int, from, to int32, size int, reply bool) {
	id := uint64(len(s.msgs) + 1)
	rec := &msgRec{id: id, src: from, dst: to, size: int32(size), sent: s.now, delivered: -1, acked: -1,
		reply: reply, spec: int32(spec), idealHops: -1}
	s.msgs = append(s.msgs, rec)
	if h := s.idealHops(from, to); h >= 0 {
		rec.idealHops, rec.idealKnown = int32(h), true
	}
	payload := make([]byte, size)
	binary.BigEndian.PutUint64(payload, id)
	x := id
	for i := msgIDSize; i < size; i += 8 {
		x = splitmix64(x)
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], x)
		copy(payload[i:], b[:])
	}
	dn := s.nodes[to]
	s.callAppSend(s.nodes[from], AppMessage{ID: id, To: dn.addr, ToKey: dn.id.PublicKey(), Payload: payload})
}

func (s *Sim) onEvent(n *simNode, e *Event) {
	rec := s.msg(e.MsgID)
	switch e.Kind {
	case EventAccepted:
		if e.Flow != 0 && rec != nil {
			s.flows[e.Flow] = int32(rec.id - 1)
		}
	case EventAcked:
		s.m.acked++
		if rec != nil && rec.acked < 0 {
			rec.acked = s.now
		}
	case EventImplicitAck:
		s.m.implicitAcks++
	case EventHeld:
		s.m.held++
	case EventFailed:
		s.m.failed++
		if rec != nil {
			rec.failed = true
		}
	case EventDropped:
		s.m.dropped++
	}
	if s.trace != nil {
		fmt.Fprintf(s.trace, "%12.3f node=%d event=%s msg=%d flow=%x %s\n",
			float64(s.now)/1e9, n.idx, e.Kind, e.MsgID, e.Flow, e.Detail)
	}
}

func (s *Sim) msg(id uint64) *msgRec {
	if id == 0 || id > uint64(len(s.msgs)) {
		return nil
	}
	return s.msgs[id-1]
}

func (s *Sim) onDeliver(n *simNode, d *Deliver) {
	if len(d.Payload) < msgIDSize {
		s.m.foreignDeliveries++
		return
	}
	rec := s.msg(binary.BigEndian.Uint64(d.Payload))
	if rec == nil || int(rec.size) != len(d.Payload) {
		s.m.foreignDeliveries++
		return
	}
	if int(rec.dst) != n.idx {
		s.m.misdelivered++
		return
	}
	if d.From != s.nodes[rec.src].addr {
		s.m.wrongSender++
	}
	if s.trace != nil {
		fmt.Fprintf(s.trace, "%12.3f node=%d deliver msg=%d from=%d dup=%v\n",
			float64(s.now)/1e9, n.idx, rec.id, rec.src, rec.delivered >= 0)
	}
	if rec.delivered >= 0 {
		rec.dups++
		return
	}
	rec.delivered = s.now
	if !rec.idealKnown {
		if h := s.idealHops(rec.src, rec.dst); h >= 0 {
			rec.idealHops, rec.idealKnown = int32(h), true
		}
	}
	t := s.sc.Traffic[rec.spec]
	if !rec.reply && t.ReplyProb > 0 {
		u := float64(splitmix64(s.sd.seed^rec.id^0x7265706c79)>>11) / (1 << 53)
		if u < t.ReplyProb {
			size := t.ReplySize
			if size == 0 {
				size = max(t.Size, 50)
			}
			delay := int64(t.ReplyDelay)
			if delay == 0 {
				delay = int64(5 * time.Second)
			}
			s.q.push(event{at: s.now + delay, kind: evReply, ptr: &pendingReply{spec: int(rec.spec), from: rec.dst, to: rec.src, size: size}})
		}
	}
}

// account charges a transmitted frame: to its class, and to its message
// when it is a data or ack frame of a known flow.
func (s *Sim) account(f tag, air int64, radio bool) {
	c := f.class
	if c >= numClasses {
		c = ClassOther
	}
	if radio {
		// Scenario timings can schedule events before 0 (fapp's idle
		// probe one interval before the first search).
		h := int(max(s.now, 0) / int64(time.Hour))
		for h >= len(s.m.airByHour) {
			s.m.airByHour = append(s.m.airByHour, [numClasses]int64{})
		}
		s.m.airByHour[h][c] += air
		s.m.txByClass[c]++
	} else {
		s.m.ipByClass[c]++
	}
	if f.flow == 0 || (c != ClassData && c != ClassAck) {
		if c == ClassData || c == ClassAck {
			s.m.unattributed[c] += air
		}
		return
	}
	k, ok := s.flows[f.flow]
	if !ok {
		s.m.unattributed[c] += air
		return
	}
	rec := s.msgs[k]
	rec.airtime += air
	rec.frames++
}

// --- scripted events -------------------------------------------------------

// scriptReturn marks the second half of an offline event (the return).
const scriptReturn int64 = 1 << 32

func (s *Sim) scheduleScripts() {
	for i, e := range s.sc.Events {
		s.q.push(event{at: int64(e.At), kind: evScript, arg: int64(i)})
	}
}

func (s *Sim) fireScript(arg int64) {
	back := arg&scriptReturn != 0
	e := s.sc.Events[arg&^scriptReturn]
	switch e.Kind {
	case "offline":
		nodes, err := s.sc.members(e.Nodes)
		if err != nil {
			s.fail(err)
			return
		}
		for _, i := range nodes {
			s.setOnline(s.nodes[i], back, e.Restart)
		}
		if !back {
			s.q.push(event{at: s.now + int64(e.For), kind: evScript, arg: arg | scriptReturn})
		}
	case "partition":
		for _, n := range s.nodes {
			n.side = 0
		}
		if e.SplitXM != 0 {
			for i, n := range s.nodes {
				if s.topo.pos[i][0] >= e.SplitXM {
					n.side = 1
				}
			}
		}
		for k, set := range e.Sides {
			nodes, err := s.sc.members(set)
			if err != nil {
				s.fail(err)
				return
			}
			for _, i := range nodes {
				s.nodes[i].side = k + 1
			}
		}
		s.topoGen++
		s.refreshIP()
	case "heal":
		for _, n := range s.nodes {
			n.side = 0
		}
		s.topoGen++
		s.refreshIP()
	case "link_down", "link_up":
		s.ip[e.Link].admin = e.Kind == "link_up"
		s.refreshIP()
	}
}

// --- churn -------------------------------------------------------------------

type churnState struct {
	rngs    map[int]*rand.Rand
	restart bool
	up, dn  float64
}

func (s *Sim) startChurn() {
	c := s.sc.Churn
	if c == nil {
		return
	}
	nodes, err := s.sc.members(c.Nodes)
	if err != nil {
		s.fail(err)
		return
	}
	frac := c.Fraction
	if frac == 0 {
		frac = 0.1
	}
	pick := s.sd.stream("churn-pick", 0)
	pick.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	k := int(frac*float64(len(nodes)) + 0.5)
	s.churn = &churnState{rngs: map[int]*rand.Rand{}, restart: c.Restart, up: float64(c.MeanUp), dn: float64(c.MeanDown)}
	for _, i := range nodes[:k] {
		r := s.sd.stream("churn", i)
		s.churn.rngs[i] = r
		at := int64(s.sc.Warmup) + int64(r.ExpFloat64()*s.churn.up)
		s.q.push(event{at: at, kind: evChurn, node: int32(i)})
	}
}

func (s *Sim) fireChurn(i int) {
	n := s.nodes[i]
	r := s.churn.rngs[i]
	if n.online {
		s.setOnline(n, false, false)
		s.q.push(event{at: s.now + int64(r.ExpFloat64()*s.churn.dn), kind: evChurn, node: int32(i)})
		return
	}
	s.setOnline(n, true, s.churn.restart)
	s.q.push(event{at: s.now + int64(r.ExpFloat64()*s.churn.up), kind: evChurn, node: int32(i)})
}
