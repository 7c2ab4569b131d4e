package transporttest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openmeshd/meshd/transport"
)

// memnet is a shared medium in memory: every node has one broadcast link;
// a frame sent to Broadcast reaches every other running node, a frame to an
// Addr reaches that node. It exists to run the suite's shared-medium path
// and to show what a conformant broadcast transport does.
type memnet struct {
	mu    sync.Mutex
	links map[transport.Addr]*memLink // the links that are up
}

type memNode struct {
	net  *memnet
	addr transport.Addr
	id   int
}

type memFrame struct {
	from transport.Addr
	data []byte
}

type memLink struct {
	n      *memNode
	info   transport.Info
	inbox  chan memFrame
	done   chan struct{}
	once   sync.Once
	closed chan struct{} // closed by Close: LinkDown(nil)
}

func (m *memnet) add(i int) *memNode {
	n := &memNode{net: m, addr: transport.Addr(fmt.Sprintf("n%d", i)), id: i}
	return n
}

// Run brings the node's one link up, delivers its inbox in order, and
// takes it down when ctx is done or the link is closed.
func (n *memNode) Run(ctx context.Context, h transport.Handler) error {
	l := &memLink{
		n:      n,
		inbox:  make(chan memFrame, 32),
		done:   make(chan struct{}),
		closed: make(chan struct{}),
		info: transport.Info{
			ID: fmt.Sprintf("mem-%s-%d", n.addr, time.Now().UnixNano()), Kind: "mem",
			MTU: 255, Bitrate: 1000, Cost: 10, Broadcast: true, Ordered: true,
		},
	}
	h.LinkUp(l)
	n.net.mu.Lock()
	n.net.links[n.addr] = l
	n.net.mu.Unlock()
loop:
	for {
		select {
		case f := <-l.inbox:
			h.Receive(l, f.data, transport.Meta{From: f.from})
		case <-ctx.Done():
			break loop
		case <-l.closed:
			break loop
		}
	}
	n.net.mu.Lock()
	delete(n.net.links, n.addr)
	n.net.mu.Unlock()
	l.once.Do(func() { close(l.closed) })
	close(l.done)
	h.LinkDown(l, nil)
	<-ctx.Done() // a closed link does not come back in this toy
	return nil
}

func (l *memLink) Info() transport.Info { return l.info }

func (l *memLink) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *memLink) Send(ctx context.Context, f transport.Frame) error {
	if err := transport.CheckMTU(f.Data, l.info.MTU); err != nil {
		return err
	}
	select {
	case <-l.closed:
		return transport.ErrClosed
	default:
	}
	m := l.n.net
	m.mu.Lock()
	var targets []*memLink
	for a, other := range m.links {
		if a != l.n.addr && (f.To == transport.Broadcast || f.To == a) {
			targets = append(targets, other)
		}
	}
	m.mu.Unlock()
	data := append([]byte(nil), f.Data...)
	for _, t := range targets {
		select {
		case t.inbox <- memFrame{from: l.n.addr, data: data}:
		case <-t.done:
		case <-l.closed:
			return transport.ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func TestSuiteOnSharedMedium(t *testing.T) {
	Run(t, func(t testing.TB, n int) *Network {
		m := &memnet{links: map[transport.Addr]*memLink{}}
		netw := &Network{Lossless: true, Timeout: 2 * time.Second}
		for i := 0; i < n; i++ {
			node := m.add(i)
			netw.Nodes = append(netw.Nodes, Node{Transport: node, Addr: node.addr})
		}
		return netw
	})
}

func TestLeakDetector(t *testing.T) {
	before := goroutines()
	stop := make(chan struct{})
	go func() { <-stop }()
	if got := leakedSince(before, 50*time.Millisecond); len(got) != 1 {
		t.Fatalf("a blocked goroutine: found %d leaks, want 1", len(got))
	}
	close(stop)
	if got := leakedSince(before, time.Second); len(got) != 0 {
		t.Fatalf("after it ended: %d leaks:\n%s", len(got), got)
	}
}
