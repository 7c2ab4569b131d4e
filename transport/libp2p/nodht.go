//go:build !router && !dht

package libp2p

import "context"

// dhtBuilt says whether this build carries the DHT: only with -tags dht.
// go-libp2p-kad-dht costs 2.9 MB on arm64 (with what it links: IPNS and
// IPLD for a record validator meshd never uses, OpenTelemetry, zap, the
// k-bucket tables: docs/size.md), which the full build's 20 MB budget
// (issue 11) cannot hold. Without it, the nodes of a network find each
// other through the signed peer records they publish on the network's
// GossipSub peers topic (peerrec.go): anyone the gossip mesh reaches, but
// no open-ended search beyond it.
const dhtBuilt = false

func (t *Transport) startDHT(context.Context) error { return nil }
