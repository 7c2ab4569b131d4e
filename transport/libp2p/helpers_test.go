//go:build !router

package libp2p

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// onlyStreams runs a Transport but hides its gossip link from the handler,
// so that the conformance suite sees only envelope-stream links.
type onlyStreams struct{ t *Transport }

func (o onlyStreams) Run(ctx context.Context, h transport.Handler) error {
	return o.t.Run(ctx, filterHandler{h})
}

type filterHandler struct{ h transport.Handler }

func isGossip(l transport.Link) bool { _, ok := l.(*gossipLink); return ok }

func (f filterHandler) LinkUp(l transport.Link) {
	if !isGossip(l) {
		f.h.LinkUp(l)
	}
}
func (f filterHandler) Receive(l transport.Link, d []byte, m transport.Meta) {
	if !isGossip(l) {
		f.h.Receive(l, d, m)
	}
}
func (f filterHandler) LinkDown(l transport.Link, err error) {
	if !isGossip(l) {
		f.h.LinkDown(l, err)
	}
}

// recorder is a Handler that keeps what it is told.
type recorder struct {
	mu     sync.Mutex
	links  map[transport.Link]bool // up
	frames []frameRec
	signal chan struct{}
}

type frameRec struct {
	link transport.Link
	data []byte
	meta transport.Meta
}

func newRecorder() *recorder {
	return &recorder{links: map[transport.Link]bool{}, signal: make(chan struct{}, 1)}
}

func (r *recorder) poke() {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

func (r *recorder) LinkUp(l transport.Link) {
	r.mu.Lock()
	r.links[l] = true
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Receive(l transport.Link, d []byte, m transport.Meta) {
	r.mu.Lock()
	r.frames = append(r.frames, frameRec{l, d, m})
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) LinkDown(l transport.Link, err error) {
	r.mu.Lock()
	delete(r.links, l)
	r.mu.Unlock()
	r.poke()
}

// streamPeers returns the keys of the envelope links up.
func (r *recorder) streamPeers() map[envelope.PublicKey]*Link {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[envelope.PublicKey]*Link{}
	for l := range r.links {
		if sl, ok := l.(*Link); ok {
			out[sl.Info().Peer] = sl
		}
	}
	return out
}

func (r *recorder) gossip() transport.Link {
	r.mu.Lock()
	defer r.mu.Unlock()
	for l := range r.links {
		if isGossip(l) {
			return l
		}
	}
	return nil
}

// find returns the first frame equal to data.
func (r *recorder) find(data []byte) (frameRec, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.frames {
		if bytes.Equal(f.data, data) {
			return f, true
		}
	}
	return frameRec{}, false
}

func (r *recorder) count(pred func(frameRec) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range r.frames {
		if pred(f) {
			n++
		}
	}
	return n
}

// node is a running Transport with its recorder.
type node struct {
	t   *Transport
	id  *envelope.Identity
	rec *recorder
	ai  peer.AddrInfo
}

// startNode runs a transport until the test ends.
func startNode(t testing.TB, mod func(o *Options)) *node {
	t.Helper()
	id := newID(t)
	o := testOptions(id)
	if mod != nil {
		mod(&o)
	}
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: tr, id: id, rec: newRecorder()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, n.rec) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return")
		}
	})
	actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel()
	ai, err := tr.AddrInfo(actx)
	if err != nil {
		t.Fatal(err)
	}
	n.ai = ai
	return n
}

// multiaddr returns the node's first address with /p2p/.
func (n *node) multiaddr() string {
	return n.ai.Addrs[0].String() + "/p2p/" + n.ai.ID.String()
}

// waitFor polls f until it returns nil or d passes.
func waitFor(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// channelEnvelope builds a Channel envelope with a body.
func channelEnvelope(t testing.TB, body string) []byte {
	t.Helper()
	var ch envelope.Address
	copy(ch[:], "test-channel-id!")
	e := envelope.Envelope{Kind: envelope.KindChannel, TTL: 8, Flags: envelope.FlagFull, Dst: envelope.FullAddr(ch), Body: []byte(body)}
	b, err := e.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func announce(t testing.TB, id *envelope.Identity, seq uint32) []byte {
	t.Helper()
	b, err := envelope.SignAnnounce(id, envelope.AnnounceOptions{Seq: seq, TTL: 8, AppData: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
