package transporttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openmeshd/meshd/transport"
)

// Run runs the conformance suite against the transport f builds.
func Run(t *testing.T, f Factory) {
	s := &suite{f: f}
	t.Run("Info", s.testInfo)
	t.Run("SendReceive", s.testSendReceive)
	t.Run("MTU", s.testMTU)
	t.Run("Ordering", s.testOrdering)
	t.Run("ConcurrentSenders", s.testConcurrentSenders)
	t.Run("Backpressure", s.testBackpressure)
	t.Run("Close", s.testClose)
	t.Run("CloseRacingSend", s.testCloseRacingSend)
	t.Run("CloseInsideHandler", s.testCloseInsideHandler)
	t.Run("RunCancel", s.testRunCancel)
	t.Run("PeerDeath", s.testPeerDeath)
	t.Run("Broadcast", s.testBroadcast)
}

type suite struct {
	f Factory
	// learnt from the first subtest's links
	mu        sync.Mutex
	known     bool
	broadcast bool
}

// pair starts a two-node network and returns it with both links.
func (s *suite) pair(t *testing.T, name string) (*harness, transport.Link, transport.Link) {
	h := start(t, s.f, 2)
	h.skip(name)
	links := h.connect()
	info := links[0].Info()
	s.mu.Lock()
	s.known, s.broadcast = true, info.Broadcast
	s.mu.Unlock()
	return h, links[0], links[1]
}

func (s *suite) isBroadcast() (bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broadcast, s.known
}

// maxFrame is the largest frame the suite sends on l.
func maxFrame(h *harness, l transport.Link) int {
	m := l.Info().MTU
	if h.net.MaxTestFrame > 0 && h.net.MaxTestFrame < m {
		m = h.net.MaxTestFrame
	}
	return m
}

