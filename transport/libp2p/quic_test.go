//go:build !router && quic && (amd64 || arm64)

package libp2p

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/openmeshd/meshd/transport"
)

// TestQUICLink: two nodes listening on QUIC only link up over it and
// shut down without leaking the QUIC connection manager.
func TestQUICLink(t *testing.T) {
	quicOnly := func(o *Options) {
		o.QUIC = true
		o.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	a := startNode(t, quicOnly)
	b := startNode(t, quicOnly)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var addrs []ma.Multiaddr
	for _, m := range a.ai.Addrs {
		if strings.Contains(m.String(), "quic-v1") {
			addrs = append(addrs, m)
		}
	}
	if len(addrs) == 0 {
		t.Fatalf("no QUIC address in %v", a.ai.Addrs)
	}
	l, err := b.t.Connect(ctx, peer.AddrInfo{ID: a.ai.ID, Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Stats().Remote; !strings.Contains(got, "quic-v1") {
		t.Fatalf("link over %s, want QUIC", got)
	}
	msg := []byte("\x01over QUIC")
	if err := l.Send(ctx, transport.Frame{Data: msg}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "frame over QUIC", func() error {
		if _, ok := a.rec.find(msg); !ok {
			return context.DeadlineExceeded
		}
		return nil
	})
}
