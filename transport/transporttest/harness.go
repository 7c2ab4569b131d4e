package transporttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Node is one member of a Network.
type Node struct {
	// Transport is the transport under test, not yet running.
	Transport transport.Transport
	// Addr is the link-layer address other nodes see in Meta.From and use
	// in Frame.To, on a shared medium. Empty on point-to-point transports.
	Addr transport.Addr
	// Key, when HasKey, is the identity that links to this node must
	// report in Info.Peer (only checked where Info.HasPeer is true).
	Key    envelope.PublicKey
	HasKey bool
}

// Network is what a Factory builds: nodes that can reach each other.
type Network struct {
	Nodes []Node
	// Connect brings up a link from node i to node j once every node runs.
	// Nil: links come up by themselves (a shared medium).
	Connect func(ctx context.Context, i, j int) error
	// Kill makes node i die abruptly (a process crash, a cable pulled).
	// Nil: the suite cancels node i's Run context instead.
	Kill func(i int)
	// Lossless says every frame Send accepted on a healthy link arrives.
	Lossless bool
	// Timeout bounds how long links take to come up and frames to arrive.
	// Zero: 10 s.
	Timeout time.Duration
	// DownTimeout bounds how long a link takes to go down after its peer
	// died or closed it. Zero: Timeout.
	DownTimeout time.Duration
	// MaxTestFrame caps the largest frame the suite sends. Zero: the MTU.
	MaxTestFrame int
	// Frames is how many frames the ordering and concurrency tests send.
	// Zero: 512.
	Frames int
	// Skip names subtests that cannot apply, with the reason.
	Skip map[string]string
}

// Factory builds a fresh Network of n nodes for one subtest.
type Factory func(t testing.TB, n int) *Network

// nodeRun is one running node.
type nodeRun struct {
	idx     int
	node    Node
	rec     *recorder
	cancel  context.CancelFunc
	done    chan struct{}
	runErr  error
	stopped atomic.Bool
}

// harness runs one Network for one subtest.
type harness struct {
	t     *testing.T
	net   *Network
	nodes []*nodeRun
}

func (n *Network) timeout() time.Duration {
	if n.Timeout > 0 {
		return n.Timeout
	}
	return 10 * time.Second
}

func (n *Network) downTimeout() time.Duration {
	if n.DownTimeout > 0 {
		return n.DownTimeout
	}
	return n.timeout()
}

func (n *Network) frames() int {
	if n.Frames > 0 {
		return n.Frames
	}
	return 512
}

// start builds a network of n nodes and runs every node. Cleanup stops
// them, checks the Handler contract, and (registered first, so run last)
// checks for leaked goroutines.
func start(t *testing.T, f Factory, n int) *harness {
	t.Helper()
	checkLeaks(t)
	netw := f(t, n)
	if netw == nil || len(netw.Nodes) < n {
		t.Fatalf("factory built %v, want %d nodes", netw, n)
	}
	h := &harness{t: t, net: netw}
	t.Cleanup(h.stop)
	for i, node := range netw.Nodes {
		ctx, cancel := context.WithCancel(context.Background())
		nr := &nodeRun{idx: i, node: node, cancel: cancel, done: make(chan struct{})}
		nr.rec = newRecorder(t, fmt.Sprintf("node %d", i), nr)
		h.nodes = append(h.nodes, nr)
		go func() {
			defer close(nr.done)
			nr.runErr = node.Transport.Run(ctx, nr.rec)
			nr.stopped.Store(true)
		}()
	}
	return h
}

// skip skips the subtest when the network says it cannot apply.
func (h *harness) skip(name string) {
	if reason, ok := h.net.Skip[name]; ok {
		h.t.Skipf("skipped by the factory: %s", reason)
	}
}

// connect brings up links between node 0 and node 1 (point-to-point) or
// waits for every node's link (shared medium), and returns each node's
// link.
func (h *harness) connect() []transport.Link {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.net.timeout())
	defer cancel()
	if h.net.Connect != nil {
		if err := h.net.Connect(ctx, 0, 1); err != nil {
			h.t.Fatalf("Connect(0, 1): %v", err)
		}
	}
	links := make([]transport.Link, len(h.nodes))
	for i, nr := range h.nodes {
		if h.net.Connect != nil && i > 1 {
			break
		}
		l, err := nr.rec.waitUp(ctx)
		if err != nil {
			h.t.Fatalf("node %d: no LinkUp within %v", i, h.net.timeout())
		}
		links[i] = l
	}
	return links
}

// stop cancels every node's Run, waits for it, and checks that every link
// was reported down before Run returned.
func (h *harness) stop() {
	for _, nr := range h.nodes {
		nr.cancel()
	}
	deadline := time.After(h.net.timeout())
	for _, nr := range h.nodes {
		select {
		case <-nr.done:
		case <-deadline:
			h.t.Errorf("node %d: Run did not return within %v of its context being cancelled", nr.idx, h.net.timeout())
			return
		}
	}
	for _, nr := range h.nodes {
		nr.rec.checkAllDown()
		nr.rec.report()
	}
}

