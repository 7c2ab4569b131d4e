package sim

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/openmeshd/meshd/transport"
)

// ipLink is a point-to-point IP link (a TCP connection) between two nodes.
// Each direction is a FIFO served at the link's bandwidth, followed by a
// fixed one-way latency.
type ipLink struct {
	idx      int
	a, b     int32
	la, lb   LinkID // the link's LinkID at a and at b
	latency  int64
	bps      float64
	loss     float64
	maxQueue int64
	admin    bool // not taken down by a link_down event
	up       bool // effective state
	gen      uint64
	busy     [2]int64
	rng      *rand.Rand
}

type ipFrame struct {
	l     *ipLink
	dir   int // 0: a to b
	gen   uint64
	class Class
	data  []byte
}

func newIPLink(s *Sim, idx int, spec IPLinkSpec) (*ipLink, error) {
	a, err := s.sc.resolve(spec.A)
	if err != nil {
		return nil, fmt.Errorf("ip_links[%d]: %w", idx, err)
	}
	b, err := s.sc.resolve(spec.B)
	if err != nil {
		return nil, fmt.Errorf("ip_links[%d]: %w", idx, err)
	}
	if a == b {
		return nil, fmt.Errorf("%w: ip_links[%d] joins node %d to itself", ErrScenario, idx, a)
	}
	l := &ipLink{idx: idx, a: int32(a), b: int32(b), latency: int64(20 * time.Millisecond), bps: 10e6,
		loss: spec.Loss, maxQueue: int64(10 * time.Second), admin: true, rng: s.sd.stream("ip-loss", idx)}
	if spec.Latency > 0 {
		l.latency = int64(spec.Latency)
	}
	if spec.BandwidthBps > 0 {
		l.bps = spec.BandwidthBps
	}
	if spec.MaxQueueDelay > 0 {
		l.maxQueue = int64(spec.MaxQueueDelay)
	}
	return l, nil
}

func (l *ipLink) info(s *Sim, at int32) transport.Info {
	peer := l.b
	if at == l.b {
		peer = l.a
	}
	return transport.Info{
		ID:      fmt.Sprintf("tcp%d.%d", l.idx, l.gen),
		Kind:    "tcp",
		MTU:     65535,
		Bitrate: int(l.bps),
		Cost:    1,
		Ordered: true,
		Peer:    s.nodes[peer].id.PublicKey(),
		HasPeer: true,
	}
}

// ipSend transmits a frame from node at over l.
func (s *Sim) ipSend(at int32, l *ipLink, sd *Send) {
	if !l.up {
		s.m.ipDrops++
		return
	}
	dir := 0
	if at == l.b {
		dir = 1
	}
	start := max(s.now, l.busy[dir])
	// 40 bytes of TCP/IP headers and 4 of meshd's length framing per frame.
	ser := int64(float64((len(sd.Data)+44)*8) / l.bps * 1e9)
	depart := start + ser
	if depart-s.now > l.maxQueue {
		s.m.ipDrops++
		return
	}
	l.busy[dir] = depart
	s.m.ipFrames++
	s.account(tag{class: sd.Class, flow: sd.Flow}, 0, false)
	if l.loss > 0 && l.rng.Float64() < l.loss {
		s.m.ipDrops++
		return
	}
	f := &ipFrame{l: l, dir: dir, gen: l.gen, class: sd.Class, data: append([]byte(nil), sd.Data...)}
	s.q.push(event{at: depart + l.latency, kind: evIPArrive, ptr: f})
}

func (s *Sim) ipArrive(f *ipFrame) {
	l := f.l
	if f.gen != l.gen || !l.up {
		s.m.ipDrops++
		return
	}
	to, link := l.b, l.lb
	if f.dir == 1 {
		to, link = l.a, l.la
	}
	n := s.nodes[to]
	s.rxbuf = append(s.rxbuf[:0], f.data...)
	s.callReceive(n, link, s.rxbuf, transport.Meta{})
}

// refreshIP recomputes every IP link's state after a change of who is
// online or of the partition, and tells both ends about changes.
func (s *Sim) refreshIP() {
	for _, l := range s.ip {
		a, b := s.nodes[l.a], s.nodes[l.b]
		up := l.admin && a.online && b.online && a.side == b.side
		if up == l.up {
			continue
		}
		l.up = up
		if up {
			l.gen++
			l.busy = [2]int64{}
			s.callLinkUp(a, l.la, l.info(s, l.a))
			s.callLinkUp(b, l.lb, l.info(s, l.b))
		} else {
			l.gen++ // frames in flight are lost
			if a.online {
				s.callLinkDown(a, l.la)
			}
			if b.online {
				s.callLinkDown(b, l.lb)
			}
		}
		s.topoGen++
	}
}
