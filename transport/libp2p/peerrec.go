//go:build !router

package libp2p

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// The peer-record rendezvous: every node publishes its signed peer record
// (a libp2p record.Envelope holding a peer.PeerRecord, the format identify
// already exchanges) on its network's peers topic; the others validate it,
// remember a bounded number and dial the nodes they are not connected to.
// Nodes that share a bootstrap node thus end up directly connected without
// the DHT (docs/libp2p.md, "Finding islands").
const (
	// MaxRecordSize bounds a peers-topic message (a record with 8 long
	// addresses is about 1.2 KB).
	MaxRecordSize = 2048
	// MaxRecordAddrs and MaxRecordAddrLen bound a record's addresses
	// (binary multiaddr bytes).
	MaxRecordAddrs   = 8
	MaxRecordAddrLen = 128
	// maxRecords is how many other nodes' records a node remembers; the
	// oldest goes first.
	maxRecords = 256
	// Each author may get recordBurst records accepted, then one per
	// recordEvery (a node publishes at start with backoff, then every
	// RendezvousInterval, and when its addresses change).
	recordBurst = 8
	recordEvery = 20 * time.Second
	// All authors together: recordGlobalRate per second, burst
	// recordGlobalBurst (a network of a few hundred nodes republishing
	// every 5 minutes needs about one a second).
	recordGlobalRate  = 20
	recordGlobalBurst = 200
	// recordDials bounds concurrent dials to record addresses.
	recordDials = 4
)

// Reasons a peers-topic message is refused (in Stats.GossipRejected and
// GossipIgnored, and the node's gossip metrics).
const (
	RejectRecordSize      = "record_size"      // above MaxRecordSize
	RejectRecordMalformed = "record_malformed" // not a signed peer record envelope
	RejectRecordSignature = "record_signature" // the envelope's signature fails
	RejectRecordSigner    = "record_signer"    // signed by, or naming, another peer than the author
	RejectRecordAddrs     = "record_addrs"     // too many or too long addresses
	IgnoreRecordOld       = "record_old"       // sequence not newer than the last seen from the author
	IgnoreRecordRate      = "record_rate"      // the author or all authors over their rate
)

// PeersTopic is the GossipSub topic of a network's peer records, named
// like the envelope topics (TopicName).
func PeersTopic(networkID string) string { return "/meshd/1/" + networkID + "/peers" }

// decodePeerRecord checks the bytes of a peers-topic message published by
// author: a signed peer record envelope (domain libp2p-peer-record) whose
// signature holds, signed by author's key, naming author, with at most
// MaxRecordAddrs addresses of at most MaxRecordAddrLen bytes. It returns
// the record, or the Reject* reason.
func decodePeerRecord(data []byte, author peer.ID) (*peer.PeerRecord, string) {
	if len(data) > MaxRecordSize {
		return nil, RejectRecordSize
	}
	// The signer first (no signature check yet: cheap), then the
	// signature.
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return nil, RejectRecordMalformed
	}
	if !author.MatchesPublicKey(env.PublicKey) {
		return nil, RejectRecordSigner
	}
	_, rec, err := record.ConsumeEnvelope(data, peer.PeerRecordEnvelopeDomain)
	if err != nil {
		if errors.Is(err, record.ErrInvalidSignature) {
			return nil, RejectRecordSignature
		}
		return nil, RejectRecordMalformed
	}
	pr, ok := rec.(*peer.PeerRecord)
	if !ok {
		return nil, RejectRecordMalformed
	}
	if pr.PeerID != author {
		return nil, RejectRecordSigner
	}
	if len(pr.Addrs) > MaxRecordAddrs {
		return nil, RejectRecordAddrs
	}
	for _, a := range pr.Addrs {
		if len(a.Bytes()) > MaxRecordAddrLen {
			return nil, RejectRecordAddrs
		}
	}
	return pr, ""
}

// addrClass orders addresses by reach: public, private (RFC 1918, ULA,
// CGNAT), loopback. Unspecified and link-local addresses are unusable
// (-1): they mean nothing on another host.
func addrClass(a ma.Multiaddr) int {
	switch {
	case manet.IsIPUnspecified(a), manet.IsIP6LinkLocal(a):
		return -1
	case manet.IsIPLoopback(a):
		return 2
	case manet.IsPrivateAddr(a):
		return 1
	}
	return 0
}

// usableAddrs keeps the addresses of a record that make sense to dial when
// the record came through a connection from via: public ones always,
// private ones only if via is private or loopback (the author may be on our
// network), loopback ones only if via is loopback (the same host: tests,
// several nodes on one machine). A record relayed from the internet thus
// never makes the node dial into its own LAN.
func usableAddrs(addrs []ma.Multiaddr, via ma.Multiaddr) []ma.Multiaddr {
	reach := 0
	if via != nil {
		reach = max(0, addrClass(via))
	}
	var out []ma.Multiaddr
	for _, a := range addrs {
		if c := addrClass(a); c >= 0 && c <= reach {
			out = append(out, a)
		}
	}
	return out
}

