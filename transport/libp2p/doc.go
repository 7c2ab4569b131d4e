//go:build !router

// Package libp2p bridges meshd islands over the internet with go-libp2p.
//
// One Transport runs one libp2p host built from its parts (swarm,
// upgrader, TCP, Noise, yamux; no libp2p.New defaults) whose identity is
// the node's meshd identity: the same Ed25519 key, so a libp2p peer ID
// embeds the meshd public key. Over it:
//
//   - a stream protocol, /meshd/envelope/1.0.0, carries length-prefixed
//     envelopes between two meshd nodes. Each such session is a
//     point-to-point transport.Link (Kind "libp2p", Info.Peer = the peer's
//     meshd key);
//   - GossipSub topics per mesh network carry floods (announces and path
//     requests, channel messages, FAPP floods and queries). The gossip mesh
//     is ONE extra transport.Link with Info.Broadcast set (Kind
//     "libp2p-gossip"): a broadcast frame is published on the topic of its
//     envelope kind, a frame to one neighbour (Frame.To = the neighbour's
//     32-byte meshd key) goes over an envelope stream to that peer, and
//     every accepted gossip message is received with Meta.From = the
//     publisher's meshd key. Validators check size, structure, signatures
//     and per-publisher and global rates before anything propagates;
//   - the Kademlia DHT (a meshd-only DHT, protocol /meshd/kad/1.0.0) and
//     optional mDNS find other nodes of the same mesh network: every node
//     provides the network's rendezvous key and connects to the others that
//     provide it.
//
// The whole package is behind the build tag: `-tags router` leaves it (and
// go-libp2p) out of the binary. docs/libp2p.md has the design, the numbers
// and the commands that reproduce them.
package libp2p
