//go:build !router

package libp2p

import (
	"maps"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// counters are the transport's own counters.
type counters struct {
	linksOpened, refused, openFailures, badFrames atomic.Uint64
	connects, dials, dialFailures, mdnsFound      atomic.Uint64
	rendezvousRounds, rendezvousFound             atomic.Uint64
	blockedConns, blockedStreams, blockedMemory   atomic.Uint64
	blockedPeers, blockedProtocol                 atomic.Uint64
}

// Stats is a snapshot of the transport's counters.
type Stats struct {
	Links []LinkStats
	// Peers is how many libp2p peers are connected; Conns and Streams are
	// open connections and streams as the resource manager counts them,
	// Memory the bytes it has reserved.
	Peers, Conns, Streams int
	Memory                int64
	// LinksOpened counts envelope links that came up; LinksRefused
	// streams refused (not a meshd key, MaxLinks); OpenFailures streams
	// that could not be opened; BadFrames links dropped for a malformed
	// frame length.
	LinksOpened, LinksRefused, OpenFailures, BadFrames uint64
	// Dials and DialFailures are discovery's connection attempts;
	// MDNSFound peers mDNS reported.
	Dials, DialFailures, MDNSFound uint64
	// RendezvousRounds counts rendezvous rounds; RendezvousFound is how
	// many other nodes of the network the last one knew of (from peer
	// records, and DHT providers with -tags dht); RoutingTable the DHT's
	// routing table size (0 without the DHT).
	RendezvousRounds, RendezvousFound uint64
	RoutingTable                      int
	// PeerRecords is how many other nodes' peer records are held (at most
	// 256); PeerRecordsAccepted counts the records taken, PeerRecordsPublished
	// the node's own publications. Refused records are in GossipRejected
	// and GossipIgnored (the record_* reasons).
	PeerRecords                               int
	PeerRecordsAccepted, PeerRecordsPublished uint64
	// ProviderKeys and ProviderRecords are what the bounded provider store
	// holds; ProvidersRefused the new keys it refused while full.
	ProviderKeys, ProviderRecords int
	ProvidersRefused              uint64
	// Blocked* count what the resource manager refused.
	BlockedConns, BlockedStreams, BlockedMemory, BlockedPeers, BlockedProtocol uint64
	// Gossip counters: messages published, publish errors, received
	// (handed to the router), dropped because the router lagged; unicast
	// frames sent over envelope links, dropped (no way to the peer), and
	// unicast kinds refused on the gossip link.
	GossipPublished, GossipPublishErrors, GossipReceived, GossipRxDrops uint64
	GossipUnicastSent, GossipUnicastDropped, GossipUnicastKindDropped   uint64
	// GossipRejected and GossipIgnored count the validators' verdicts by
	// reason (Reject* and Ignore* constants).
	GossipRejected, GossipIgnored map[string]uint64
	// GossipMeshPeers is how many peers GossipSub knows per topic family.
	GossipMeshPeers [numTopics]int
}

// Stats returns a snapshot of the transport's counters.
func (t *Transport) Stats() Stats {
	c := &t.st
	s := Stats{
		LinksOpened: c.linksOpened.Load(), LinksRefused: c.refused.Load(), OpenFailures: c.openFailures.Load(), BadFrames: c.badFrames.Load(),
		Dials: c.dials.Load(), DialFailures: c.dialFailures.Load(), MDNSFound: c.mdnsFound.Load(),
		RendezvousRounds: c.rendezvousRounds.Load(), RendezvousFound: c.rendezvousFound.Load(),
		BlockedConns: c.blockedConns.Load(), BlockedStreams: c.blockedStreams.Load(), BlockedMemory: c.blockedMemory.Load(),
		BlockedPeers: c.blockedPeers.Load(), BlockedProtocol: c.blockedProtocol.Load(),
		GossipRejected: map[string]uint64{}, GossipIgnored: map[string]uint64{},
	}
	t.mu.Lock()
	for _, l := range t.links {
		s.Links = append(s.Links, l.Stats())
	}
	bh, d, g, prov := t.host, t.dht, t.gossip, t.prov
	t.mu.Unlock()
	if prov != nil {
		s.ProviderKeys, s.ProviderRecords, s.ProvidersRefused = prov.size()
	}
	if bh != nil {
		s.Peers = len(bh.Network().Peers())
		if v, ok := bh.rm.(network.ResourceScopeViewer); ok {
			_ = v.ViewSystem(func(sc network.ResourceScope) error {
				st := sc.Stat()
				s.Conns = st.NumConnsInbound + st.NumConnsOutbound
				s.Streams = st.NumStreamsInbound + st.NumStreamsOutbound
				s.Memory = st.Memory
				return nil
			})
		}
	}
	if d != nil {
		s.RoutingTable = d.routingTableSize()
	}
	if g != nil {
		s.GossipPublished, s.GossipPublishErrors = g.published.Load(), g.publishErrors.Load()
		s.GossipReceived, s.GossipRxDrops = g.received.Load(), g.rxDrops.Load()
		s.GossipUnicastSent, s.GossipUnicastDropped, s.GossipUnicastKindDropped = g.unicastSent.Load(), g.unicastDropped.Load(), g.unicastKindDropped.Load()
		g.verdictMu.Lock()
		s.GossipRejected, s.GossipIgnored = maps.Clone(g.rejected), maps.Clone(g.ignored)
		g.verdictMu.Unlock()
		s.PeerRecords = g.records.len()
		s.PeerRecordsAccepted, s.PeerRecordsPublished = g.recordsAccepted.Load(), g.recordsPublished.Load()
		for i, tp := range g.topics {
			s.GossipMeshPeers[i] = len(tp.ListPeers())
		}
	}
	return s
}

// rcmgrReporter counts what the resource manager blocks.
type rcmgrReporter struct{ c *counters }

var _ rcmgr.MetricsReporter = rcmgrReporter{}

func (rcmgrReporter) AllowConn(network.Direction, bool) {}
func (r rcmgrReporter) BlockConn(network.Direction, bool) {
	r.c.blockedConns.Add(1)
}
func (rcmgrReporter) AllowStream(peer.ID, network.Direction) {}
func (r rcmgrReporter) BlockStream(peer.ID, network.Direction) {
	r.c.blockedStreams.Add(1)
}
func (rcmgrReporter) AllowPeer(peer.ID)           {}
func (r rcmgrReporter) BlockPeer(peer.ID)         { r.c.blockedPeers.Add(1) }
func (rcmgrReporter) AllowProtocol(protocol.ID)   {}
func (r rcmgrReporter) BlockProtocol(protocol.ID) { r.c.blockedProtocol.Add(1) }
func (r rcmgrReporter) BlockProtocolPeer(protocol.ID, peer.ID) {
	r.c.blockedProtocol.Add(1)
}
func (rcmgrReporter) AllowService(string)              {}
func (rcmgrReporter) BlockService(string)              {}
func (rcmgrReporter) BlockServicePeer(string, peer.ID) {}
func (rcmgrReporter) AllowMemory(int)                  {}
func (r rcmgrReporter) BlockMemory(int)                { r.c.blockedMemory.Add(1) }