// heldRecord is what the node remembers of another node's record.
type heldRecord struct {
	seq   uint64
	addrs []ma.Multiaddr // usable ones (usableAddrs)
	at    time.Time
}

// recordStore remembers at most max records, the oldest out.
type recordStore struct {
	max int
	mu  sync.Mutex
	m   map[peer.ID]heldRecord
}

func newRecordStore(max int) *recordStore {
	return &recordStore{max: max, m: map[peer.ID]heldRecord{}}
}

// newer reports whether seq is newer than what is held for p.
func (s *recordStore) newer(p peer.ID, seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[p]
	return !ok || seq > r.seq
}

// put keeps a record unless a newer one is held; it reports whether it
// did.
func (s *recordStore) put(p peer.ID, r heldRecord) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[p]; ok {
		if r.seq <= old.seq {
			return false
		}
	} else if len(s.m) >= s.max {
		var oldest peer.ID
		var at time.Time
		for q, h := range s.m {
			if at.IsZero() || h.at.Before(at) {
				oldest, at = q, h.at
			}
		}
		delete(s.m, oldest)
	}
	s.m[p] = r
	return true
}

func (s *recordStore) get(p peer.ID) (heldRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[p]
	return r, ok
}

func (s *recordStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// all returns the peers held with their addresses.
func (s *recordStore) all() []peer.AddrInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]peer.AddrInfo, 0, len(s.m))
	for p, r := range s.m {
		out = append(out, peer.AddrInfo{ID: p, Addrs: r.addrs})
	}
	return out
}

// recordValidator checks a peers-topic message before GossipSub delivers
// or forwards it: size and author (reject), the author's and the topic's
// rate and the verification budget (ignore), the record (reject), then its
// sequence against the last one seen (ignore: an honest relay may forward
// a record late).
func (g *gossipLink) recordValidator() pubsub.ValidatorEx {
	return func(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		if from == g.t.pid {
			return pubsub.ValidationAccept // our own record
		}
		if len(m.Data) > MaxRecordSize {
			return g.reject(RejectRecordSize)
		}
		author := m.GetFrom()
		if _, err := MeshKey(author); err != nil {
			return g.reject(RejectPublisher)
		}
		now := time.Now()
		g.limMu.Lock()
		ok := g.recLim.allow(0, author, now) && g.recGlobal.take(now) && g.verify.take(now)
		g.limMu.Unlock()
		if !ok {
			return g.ignore(IgnoreRecordRate)
		}
		rec, reason := decodePeerRecord(m.Data, author)
		if rec == nil {
			return g.reject(reason)
		}
		if !g.records.newer(author, rec.Seq) {
			return g.ignore(IgnoreRecordOld)
		}
		m.ValidatorData = rec
		return pubsub.ValidationAccept
	}
}

// readRecords takes the accepted records of other nodes off the
// subscription, remembers them and dials the nodes not connected yet.
func (g *gossipLink) readRecords(ctx context.Context) {
	for {
		m, err := g.peersSub.Next(ctx)
		if err != nil {
			return
		}
		if m.ReceivedFrom == g.t.pid {
			continue
		}
		rec, ok := m.ValidatorData.(*peer.PeerRecord)
		if !ok {
			continue
		}
		g.remember(rec, m.ReceivedFrom)
	}
}

// remember keeps rec, received through a connection from via, and dials
// its author if it is new to this node.
func (g *gossipLink) remember(rec *peer.PeerRecord, via peer.ID) {
	if rec.PeerID == g.t.pid {
		return // our own record, relayed back
	}
	var viaAddr ma.Multiaddr
	if bh := g.t.hostOrNil(); bh != nil {
		if cs := bh.Network().ConnsToPeer(via); len(cs) > 0 {
			viaAddr = cs[0].RemoteMultiaddr()
		}
	}
	h := heldRecord{seq: rec.Seq, addrs: usableAddrs(rec.Addrs, viaAddr), at: time.Now()}
	if !g.records.put(rec.PeerID, h) {
		return
	}
	g.recordsAccepted.Add(1)
	g.dialRecord(peer.AddrInfo{ID: rec.PeerID, Addrs: h.addrs})
}

// dialRecord connects to a node known from its record, in the background,
// unless it is connected, has no usable address, the node is at the
// connection manager's low watermark (above it connections would only be
// trimmed again), or recordDials dials are under way. Identify then opens
// the envelope link (watchPeers).
func (g *gossipLink) dialRecord(ai peer.AddrInfo) {
	bh := g.t.hostOrNil()
	if bh == nil || ai.ID == g.t.pid || len(ai.Addrs) == 0 ||
		bh.Network().Connectedness(ai.ID) == network.Connected ||
		len(bh.Network().Peers()) >= g.t.opts.ConnsLow {
		return
	}
	select {
	case g.recDialSem <- struct{}{}:
	default:
		return
	}
	if !g.t.spawn(func() {
		defer func() { <-g.recDialSem }()
		if err := g.t.connect(ai); err != nil {
			g.t.logEvery("record-dial:"+ai.ID.String(), slog.LevelDebug, "libp2p: could not dial a node known from its peer record", "peer", ai.ID.String(), "err", err.Error())
		}
	}) {
		<-g.recDialSem
	}
}