// recorder is the Handler the suite gives each node. It records events
// and checks the Handler contract as they happen.
type recorder struct {
	t    *testing.T
	name string
	run  *nodeRun

	mu         sync.Mutex
	links      map[transport.Link]*linkState
	ups        []transport.Link
	upSignal   chan struct{}
	violations []string
	// onReceive, when set, is called for every frame instead of queueing.
	onReceive atomic.Pointer[func(l transport.Link, data []byte, m transport.Meta)]
	recv      chan received
}

type linkState struct {
	up, down bool
	downErr  error
	downCh   chan struct{}
	inflight atomic.Int32
	received int
}

type received struct {
	link transport.Link
	data []byte
	meta transport.Meta
}

func newRecorder(t *testing.T, name string, run *nodeRun) *recorder {
	return &recorder{
		t: t, name: name, run: run,
		links:    make(map[transport.Link]*linkState),
		upSignal: make(chan struct{}, 1),
		recv:     make(chan received, 1<<16),
	}
}

func (r *recorder) violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}

// enter checks that no other call for l is in progress and that Run has
// not returned.
func (r *recorder) enter(l transport.Link, what string) *linkState {
	if r.run.stopped.Load() {
		r.violate("%s called after Run returned", what)
	}
	r.mu.Lock()
	s := r.links[l]
	if s == nil {
		s = &linkState{downCh: make(chan struct{})}
		r.links[l] = s
	}
	r.mu.Unlock()
	if s.inflight.Add(1) != 1 {
		r.violate("%s for link %s while another Handler call for it is running", what, l.Info().ID)
	}
	return s
}

func (r *recorder) leave(s *linkState) { s.inflight.Add(-1) }

func (r *recorder) LinkUp(l transport.Link) {
	s := r.enter(l, "LinkUp")
	defer r.leave(s)
	r.mu.Lock()
	if s.up {
		r.violations = append(r.violations, fmt.Sprintf("LinkUp twice for %s", l.Info().ID))
	}
	if s.down {
		r.violations = append(r.violations, fmt.Sprintf("LinkUp after LinkDown for %s", l.Info().ID))
	}
	s.up = true
	r.ups = append(r.ups, l)
	r.mu.Unlock()
	select {
	case r.upSignal <- struct{}{}:
	default:
	}
}

func (r *recorder) Receive(l transport.Link, data []byte, m transport.Meta) {
	s := r.enter(l, "Receive")
	defer r.leave(s)
	r.mu.Lock()
	if !s.up || s.down {
		r.violations = append(r.violations, fmt.Sprintf("Receive on %s outside LinkUp..LinkDown (up %v, down %v)", l.Info().ID, s.up, s.down))
	}
	s.received++
	r.mu.Unlock()
	if f := r.onReceive.Load(); f != nil {
		(*f)(l, data, m)
		return
	}
	select {
	case r.recv <- received{l, data, m}:
	default:
		r.violate("the suite's receive queue overflowed (test bug)")
	}
}

func (r *recorder) LinkDown(l transport.Link, err error) {
	s := r.enter(l, "LinkDown")
	defer r.leave(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !s.up {
		r.violations = append(r.violations, fmt.Sprintf("LinkDown without LinkUp for %s", l.Info().ID))
	}
	if s.down {
		r.violations = append(r.violations, fmt.Sprintf("LinkDown twice for %s", l.Info().ID))
		return
	}
	s.down, s.downErr = true, err
	close(s.downCh)
}

// waitUp returns the first link that came up and is not down.
func (r *recorder) waitUp(ctx context.Context) (transport.Link, error) {
	for {
		r.mu.Lock()
		for _, l := range r.ups {
			if !r.links[l].down {
				r.mu.Unlock()
				return l, nil
			}
		}
		r.mu.Unlock()
		select {
		case <-r.upSignal:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// waitDown waits for l's LinkDown and returns its error.
func (r *recorder) waitDown(l transport.Link, d time.Duration) (error, bool) {
	r.mu.Lock()
	s := r.links[l]
	r.mu.Unlock()
	if s == nil {
		return nil, false
	}
	select {
	case <-s.downCh:
		r.mu.Lock()
		defer r.mu.Unlock()
		return s.downErr, true
	case <-time.After(d):
		return nil, false
	}
}

// next returns the next received frame.
func (r *recorder) next(d time.Duration) (received, bool) {
	select {
	case m := <-r.recv:
		return m, true
	case <-time.After(d):
		return received{}, false
	}
}

// checkAllDown: after Run returned, every link that came up went down.
func (r *recorder) checkAllDown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for l, s := range r.links {
		if s.up && !s.down {
			r.violations = append(r.violations, fmt.Sprintf("link %s still up after Run returned", l.Info().ID))
		}
	}
}

func (r *recorder) report() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		r.t.Errorf("%s: Handler contract: %s", r.name, v)
	}
	r.violations = nil
}

// isClosedErr reports whether err is what Send may return on a link that
// is going down.
func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, transport.ErrClosed)
}