// frame builds a self-checking frame: sender, seq, then a pattern.
func frame(sender byte, seq uint32, size int) []byte {
	if size < 5 {
		size = 5
	}
	b := make([]byte, size)
	b[0] = sender
	binary.BigEndian.PutUint32(b[1:], seq)
	x := uint32(sender)*2654435761 ^ seq*40503
	for i := 5; i < size; i++ {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// parseFrame checks a frame built by frame and returns its sender and seq.
func parseFrame(b []byte) (byte, uint32, error) {
	if len(b) < 5 {
		return 0, 0, fmt.Errorf("frame of %d bytes, too short", len(b))
	}
	sender, seq := b[0], binary.BigEndian.Uint32(b[1:])
	if !bytes.Equal(b, frame(sender, seq, len(b))) {
		return sender, seq, fmt.Errorf("frame from %d seq %d (%d bytes) corrupted", sender, seq, len(b))
	}
	return sender, seq, nil
}

func (s *suite) testInfo(t *testing.T) {
	h, a, b := s.pair(t, "Info")
	ids := map[string]bool{}
	for i, l := range []transport.Link{a, b} {
		info := l.Info()
		if info.ID == "" || info.Kind == "" {
			t.Errorf("link %d: empty ID %q or Kind %q", i, info.ID, info.Kind)
		}
		if ids[info.ID] {
			t.Errorf("link %d: ID %q not unique", i, info.ID)
		}
		ids[info.ID] = true
		if info.MTU <= 0 || info.Cost < 1 || info.Bitrate <= 0 {
			t.Errorf("link %d: MTU %d, Cost %d, Bitrate %d: want all positive, Cost ≥ 1", i, info.MTU, info.Cost, info.Bitrate)
		}
		if again := l.Info(); again != info {
			t.Errorf("link %d: Info changed between calls: %+v then %+v", i, info, again)
		}
		other := h.nodes[1-i].node
		if !info.Broadcast && info.HasPeer && other.HasKey && info.Peer != other.Key {
			t.Errorf("link %d: Info.Peer is %s, want node %d's key %s", i, info.Peer, 1-i, other.Key)
		}
	}
}

func (s *suite) testSendReceive(t *testing.T) {
	h, a, b := s.pair(t, "SendReceive")
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	sizes := []int{5, 200, maxFrame(h, a)}
	for dir, p := range [][2]int{{0, 1}, {1, 0}} {
		from, to := []transport.Link{a, b}[p[0]], h.nodes[p[1]]
		for i, size := range sizes {
			f := frame(byte(p[0]), uint32(i), size)
			buf := append([]byte(nil), f...)
			if err := from.Send(ctx, transport.Frame{To: h.nodes[p[1]].node.Addr, Data: buf}); err != nil {
				t.Fatalf("direction %d: Send(%d bytes): %v", dir, size, err)
			}
			// The link must not keep a reference to buf after Send.
			for j := range buf {
				buf[j] ^= 0xff
			}
			if !h.net.Lossless {
				continue
			}
			got, ok := to.rec.next(h.net.timeout())
			if !ok {
				t.Fatalf("direction %d: frame of %d bytes did not arrive", dir, size)
			}
			if !bytes.Equal(got.data, f) {
				t.Fatalf("direction %d: frame of %d bytes arrived changed (%d bytes)", dir, size, len(got.data))
			}
			if got.link.Info().Broadcast {
				if got.meta.From != h.nodes[p[0]].node.Addr {
					t.Errorf("Meta.From = %q, want the sender's %q", got.meta.From, h.nodes[p[0]].node.Addr)
				}
			} else if got.meta.From != "" {
				t.Errorf("Meta.From = %q on a point-to-point link, want empty", got.meta.From)
			}
		}
	}
}

func (s *suite) testMTU(t *testing.T) {
	h, a, _ := s.pair(t, "MTU")
	mtu := a.Info().MTU
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	err := a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: make([]byte, mtu+1)})
	if !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("Send(MTU+1 = %d bytes) = %v, want ErrFrameTooLarge", mtu+1, err)
	}
	var fe *transport.FrameTooLargeError
	if !errors.As(err, &fe) || fe.Size != mtu+1 || fe.MTU != mtu {
		t.Errorf("Send(MTU+1) error %#v, want *FrameTooLargeError{Size: %d, MTU: %d}", err, mtu+1, mtu)
	}
	if mtu <= maxFrame(h, a) {
		f := frame(0, 1, mtu)
		if err := a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: f}); err != nil {
			t.Fatalf("Send(MTU = %d bytes): %v", mtu, err)
		}
	}
	marker := frame(0, 2, 5)
	if err := a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: marker}); err != nil {
		t.Fatalf("Send(marker): %v", err)
	}
	if !h.net.Lossless {
		return
	}
	for {
		got, ok := h.nodes[1].rec.next(h.net.timeout())
		if !ok {
			t.Fatal("marker frame did not arrive")
		}
		if len(got.data) > mtu {
			t.Fatalf("a frame of %d bytes arrived, above the MTU %d", len(got.data), mtu)
		}
		if bytes.Equal(got.data, marker) {
			return
		}
		if _, _, err := parseFrame(got.data); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *suite) testOrdering(t *testing.T) {
	h, a, _ := s.pair(t, "Ordering")
	if !a.Info().Ordered {
		t.Skip("link does not promise ordering")
	}
	n := h.net.frames()
	size := min(200, maxFrame(h, a))
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	go func() {
		for i := 0; i < n; i++ {
			if err := a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: frame(0, uint32(i), size)}); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	}()
	last := -1
	for got := 0; got < n; got++ {
		m, ok := h.nodes[1].rec.next(h.net.timeout())
		if !ok {
			if h.net.Lossless {
				t.Fatalf("received %d of %d frames", got, n)
			}
			break
		}
		_, seq, err := parseFrame(m.data)
		if err != nil {
			t.Fatal(err)
		}
		if int(seq) <= last || (h.net.Lossless && int(seq) != last+1) {
			t.Fatalf("frame %d arrived after frame %d", seq, last)
		}
		last = int(seq)
	}
}

