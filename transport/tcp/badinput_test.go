package tcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/openmeshd/meshd/transport"
)

// linkedPair starts two nodes with an established link a→b.
func linkedPair(t *testing.T, mod func(*Options)) (a, b *node, la, lb transport.Link) {
	t.Helper()
	a = startNode(t, mod)
	b = startNode(t, mod)
	l, err := a.t.Dial(ctxT(t), Peer{Endpoint: b.addr()})
	if err != nil {
		t.Fatal(err)
	}
	a.h.wait(t, "up", time.Second)
	return a, b, l, b.h.wait(t, "up", 2*time.Second).link
}

// pingPong checks that the established link still carries frames both ways.
func pingPong(t *testing.T, a, b *node, la, lb transport.Link) {
	t.Helper()
	for _, d := range []struct {
		l  transport.Link
		to *node
	}{{la, b}, {lb, a}} {
		msg := []byte("still alive")
		if err := d.l.Send(ctxT(t), transport.Frame{Data: msg}); err != nil {
			t.Fatalf("existing link broken: %v", err)
		}
		if got := d.to.h.wait(t, "recv", 2*time.Second); !bytes.Equal(got.data, msg) {
			t.Fatalf("existing link delivered %q", got.data)
		}
	}
}

// closedWithin asserts that the server closes c within d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("server kept the connection open for %v", d)
		}
	}
}

func TestGarbageBeforeHandshake(t *testing.T) {
	a, b, la, lb := linkedPair(t, nil)
	for _, garbage := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}, // a TLS ClientHello
		bytes.Repeat([]byte{0}, 10000),
		append(appendPreamble(nil), bytes.Repeat([]byte{0xAB}, 3000)...), // right preamble, garbage after
	} {
		for i := 0; i < 20; i++ {
			c, err := net.Dial("tcp", b.addr())
			if err != nil {
				t.Fatal(err)
			}
			c.Write(garbage)
			closedWithin(t, c, 2*time.Second)
			c.Close()
		}
	}
	pingPong(t, a, b, la, lb)
	st := b.t.Stats()
	if st.HandshakeFailures[ReasonMalformed] == 0 {
		t.Errorf("no malformed handshakes counted: %+v", st.HandshakeFailures)
	}
	if n := b.log.count("handshake failed") + b.log.count("refused handshake"); n > 3 {
		t.Errorf("80 bad connections logged %d lines, want one per reason:\n%s", n, b.log)
	}
}

func TestOversizedLengthPrefix(t *testing.T) {
	a, b, la, lb := linkedPair(t, nil)
	// Right preamble, then a handshake message claiming 65535 bytes: refused
	// on the prefix alone, before anything is allocated or read.
	c, err := net.Dial("tcp", b.addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(append(appendPreamble(nil), 0xff, 0xff))
	closedWithin(t, c, time.Second)
	c.Close()
	if !waitFor(func() bool { return b.log.count("handshake message of 65535 bytes") == 1 }) {
		t.Fatalf("oversized prefix not logged:\n%s", b.log)
	}
	pingPong(t, a, b, la, lb)
}

func TestOversizedFrameInSession(t *testing.T) {
	a, b, la, lb := linkedPair(t, nil)
	// An authenticated peer sends two "more" pieces: 131036 bytes of frame,
	// above MaxFrameSize. The receiver drops the link with ErrProtocol.
	c, sess := rawSession(t, b.addr())
	var buf []byte
	var err error
	for i := 0; i < 2; i++ {
		if buf, err = appendRecord(buf, sess.send, recMore, make([]byte, maxPiece)); err != nil {
			t.Fatal(err)
		}
	}
	c.Write(buf)
	down := waitDownFrom(t, b, 2*time.Second)
	if !errors.Is(down, ErrProtocol) {
		t.Fatalf("link down with %v, want ErrProtocol", down)
	}
	pingPong(t, a, b, la, lb)
}

func TestSlowloris(t *testing.T) {
	mod := func(o *Options) {
		o.HandshakeTimeout = 300 * time.Millisecond
		o.KeepaliveInterval = 100 * time.Millisecond
		o.DeadPeerTimeout = 400 * time.Millisecond
	}
	a, b, la, lb := linkedPair(t, mod)
	t.Run("mid-handshake", func(t *testing.T) {
		c, err := net.Dial("tcp", b.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The preamble and half of message 1, then nothing.
		c.Write(append(appendPreamble(nil), 0x04, 0xa0, 1, 2, 3))
		start := time.Now()
		closedWithin(t, c, 2*time.Second)
		if el := time.Since(start); el > 1500*time.Millisecond {
			t.Errorf("stalled handshake closed after %v, timeout is 300ms", el)
		}
	})
	t.Run("mid-frame", func(t *testing.T) {
		c, sess := rawSession(t, b.addr())
		rec, err := appendRecord(nil, sess.send, recFrame, make([]byte, 1000))
		if err != nil {
			t.Fatal(err)
		}
		// Trickle: half the record, then a byte every 100 ms (fast enough
		// to never look silent, too slow to ever finish).
		c.Write(rec[:500])
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 500; i < len(rec); i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := c.Write(rec[i : i+1]); err != nil {
					return
				}
			}
		}()
		down := waitDownFrom(t, b, 2*time.Second)
		close(stop)
		wg.Wait()
		if !errors.Is(down, ErrStalled) {
			t.Fatalf("link down with %v, want ErrStalled", down)
		}
	})
	pingPong(t, a, b, la, lb)
}

