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
