//go:build !router

package libp2p

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	golibp2p "github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/openmeshd/meshd/transport"
)

// TestBadGossip: a stock GossipSub peer publishes oversized, malformed,
// misfiled and forged messages and floods valid ones. The validators
// reject or ignore them (nothing reaches the handler but what is within the
// rate), the attacker's score falls below the graylist, and an honest
// message still gets through.
func TestBadGossip(t *testing.T) {
	a := startNode(t, func(o *Options) {
		o.MaxGossipSize = 2048
		o.GossipRate, o.GossipBurst = 1, 10
	})
	key, _ := ed25519Key(t)
	h := plainHost(t, key)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := h.Connect(ctx, a.ai); err != nil {
		t.Fatal(err)
	}
	ps, tops := plainGossip(t, h, "test", pubsub.WithMaxMessageSize(1<<20))
	waitFor(t, 10*time.Second, "gossip peers", func() error {
		for i := 0; i < numTopics; i++ {
			if len(ps.ListPeers(TopicName("test", i))) != 1 {
				return fmt.Errorf("the attacker does not see the node on topic %d", i)
			}
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond)
	// A flood of valid messages from one publisher: the burst passes, the
	// rest is ignored (not forwarded, not handed to the router).
	const flood = 200
	for i := 0; i < flood; i++ {
		if err := tops[topicChannel].Publish(ctx, channelEnvelope(t, fmt.Sprintf("spam %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 15*time.Second, "the flood is rate-limited", func() error {
		st := a.t.Stats()
		if got := st.GossipIgnored[IgnoreRate]; got < flood/2 {
			return fmt.Errorf("ignored %d of %d", got, flood)
		}
		return nil
	})
	passed := a.rec.count(func(f frameRec) bool { return isGossip(f.link) })
	if passed > 15 {
		t.Fatalf("%d of %d flooded messages reached the handler, want at most the burst (10) and the refill", passed, flood)
	}
	forger := newID(t)
	forged := announce(t, forger, 7)
	forged[len(forged)-1] ^= 1
	other := newID(t)
	cases := []struct {
		name   string
		topic  int
		data   []byte
		reason string
	}{
		{"oversized", topicChannel, make([]byte, 4096), RejectSize},
		{"not an envelope", topicChannel, []byte("junk junk junk"), RejectMalformed},
		{"empty", topicAnnounce, []byte{}, RejectMalformed},
		{"announce on the channel topic", topicChannel, announce(t, other, 1), RejectTopic},
		{"channel message on the announce topic", topicAnnounce, channelEnvelope(t, "misfiled"), RejectTopic},
		{"forged signature", topicAnnounce, forged, RejectSignature},
	}
	// Each bad message from a fresh peer (a peer past a few invalid
	// messages is graylisted, and later ones are not even looked at).
	for _, c := range cases {
		k, _ := ed25519Key(t)
		hc := plainHost(t, k)
		if err := hc.Connect(ctx, a.ai); err != nil {
			t.Fatal(err)
		}
		psc, topc := plainGossip(t, hc, "test")
		waitFor(t, 10*time.Second, "gossip peers", func() error {
			if len(psc.ListPeers(TopicName("test", c.topic))) != 1 {
				return fmt.Errorf("the peer does not see the node")
			}
			return nil
		})
		before := a.t.Stats().GossipRejected[c.reason]
		if err := topc[c.topic].Publish(ctx, c.data); err != nil {
			t.Fatalf("%s: publish: %v", c.name, err)
		}
		waitFor(t, 10*time.Second, c.name+" rejected", func() error {
			if a.t.Stats().GossipRejected[c.reason] == before {
				return fmt.Errorf("no rejection for %q: %v", c.reason, a.t.Stats().GossipRejected)
			}
			return nil
		})
		hc.Close()
	}
	// The flooding peer now sends invalid messages too: it is scored down.
	for i := 0; i < 8; i++ {
		tops[topicChannel].Publish(ctx, []byte(fmt.Sprintf("junk %d", i)))
	}
	if n := a.rec.count(func(f frameRec) bool { return isGossip(f.link) }); n != passed {
		t.Fatalf("%d bad messages reached the handler", n-passed)
	}
	// The attacker's score: invalid deliveries weigh -100 each.
	var score float64
	waitFor(t, 10*time.Second, "the attacker's score falls", func() error {
		if score = peerScore(t, a, h.ID()); score > -400 {
			return fmt.Errorf("score %.0f", score)
		}
		return nil
	})
	t.Logf("attacker score %.0f (graylist below -400); stats %+v", score, a.t.Stats().GossipRejected)
	if score > -400 {
		t.Fatalf("the peer that sent invalid messages scores %.0f, want below the graylist threshold", score)
	}
	// Graylisted: even its valid messages are no longer looked at.
	seen := a.t.Stats()
	for i := 0; i < 20; i++ {
		tops[topicChannel].Publish(ctx, channelEnvelope(t, fmt.Sprintf("after graylist %d", i)))
	}
	time.Sleep(2 * time.Second)
	after := a.t.Stats()
	if after.GossipIgnored[IgnoreRate] != seen.GossipIgnored[IgnoreRate] || after.GossipReceived != seen.GossipReceived {
		t.Fatalf("a graylisted peer's messages were still validated: %v -> %v", seen.GossipIgnored, after.GossipIgnored)
	}
}

// peerScore reads a peer's GossipSub score from the node.
func peerScore(t testing.TB, n *node, p peer.ID) float64 {
	t.Helper()
	n.t.mu.Lock()
	g := n.t.gossip
	n.t.mu.Unlock()
	return g.score(p)
}

// TestStreamFlood: a peer opens thousands of streams (envelope and
// unknown protocols) at once. The resource manager bounds them, the node
// keeps serving an honest link, and nothing leaks once the attacker goes.
func TestStreamFlood(t *testing.T) {
	a := startNode(t, func(o *Options) { o.MaxStreamsPerPeer = 32 })
	b := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lb, err := b.t.Connect(ctx, a.ai)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ed25519Key(t)
	h := plainHost(t, key, golibp2p.ResourceManager(&network.NullResourceManager{}))
	if err := h.Connect(ctx, a.ai); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	const n = 3000
	var wg sync.WaitGroup
	var mu sync.Mutex
	opened, failed := 0, 0
	sem := make(chan struct{}, 64)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			proto := EnvelopeProtocol
			if i%2 == 1 {
				proto = protocol.ID("/junk/1.0.0")
			}
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			defer scancel()
			s, err := h.NewStream(sctx, a.ai.ID, proto)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			opened++
			// Keep it open, and push a frame length above the limit on
			// every third.
			if i%3 == 0 {
				s.Write([]byte{0xff, 0xff, 0x7f})
			}
		}()
	}
	wg.Wait()
	st := a.t.Stats()
	t.Logf("%d streams attempted: %d opened by the attacker's side, %d failed; node: streams %d, blocked: streams %d, protocol %d, peer %d, memory %d; links refused %d, opened %d, bad frames %d, memory %d B",
		n, opened, failed, st.Streams, st.BlockedStreams, st.BlockedProtocol, st.BlockedPeers, st.BlockedMemory, st.LinksRefused, st.LinksOpened, st.BadFrames, st.Memory)
	if st.BlockedStreams+st.BlockedProtocol+st.BlockedMemory == 0 {
		t.Fatal("the resource manager blocked nothing")
	}
	if st.Streams > 256 {
		t.Fatalf("%d streams open on the node", st.Streams)
	}
	// The honest link still works.
	msg := []byte("\x01still alive")
	if err := lb.Send(ctx, transport.Frame{Data: msg}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "honest frame arrives", func() error {
		if _, ok := a.rec.find(msg); !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	h.Close()
	waitFor(t, 10*time.Second, "the attacker's streams are gone", func() error {
		if s := a.t.Stats().Streams; s > 40 {
			return fmt.Errorf("%d streams still open", s)
		}
		return nil
	})
	t.Logf("goroutines: %d during the attack's aftermath (test process, both nodes)", before)
}
