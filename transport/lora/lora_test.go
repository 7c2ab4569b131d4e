package lora_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/firmware-bridge/vradio"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/lora"
)

// recorder is a transport.Handler that records what it is told.
type recorder struct {
	mu    sync.Mutex
	links []transport.Link
	up    chan transport.Link
	down  chan error
	got   chan got
}

type got struct {
	data []byte
	meta transport.Meta
}

func newRecorder() *recorder {
	return &recorder{up: make(chan transport.Link, 8), down: make(chan error, 8), got: make(chan got, 64)}
}

func (r *recorder) LinkUp(l transport.Link) {
	r.mu.Lock()
	r.links = append(r.links, l)
	r.mu.Unlock()
	r.up <- l
}
func (r *recorder) Receive(l transport.Link, data []byte, m transport.Meta) { r.got <- got{data, m} }
func (r *recorder) LinkDown(l transport.Link, err error)                    { r.down <- err }

func hint(i int) envelope.Hint { return envelope.Hint{0x10, 0x20, 0x30, byte(i)} }

type node struct {
	tr   *lora.Transport
	rec  *recorder
	link transport.Link
}

// fast modulation: SF7/BW500 on 915 MHz (US915: no duty cycle, 400 ms
// dwell), so CI runs in seconds with the real serial path.
func setup(t *testing.T, n int, loss float64, region string) (*vradio.Air, []*node, context.Context) {
	t.Helper()
	air, err := vradio.New(vradio.Options{N: n, Dir: t.TempDir(), Loss: loss, Seed: 42})
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() { defer wg.Done(); air.Run(ctx) }()
	var nodes []*node
	for i, p := range air.Paths() {
		tr, err := lora.New(lora.Options{Port: p, Self: hint(i), Region: region, FrequencyHz: 915000000, BandwidthHz: 500000, SF: 7, CR: 5,
			ReconnectInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		nd := &node{tr: tr, rec: newRecorder()}
		wg.Add(1)
		go func() { defer wg.Done(); tr.Run(ctx, nd.rec) }()
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		select {
		case nd.link = <-nd.rec.up:
		case <-time.After(5 * time.Second):
			t.Fatal("link did not come up")
		}
	}
	return air, nodes, ctx
}

func payload(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + seed)
	}
	return b
}

func expect(t *testing.T, nd *node, want []byte, from envelope.Hint, within time.Duration) {
	t.Helper()
	select {
	case g := <-nd.rec.got:
		if !bytes.Equal(g.data, want) {
			t.Fatalf("got %d bytes, want %d", len(g.data), len(want))
		}
		if g.meta.From != transport.Addr(from[:]) || !g.meta.HasSignal {
			t.Fatalf("meta %+v", g.meta)
		}
	case <-time.After(within):
		t.Fatalf("nothing received within %v", within)
	}
}

// TestEndToEnd: three transports on a 3-modem virtual radio with 10% frame
// loss; a 1 KiB and a 4 KiB unicast envelope cross, and a broadcast reaches
// both neighbours.
func TestEndToEnd(t *testing.T) {
	air, nodes, ctx := setup(t, 3, 0.10, "US915")
	info := nodes[0].link.Info()
	if !info.Broadcast || info.Kind != "lora" || info.MTU != 8192 || info.Ordered {
		t.Fatalf("info %+v", info)
	}
	for _, c := range []struct {
		size     int
		from, to int
	}{{1024, 0, 2}, {4096, 1, 0}} {
		start := time.Now()
		msg := payload(c.size, c.from)
		to := hint(c.to)
		if err := nodes[c.from].link.Send(ctx, transport.Frame{To: transport.Addr(to[:]), Data: msg}); err != nil {
			t.Fatal(err)
		}
		expect(t, nodes[c.to], msg, hint(c.from), 30*time.Second)
		st := nodes[c.from].tr.Stats().Core
		t.Logf("%d B %d->%d with 10%% loss: %v, sender frames %d, retransmissions %d, probes %d", c.size, c.from, c.to, time.Since(start).Round(time.Millisecond), st.FramesSent, st.Retransmissions, st.Probes)
	}
	msg := payload(600, 9)
	if err := nodes[2].link.Send(ctx, transport.Frame{To: transport.Broadcast, Priority: transport.PriorityBackground, Data: msg}); err != nil {
		t.Fatal(err)
	}
	// Broadcast has no ARQ: with 10% loss per frame it may miss; count it.
	for _, i := range []int{0, 1} {
		select {
		case g := <-nodes[i].rec.got:
			if !bytes.Equal(g.data, msg) {
				t.Fatal("broadcast corrupted")
			}
		case <-time.After(5 * time.Second):
			t.Logf("broadcast lost at node %d (no ARQ for broadcast, 10%% loss)", i)
		}
	}
	t.Logf("air: %+v", air.Stats())
	if err := nodes[0].link.Send(ctx, transport.Frame{Data: make([]byte, 9000)}); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatal(err)
	}
}

func TestNoRegionRefuses(t *testing.T) {
	_, nodes, ctx := setup(t, 1, 0, "")
	err := nodes[0].link.Send(ctx, transport.Frame{Data: []byte("x")})
	if !errors.Is(err, transport.ErrRefused) || !errors.Is(err, lora.ErrNoRegion) {
		t.Fatalf("err %v", err)
	}
	t.Log(err)
}

// TestUnplugReplug: messages queued when the modem disappears are all
// delivered after it comes back, and the link is back within 5 s.
func TestUnplugReplug(t *testing.T) {
	air, nodes, ctx := setup(t, 2, 0, "US915")
	to := hint(1)
	var msgs [][]byte
	for i := 0; i < 3; i++ {
		m := payload(1024, i)
		msgs = append(msgs, m)
		if err := nodes[0].link.Send(ctx, transport.Frame{To: transport.Addr(to[:]), Data: m}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // mid-transfer
	air.Unplug(0)
	select {
	case err := <-nodes[0].rec.down:
		if err == nil {
			t.Fatal("LinkDown without error on unplug")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no LinkDown after unplug")
	}
	if err := nodes[0].link.Send(ctx, transport.Frame{Data: []byte("x")}); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("send on a down link: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	replug := time.Now()
	if err := air.Replug(0); err != nil {
		t.Fatal(err)
	}
	select {
	case nodes[0].link = <-nodes[0].rec.up:
	case <-time.After(5 * time.Second):
		t.Fatal("link not back within 5 s of replug")
	}
	recovered := time.Since(replug)
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < len(msgs) {
		select {
		case g := <-nodes[1].rec.got:
			seen[string(g.data)] = true
		case <-deadline:
			t.Fatalf("only %d of %d queued messages arrived", len(seen), len(msgs))
		}
	}
	for _, m := range msgs {
		if !seen[string(m)] {
			t.Fatal("a queued message was lost")
		}
	}
	st := nodes[0].tr.Stats()
	if st.Sessions != 2 || st.Disconnects != 1 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("link back %v after replug; all %d queued messages delivered; %s", recovered.Round(time.Millisecond), len(msgs), fmt.Sprint(st.Core.Retransmissions, " retransmissions"))
}
