package routing

import (
	"sort"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Read-only views of the router's state for the local API. They copy, so
// the caller may keep them; they must be called on the router's goroutine
// like every other method.

// PeerInfo is what the router knows about one identity.
type PeerInfo struct {
	Address envelope.Address
	Key     envelope.PublicKey
	HasKey  bool
	// AppData is the application data of the peer's latest verified
	// announce (a self-chosen display name): unverified by anyone.
	AppData []byte
	// Seq is the latest announce sequence accepted.
	Seq    uint32
	HasSeq bool
	// Reachable says whether a valid route exists now.
	Reachable bool
	LastUsed  time.Time
}

// RouteInfo is the selected route to a destination.
type RouteInfo struct {
	Dest     envelope.Address
	Link     LinkID
	Via      transport.Addr
	Hops     uint8 // hops after the next hop
	Metric   uint32
	Expires  time.Time
	Seq      uint32
	LinkKind string
}

// NeighbourInfo is one neighbour heard on a link.
type NeighbourInfo struct {
	Link      LinkID
	Addr      transport.Addr
	SNR       float32
	HasSNR    bool
	LastHeard time.Time
	// Peer is the neighbour's identity when the link authenticates it.
	Peer    envelope.PublicKey
	HasPeer bool
}

// Peer returns what is known about the identity at a.
func (r *Router) Peer(a envelope.Address) (PeerInfo, bool) {
	p := r.peers[a]
	if p == nil {
		return PeerInfo{}, false
	}
	return r.peerInfo(p), true
}

func (r *Router) peerInfo(p *peer) PeerInfo {
	pi := PeerInfo{Address: p.addr, Key: p.key, HasKey: p.hasKey, Seq: p.seq, HasSeq: p.hasSeq,
		Reachable: p.best(r.now) != nil, LastUsed: p.lastUsed}
	if len(p.ann) > 0 {
		if e, err := envelope.Parse(p.ann); err == nil {
			pi.AppData = append([]byte(nil), e.Body...)
		}
	}
	return pi
}

// Peers lists the known identities, by address.
func (r *Router) Peers(now time.Time) []PeerInfo {
	r.now = now
	out := make([]PeerInfo, 0, len(r.peers))
	for _, p := range r.peers {
		out = append(out, r.peerInfo(p))
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].Address[:]) < string(out[j].Address[:]) })
	return out
}

// Routes lists the selected valid route of every reachable destination.
func (r *Router) Routes(now time.Time) []RouteInfo {
	var out []RouteInfo
	for _, p := range r.peers {
		rt := p.best(now)
		if rt == nil {
			continue
		}
		out = append(out, RouteInfo{Dest: p.addr, Link: rt.link.id, Via: rt.nb, Hops: rt.hops,
			Metric: r.metric(rt), Expires: rt.expires, Seq: rt.seq, LinkKind: rt.link.info.Kind})
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].Dest[:]) < string(out[j].Dest[:]) })
	return out
}

// Neighbours lists the neighbours heard on every link.
func (r *Router) Neighbours() []NeighbourInfo {
	var out []NeighbourInfo
	for _, l := range r.links {
		if !l.info.Broadcast {
			ni := NeighbourInfo{Link: l.id, Peer: l.info.Peer, HasPeer: l.info.HasPeer}
			if nb := l.neighbours[""]; nb != nil {
				ni.SNR, ni.HasSNR, ni.LastHeard = nb.snr, nb.hasSNR, nb.lastHeard
			}
			out = append(out, ni)
			continue
		}
		for a, nb := range l.neighbours {
			out = append(out, NeighbourInfo{Link: l.id, Addr: a, SNR: nb.snr, HasSNR: nb.hasSNR, LastHeard: nb.lastHeard})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Link != out[j].Link {
			return out[i].Link < out[j].Link
		}
		return out[i].Addr < out[j].Addr
	})
	return out
}

// OutboxLen returns how many own messages await acknowledgement, and
// HeldLen how many envelopes and bytes are held for others.
func (r *Router) OutboxLen() int { return len(r.outbox) }

// HeldLen returns the envelopes and bytes held for store-and-forward.
func (r *Router) HeldLen() (n, bytes int) { return len(r.held), r.heldBytes }

// Pending reports whether an own message is still in the outbox.
func (r *Router) Pending(id MsgID) bool {
	for _, m := range r.outbox {
		if m.rec.ID == id {
			return true
		}
	}
	return false
}

// Flush commits pending store writes now, regardless of CommitDelay (a
// clean shutdown), and releases what waited for them.
func (r *Router) Flush(now time.Time) {
	r.begin(now)
	r.commit(now)
	r.recomputeWake()
}
