package tcp

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openmeshd/meshd/transport"
)

// countHandler counts received frames and signals when it reaches want.
type countHandler struct {
	n    atomic.Int64
	want atomic.Int64
	done chan struct{}
	up   chan transport.Link
}

func newCountHandler() *countHandler {
	return &countHandler{done: make(chan struct{}, 1), up: make(chan transport.Link, 1024)}
}

func (h *countHandler) LinkUp(l transport.Link) { h.up <- l }
func (h *countHandler) Receive(l transport.Link, d []byte, m transport.Meta) {
	if h.n.Add(1) == h.want.Load() {
		h.done <- struct{}{}
	}
}
func (h *countHandler) LinkDown(l transport.Link, err error) {}

func benchNode(b *testing.B, h transport.Handler, mod func(*Options)) (*Transport, string) {
	o := Options{Identity: newID(b), Listener: listen(b)}
	if mod != nil {
		mod(&o)
	}
	tr, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx, h) }()
	b.Cleanup(func() { cancel(); <-done })
	return tr, o.Listener.Addr().String()
}

// cpuTime is the CPU time (user + system) this process has used. Reported
// next to wall time, it is what the benchmarks cost even on a machine busy
// with other work, where wall time is not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLinkThroughput: one link on loopback, one sender goroutine.
// frames/s and MB/s (of frame payload) are reported.
func BenchmarkLinkThroughput(b *testing.B) {
	for _, size := range []int{200, 64 << 10} {
		b.Run(fmt.Sprintf("frame=%d", size), func(b *testing.B) {
			ha, hb := newCountHandler(), newCountHandler()
			ta, _ := benchNode(b, ha, nil)
			_, addrB := benchNode(b, hb, nil)
			l, err := ta.Dial(context.Background(), Peer{Endpoint: addrB})
			if err != nil {
				b.Fatal(err)
			}
			<-hb.up
			data := make([]byte, size)
			hb.want.Store(int64(b.N))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				if err := l.Send(ctx, transport.Frame{Data: data}); err != nil {
					b.Fatal(err)
				}
			}
			<-hb.done
			el, cpu := time.Since(start), cpuTime()-cpu0
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "frames/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkHandshake: a complete handshake over loopback TCP (dial,
// preambles, three Noise messages, confirmation, LinkUp), with and without
// the ML-KEM-768 hybrid.
func BenchmarkHandshake(b *testing.B) {
	for _, pq := range []bool{true, false} {
		b.Run(fmt.Sprintf("pq=%v", pq), func(b *testing.B) {
			mod := func(o *Options) { o.DisablePQ = !pq }
			ha, hb := newCountHandler(), newCountHandler()
			ta, _ := benchNode(b, ha, mod)
			_, addrB := benchNode(b, hb, mod)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				l, err := ta.Dial(context.Background(), Peer{Endpoint: addrB})
				if err != nil {
					b.Fatal(err)
				}
				<-ha.up
				<-hb.up
				l.Close()
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkHandshakeCPU: the sans-IO handshake alone, both sides in one
// goroutine, no sockets: the cryptographic cost.
func BenchmarkHandshakeCPU(b *testing.B) {
	for _, pq := range []bool{true, false} {
		b.Run(fmt.Sprintf("pq=%v", pq), func(b *testing.B) {
			ki, err := newLocalKeys(newID(b), nil, pq, nil)
			if err != nil {
				b.Fatal(err)
			}
			kr, err := newLocalKeys(newID(b), nil, pq, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				hi, _ := newHandshake(ki, true, nil)
				hr, _ := newHandshake(kr, false, nil)
				m1, _, _ := hi.Step(nil)
				m2, _, err := hr.Step(m1)
				if err != nil {
					b.Fatal(err)
				}
				m3, _, err := hi.Step(m2)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := hr.Step(m3); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkIdleLinkMemory measures what an idle link costs: Go heap plus
// goroutine stacks, after a GC, for 200 links between two transports in
// this process, divided by the 400 link ends. Reported as bytes/link-end;
// b.N is ignored (run with -benchtime=1x).
func BenchmarkIdleLinkMemory(b *testing.B) {
	const n = 200
	hb := newCountHandler()
	_, addrB := benchNode(b, hb, func(o *Options) { o.MaxHandshakes = n })
	var trs []*Transport
	for i := 0; i < n; i++ {
		t, _ := benchNode(b, newCountHandler(), nil)
		trs = append(trs, t)
	}
	measure := func() (heap, stack uint64) {
		var ms runtime.MemStats
		for i := 0; i < 3; i++ {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc, ms.StackInuse
	}
	time.Sleep(100 * time.Millisecond)
	h0, s0 := measure()
	g0 := runtime.NumGoroutine()
	for _, t := range trs {
		if _, err := t.Dial(context.Background(), Peer{Endpoint: addrB}); err != nil {
			b.Fatal(err)
		}
		<-hb.up
	}
	time.Sleep(200 * time.Millisecond) // let handshake garbage become garbage
	h1, s1 := measure()
	g1 := runtime.NumGoroutine()
	ends := float64(2 * n)
	b.ReportMetric(float64(h1-h0)/ends, "heap-B/link-end")
	b.ReportMetric(float64(s1-s0)/ends, "stack-B/link-end")
	b.ReportMetric(float64(h1-h0+s1-s0)/ends, "B/link-end")
	b.ReportMetric(float64(g1-g0)/ends, "goroutines/link-end")
}
