//go:build !router

package node

import (
	"fmt"

	"github.com/openmeshd/meshd/transport/libp2p"
)

// libp2pBuilt says whether this binary carries libp2p (the plain build).
const libp2pBuilt = true

// validateLibp2p checks the [libp2p] section.
func validateLibp2p(c *Config, bad func(key, format string, args ...any) error) error {
	l := c.Libp2p
	for _, a := range l.Listen {
		if _, err := libp2p.ParseMultiaddr(a); err != nil {
			return bad("libp2p.listen", "%v", err)
		}
	}
	for _, b := range l.Bootstrap {
		if _, err := libp2p.ParseAddrInfo(b); err != nil {
			return bad("libp2p.bootstrap", "%v", err)
		}
	}
	if l.MaxMemory < 0 || l.MaxConns < 0 || l.ConnsLow < 0 || l.ConnsHigh < 0 {
		return bad("libp2p", "limits must not be negative")
	}
	if l.ConnsHigh > 0 && l.ConnsLow > l.ConnsHigh {
		return bad("libp2p.conns_low", "%d is above libp2p.conns_high %d", l.ConnsLow, l.ConnsHigh)
	}
	return nil
}

// addLibp2p builds the libp2p transport when libp2p.enabled is set. It
// joins the extra transports of Options (the node runs them all), where the
// metrics find it.
func (n *Node) addLibp2p() error {
	c := n.cfg.Libp2p
	if !c.Enabled {
		return nil
	}
	key, err := n.cfg.NetworkKeyBytes()
	if err != nil {
		return err
	}
	t, err := libp2p.New(libp2p.Options{
		Identity:       n.id,
		ListenAddrs:    c.Listen,
		BootstrapPeers: c.Bootstrap,
		NetworkID:      libp2p.NetworkIDFor(key),
		PSK:            libp2p.PSKFor(key),
		MDNS:           c.MDNS,
		QUIC:           c.QUIC,
		DHTClient:      c.DHTClient,
		MaxMemory:      int64(c.MaxMemory),
		MaxConns:       c.MaxConns,
		ConnsLow:       c.ConnsLow,
		ConnsHigh:      c.ConnsHigh,
		UserAgent:      "meshd/" + n.o.Version,
		Logger:         n.log.With("component", "libp2p"),
	})
	if err != nil {
		return fmt.Errorf("%w: libp2p: %w", ErrConfig, err)
	}
	n.log.Info("libp2p enabled", "peer_id", t.ID().String(), "network", libp2p.NetworkIDFor(key), "listen", c.Listen, "bootstrap", len(c.Bootstrap))
	n.o.Transports = append(n.o.Transports, t)
	return nil
}

