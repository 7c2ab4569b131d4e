//go:build !router

package libp2p

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Options configure a Transport. Fields left zero take the default named in
// their comment; config keys are `libp2p.<name>` where the node exposes one.
type Options struct {
	// Identity is this node's identity key; its Ed25519 key is also the
	// libp2p host key. Required.
	Identity *envelope.Identity
	// ListenAddrs are multiaddrs to listen on (libp2p.listen), e.g.
	// "/ip4/0.0.0.0/tcp/4732". Zero: listen nowhere, dial out only.
	ListenAddrs []string
	// BootstrapPeers are multiaddrs ending in /p2p/<peer id> dialed at start
	// and whenever the node has no connection left (libp2p.bootstrap).
	// Zero: none (peers come from mDNS, Connect, or other nodes' DHTs).
	BootstrapPeers []string
	// NetworkID names the mesh network: GossipSub topics and the DHT
	// rendezvous key are derived from it. Zero: "open". The node passes
	// NetworkIDFor(network key).
	NetworkID string
	// PSK, when 32 bytes, makes the libp2p network private (libp2p pnet):
	// nodes without it cannot even complete a connection. QUIC is off with
	// a PSK. Zero (nil): an open network.
	PSK []byte
	// MDNS finds libp2p peers on the local networks (libp2p.mdns). Zero:
	// off (meshd's own mDNS already links TCP nodes on a LAN).
	MDNS bool
	// QUIC also listens on and dials QUIC where the build includes it (not
	// on MIPS or 32-bit ARM; see docs/libp2p.md) (libp2p.quic). Zero: off.
	QUIC bool
	// DHTClient makes the DHT a client only: it queries but does not answer
	// (libp2p.dht_client). Zero: a server unless known to be unreachable.
	DHTClient bool

	// MaxMemory bounds the memory the resource manager lets libp2p reserve
	// (buffers of connections and streams), in bytes (libp2p.max_memory).
	// Reservations are upper bounds (yamux reserves a 256 KiB window per
	// stream and fills it only under load), far above what is resident. A
	// peer may reserve a twelfth of it. Zero: 48 MiB.
	MaxMemory int64
	// MaxConns bounds open connections (libp2p.max_conns). Zero: 64.
	MaxConns int
	// MaxStreamsPerPeer bounds the streams one peer may have open with
	// this node, all protocols together. Zero: 48.
	MaxStreamsPerPeer int
	// ConnsLow and ConnsHigh are the connection manager's watermarks: above
	// High it trims connections down to Low, keeping those that carry
	// links (libp2p.conns_low, libp2p.conns_high). Zero: 16 and 40.
	ConnsLow, ConnsHigh int
	// MaxLinks bounds envelope-stream links. Zero: 32.
	MaxLinks int

	// SendQueue is how many frames a link queues before Send blocks.
	// Zero: 64.
	SendQueue int
	// WriteTimeout takes a link down when the peer does not take a frame
	// for that long. Zero: 30 s.
	WriteTimeout time.Duration
	// Bitrate is what Info reports, in bit/s. Zero: 10 Mbit/s.
	Bitrate int
	// Cost is the routing cost of one hop over the internet relative to a
	// LAN TCP hop. Zero: 2.
	Cost int

	// MaxGossipSize is the largest gossip message (and the gossip link's
	// MTU). Zero: 16 KiB.
	MaxGossipSize int
	// GossipRate and GossipBurst bound the messages one publisher may get
	// accepted per second on one topic (a token bucket). Zero: 2 and 60.
	GossipRate, GossipBurst float64
	// GossipGlobalRate and GossipGlobalBurst bound the messages accepted
	// from all publishers together per second on one topic. Zero: 40 and
	// 200.
	GossipGlobalRate, GossipGlobalBurst float64
	// VerifyPerSecond bounds signature verifications in the validators.
	// Zero: 200.
	VerifyPerSecond float64

	// RendezvousInterval is how often the node provides the rendezvous key
	// in the DHT and looks for others. Zero: 5 min (the first round runs
	// as soon as a peer is connected).
	RendezvousInterval time.Duration
	// UserAgent is sent in identify. Zero: "meshd".
	UserAgent string
	// Logger receives the transport's logs. Zero (nil): discarded.
	Logger *slog.Logger
	// LogInterval is how often a repeated condition is logged at most.
	// Zero: 1 min.
	LogInterval time.Duration
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defI := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defF := func(p *float64, v float64) {
		if *p <= 0 {
			*p = v
		}
	}
	if o.NetworkID == "" {
		o.NetworkID = "open"
	}
	if o.MaxMemory <= 0 {
		o.MaxMemory = 48 << 20
	}
	defI(&o.MaxConns, 64)
	defI(&o.MaxStreamsPerPeer, 48)
	defI(&o.ConnsLow, 16)
	defI(&o.ConnsHigh, 40)
	if o.ConnsHigh < o.ConnsLow {
		o.ConnsHigh = o.ConnsLow
	}
	defI(&o.MaxLinks, 32)
	defI(&o.SendQueue, 64)
	def(&o.WriteTimeout, 30*time.Second)
	defI(&o.Bitrate, 10_000_000)
	defI(&o.Cost, 2)
	defI(&o.MaxGossipSize, 16<<10)
	if o.MaxGossipSize > envelope.MaxSize {
		o.MaxGossipSize = envelope.MaxSize
	}
	defF(&o.GossipRate, 2)
	defF(&o.GossipBurst, 60)
	defF(&o.GossipGlobalRate, 40)
	defF(&o.GossipGlobalBurst, 200)
	defF(&o.VerifyPerSecond, 200)
	def(&o.RendezvousInterval, 5*time.Minute)
	def(&o.LogInterval, time.Minute)
	if o.UserAgent == "" {
		o.UserAgent = "meshd"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// NetworkIDFor derives the mesh network id from a private mesh's network
// key (tcp.network_key): 16 bytes of SHA-256 over a label and the key, in
// hex, so that the id names the network without revealing the key. A nil
// key (an open mesh) gives "open".
func NetworkIDFor(networkKey []byte) string {
	if len(networkKey) == 0 {
		return "open"
	}
	h := sha256.New()
	h.Write([]byte("meshd/v1/libp2p network id\x00"))
	h.Write(networkKey)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// PSKFor derives the libp2p private-network key from a mesh network key,
// or nil for an open mesh.
func PSKFor(networkKey []byte) []byte {
	if len(networkKey) == 0 {
		return nil
	}
	h := sha256.New()
	h.Write([]byte("meshd/v1/libp2p pnet\x00"))
	h.Write(networkKey)
	return h.Sum(nil)
}
