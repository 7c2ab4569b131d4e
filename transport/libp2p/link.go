//go:build !router

package libp2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/libp2p/framing"
)

// MaxFrameSize is the largest frame an envelope stream carries: one
// envelope of the largest size.
const MaxFrameSize = envelope.MaxSize

// Errors a link goes down with.
var (
	// ErrReplaced: the peer opened a newer envelope stream.
	ErrReplaced = errors.New("libp2p: replaced by a newer stream from the peer")
	// ErrPeerClosed: the peer closed the stream or the connection died.
	ErrPeerClosed = errors.New("libp2p: peer closed the link")
	// ErrStalled: the peer did not take a frame within WriteTimeout.
	ErrStalled = errors.New("libp2p: peer stopped reading")
	// ErrNotRunning: the transport is not running.
	ErrNotRunning = errors.New("libp2p: transport not running")
)

// Link is one envelope stream to one meshd node over libp2p. It implements
// transport.Link.
type Link struct {
	t        *Transport
	info     transport.Info
	peer     peer.ID
	s        network.Stream
	outbound bool
	up       time.Time

	q          chan []byte
	done       chan struct{}
	downOnce   sync.Once
	err        error
	writerDone chan struct{}

	framesIn, framesOut, bytesIn, bytesOut atomic.Uint64
}

// LinkStats is a snapshot of one link's counters.
type LinkStats struct {
	ID       string
	Peer     string // the peer's meshd address (hex)
	PeerID   string // the peer's libp2p peer ID
	Remote   string // the connection's remote multiaddr
	Outbound bool
	Up       time.Time

	FramesIn, FramesOut, BytesIn, BytesOut uint64
}

// Info implements transport.Link.
func (l *Link) Info() transport.Info { return l.info }

// PeerID is the peer's libp2p peer ID.
func (l *Link) PeerID() peer.ID { return l.peer }

// Done is closed when the link has gone down.
func (l *Link) Done() <-chan struct{} { return l.done }

// Stats returns a snapshot of the link's counters.
func (l *Link) Stats() LinkStats {
	return LinkStats{ID: l.info.ID, Peer: l.info.Peer.Address().String(), PeerID: l.peer.String(),
		Remote: l.s.Conn().RemoteMultiaddr().String(), Outbound: l.outbound, Up: l.up,
		FramesIn: l.framesIn.Load(), FramesOut: l.framesOut.Load(), BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load()}
}

// Send implements transport.Link. Frames go out in the order Send accepted
// them; Priority is ignored.
func (l *Link) Send(ctx context.Context, f transport.Frame) error {
	if err := transport.CheckMTU(f.Data, MaxFrameSize); err != nil {
		return err
	}
	select {
	case <-l.done:
		return transport.ErrClosed
	default:
	}
	buf := append([]byte(nil), f.Data...)
	select {
	case l.q <- buf:
		return nil
	case <-l.done:
		return transport.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close implements transport.Link. It does not wait: LinkDown(l, nil)
// follows once the link's goroutines have ended.
func (l *Link) Close() error {
	l.shut(nil)
	return nil
}

// shut takes the link down for reason err (the first reason wins). A local
// close ends the stream gracefully (the peer reads EOF); a failure resets
// it.
func (l *Link) shut(err error) {
	l.downOnce.Do(func() {
		l.err = err
		close(l.done)
		if err == nil {
			l.s.Close()
		} else {
			l.s.Reset()
		}
	})
}

// writeBatch bounds the bytes one stream write gathers.
const writeBatch = 64 << 10

func (l *Link) writeLoop() {
	defer close(l.writerDone)
	var buf []byte
	for {
		var first []byte
		select {
		case <-l.done:
			return
		case first = <-l.q:
		}
		buf = framing.Append(buf[:0], first)
		frames, bytes := uint64(1), uint64(len(first))
	batch:
		for len(buf) < writeBatch {
			select {
			case f := <-l.q:
				buf = framing.Append(buf, f)
				frames++
				bytes += uint64(len(f))
			default:
				break batch
			}
		}
		l.s.SetWriteDeadline(time.Now().Add(l.t.opts.WriteTimeout))
		if _, err := l.s.Write(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("%w for %v", ErrStalled, l.t.opts.WriteTimeout)
			} else {
				err = fmt.Errorf("%w: %v", ErrPeerClosed, err)
			}
			l.shut(err)
			return
		}
		l.framesOut.Add(frames)
		l.bytesOut.Add(bytes)
		if cap(buf) > 2*writeBatch+MaxFrameSize {
			buf = nil
		}
	}
}

func (l *Link) readLoop(h transport.Handler) error {
	br := bufio.NewReaderSize(l.s, 4096)
	for {
		f, err := framing.Read(br, MaxFrameSize)
		if err != nil {
			if errors.Is(err, framing.ErrLength) {
				l.t.count(&l.t.st.badFrames)
				return err
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: end of stream", ErrPeerClosed)
			}
			return fmt.Errorf("%w: %v", ErrPeerClosed, err)
		}
		l.framesIn.Add(1)
		l.bytesIn.Add(uint64(len(f)))
		h.Receive(l, f, transport.Meta{})
	}
}
