//go:build !router && !libp2pmdns

package libp2p

// mdnsBuilt says whether this build carries libp2p's mDNS: only with -tags
// libp2pmdns (mdns.go says why).
const mdnsBuilt = false

func (t *Transport) startMDNS() {} // New refuses MDNS in this build