// libp2pMetrics renders the libp2p transport's Stats.
func (n *Node) libp2pMetrics() []sample {
	var t *libp2p.Transport
	for _, x := range n.o.Transports {
		if lt, ok := x.(*libp2p.Transport); ok {
			t = lt
		}
	}
	if t == nil {
		return nil
	}
	st := t.Stats()
	g := func(name, help string, v float64, labels ...string) sample {
		return sample{name, "gauge", help, v, labels}
	}
	c := func(name, help string, v uint64, labels ...string) sample {
		return sample{name, "counter", help, float64(v), labels}
	}
	out := []sample{
		g("meshd_libp2p_peers", "libp2p peers connected.", float64(st.Peers)),
		g("meshd_libp2p_conns", "libp2p connections open (resource manager).", float64(st.Conns)),
		g("meshd_libp2p_streams", "libp2p streams open (resource manager).", float64(st.Streams)),
		g("meshd_libp2p_memory_bytes", "Bytes reserved in the libp2p resource manager.", float64(st.Memory)),
		g("meshd_libp2p_links", "Envelope-stream links up.", float64(len(st.Links))),
		c("meshd_libp2p_links_opened_total", "Envelope-stream links that came up.", st.LinksOpened),
		c("meshd_libp2p_links_refused_total", "Envelope streams refused (not a meshd key, link limit).", st.LinksRefused),
		c("meshd_libp2p_bad_frames_total", "Links dropped for a malformed frame.", st.BadFrames),
		c("meshd_libp2p_dials_total", "Discovery dials.", st.Dials),
		c("meshd_libp2p_dial_failures_total", "Discovery dials that failed.", st.DialFailures),
		c("meshd_libp2p_rendezvous_rounds_total", "Rendezvous rounds (peer records; the DHT too with -tags dht).", st.RendezvousRounds),
		g("meshd_libp2p_rendezvous_found", "Other nodes of the network the last rendezvous found.", float64(st.RendezvousFound)),
		g("meshd_libp2p_peer_records", "Other nodes' signed peer records held (at most 256).", float64(st.PeerRecords)),
		c("meshd_libp2p_peer_records_accepted_total", "Peer records of other nodes taken (refused ones: gossip_rejected/ignored, reason record_*).", st.PeerRecordsAccepted),
		c("meshd_libp2p_peer_records_published_total", "This node's peer record published.", st.PeerRecordsPublished),
		g("meshd_libp2p_dht_routing_table", "Peers in the DHT routing table.", float64(st.RoutingTable)),
		g("meshd_libp2p_dht_provider_records", "Provider records held for others.", float64(st.ProviderRecords)),
		c("meshd_libp2p_dht_providers_refused_total", "Provider records refused: the bounded store was full.", st.ProvidersRefused),
		c("meshd_libp2p_rcmgr_blocked_total", "Resource manager refusals, by resource.", st.BlockedConns, "resource", "conn"),
		c("meshd_libp2p_rcmgr_blocked_total", "Resource manager refusals, by resource.", st.BlockedStreams, "resource", "stream"),
		c("meshd_libp2p_rcmgr_blocked_total", "Resource manager refusals, by resource.", st.BlockedMemory, "resource", "memory"),
		c("meshd_libp2p_rcmgr_blocked_total", "Resource manager refusals, by resource.", st.BlockedPeers, "resource", "peer"),
		c("meshd_libp2p_rcmgr_blocked_total", "Resource manager refusals, by resource.", st.BlockedProtocol, "resource", "protocol"),
		c("meshd_libp2p_gossip_published_total", "Gossip messages published.", st.GossipPublished),
		c("meshd_libp2p_gossip_received_total", "Gossip messages handed to the router.", st.GossipReceived),
		c("meshd_libp2p_gossip_rx_drops_total", "Gossip messages dropped: the router lagged.", st.GossipRxDrops),
		c("meshd_libp2p_gossip_unicast_sent_total", "Frames to one gossip neighbour sent over an envelope link.", st.GossipUnicastSent),
		c("meshd_libp2p_gossip_unicast_dropped_total", "Frames to one gossip neighbour that found no way.", st.GossipUnicastDropped),
	}
	for _, r := range sortedKeys(st.GossipRejected) {
		out = append(out, c("meshd_libp2p_gossip_rejected_total", "Gossip messages rejected by the validators, by reason.", st.GossipRejected[r], "reason", r))
	}
	for _, r := range sortedKeys(st.GossipIgnored) {
		out = append(out, c("meshd_libp2p_gossip_ignored_total", "Gossip messages ignored (rate limits), by reason.", st.GossipIgnored[r], "reason", r))
	}
	for _, l := range st.Links {
		lbl := []string{"link", l.ID, "peer", l.Peer}
		out = append(out,
			c("meshd_libp2p_link_bytes_in_total", "Payload bytes received on a libp2p link.", l.BytesIn, lbl...),
			c("meshd_libp2p_link_bytes_out_total", "Payload bytes sent on a libp2p link.", l.BytesOut, lbl...),
			c("meshd_libp2p_link_frames_in_total", "Frames received on a libp2p link.", l.FramesIn, lbl...),
			c("meshd_libp2p_link_frames_out_total", "Frames sent on a libp2p link.", l.FramesOut, lbl...))
	}
	return out
}

func sortedKeys(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
