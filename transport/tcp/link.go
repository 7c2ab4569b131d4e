package tcp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Link is one authenticated TCP connection to one neighbour. It implements
// transport.Link and transport.PQSecreter.
type Link struct {
	t        *Transport
	info     transport.Info
	addr     envelope.Address // the peer's address, cached for Linked
	conn     net.Conn
	sess     *session
	outbound bool
	remote   string
	up       time.Time

	q          chan []byte   // frames accepted by Send, owned copies
	done       chan struct{} // closed when the link goes down
	downOnce   sync.Once
	err        error         // why it went down; nil on local Close
	writerDone chan struct{} // closed when the write loop has ended

	framesIn, framesOut, bytesIn, bytesOut atomic.Uint64
	wireIn, wireOut, kaIn, kaOut           atomic.Uint64
}

// LinkStats is a snapshot of one link's counters.
type LinkStats struct {
	ID       string
	Peer     string // the peer's address (hex)
	Remote   string // the peer's IP:port
	Outbound bool   // we dialed
	PQ       bool   // the ML-KEM hybrid is in use
	Up       time.Time
	// Frame payload bytes and frames, each direction.
	FramesIn, FramesOut, BytesIn, BytesOut uint64
	// Bytes on the wire (record headers, tags, keepalives included).
	WireBytesIn, WireBytesOut   uint64
	KeepalivesIn, KeepalivesOut uint64
}

// Info implements transport.Link.
func (l *Link) Info() transport.Info { return l.info }

// PQSecret implements transport.PQSecreter: a 32-byte secret both ends
// derived from the ML-KEM-768 shared secret and the handshake transcript,
// or nil when the hybrid was not negotiated.
func (l *Link) PQSecret() []byte {
	if l.sess.pqSecret == nil {
		return nil
	}
	return append([]byte(nil), l.sess.pqSecret...)
}

// Remote is the peer's network address.
func (l *Link) Remote() string { return l.remote }

// Outbound reports whether this node dialed the link.
func (l *Link) Outbound() bool { return l.outbound }

// Done is closed when the link has gone down.
func (l *Link) Done() <-chan struct{} { return l.done }

// Stats returns a snapshot of the link's counters.
func (l *Link) Stats() LinkStats {
	return LinkStats{
		ID: l.info.ID, Peer: l.info.Peer.Address().String(), Remote: l.remote,
		Outbound: l.outbound, PQ: l.sess.pq, Up: l.up,
		FramesIn: l.framesIn.Load(), FramesOut: l.framesOut.Load(),
		BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load(),
		WireBytesIn: l.wireIn.Load(), WireBytesOut: l.wireOut.Load(),
		KeepalivesIn: l.kaIn.Load(), KeepalivesOut: l.kaOut.Load(),
	}
}

// Send implements transport.Link. Frames go out in the order Send accepted
// them; Priority is ignored (a TCP link is not scarce enough to reorder).
func (l *Link) Send(ctx context.Context, f transport.Frame) error {
	if err := transport.CheckMTU(f.Data, MaxFrameSize); err != nil {
		return err
	}
	select {
	case <-l.done:
		return transport.ErrClosed
	default:
	}
	buf := make([]byte, len(f.Data))
	copy(buf, f.Data)
	select {
	case l.q <- buf:
		return nil
	case <-l.done:
		return transport.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close implements transport.Link. It does not wait: the link's goroutine
// reports LinkDown(l, nil) once its loops have ended.
func (l *Link) Close() error {
	l.shut(nil)
	return nil
}

// shut takes the link down for reason err (the first reason wins).
func (l *Link) shut(err error) {
	l.downOnce.Do(func() {
		l.err = err
		close(l.done)
		l.conn.Close()
	})
}

// writeLoop owns the sending half: it seals queued frames into records,
// batching whatever is queued into one write, and sends a keepalive when
// nothing was sent for a keepalive interval.
func (l *Link) writeLoop() {
	defer close(l.writerDone)
	o := &l.t.opts
	ka := time.NewTimer(o.KeepaliveInterval)
	defer ka.Stop()
	for {
		var first []byte
		keepalive := false
		select {
		case <-l.done:
			return
		case first = <-l.q:
		case <-ka.C:
			keepalive = true
		}
		bp := l.t.getBuf()
		buf := (*bp)[:0]
		var err error
		frames, bytes := uint64(0), uint64(0)
		if keepalive {
			buf, err = appendRecord(buf, l.sess.send, recKeepalive, nil)
			l.kaOut.Add(1)
		} else {
			buf, err = appendFrame(buf, l.sess.send, first)
			frames, bytes = 1, uint64(len(first))
		batch:
			for err == nil && len(buf) < writeBatch {
				select {
				case f := <-l.q:
					buf, err = appendFrame(buf, l.sess.send, f)
					frames++
					bytes += uint64(len(f))
				default:
					break batch
				}
			}
		}
		if err == nil {
			l.conn.SetWriteDeadline(time.Now().Add(o.DeadPeerTimeout))
			_, err = l.conn.Write(buf)
		}
		l.wireOut.Add(uint64(len(buf)))
		*bp = buf
		l.t.putBuf(bp)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("%w: it stopped reading for %v", ErrDeadPeer, o.DeadPeerTimeout)
			}
			l.shut(err)
			return
		}
		l.framesOut.Add(frames)
		l.bytesOut.Add(bytes)
		ka.Reset(o.KeepaliveInterval)
	}
}

// writeBatch is how many bytes of records one write gathers at most.
const writeBatch = 64 << 10

// readLoop owns the receiving half and runs until the connection fails.
// Each record must arrive whole before the dead-peer timeout: a silent
// peer is dead (ErrDeadPeer), one that stops mid-record is stalled
// (ErrStalled).
func (l *Link) readLoop(h transport.Handler) error {
	idle := l.t.opts.DeadPeerTimeout
	br := bufio.NewReaderSize(l.conn, readBuffer)
	dec := decoder{open: l.sess.recv}
	var hdr [recordHeader]byte
	var lastSet time.Time
	for {
		if now := time.Now(); now.Sub(lastSet) > idle/8 {
			l.conn.SetReadDeadline(now.Add(idle))
			lastSet = now
		}
		n, err := io.ReadFull(br, hdr[:])
		if err != nil {
			return readErr(err, n > 0, idle)
		}
		size, err := recordLen(hdr[:])
		if err != nil {
			return err
		}
		ct := make([]byte, size)
		if _, err := io.ReadFull(br, ct); err != nil {
			return readErr(err, true, idle)
		}
		l.wireIn.Add(uint64(size + recordHeader))
		frame, ka, err := dec.record(ct)
		if err != nil {
			return err
		}
		if ka {
			l.kaIn.Add(1)
			continue
		}
		if frame == nil {
			continue
		}
		l.framesIn.Add(1)
		l.bytesIn.Add(uint64(len(frame)))
		h.Receive(l, frame, transport.Meta{})
	}
}

// readBuffer is the per-link read buffer: small, since an idle link keeps it.
const readBuffer = 4096

func readErr(err error, partial bool, idle time.Duration) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if partial {
			return fmt.Errorf("%w: no complete record within %v", ErrStalled, idle)
		}
		return fmt.Errorf("%w: nothing received for %v", ErrDeadPeer, idle)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("tcp: peer closed the connection: %w", err)
	}
	return err
}
