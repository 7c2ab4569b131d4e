//go:build !router && dht

package libp2p

import (
	"context"
	"fmt"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
)

// dhtBuilt says whether this build carries the DHT: only with -tags dht
// (it costs 2.9 MB on arm64: docs/size.md). The default build finds the
// nodes of a network through peer records on GossipSub (peerrec.go).
const dhtBuilt = true

// kadDHT is go-libp2p-kad-dht as discovery's rendezvousDHT.
type kadDHT struct{ *dht.IpfsDHT }

func (k kadDHT) routingTableSize() int { return k.RoutingTable().Size() }

// startDHT starts meshd's own Kademlia DHT: values off (meshd stores
// nothing in it), providers in a bounded in-memory store (only the
// rendezvous records), bootstrap peers from the options.
func (t *Transport) startDHT(ctx context.Context) error {
	mode := dht.ModeAutoServer
	if t.opts.DHTClient {
		mode = dht.ModeClient
	}
	prov := newProviderStore(256, 64)
	d, err := dht.New(ctx, t.host,
		dht.ProtocolPrefix(dhtPrefix),
		dht.Mode(mode),
		dht.DisableValues(),
		dht.ProviderStore(prov),
		dht.BootstrapPeers(t.bootstrap...),
		dht.RoutingTableRefreshPeriod(10*time.Minute),
	)
	if err != nil {
		return fmt.Errorf("libp2p: dht: %w", err)
	}
	t.mu.Lock()
	t.dht, t.prov = kadDHT{d}, prov
	t.mu.Unlock()
	return nil
}
