//go:build !router

package libp2p

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	golibp2p "github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/security/noise"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/libp2p/framing"
)

// plainHost is a stock go-libp2p host (libp2p.New: the library's own
// Noise, yamux, identify), not built by this package.
func plainHost(t testing.TB, key crypto.PrivKey, extra ...golibp2p.Option) host.Host {
	t.Helper()
	opts := []golibp2p.Option{
		golibp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		golibp2p.Security(noise.ID, noise.New),
		golibp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		golibp2p.DisableRelay(),
	}
	if key != nil {
		opts = append(opts, golibp2p.Identity(key))
	}
	opts = append(opts, extra...)
	h, err := golibp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// plainGossip runs stock GossipSub (default parameters, StrictSign) on a
// plain host and joins the node's topics.
func plainGossip(t testing.TB, h host.Host, networkID string, opts ...pubsub.Option) (*pubsub.PubSub, [numTopics]*pubsub.Topic) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var tops [numTopics]*pubsub.Topic
	for i := range tops {
		if tops[i], err = ps.Join(TopicName(networkID, i)); err != nil {
			t.Fatal(err)
		}
	}
	return ps, tops
}

func ed25519Key(t testing.TB) (crypto.PrivKey, *envelope.Identity) {
	t.Helper()
	id := newID(t)
	k, err := crypto.UnmarshalEd25519PrivateKey(id.PrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// TestInteropStockPeer: a stock go-libp2p host connects over Noise and
// yamux, identifies the node (agent, protocols, the node's key as peer ID),
// subscribes with stock GossipSub, and the two exchange gossip both ways.
func TestInteropStockPeer(t *testing.T) {
	a := startNode(t, nil)
	key, pid := ed25519Key(t)
	h := plainHost(t, key)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.Connect(ctx, a.ai); err != nil {
		t.Fatal(err)
	}
	// Identify, as the stock host saw it.
	waitFor(t, 10*time.Second, "identify", func() error {
		protos, _ := h.Peerstore().GetProtocols(a.ai.ID)
		wants := []protocol.ID{identify.ID, EnvelopeProtocol, pubsub.GossipSubID_v11}
		if dhtBuilt {
			wants = append(wants, "/meshd/kad/1.0.0")
		}
		for _, want := range wants {
			if !slices.Contains(protos, want) {
				return fmt.Errorf("protocols %v lack %s", protos, want)
			}
		}
		agent, err := h.Peerstore().Get(a.ai.ID, "AgentVersion")
		if err != nil || agent != "meshd" {
			return fmt.Errorf("agent %v %v", agent, err)
		}
		return nil
	})
	if k, err := MeshKey(a.ai.ID); err != nil || k != a.id.PublicKey() {
		t.Fatalf("the node's peer ID does not embed its meshd key: %v", err)
	}
	conns := h.Network().ConnsToPeer(a.ai.ID)
	if len(conns) == 0 || conns[0].ConnState().Security != noise.ID || conns[0].ConnState().StreamMultiplexer != yamux.ID {
		t.Fatalf("connection state %+v", conns[0].ConnState())
	}
	// The node opens an envelope link to a stock peer with an Ed25519 key
	// only if it serves the protocol: this one does not.
	if a.t.Linked(pid.PublicKey()) {
		t.Fatal("envelope link to a peer that does not speak the protocol")
	}
	ps, tops := plainGossip(t, h, "test")
	sub, err := tops[topicChannel].Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the node sees the stock peer on the channel topic", func() error {
		if n := a.t.Stats().GossipMeshPeers[topicChannel]; n != 1 {
			return fmt.Errorf("%d peers", n)
		}
		if !slices.Contains(ps.ListPeers(TopicName("test", topicChannel)), a.ai.ID) {
			return fmt.Errorf("stock peer does not see the node")
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // a heartbeat to graft the meshes
	// Stock → node.
	in := channelEnvelope(t, "from a stock libp2p peer")
	if err := tops[topicChannel].Publish(ctx, in); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "node receives the stock peer's message", func() error {
		f, ok := a.rec.find(in)
		if !ok {
			return fmt.Errorf("not yet")
		}
		if f.meta.From != transport.Addr(keyBytes(pid.PublicKey())) {
			return fmt.Errorf("From %x", f.meta.From)
		}
		return nil
	})
	// Node → stock.
	out := channelEnvelope(t, "from meshd")
	if err := a.rec.gossip().Send(ctx, transport.Frame{Data: out}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatal("the stock peer did not get the node's message:", err)
		}
		if string(m.Data) == string(out) {
			if m.GetFrom() != a.ai.ID || m.Signature == nil {
				t.Fatalf("message from %s, signature %x", m.GetFrom(), m.Signature)
			}
			break
		}
	}
}

// TestNonEd25519PeerGetsNoLink: a libp2p peer with a secp256k1 key can
// connect (DHT, gossip relaying) but an envelope stream from it is refused:
// it has no meshd identity.
func TestNonEd25519PeerGetsNoLink(t *testing.T) {
	a := startNode(t, nil)
	k, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := plainHost(t, k)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, a.ai); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, a.ai.ID, EnvelopeProtocol)
	if err == nil {
		s.Write(framing.Append(nil, []byte("hello")))
		buf := make([]byte, 1)
		s.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := s.Read(buf); err == nil {
			t.Fatal("the node kept an envelope stream from a non-Ed25519 peer")
		}
	}
	waitFor(t, 5*time.Second, "refusal counted", func() error {
		if a.t.Stats().LinksRefused == 0 {
			return fmt.Errorf("LinksRefused = 0")
		}
		return nil
	})
	if len(a.rec.streamPeers()) != 0 {
		t.Fatal("a link came up")
	}
	_ = peer.ID("")
}