// ownRecord seals this node's peer record: its listen addresses, public
// ones first, at most MaxRecordAddrs, with a time-based sequence (newer
// after a restart too).
func (t *Transport) ownRecord() ([]byte, error) {
	bh := t.hostOrNil()
	if bh == nil {
		return nil, ErrNotRunning
	}
	var addrs []ma.Multiaddr
	for _, a := range bh.Addrs() {
		if addrClass(a) >= 0 && len(a.Bytes()) <= MaxRecordAddrLen {
			addrs = append(addrs, a)
		}
	}
	slices.SortStableFunc(addrs, func(a, b ma.Multiaddr) int { return addrClass(a) - addrClass(b) })
	if len(addrs) > MaxRecordAddrs {
		addrs = addrs[:MaxRecordAddrs]
	}
	rec := &peer.PeerRecord{PeerID: t.pid, Addrs: addrs, Seq: peer.TimestampSeq()}
	env, err := record.Seal(rec, t.priv)
	if err != nil {
		return nil, err
	}
	return env.Marshal()
}

// publishRecord publishes this node's record if the peers topic has a peer
// to take it; it reports whether it did.
func (g *gossipLink) publishRecord(ctx context.Context) bool {
	if len(g.peersTopic.ListPeers()) == 0 {
		return false
	}
	data, err := g.t.ownRecord()
	if err != nil {
		return false
	}
	if err := g.peersTopic.Publish(ctx, data); err != nil {
		g.t.logEvery("record-publish", slog.LevelDebug, "libp2p: publishing the peer record failed", "err", err.Error())
		return false
	}
	g.recordsPublished.Add(1)
	return true
}

// recordLoop publishes the node's record as soon as the peers topic has a
// peer (joined: a PeerJoin on the topic, peerJoins), again after 2, 4, 8
// ... seconds up to RendezvousInterval, then every RendezvousInterval
// (±10%), and a second after its addresses change. A node without peers
// sleeps until one joins (no polling).
func (g *gossipLink) recordLoop(ctx context.Context, addrs <-chan any, joined <-chan struct{}) {
	wait := 2 * time.Second
	var changed <-chan time.Time
	for {
		var timer *time.Timer
		var join <-chan struct{}
		switch {
		case g.publishRecord(ctx):
			iv := g.t.opts.RendezvousInterval
			next := min(wait, iv)
			next += time.Duration((rand.Float64()*0.2 - 0.1) * float64(next))
			wait = min(2*wait, iv)
			timer = time.NewTimer(next)
		case len(g.peersTopic.ListPeers()) == 0:
			join = joined // no peer on the topic yet
			timer = time.NewTimer(recordIdleWait)
		default:
			timer = time.NewTimer(250 * time.Millisecond) // publishing failed: retry
		}
	sleep:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
				break sleep
			case <-join:
				timer.Stop()
				break sleep
			case _, ok := <-addrs:
				if !ok {
					addrs = nil
				} else if changed == nil {
					changed = time.After(time.Second)
				}
			case <-changed:
				changed = nil
				timer.Stop()
				break sleep
			}
		}
	}
}

// recordIdleWait bounds how long recordLoop waits for a peer to join
// the peers topic before it looks again (a missed join event costs no
// more than this).
const recordIdleWait = time.Minute

// peerJoins signals on the returned channel (capacity 1) when a peer joins
// topic, until ctx ends.
func (t *Transport) peerJoins(ctx context.Context, topic *pubsub.Topic) (<-chan struct{}, error) {
	ev, err := topic.EventHandler()
	if err != nil {
		return nil, err
	}
	joined := make(chan struct{}, 1)
	if !t.spawn(func() {
		defer ev.Cancel()
		for {
			e, err := ev.NextPeerEvent(ctx)
			if err != nil {
				return
			}
			if e.Type == pubsub.PeerJoin {
				select {
				case joined <- struct{}{}:
				default:
				}
			}
		}
	}) {
		ev.Cancel()
	}
	return joined, nil
}

// hostOrNil returns the host while running.
func (t *Transport) hostOrNil() *builtHost {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.host
}

// addRecordAddrs gives the peerstore the addresses of p's record, when it
// has none (a unicast to a gossip neighbour not connected yet).
func (t *Transport) addRecordAddrs(bh *builtHost, p peer.ID) {
	g := t.gossipOrNil()
	if g == nil || len(bh.Peerstore().Addrs(p)) > 0 {
		return
	}
	if r, ok := g.records.get(p); ok && len(r.addrs) > 0 {
		bh.Peerstore().AddAddrs(p, r.addrs, peerstore.TempAddrTTL)
	}
}

func (t *Transport) gossipOrNil() *gossipLink {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gossip
}
