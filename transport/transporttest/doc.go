// Package transporttest is the conformance suite every transport.Transport
// runs: TCP here, LoRa and libp2p later. It holds an implementation to the
// semantics written down in package transport.
//
// # Plugging a transport in
//
// A transport's test calls Run with a Factory. The factory builds a fresh
// Network of n nodes each time it is called (the suite calls it once per
// subtest, with n = 2, or n = 3 for the shared-medium tests) and registers
// its own cleanup with t.Cleanup. It does not start the transports: the
// suite calls Run on each with its own recording Handler, then calls
// Network.Connect (if set) for the pairs it needs, and waits for LinkUp.
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t testing.TB, n int) *transporttest.Network {
//			nodes := make([]transporttest.Node, n)
//			addrs := make([]string, n)
//			for i := range nodes {
//				ln, _ := net.Listen("tcp", "127.0.0.1:0")
//				id, _ := envelope.GenerateIdentity(rand.Reader)
//				tr, _ := tcp.New(tcp.Options{Identity: id, Listener: ln})
//				nodes[i] = transporttest.Node{Transport: tr, Key: id.PublicKey(), HasKey: true}
//				addrs[i] = ln.Addr().String()
//			}
//			return &transporttest.Network{
//				Nodes:    nodes,
//				Lossless: true,
//				Connect: func(ctx context.Context, i, j int) error {
//					_, err := nodes[i].Transport.(*tcp.Transport).Dial(ctx, tcp.Peer{Endpoint: addrs[j]})
//					return err
//				},
//			}
//		})
//	}
//
// A point-to-point transport (TCP, libp2p) gets one link per connected
// pair; the suite only ever connects node 0 to node 1. A shared medium
// (LoRa: Info().Broadcast) gives every node one link that reaches all the
// others; its factory sets Node.Addr to the link-layer address the others
// see in Meta.From and use in Frame.To, and usually needs no Connect: the
// link comes up when Run starts. Radio links are slow and lossy: the
// factory says so with Lossless false, a smaller MaxTestFrame and Frames,
// and longer Timeout; it can skip a subtest that cannot apply with Skip
// (name → reason, reported with t.Skip).
//
// # What is checked
//
//   - Info: every field is sane, stable, and link IDs are unique; on
//     authenticated links Info.Peer is the other node's key.
//   - SendReceive: bytes arrive intact both ways, the sender may reuse its
//     buffer as soon as Send returns, Meta.From names the sender on a
//     shared medium and is empty otherwise.
//   - MTU: a frame of MTU bytes passes; MTU+1 fails with a
//     *transport.FrameTooLargeError matching transport.ErrFrameTooLarge, and
//     nothing is sent.
//   - Ordering (when Info.Ordered): frames from one sender arrive in order.
//   - ConcurrentSenders: many goroutines on both ends send at once; every
//     frame arrives intact (when Lossless) and per-sender order holds (when
//     Ordered). Run the suite under -race.
//   - Backpressure: with the receiving Handler stalled, Send eventually
//     blocks and returns ctx.Err() instead of queueing without bound; the
//     link recovers once the Handler resumes.
//   - Close: Close is idempotent and returns nil, LinkDown comes exactly
//     once with a nil error, Send afterwards returns transport.ErrClosed,
//     Info still works; on point-to-point links the peer sees its link go
//     down too. Close racing with Send, and Close from inside a Handler
//     callback, neither hang nor panic.
//   - RunCancel: cancelling Run's context makes Run return after every
//     link was reported down; no Handler call comes after Run returns.
//   - PeerDeath (point-to-point): when the peer dies (Network.Kill, or its
//     Run cancelled) the link goes down with a non-nil error.
//   - Broadcast (shared medium): a frame to transport.Broadcast reaches all
//     others, a frame to one Addr reaches that node, with Meta.From set.
//
// Throughout, the recording Handler checks the Handler contract: LinkUp
// first, then Receive, then exactly one LinkDown, never two calls at once
// for one link, nothing after Run returned. After every subtest the suite
// checks that no goroutine started during it is still alive (after a grace
// period for goroutines that are ending), and prints the stacks of those
// that are. Do not run the suite in parallel with other tests of the same
// package: their goroutines would count as leaks.
package transporttest
