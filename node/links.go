package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

// linkQueue is how many frames wait for one link before new ones are
// dropped (the router retransmits what matters).
const linkQueue = 256

// sendTimeout bounds one Send on a link (a LoRa link paces by airtime and
// may block for a while).
const sendTimeout = 2 * time.Minute

// linkState is the node's side of one link: a queue and the goroutine that
// feeds it to the link, so the loop never blocks on a slow link.
type linkState struct {
	l      transport.Link
	info   transport.Info
	up     time.Time
	q      chan transport.Frame
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func newLinkState(l transport.Link, now time.Time, st *nodeStats, log func(msg string, args ...any)) *linkState {
	ctx, cancel := context.WithCancel(context.Background())
	ls := &linkState{l: l, info: l.Info(), up: now, q: make(chan transport.Frame, linkQueue), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ls.done)
		for f := range ls.q {
			sctx, scancel := context.WithTimeout(ctx, sendTimeout)
			err := l.Send(sctx, f)
			scancel()
			switch {
			case err == nil:
				st.framesOut.Add(1)
				st.bytesOut.Add(uint64(len(f.Data)))
			case errors.Is(err, transport.ErrClosed), ctx.Err() != nil:
				// Down; LinkDown follows.
			default:
				st.sendErrors.Add(1)
				log("send failed", "link", ls.info.ID, "err", err)
			}
		}
	}()
	return ls
}

// enqueue hands a frame to the link's goroutine without blocking.
func (ls *linkState) enqueue(f transport.Frame, st *nodeStats) {
	select {
	case ls.q <- f:
	default:
		st.queueDrops.Add(1)
	}
}

// stop ends the goroutine (idempotent) without waiting for queued frames.
func (ls *linkState) stop() {
	ls.once.Do(func() {
		ls.cancel()
		close(ls.q)
	})
}

// The Node is the transports' Handler: it forwards every event to the loop.

// LinkUp implements transport.Handler.
func (n *Node) LinkUp(l transport.Link) {
	info := l.Info()
	ri := routing.LinkInfo{Info: info}
	if p, ok := l.(transport.PQSecreter); ok {
		ri.PQSecret = p.PQSecret()
	}
	if info.Kind == "lora" && n.radio != nil {
		ri.Airtime = n.radio.Airtime
		ri.DutyCycle = n.radio.dutyCycle
	}
	if o, ok := l.(transport.Overhearer); ok && info.Broadcast {
		// The router takes a neighbour passing a frame on as its
		// acknowledgement (and then asks the link for none: NoAck).
		o.Overhear(true)
		ri.Overhears = true
	}
	_ = n.post(context.Background(), func(now time.Time) {
		if old := n.links[routing.LinkID(info.ID)]; old != nil {
			old.stop()
		}
		n.links[routing.LinkID(info.ID)] = newLinkState(l, now, &n.stats, n.log.Warn)
		n.router.LinkUp(now, ri)
		n.linksChanged(now)
		n.stats.linkUps.Add(1)
		n.hub.publish("link-up", now, linkView(info, now, now))
		n.log.Info("link up", "link", info.ID, "kind", info.Kind, "peer", peerOf(info))
	})
}

// Receive implements transport.Handler.
func (n *Node) Receive(l transport.Link, data []byte, m transport.Meta) {
	n.stats.framesIn.Add(1)
	n.stats.bytesIn.Add(uint64(len(data)))
	id := routing.LinkID(l.Info().ID)
	_ = n.post(context.Background(), func(now time.Time) {
		if m.Overheard {
			// Addressed to another neighbour: a passive hop
			// acknowledgement, never forwarded.
			n.router.Overhear(now, id, data, m)
			return
		}
		n.router.Receive(now, id, data, m)
	})
}

// LinkDown implements transport.Handler.
func (n *Node) LinkDown(l transport.Link, err error) {
	info := l.Info()
	_ = n.post(context.Background(), func(now time.Time) {
		id := routing.LinkID(info.ID)
		if ls := n.links[id]; ls != nil {
			ls.stop()
			delete(n.links, id)
		}
		n.router.LinkDown(now, id)
		n.linksChanged(now)
		n.stats.linkDowns.Add(1)
		reason := ""
		if err != nil {
			reason = err.Error()
		}
		n.hub.publish("link-down", now, map[string]any{"id": info.ID, "kind": info.Kind, "peer": peerOf(info), "reason": reason})
		n.log.Info("link down", "link", info.ID, "kind", info.Kind, "peer", peerOf(info), "reason", reason)
	})
}

func peerOf(info transport.Info) string {
	if info.HasPeer {
		return info.Peer.Address().String()
	}
	return ""
}

// LinkView is a link as the API shows it.
type LinkView struct {
	ID        string  `json:"id"`
	Kind      string  `json:"kind"`
	Peer      string  `json:"peer,omitempty"`
	MTU       int     `json:"mtu"`
	Bitrate   int     `json:"bitrate"`
	Cost      int     `json:"cost"`
	Broadcast bool    `json:"broadcast"`
	UpSeconds float64 `json:"up_seconds"`
	Queued    int     `json:"queued"`
}

func linkView(info transport.Info, up, now time.Time) LinkView {
	return LinkView{ID: info.ID, Kind: info.Kind, Peer: peerOf(info), MTU: info.MTU, Bitrate: info.Bitrate,
		Cost: info.Cost, Broadcast: info.Broadcast, UpSeconds: now.Sub(up).Seconds()}
}
