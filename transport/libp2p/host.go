//go:build !router

package libp2p

import (
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	basichost "github.com/libp2p/go-libp2p/p2p/host/basic"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptcp "github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/openmeshd/meshd/envelope"
)

// EnvelopeProtocol is the stream protocol that carries envelopes.
const EnvelopeProtocol protocol.ID = "/meshd/envelope/1.0.0"

// dhtPrefix makes the DHT meshd's own (/meshd/kad/1.0.0): it never mixes
// with the public IPFS DHT.
const dhtPrefix protocol.ID = "/meshd"

// hostKey converts the meshd identity into the libp2p host key. Both are
// the same Ed25519 key (libp2p stores the 64-byte seed‖public form that
// crypto/ed25519 uses).
func hostKey(id *envelope.Identity) (crypto.PrivKey, peer.ID, error) {
	priv, err := crypto.UnmarshalEd25519PrivateKey(id.PrivateKey())
	if err != nil {
		return nil, "", fmt.Errorf("libp2p: host key: %w", err)
	}
	pid, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, "", fmt.Errorf("libp2p: peer id: %w", err)
	}
	return priv, pid, nil
}

// PeerIDFor returns the libp2p peer ID of the meshd node with key k.
func PeerIDFor(k envelope.PublicKey) (peer.ID, error) {
	pub, err := crypto.UnmarshalEd25519PublicKey(k[:])
	if err != nil {
		return "", err
	}
	return peer.IDFromPublicKey(pub)
}

// MeshKey returns the meshd identity key embedded in a libp2p peer ID. Only
// Ed25519 peer IDs (inlined keys) have one: other libp2p peers can take part
// in the DHT and gossip relaying but never get an envelope link.
func MeshKey(p peer.ID) (envelope.PublicKey, error) {
	pub, err := p.ExtractPublicKey()
	if err != nil {
		return envelope.PublicKey{}, fmt.Errorf("libp2p: peer %s: %w", p, err)
	}
	if pub.Type() != crypto.Ed25519 {
		return envelope.PublicKey{}, fmt.Errorf("libp2p: peer %s has a %s key, not Ed25519", p, pub.Type())
	}
	raw, err := pub.Raw()
	if err != nil {
		return envelope.PublicKey{}, err
	}
	return envelope.ParsePublicKey(raw)
}

// limits builds the resource manager's limits: the library's scaled
// defaults for the memory given, then tightened for a small router.
func limits(o *Options) rcmgr.ConcreteLimitConfig {
	base := rcmgr.DefaultLimits
	libp2pAddProtocolLimits(&base)
	scaled := base.Scale(o.MaxMemory, 4*o.MaxConns)
	mem := rcmgr.LimitVal64(o.MaxMemory)
	conns := rcmgr.LimitVal(o.MaxConns)
	in := rcmgr.LimitVal(max(1, o.MaxConns*3/4))
	streams := rcmgr.LimitVal(o.MaxConns * 8)
	perPeer := rcmgr.LimitVal(o.MaxStreamsPerPeer)
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns: conns, ConnsInbound: in, ConnsOutbound: conns,
			Streams: streams, StreamsInbound: streams / 2, StreamsOutbound: streams,
			FD: rcmgr.LimitVal(o.MaxConns + 16), Memory: mem,
		},
		Transient: rcmgr.ResourceLimits{
			Conns: conns / 4, ConnsInbound: in / 4, ConnsOutbound: conns / 4,
			Streams: streams / 8, StreamsInbound: streams / 16, StreamsOutbound: streams / 8,
			FD: rcmgr.LimitVal(max(4, o.MaxConns/4)), Memory: mem / 8,
		},
		PeerDefault: rcmgr.ResourceLimits{
			Conns: 4, ConnsInbound: 2, ConnsOutbound: 2,
			Streams: perPeer, StreamsInbound: perPeer / 2, StreamsOutbound: perPeer,
			Memory: mem / 12,
		},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{
			// One live envelope stream per peer, plus one replacing it.
			EnvelopeProtocol: {Streams: 4, StreamsInbound: 2, StreamsOutbound: 2, Memory: mem / 48},
		},
	}
	return partial.Build(scaled)
}

// libp2pAddProtocolLimits adds the default limits of the protocols this host
// runs (identify, ping, ...), as libp2p.SetDefaultServiceLimits does.
func libp2pAddProtocolLimits(c *rcmgr.ScalingLimitConfig) {
	c.AddProtocolLimit(EnvelopeProtocol,
		rcmgr.BaseLimit{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 4 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 32, StreamsOutbound: 32, Streams: 64, Memory: 4 << 20})
}

