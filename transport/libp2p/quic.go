//go:build !router && quic && (amd64 || arm64)

package libp2p

import (
	"crypto/rand"
	"io"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/quic-go/quic-go"
)

// quicBuilt says whether this build carries QUIC (-tags quic, 64-bit x86
// and ARM only: see docs/libp2p.md for what it costs and why it is opt-in).
const quicBuilt = true

func addQUIC(sw *swarm.Swarm, priv crypto.PrivKey, rm network.ResourceManager) (io.Closer, error) {
	var srk quic.StatelessResetKey
	var tk quic.TokenGeneratorKey
	rand.Read(srk[:])
	rand.Read(tk[:])
	qcm, err := quicreuse.NewConnManager(srk, tk)
	if err != nil {
		return nil, err
	}
	t, err := libp2pquic.NewTransport(priv, qcm, nil, nil, rm)
	if err != nil {
		qcm.Close()
		return nil, err
	}
	if err := sw.AddTransport(t); err != nil {
		qcm.Close()
		return nil, err
	}
	return qcm, nil
}
