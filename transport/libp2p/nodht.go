//go:build !router && nodht

package libp2p

import "context"

// dhtBuilt says whether this build carries the DHT: not with -tags nodht.
// go-libp2p-kad-dht costs 2.9 MB on arm64 (with what it links: IPNS and
// IPLD for a record validator meshd never uses, OpenTelemetry, zap, the
// k-bucket tables: docs/size.md). Without it, nodes link to bootstrap
// peers, mDNS peers and whoever dials them; the rendezvous rounds still
// reopen links to connected meshd peers, but find no one new.
const dhtBuilt = false

func (t *Transport) startDHT(context.Context) error { return nil }
