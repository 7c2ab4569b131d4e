//go:build !router && (!quic || !(amd64 || arm64))

package libp2p

import (
	"errors"
	"io"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// quicBuilt says whether this build carries QUIC: only with -tags quic on
// amd64 and arm64. It costs 1.6 MB, more than the full build's 20 MB
// budget had left (docs/size.md), and is off at run time by default.
const quicBuilt = false

func addQUIC(*swarm.Swarm, crypto.PrivKey, network.ResourceManager) (io.Closer, error) {
	return nil, errors.New("libp2p: this build has no QUIC: libp2p.quic needs a build with -tags quic (amd64 and arm64 only; docs/libp2p.md)")
}