func (s *suite) testConcurrentSenders(t *testing.T) {
	h, a, b := s.pair(t, "ConcurrentSenders")
	const senders = 8
	per := max(h.net.frames()/senders, 1)
	maxSize := min(maxFrame(h, a), 4096)
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	var wg sync.WaitGroup
	for side, l := range []transport.Link{a, b} {
		to := h.nodes[1-side].node.Addr
		for g := 0; g < senders; g++ {
			sender := byte(side*senders + g)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					size := 5 + (int(sender)*131+i*977)%(maxSize-4)
					if err := l.Send(ctx, transport.Frame{To: to, Data: frame(sender, uint32(i), size)}); err != nil {
						t.Errorf("sender %d: Send %d: %v", sender, i, err)
						return
					}
				}
			}()
		}
	}
	for side := 0; side < 2; side++ {
		last := map[byte]int{}
		want := senders * per
		for got := 0; got < want; got++ {
			m, ok := h.nodes[1-side].rec.next(h.net.timeout())
			if !ok {
				if h.net.Lossless {
					t.Fatalf("node %d received %d of %d frames", 1-side, got, want)
				}
				break
			}
			sender, seq, err := parseFrame(m.data)
			if err != nil {
				t.Fatal(err)
			}
			if int(sender)/senders != side {
				t.Fatalf("node %d received a frame from sender %d of its own side", 1-side, sender)
			}
			prev, seen := last[sender]
			if m.link.Info().Ordered && seen && int(seq) <= prev {
				t.Fatalf("sender %d: frame %d arrived after frame %d", sender, seq, prev)
			}
			last[sender] = int(seq)
		}
	}
	wg.Wait()
}

func (s *suite) testBackpressure(t *testing.T) {
	h, a, _ := s.pair(t, "Backpressure")
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	blocking := func(l transport.Link, data []byte, m transport.Meta) { <-release }
	h.nodes[1].rec.onReceive.Store(&blocking)
	size := min(maxFrame(h, a), 16<<10)
	const limit = 1 << 30 // a transport that queues 1 GiB has no backpressure
	deadline := time.Now().Add(h.net.timeout())
	sent := 0
	var err error
	for sent < limit && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err = a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: frame(0, uint32(sent/size), size)})
		cancel()
		if err != nil {
			break
		}
		sent += size
	}
	if err == nil {
		t.Fatalf("Send accepted %d bytes in %v while the receiver was stalled and never blocked", sent, h.net.timeout())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send while the queue is full returned %v, want context.DeadlineExceeded", err)
	}
	t.Logf("Send blocked after %d bytes", sent)
	// Let the receiver drain; the link must work again.
	h.nodes[1].rec.onReceive.Store(nil)
	unblock()
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	marker := frame(9, 0, 5)
	if err := a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: marker}); err != nil {
		t.Fatalf("Send after the receiver resumed: %v", err)
	}
	if !h.net.Lossless {
		return
	}
	for {
		m, ok := h.nodes[1].rec.next(h.net.timeout())
		if !ok {
			t.Fatal("marker did not arrive after the receiver resumed")
		}
		if bytes.Equal(m.data, marker) {
			return
		}
	}
}

func (s *suite) testClose(t *testing.T) {
	h, a, b := s.pair(t, "Close")
	info := a.Info()
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	err, ok := h.nodes[0].rec.waitDown(a, h.net.downTimeout())
	if !ok {
		t.Fatal("no LinkDown after Close")
	}
	if err != nil {
		t.Errorf("LinkDown after local Close got error %v, want nil", err)
	}
	if got := a.Info(); got != info {
		t.Errorf("Info changed after Close: %+v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	if err := a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: frame(0, 0, 5)}); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	if !info.Broadcast {
		if _, ok := h.nodes[1].rec.waitDown(b, h.net.downTimeout()); !ok {
			t.Errorf("the peer's link did not go down within %v of Close", h.net.downTimeout())
		}
	}
	// A third Close after LinkDown is still harmless.
	if err := a.Close(); err != nil {
		t.Errorf("Close after LinkDown: %v", err)
	}
}

func (s *suite) testCloseRacingSend(t *testing.T) {
	h, a, _ := s.pair(t, "CloseRacingSend")
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				err := a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: frame(byte(g), uint32(i), 64)})
				if errors.Is(err, transport.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Send racing Close: %v, want nil or ErrClosed", err)
					return
				}
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	var cw sync.WaitGroup
	for i := 0; i < 4; i++ {
		cw.Add(1)
		go func() { defer cw.Done(); a.Close() }()
	}
	cw.Wait()
	wg.Wait()
	if _, ok := h.nodes[0].rec.waitDown(a, h.net.downTimeout()); !ok {
		t.Fatal("no LinkDown after Close")
	}
}

