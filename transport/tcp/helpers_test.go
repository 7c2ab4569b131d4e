package tcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

func newID(t testing.TB) *envelope.Identity {
	t.Helper()
	id, err := envelope.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// logBuf collects log records for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuf) count(substr string) int { return strings.Count(b.String(), substr) }

func (b *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// node is one running transport with a channel handler.
type node struct {
	t      *Transport
	id     *envelope.Identity
	ln     net.Listener
	h      *chanHandler
	log    *logBuf
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *node) addr() string { return n.ln.Addr().String() }

// startNode runs a transport on a loopback listener until the test ends.
func startNode(t testing.TB, mod func(*Options)) *node {
	t.Helper()
	n := &node{id: newID(t), ln: listen(t), h: newChanHandler(), log: &logBuf{}, done: make(chan struct{})}
	o := Options{
		Identity: n.id, Listener: n.ln, Logger: n.log.logger(),
		HandshakeTimeout: 2 * time.Second, KeepaliveInterval: time.Second,
		RedialMin: 50 * time.Millisecond, RedialMax: 500 * time.Millisecond,
	}
	if mod != nil {
		mod(&o)
	}
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	n.t = tr
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		tr.Run(ctx, n.h)
	}()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

type event struct {
	kind string // up, recv, down
	link transport.Link
	data []byte
	err  error
}

type chanHandler struct{ ev chan event }

func newChanHandler() *chanHandler { return &chanHandler{ev: make(chan event, 4096)} }

func (h *chanHandler) LinkUp(l transport.Link) { h.ev <- event{kind: "up", link: l} }
func (h *chanHandler) Receive(l transport.Link, d []byte, m transport.Meta) {
	h.ev <- event{kind: "recv", link: l, data: d}
}
func (h *chanHandler) LinkDown(l transport.Link, err error) {
	h.ev <- event{kind: "down", link: l, err: err}
}

// wait returns the next event of kind, skipping others.
func (h *chanHandler) wait(t testing.TB, kind string, d time.Duration) event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case e := <-h.ev:
			if e.kind == kind {
				return e
			}
		case <-timer.C:
			t.Fatalf("no %s event within %v", kind, d)
		}
	}
}

// none asserts that no event of kind arrives within d.
func (h *chanHandler) none(t testing.TB, kind string, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case e := <-h.ev:
			if e.kind == kind {
				t.Fatalf("unexpected %s event (err %v)", kind, e.err)
			}
		case <-timer.C:
			return
		}
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
