package lora_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/openmeshd/meshd/firmware-bridge/vradio"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/lora"
	"github.com/openmeshd/meshd/transport/transporttest"
)

// TestConformance runs the shared transport suite against LoRa transports
// on a virtual radio (real serial code path, SF7/BW500, US915).
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("radio conformance takes ~1 min")
	}
	transporttest.Run(t, func(t testing.TB, n int) *transporttest.Network {
		air, err := vradio.New(vradio.Options{N: n, Dir: t.TempDir(), Seed: 5})
		if err != nil {
			t.Skipf("no pseudo-terminals: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); air.Run(ctx) }()
		t.Cleanup(func() { cancel(); wg.Wait() })
		net := &transporttest.Network{Timeout: 60 * time.Second, MaxTestFrame: 1000, Frames: 16, Lossless: false}
		for i, p := range air.Paths() {
			tr, err := lora.New(lora.Options{Port: p, Self: hint(i), Region: "US915", FrequencyHz: 915000000, BandwidthHz: 500000, SF: 7,
				MTU: 2048, MaxRounds: 16, ReconnectInterval: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			h := hint(i)
			net.Nodes = append(net.Nodes, transporttest.Node{Transport: tr, Addr: transport.Addr(h[:])})
		}
		return net
	})
}