func (s *suite) testCloseInsideHandler(t *testing.T) {
	h, a, _ := s.pair(t, "CloseInsideHandler")
	closeIt := func(l transport.Link, data []byte, m transport.Meta) { l.Close() }
	h.nodes[1].rec.onReceive.Store(&closeIt)
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	l1, err := h.nodes[1].rec.waitUp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Lossy links may need a few tries.
	for i := 0; ; i++ {
		if err := a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: frame(0, uint32(i), 5)}); err != nil {
			break // our side went down already
		}
		if _, ok := h.nodes[1].rec.waitDown(l1, 200*time.Millisecond); ok {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("Close called inside Receive did not take the link down")
		}
	}
	if _, ok := h.nodes[1].rec.waitDown(l1, h.net.downTimeout()); !ok {
		t.Fatal("Close called inside Receive did not take the link down")
	}
}

func (s *suite) testRunCancel(t *testing.T) {
	h, a, b := s.pair(t, "RunCancel")
	n0 := h.nodes[0]
	n0.cancel()
	select {
	case <-n0.done:
	case <-time.After(h.net.timeout()):
		t.Fatalf("Run did not return within %v of cancel", h.net.timeout())
	}
	if n0.runErr != nil && !errors.Is(n0.runErr, context.Canceled) {
		t.Errorf("Run returned %v after cancel, want nil or context.Canceled", n0.runErr)
	}
	n0.rec.checkAllDown()
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	if err := a.Send(ctx, transport.Frame{To: h.nodes[1].node.Addr, Data: frame(0, 0, 5)}); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Send on a link of a stopped transport = %v, want ErrClosed", err)
	}
	if !a.Info().Broadcast {
		if _, ok := h.nodes[1].rec.waitDown(b, h.net.downTimeout()); !ok {
			t.Errorf("peer's link did not go down within %v after our transport stopped", h.net.downTimeout())
		}
	}
}

func (s *suite) testPeerDeath(t *testing.T) {
	h, a, _ := s.pair(t, "PeerDeath")
	if a.Info().Broadcast {
		t.Skip("a shared medium stays up when one neighbour dies")
	}
	if h.net.Kill != nil {
		h.net.Kill(1)
	} else {
		h.nodes[1].cancel()
	}
	err, ok := h.nodes[0].rec.waitDown(a, h.net.downTimeout())
	if !ok {
		t.Fatalf("link did not go down within %v of the peer's death", h.net.downTimeout())
	}
	if err == nil {
		t.Errorf("LinkDown after peer death has a nil error; nil is for local Close")
	}
	t.Logf("LinkDown error: %v", err)
}

func (s *suite) testBroadcast(t *testing.T) {
	if bc, known := s.isBroadcast(); known && !bc {
		t.Skip("point-to-point transport")
	}
	h := start(t, s.f, 3)
	h.skip("Broadcast")
	links := h.connect()
	if !links[0].Info().Broadcast {
		t.Skip("point-to-point transport")
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	expect := func(to int, want []byte, from transport.Addr) {
		t.Helper()
		deadline := time.Now().Add(h.net.timeout())
		for time.Now().Before(deadline) {
			m, ok := h.nodes[to].rec.next(time.Until(deadline))
			if !ok {
				break
			}
			if bytes.Equal(m.data, want) {
				if m.meta.From != from {
					t.Errorf("node %d: Meta.From = %q, want %q", to, m.meta.From, from)
				}
				return
			}
		}
		t.Errorf("node %d: frame did not arrive", to)
	}
	bcast := frame(0, 1, 20)
	for try := 0; try < 3; try++ {
		if err := links[0].Send(ctx, transport.Frame{To: transport.Broadcast, Data: bcast}); err != nil {
			t.Fatalf("Send(Broadcast): %v", err)
		}
		if h.net.Lossless {
			break
		}
	}
	expect(1, bcast, h.nodes[0].node.Addr)
	expect(2, bcast, h.nodes[0].node.Addr)
	uni := frame(0, 2, 20)
	if err := links[0].Send(ctx, transport.Frame{To: h.nodes[2].node.Addr, Data: uni}); err != nil {
		t.Fatalf("Send(to node 2): %v", err)
	}
	expect(2, uni, h.nodes[0].node.Addr)
}