func TestHalfOpenFlood(t *testing.T) {
	mod := func(o *Options) {
		o.MaxHandshakes = 16
		o.HandshakeTimeout = 500 * time.Millisecond
	}
	a, b, la, lb := linkedPair(t, mod)
	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", b.addr())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%100 == 0 {
			pingPong(t, a, b, la, lb) // the existing link keeps working
		}
	}
	// Every half-open connection is closed by the server: at once when over
	// the limit, after the handshake timeout otherwise.
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c)
		}()
	}
	wg.Wait()
	t.Logf("all %d half-open connections closed by the server within %v", n, time.Since(start))
	for _, c := range conns {
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatal("a half-open connection was left open")
		}
	}
	pingPong(t, a, b, la, lb)
	st := b.t.Stats()
	t.Logf("refused at accept: %d, handshake failures: %v", st.InboundRefused, st.HandshakeFailures)
	if st.InboundRefused == 0 {
		t.Error("the half-open limit never refused a connection")
	}
	if got := b.log.count("too many half-open handshakes"); got != 1 {
		t.Errorf("the limit was logged %d times, want once:\n%s", got, b.log)
	}
	if got := b.log.count("reason=timeout"); got > 1 {
		t.Errorf("handshake timeouts logged %d times, want once", got)
	}
	// And a new peer still gets in.
	c := startNode(t, mod)
	if _, err := c.t.Dial(ctxT(t), Peer{Endpoint: b.addr()}); err != nil {
		t.Fatalf("a legitimate peer after the flood: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func waitFor(f func() bool) bool {
	deadline := time.Now().Add(3 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// rawSession completes a real handshake with addr from a transport that is
// not running, and hands back the raw connection and session, so a test
// can misbehave after authenticating.
func rawSession(t *testing.T, addr string) (net.Conn, *session) {
	t.Helper()
	tr, err := New(Options{Identity: newID(t)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sess, err := tr.handshake(context.Background(), c, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, sess
}

// waitDownFrom waits for the LinkDown of the link the raw session made on n.
func waitDownFrom(t *testing.T, n *node, d time.Duration) error {
	t.Helper()
	up := n.h.wait(t, "up", d)
	for {
		e := n.h.wait(t, "down", d)
		if e.link == up.link {
			return e.err
		}
	}
}

func TestRecordLenBounds(t *testing.T) {
	var hdr [2]byte
	for _, tc := range []struct {
		n  int
		ok bool
	}{{0, false}, {16, false}, {17, true}, {65535, true}} {
		binary.BigEndian.PutUint16(hdr[:], uint16(tc.n))
		_, err := recordLen(hdr[:])
		if (err == nil) != tc.ok {
			t.Errorf("recordLen(%d): %v", tc.n, err)
		}
	}
}
