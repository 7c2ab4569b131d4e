//go:build !router && libp2pmdns

package libp2p

import (
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// mdnsBuilt says whether this build carries libp2p's mDNS (-tags
// libp2pmdns): its zeroconf and miekg/dns cost 1 MB on arm64, a second mDNS
// stack next to meshd's own (transport/discovery), for a feature that is
// off by default (tcp.mdns links meshd nodes on a LAN already).
const mdnsBuilt = true

// startMDNS advertises and browses _meshd-libp2p._udp; a failure only
// disables it.
func (t *Transport) startMDNS() {
	svc := mdns.NewMdnsService(t.host, "_meshd-libp2p._udp", mdnsNotifee{t})
	if err := svc.Start(); err != nil {
		t.log.Warn("libp2p: mDNS disabled", "err", err.Error())
		return
	}
	t.mu.Lock()
	t.mdns = svc
	t.mu.Unlock()
}

type mdnsNotifee struct{ t *Transport }

// HandlePeerFound connects to a peer mDNS found (bounded by the spawn and
// the resource manager).
func (n mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	t := n.t
	if ai.ID == t.pid {
		return
	}
	t.count(&t.st.mdnsFound)
	t.spawn(func() { t.connect(ai) })
}
