//go:build !router && (noquic || !(amd64 || arm64))

package libp2p

import (
	"errors"
	"io"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// quicBuilt says whether this build carries QUIC: not on routers (MIPS,
// 32-bit ARM), where its bytes do not pay (docs/libp2p.md).
const quicBuilt = false

func addQUIC(*swarm.Swarm, crypto.PrivKey, network.ResourceManager) (io.Closer, error) {
	return nil, errors.New("libp2p: this build has no QUIC (libp2p.quic is for amd64 and arm64)")
}
