//go:build !router

package libp2p

import (
	"context"
	"log/slog"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// RendezvousKey is the DHT key under which the nodes of a mesh network
// provide themselves.
func RendezvousKey(networkID string) cid.Cid {
	sum, _ := mh.Sum([]byte("meshd/v1/rendezvous/"+networkID), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, sum)
}

// rendezvousDHT is what discovery uses of the DHT (dht.go); nil unless
// built with -tags dht (nodht.go).
type rendezvousDHT interface {
	Bootstrap(ctx context.Context) error
	Provide(ctx context.Context, key cid.Cid, announce bool) error
	FindProvidersAsync(ctx context.Context, key cid.Cid, count int) <-chan peer.AddrInfo
	Close() error
	routingTableSize() int
}

// startDiscovery starts the bootstrap, rendezvous and mDNS loops.
func (t *Transport) startDiscovery(ctx context.Context) {
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		t.bootstrapLoop(ctx)
	}()
	go func() {
		defer t.wg.Done()
		t.rendezvousLoop(ctx)
	}()
	if t.opts.MDNS {
		t.startMDNS()
	}
}

func (t *Transport) stopDiscovery() {
	t.mu.Lock()
	svc := t.mdns
	t.mdns = nil
	t.mu.Unlock()
	if svc != nil {
		svc.Close()
	}
}

// connect dials a peer, bounded in time.
func (t *Transport) connect(ai peer.AddrInfo) error {
	t.mu.Lock()
	bh, ctx := t.host, t.runCtx
	t.mu.Unlock()
	if bh == nil {
		return ErrNotRunning
	}
	if bh.Network().Connectedness(ai.ID) == network.Connected {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	t.count(&t.st.dials)
	if err := bh.Connect(ctx, ai); err != nil {
		t.count(&t.st.dialFailures)
		return err
	}
	return nil
}

// bootstrapLoop keeps at least one bootstrap peer connected: it dials them
// all at start and again, with backoff, whenever none is connected.
func (t *Transport) bootstrapLoop(ctx context.Context) {
	if len(t.bootstrap) == 0 {
		return
	}
	wait := time.Second
	for {
		connected := 0
		for _, ai := range t.bootstrap {
			if t.host.Network().Connectedness(ai.ID) == network.Connected {
				connected++
			}
		}
		if connected == 0 {
			for _, ai := range t.bootstrap {
				if err := t.connect(ai); err != nil {
					t.logEvery("bootstrap:"+ai.ID.String(), slog.LevelInfo, "libp2p: bootstrap peer unreachable; will retry", "peer", ai.String(), "err", err.Error())
				} else {
					connected++
				}
			}
			if connected > 0 && t.dht != nil {
				_ = t.dht.Bootstrap(ctx)
				wait = time.Second
			}
		}
		if connected == 0 {
			wait = min(2*wait, 2*time.Minute)
		} else {
			wait = 30 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// rendezvousLoop runs rendezvous rounds: at once, then after 2, 4, 8 ...
// seconds up to RendezvousInterval, then every RendezvousInterval. A round
// dials the nodes known from peer records and not connected; with the DHT
// (-tags dht) it also provides the network's rendezvous key and connects
// to the other providers; and it reopens links to connected meshd peers
// that have none. (The node's own record is published by recordLoop.)
func (t *Transport) rendezvousLoop(ctx context.Context) {
	key := RendezvousKey(t.opts.NetworkID)
	wait := 2 * time.Second
	for {
		next := 250 * time.Millisecond // no peer yet: look again soon
		if len(t.host.Network().Peers()) > 0 {
			t.rendezvous(ctx, key)
			next = min(wait, t.opts.RendezvousInterval)
			wait = min(2*wait, t.opts.RendezvousInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

func (t *Transport) rendezvous(ctx context.Context, key cid.Cid) {
	t.count(&t.st.rendezvousRounds)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	found := map[peer.ID]bool{}
	if g := t.gossipOrNil(); g != nil {
		// The peer-record rendezvous (peerrec.go): dial the nodes known
		// from their records that are not connected (a record may have
		// come while the node was at its watermark or its dials busy).
		for _, ai := range g.records.all() {
			found[ai.ID] = true
			g.dialRecord(ai)
		}
	}
	if t.dht != nil { // only with -tags dht
		if err := t.dht.Provide(rctx, key, true); err != nil {
			t.logEvery("provide", slog.LevelDebug, "libp2p: providing the rendezvous key failed", "err", err.Error())
		}
		for ai := range t.dht.FindProvidersAsync(rctx, key, 64) {
			if ai.ID == t.pid || len(ai.Addrs) == 0 {
				continue
			}
			found[ai.ID] = true
			if t.host.Network().Connectedness(ai.ID) != network.Connected {
				t.spawn(func() { t.connect(ai) })
			}
		}
	}
	t.st.rendezvousFound.Store(uint64(len(found)))
	for _, p := range t.host.Network().Peers() {
		if t.linkTo(p) == nil && t.opener(p) {
			if protos, err := t.host.Peerstore().SupportsProtocols(p, EnvelopeProtocol); err == nil && len(protos) > 0 {
				t.maybeOpen(p, false)
			}
		}
	}
}
