//go:build !router

package libp2p

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport/transporttest"
)

func newID(t testing.TB) *envelope.Identity {
	t.Helper()
	id, err := envelope.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// testOptions are loopback options with short intervals.
func testOptions(id *envelope.Identity) Options {
	return Options{
		Identity:           id,
		ListenAddrs:        []string{"/ip4/127.0.0.1/tcp/0"},
		NetworkID:          "test",
		RendezvousInterval: 2 * time.Second,
		WriteTimeout:       5 * time.Second,
	}
}

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t testing.TB, n int) *transporttest.Network {
		nodes := make([]transporttest.Node, n)
		trs := make([]*Transport, n)
		for i := range nodes {
			id := newID(t)
			tr, err := New(testOptions(id))
			if err != nil {
				t.Fatal(err)
			}
			trs[i] = tr
			nodes[i] = transporttest.Node{Transport: onlyStreams{tr}, Key: id.PublicKey(), HasKey: true}
		}
		return &transporttest.Network{
			Nodes:       nodes,
			Lossless:    true,
			Timeout:     10 * time.Second,
			DownTimeout: 5 * time.Second,
			Connect: func(ctx context.Context, i, j int) error {
				ai, err := trs[j].AddrInfo(ctx)
				if err != nil {
					return err
				}
				_, err = trs[i].Connect(ctx, ai)
				return err
			},
		}
	})
}
