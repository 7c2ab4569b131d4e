//go:build !router

package libp2p

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// TestFiveNodesDHT: one bootstrap node and four others that know only it
// find each other through the DHT rendezvous, link up pairwise, and
// exchange gossip floods and unicast frames.
func TestFiveNodesDHT(t *testing.T) {
	if !dhtBuilt {
		t.Skip("built with -tags nodht")
	}
	start := time.Now()
	boot := startNode(t, nil)
	nodes := []*node{boot}
	for i := 0; i < 4; i++ {
		nodes = append(nodes, startNode(t, func(o *Options) { o.BootstrapPeers = []string{boot.multiaddr()} }))
	}
	waitFor(t, 30*time.Second, "every node linked to the four others", func() error {
		for i, n := range nodes {
			peers := n.rec.streamPeers()
			for j, m := range nodes {
				if i != j && peers[m.id.PublicKey()] == nil {
					return fmt.Errorf("node %d has no link to node %d (%d links)", i, j, len(peers))
				}
			}
		}
		return nil
	})
	t.Logf("all 5 nodes pairwise linked after %v", time.Since(start).Round(time.Millisecond))
	// The rendezvous: every node provides the network's key and finds the
	// four others as providers.
	waitFor(t, 30*time.Second, "rendezvous finds the four others", func() error {
		for i, n := range nodes {
			st := n.t.Stats()
			if st.RendezvousFound < 4 || st.RoutingTable == 0 {
				return fmt.Errorf("node %d: rendezvous rounds %d found %d, routing table %d", i, st.RendezvousRounds, st.RendezvousFound, st.RoutingTable)
			}
		}
		return nil
	})
	t.Logf("rendezvous found every other node after %v", time.Since(start).Round(time.Millisecond))
	// Wait for the gossip meshes to form (heartbeat: 1 s).
	waitFor(t, 20*time.Second, "gossip topics have peers", func() error {
		for i, n := range nodes {
			if p := n.t.Stats().GossipMeshPeers[topicChannel]; p < 2 {
				return fmt.Errorf("node %d sees %d channel topic peers", i, p)
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Every node floods one channel message on its gossip link; everyone
	// else receives each one from its publisher.
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
	// Unicast: over an envelope link, and through the gossip link to a
	// neighbour named by its key (what the router does to answer a
	// gossip neighbour).
	direct := []byte("\x01direct frame over an envelope link")
	if err := nodes[1].rec.streamPeers()[nodes[4].id.PublicKey()].Send(ctx, transport.Frame{Data: direct}); err != nil {
		t.Fatal(err)
	}
	viaGossip := []byte("\x01frame to one gossip neighbour")
	k := nodes[3].id.PublicKey()
	if err := nodes[2].rec.gossip().Send(ctx, transport.Frame{To: transport.Addr(keyBytes(k)), Data: viaGossip}); err != nil {
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
	st := nodes[2].t.Stats()
	if st.GossipUnicastSent == 0 {
		t.Errorf("gossip unicast not counted: %+v", st)
	}
	t.Logf("node 1 stats: peers %d, conns %d, streams %d, memory %d B, routing table %d, provider records held by bootstrap %d",
		nodes[1].t.Stats().Peers, nodes[1].t.Stats().Conns, nodes[1].t.Stats().Streams, nodes[1].t.Stats().Memory,
		nodes[1].t.Stats().RoutingTable, boot.t.Stats().ProviderRecords)
}

func keyBytes(k envelope.PublicKey) []byte { return k[:] }

// TestGossipLinkRefusesUnicastKinds: an E2E envelope sent as a broadcast
// on the gossip link is never published to the internet.
func TestGossipLinkRefusesUnicastKinds(t *testing.T) {
	a := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	waitFor(t, 5*time.Second, "gossip link up", func() error {
		if a.rec.gossip() == nil {
			return fmt.Errorf("no gossip link")
		}
		return nil
	})
	data := envelope.Envelope{Kind: envelope.KindAck, TTL: 3, Flags: envelope.FlagFull, Counter: 1, Body: make([]byte, envelope.TagSize)}
	data.Dst, data.Src = envelope.FullAddr(a.id.Address()), envelope.FullAddr(a.id.Address())
	raw, err := data.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := a.rec.gossip()
	if err := g.Send(ctx, transport.Frame{To: transport.Broadcast, Data: raw}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, g.Info().MTU+1)
	if err := g.Send(ctx, transport.Frame{Data: big}); err == nil {
		t.Fatal("frame above the gossip MTU accepted")
	}
	st := a.t.Stats()
	if st.GossipUnicastKindDropped != 1 || st.GossipPublished != 0 {
		t.Fatalf("unicast kind: dropped %d, published %d", st.GossipUnicastKindDropped, st.GossipPublished)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Send(ctx, transport.Frame{Data: channelEnvelope(t, "x")}); err != transport.ErrClosed {
		t.Fatalf("Send after Close: %v", err)
	}
}