// builtHost is a libp2p host and what must be closed with it.
type builtHost struct {
	host.Host
	cm   *connmgr.BasicConnMgr
	rm   network.ResourceManager
	quic io.Closer // the QUIC connection manager, or nil
}

// Close closes the host, then what the host does not own.
func (b *builtHost) Close() error {
	err := b.Host.Close()
	if b.quic != nil {
		b.quic.Close()
	}
	return err
}

// buildHost assembles the host from its parts: peerstore, event bus,
// resource manager, connection manager, swarm, upgrader (Noise, yamux,
// optional pnet), TCP (and QUIC where built and enabled), basic host with
// identify. It does not listen yet.
func buildHost(o *Options, priv crypto.PrivKey, pid peer.ID, rep rcmgr.MetricsReporter) (*builtHost, error) {
	ps, err := pstoremem.NewPeerstore()
	if err != nil {
		return nil, err
	}
	if err := ps.AddPrivKey(pid, priv); err != nil {
		ps.Close()
		return nil, err
	}
	if err := ps.AddPubKey(pid, priv.GetPublic()); err != nil {
		ps.Close()
		return nil, err
	}
	bus := eventbus.NewBus()
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits(o)), rcmgr.WithMetrics(rep))
	if err != nil {
		ps.Close()
		return nil, fmt.Errorf("libp2p: resource manager: %w", err)
	}
	fail := func(err error) (*builtHost, error) {
		rm.Close()
		ps.Close()
		return nil, err
	}
	cm, err := connmgr.NewConnManager(o.ConnsLow, o.ConnsHigh, connmgr.WithGracePeriod(30*time.Second))
	if err != nil {
		return fail(fmt.Errorf("libp2p: connection manager: %w", err))
	}
	sw, err := swarm.NewSwarm(pid, ps, bus, swarm.WithResourceManager(rm), swarm.WithDialTimeout(15*time.Second))
	if err != nil {
		cm.Close()
		return fail(fmt.Errorf("libp2p: swarm: %w", err))
	}
	closeAll := func(err error) (*builtHost, error) {
		sw.Close() // closes the peerstore's users, not the peerstore
		cm.Close()
		return fail(err)
	}
	var psk pnet.PSK
	if len(o.PSK) == 32 {
		psk = o.PSK
	}
	muxers := []upgrader.StreamMuxer{{ID: yamux.ID, Muxer: yamux.DefaultTransport}}
	nz, err := noise.New(noise.ID, priv, muxers)
	if err != nil {
		return closeAll(err)
	}
	up, err := upgrader.New([]sec.SecureTransport{nz}, muxers, psk, rm, nil)
	if err != nil {
		return closeAll(err)
	}
	tcpT, err := libp2ptcp.NewTCPTransport(up, rm, nil, libp2ptcp.WithConnectionTimeout(15*time.Second))
	if err != nil {
		return closeAll(err)
	}
	if err := sw.AddTransport(tcpT); err != nil {
		return closeAll(err)
	}
	var quicCloser io.Closer
	if o.QUIC && psk == nil {
		if quicCloser, err = addQUIC(sw, priv, rm); err != nil {
			return closeAll(err)
		}
	}
	h, err := basichost.NewHost(sw, &basichost.HostOpts{
		EventBus:                bus,
		ConnManager:             cm,
		UserAgent:               o.UserAgent,
		ProtocolVersion:         "meshd/1",
		EnablePing:              false,
		DisableSignedPeerRecord: false,
	})
	if err != nil {
		return closeAll(err)
	}
	h.Start()
	return &builtHost{Host: h, cm: cm, rm: rm, quic: quicCloser}, nil
}

// listen starts listening on the configured addresses.
func (b *builtHost) listen(addrs []string) error {
	if len(addrs) == 0 {
		return nil
	}
	var mas []ma.Multiaddr
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return fmt.Errorf("libp2p: listen address %q: %w", a, err)
		}
		mas = append(mas, m)
	}
	if err := b.Network().Listen(mas...); err != nil {
		return fmt.Errorf("libp2p: listen: %w", err)
	}
	return nil
}

// ParseAddrInfo parses a multiaddr ending in /p2p/<peer id>.
func ParseAddrInfo(s string) (peer.AddrInfo, error) {
	info, err := peer.AddrInfoFromString(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("libp2p: peer %q: %w", s, err)
	}
	return *info, nil
}

// ParseMultiaddr checks a multiaddr string (for configuration).
func ParseMultiaddr(s string) (ma.Multiaddr, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("libp2p: address %q: %w", s, err)
	}
	return m, nil
}
