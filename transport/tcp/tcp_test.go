package tcp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/transporttest"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t testing.TB, n int) *transporttest.Network {
		nodes := make([]transporttest.Node, n)
		trs := make([]*Transport, n)
		addrs := make([]string, n)
		for i := range nodes {
			id := newID(t)
			ln := listen(t)
			tr, err := New(Options{Identity: id, Listener: ln, KeepaliveInterval: time.Second, DeadPeerTimeout: 5 * time.Second, HandshakeTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			trs[i], addrs[i] = tr, ln.Addr().String()
			nodes[i] = transporttest.Node{Transport: tr, Key: id.PublicKey(), HasKey: true}
		}
		return &transporttest.Network{
			Nodes:       nodes,
			Lossless:    true,
			Timeout:     5 * time.Second,
			DownTimeout: 2 * time.Second,
			Connect: func(ctx context.Context, i, j int) error {
				_, err := trs[i].Dial(ctx, Peer{Endpoint: addrs[j]})
				return err
			},
		}
	})
}

func TestLinkUpSendPQ(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pqA, pqB   bool
		wantPQ     bool
		netA, netB []byte
	}{
		{"hybrid", true, true, true, nil, nil},
		{"dialer without PQ", false, true, false, nil, nil},
		{"listener without PQ", true, false, false, nil, nil},
		{"private mesh", true, true, true, bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{7}, 32)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startNode(t, func(o *Options) { o.DisablePQ = !tc.pqA; o.NetworkKey = tc.netA })
			b := startNode(t, func(o *Options) { o.DisablePQ = !tc.pqB; o.NetworkKey = tc.netB })
			la, err := a.t.Dial(ctxT(t), Peer{Endpoint: b.addr(), Key: b.id.PublicKey(), HasKey: true})
			if err != nil {
				t.Fatal(err)
			}
			a.h.wait(t, "up", time.Second)
			lb := b.h.wait(t, "up", 2*time.Second).link.(*Link)
			if la.Info().Peer != b.id.PublicKey() || lb.Info().Peer != a.id.PublicKey() {
				t.Fatal("Info.Peer is not the other side's identity")
			}
			sa, sb := la.PQSecret(), lb.PQSecret()
			if tc.wantPQ {
				if len(sa) != 32 || !bytes.Equal(sa, sb) {
					t.Fatalf("PQ secrets differ or missing: %x vs %x", sa, sb)
				}
			} else if sa != nil || sb != nil {
				t.Fatalf("PQ secret without the hybrid: %x %x", sa, sb)
			}
			for _, size := range []int{0, 1, 200, maxPiece, maxPiece + 1, MaxFrameSize} {
				data := bytes.Repeat([]byte{byte(size)}, size)
				if err := la.Send(ctxT(t), transport.Frame{Data: data}); err != nil {
					t.Fatal(err)
				}
				got := b.h.wait(t, "recv", 2*time.Second)
				if !bytes.Equal(got.data, data) {
					t.Fatalf("frame of %d bytes arrived as %d bytes", size, len(got.data))
				}
			}
			st := b.t.Stats()
			if len(st.Links) != 1 || st.Links[0].FramesIn != 6 || st.Links[0].PQ != tc.wantPQ {
				t.Fatalf("stats: %+v", st)
			}
		})
	}
}

func TestNetworkKeyRefused(t *testing.T) {
	key1 := bytes.Repeat([]byte{1}, 32)
	key2 := bytes.Repeat([]byte{2}, 32)
	for _, tc := range []struct {
		name       string
		dialer     []byte
		listener   []byte
		wantLogged string
	}{
		{"dialer has no key", nil, key1, "the peer has no network key"},
		{"dialer has another key", key2, key1, "it holds a different one"},
		{"listener has no key", key1, nil, "it belongs to a private mesh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startNode(t, func(o *Options) { o.NetworkKey = tc.dialer })
			b := startNode(t, func(o *Options) { o.NetworkKey = tc.listener })
			_, err := a.t.Dial(ctxT(t), Peer{Endpoint: b.addr()})
			if err == nil {
				t.Fatal("handshake across different network keys succeeded")
			}
			t.Logf("dialer sees: %v", err)
			deadline := time.Now().Add(2 * time.Second)
			for b.log.count(tc.wantLogged) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if b.log.count(tc.wantLogged) == 0 {
				t.Fatalf("refusing side did not log %q; log:\n%s", tc.wantLogged, b.log)
			}
			if got := b.t.Stats().HandshakeFailures[ReasonNetworkKey]; got != 1 {
				t.Errorf("network-key failures = %d, want 1", got)
			}
			b.h.none(t, "up", 100*time.Millisecond)
			a.h.none(t, "up", 0)
		})
	}
}

func TestPinMismatchRefused(t *testing.T) {
	b := startNode(t, nil)
	imposter := startNode(t, nil)
	t.Run("configured key", func(t *testing.T) {
		a := startNode(t, nil)
		_, err := a.t.Dial(ctxT(t), Peer{Endpoint: imposter.addr(), Key: b.id.PublicKey(), HasKey: true})
		if !errors.Is(err, ErrPinMismatch) {
			t.Fatalf("Dial to a peer with another key: %v, want ErrPinMismatch", err)
		}
		if a.log.count("REFUSED") != 1 || a.log.count("level=ERROR") != 1 {
			t.Fatalf("refusal not logged loudly:\n%s", a.log)
		}
		imposter.h.none(t, "up", 100*time.Millisecond)
	})
	t.Run("pinned on first use", func(t *testing.T) {
		pins := &MemoryPins{}
		// The static peer's endpoint first answers with b's key...
		front := newForwarder(t, b.addr())
		a := startNode(t, func(o *Options) {
			o.Pins = pins
			o.Peers = []Peer{{Endpoint: front.addr()}}
		})
		e := a.h.wait(t, "up", 3*time.Second)
		if e.link.Info().Peer != b.id.PublicKey() {
			t.Fatal("linked to the wrong peer")
		}
		if k, ok, _ := pins.Pinned(front.addr()); !ok || k != b.id.PublicKey() {
			t.Fatalf("key not pinned on first contact: %v %v", k, ok)
		}
		// ...then the endpoint is taken over by an imposter.
		front.retarget(imposter.addr())
		e.link.Close()
		a.h.wait(t, "down", time.Second)
		deadline := time.Now().Add(3 * time.Second)
		for a.t.Stats().HandshakeFailures[ReasonPin] == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if a.t.Stats().HandshakeFailures[ReasonPin] == 0 {
			t.Fatalf("no pin refusal; log:\n%s", a.log)
		}
		a.h.none(t, "up", 200*time.Millisecond)
		if a.log.count("REFUSED") == 0 {
			t.Fatalf("refusal not logged:\n%s", a.log)
		}
	})
}

// forwarder is a TCP port forwarder whose target can change, to move an
// endpoint from one node to another.
type forwarder struct {
	ln     net.Listener
	target chan string
}

func newForwarder(t testing.TB, target string) *forwarder {
	f := &forwarder{ln: listen(t), target: make(chan string, 1)}
	f.target <- target
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := f.ln.Accept()
			if err != nil {
				return
			}
			tg := <-f.target
			f.target <- tg
			go func() {
				d, err := net.Dial("tcp", tg)
				if err != nil {
					c.Close()
					return
				}
				go func() { copyClose(d, c) }()
				copyClose(c, d)
			}()
		}
	}()
	t.Cleanup(func() { f.ln.Close(); <-done })
	return f
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }
func (f *forwarder) retarget(s string) {
	<-f.target
	f.target <- s
}

func copyClose(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}
