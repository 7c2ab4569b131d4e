//go:build !router

package libp2p

import (
	"bytes"
	"context"
	"fmt"
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

// checkFloodsAndUnicast: once every node's channel topic mesh has at least
// minMesh peers, every node floods one channel message and every other node
// receives it on its gossip link from its publisher; then a frame crosses
// an envelope link (1 -> 4) and one goes to a gossip neighbour named by its
// key (2 -> 3), which is how the router answers a gossip neighbour.
func checkFloodsAndUnicast(t *testing.T, nodes []*node, minMesh int) {
	t.Helper()
	waitFor(t, 20*time.Second, "gossip topics have peers", func() error {
		for i, n := range nodes {
			if p := n.t.Stats().GossipMeshPeers[topicChannel]; p < minMesh {
				return fmt.Errorf("node %d sees %d channel topic peers", i, p)
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	floods := make([][]byte, len(nodes))
	for i, n := range nodes {
		floods[i] = channelEnvelope(t, fmt.Sprintf("flood from node %d", i))
		if err := n.rec.gossip().Send(ctx, transport.Frame{To: transport.Broadcast, Data: floods[i]}); err != nil {
			t.Fatalf("node %d: publish: %v", i, err)
		}
	}
	waitFor(t, 20*time.Second, "every flood reached every other node", func() error {
		for i, n := range nodes {
			for j, m := range nodes {
				if i == j {
					continue
				}
				f, ok := n.rec.find(floods[j])
				if !ok {
					return fmt.Errorf("node %d did not get node %d's flood", i, j)
				}
				if !isGossip(f.link) || f.meta.From != transport.Addr(keyBytes(m.id.PublicKey())) {
					return fmt.Errorf("node %d got node %d's flood on %s from %x", i, j, f.link.Info().Kind, f.meta.From)
				}
			}
		}
		return nil
	})
	direct := []byte("\x01direct frame over an envelope link")
	if err := nodes[1].rec.streamPeers()[nodes[4].id.PublicKey()].Send(ctx, transport.Frame{Data: direct}); err != nil {
		t.Fatal(err)
	}
	viaGossip := []byte("\x01frame to one gossip neighbour")
	if err := nodes[2].rec.gossip().Send(ctx, transport.Frame{To: transport.Addr(keyBytes(nodes[3].id.PublicKey())), Data: viaGossip}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "unicast frames arrive", func() error {
		if _, ok := nodes[4].rec.find(direct); !ok {
			return fmt.Errorf("node 4 did not get the direct frame")
		}
		if f, ok := nodes[3].rec.find(viaGossip); !ok || f.link.Info().Peer != nodes[2].id.PublicKey() {
			return fmt.Errorf("node 3 did not get the frame sent to it on node 2's gossip link (%v)", ok)
		}
		return nil
	})
}
