//go:build !router

package libp2p

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Gossip topics: one per family of flood kinds, per mesh network.
const (
	topicAnnounce = iota // announces and path requests
	topicChannel         // channel messages
	topicFAPP            // FAPP signed floods and anonymous queries
	numTopics
)

var topicNames = [numTopics]string{"announce", "channel", "fapp"}

// TopicName returns the GossipSub topic of a family in a network.
func TopicName(networkID string, family int) string {
	return "/meshd/1/" + networkID + "/" + topicNames[family]
}

// topicOf returns the topic family of a flood kind, or -1 for kinds that
// never travel by gossip (unicast kinds go over envelope streams).
func topicOf(k envelope.Kind) int {
	switch k {
	case envelope.KindAnnounce, envelope.KindPathRequest:
		return topicAnnounce
	case envelope.KindChannel:
		return topicChannel
	case envelope.KindFlood, envelope.KindQuery:
		return topicFAPP
	}
	return -1
}

// Reasons a gossip message is refused by the validators.
const (
	RejectSize      = "size"      // above MaxGossipSize
	RejectPublisher = "publisher" // not signed by an Ed25519 (meshd) peer
	RejectMalformed = "malformed" // not an envelope
	RejectTopic     = "topic"     // an envelope kind that does not belong on the topic
	RejectSignature = "signature" // a signed kind whose signature fails
	IgnoreRate      = "rate"      // the publisher exceeded its rate
	IgnoreGlobal    = "global"    // the topic exceeded its global rate
	IgnoreVerify    = "verify"    // signature checks over budget
)

// gossipLink is the gossip mesh as one shared-medium link.
type gossipLink struct {
	t      *Transport
	info   transport.Info
	ps     *pubsub.PubSub
	topics [numTopics]*pubsub.Topic
	subs   [numTopics]*pubsub.Subscription

	rx       chan rxMsg
	done     chan struct{}
	downOnce sync.Once
	err      error
	dialSem  chan struct{}

	lim    *rateLimiter
	global [numTopics]*bucket
	verify *bucket
	limMu  sync.Mutex

	published, publishErrors, received, rxDrops     atomic.Uint64
	unicastSent, unicastDropped, unicastKindDropped atomic.Uint64
	verdictMu                                       sync.Mutex
	rejected, ignored                               map[string]uint64

	scores *scoreBox

	// The peers topic (peerrec.go).
	peersTopic                        *pubsub.Topic
	peersSub                          *pubsub.Subscription
	records                           *recordStore
	recLim                            *rateLimiter
	recGlobal                         *bucket
	recDialSem                        chan struct{}
	recordsAccepted, recordsPublished atomic.Uint64
}

// scoreBox keeps the latest GossipSub scores (inspected periodically).
type scoreBox struct {
	mu sync.Mutex
	m  map[peer.ID]float64
}

func (b *scoreBox) set(m map[peer.ID]float64) {
	b.mu.Lock()
	b.m = m
	b.mu.Unlock()

}

type rxMsg struct {
	data []byte
	from transport.Addr
}

// msgID is the GossipSub message ID: a hash of the envelope's immutable
// bytes (hop count and TTL left out), so that the same envelope published
// by two gateways is one message to the gossip mesh.
// A peer record is its own ID: its bytes hashed.
func msgID(m *pb.Message) string {
	h := sha256.New()
	if strings.HasSuffix(m.GetTopic(), "/peers") {
		h.Write(m.Data)
		return string(h.Sum(nil)[:20])
	}
	head, rest := envelope.Immutable(m.Data)
	h.Write(head)
	h.Write(rest)
	return string(h.Sum(nil)[:20])
}

// scoreParams: peers that forward invalid messages are scored down and,
// past the thresholds, no longer gossiped with, published to, or listened
// to. Loopback is exempt from the IP colocation penalty (tests, and nodes
// behind one NAT are common in community networks, so the threshold is
// generous).
func scoreParams(topics []string) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	tp := map[string]*pubsub.TopicScoreParams{}
	for _, name := range topics {
		tp[name] = &pubsub.TopicScoreParams{
			TopicWeight:                     1,
			TimeInMeshWeight:                0.01,
			TimeInMeshQuantum:               time.Second,
			TimeInMeshCap:                   100,
			FirstMessageDeliveriesWeight:    1,
			FirstMessageDeliveriesDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
			FirstMessageDeliveriesCap:       50,
			InvalidMessageDeliveriesWeight:  -100,
			InvalidMessageDeliveriesDecay:   pubsub.ScoreParameterDecay(time.Hour),
			MeshMessageDeliveriesWeight:     0,
			MeshFailurePenaltyWeight:        0,
			MeshMessageDeliveriesDecay:      pubsub.ScoreParameterDecay(time.Minute),
			MeshFailurePenaltyDecay:         pubsub.ScoreParameterDecay(time.Minute),
			MeshMessageDeliveriesCap:        10,
			MeshMessageDeliveriesThreshold:  1,
			MeshMessageDeliveriesWindow:     10 * time.Millisecond,
			MeshMessageDeliveriesActivation: time.Minute,
		}
	}
	_, loop4, _ := net.ParseCIDR("127.0.0.0/8")
	_, loop6, _ := net.ParseCIDR("::1/128")
	return &pubsub.PeerScoreParams{
			Topics:                      tp,
			TopicScoreCap:               100,
			AppSpecificScore:            func(peer.ID) float64 { return 0 },
			AppSpecificWeight:           1,
			IPColocationFactorWeight:    -10,
			IPColocationFactorThreshold: 16,
			IPColocationFactorWhitelist: []*net.IPNet{loop4, loop6},
			BehaviourPenaltyWeight:      -10,
			BehaviourPenaltyThreshold:   6,
			BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(time.Hour),
			DecayInterval:               pubsub.DefaultDecayInterval,
			DecayToZero:                 pubsub.DefaultDecayToZero,
			RetainScore:                 10 * time.Minute,
		}, &pubsub.PeerScoreThresholds{
			GossipThreshold:             -100,
			PublishThreshold:            -200,
			GraylistThreshold:           -400,
			AcceptPXThreshold:           100,
			OpportunisticGraftThreshold: 5,
		}
}

// startGossip starts GossipSub with meshd's validators and joins the
// network's topics.
func (t *Transport) startGossip(ctx context.Context) (*gossipLink, error) {
	o := &t.opts
	var names []string
	for i := 0; i < numTopics; i++ {
		names = append(names, TopicName(o.NetworkID, i))
	}
	peersName := PeersTopic(o.NetworkID)
	sp, th := scoreParams(append(names, peersName))
	sb := &scoreBox{}
	ps, err := pubsub.NewGossipSub(ctx, t.host,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithMessageIdFn(msgID),
		pubsub.WithMaxMessageSize(o.MaxGossipSize+4096),
		pubsub.WithPeerScore(sp, th),
		pubsub.WithSubscriptionFilter(pubsub.WrapLimitSubscriptionFilter(pubsub.NewAllowlistSubscriptionFilter(append(names, peersName)...), 16)),
		pubsub.WithValidateQueueSize(128),
		pubsub.WithValidateThrottle(64),
		pubsub.WithValidateWorkers(2),
		pubsub.WithPeerOutboundQueueSize(64),
		pubsub.WithSeenMessagesTTL(10*time.Minute),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(sb.set), 2*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("libp2p: gossipsub: %w", err)
	}
	g := &gossipLink{
		t: t, ps: ps, scores: sb,
		info: transport.Info{ID: "libp2p-gossip-" + t.instance, Kind: "libp2p-gossip", MTU: o.MaxGossipSize,
			Bitrate: o.Bitrate, Cost: o.Cost, Broadcast: true},
		rx: make(chan rxMsg, 256), done: make(chan struct{}), dialSem: make(chan struct{}, 8),
		lim: newRateLimiter(o.GossipRate, o.GossipBurst, 4096), verify: newBucket(o.VerifyPerSecond, 2*o.VerifyPerSecond),
		rejected: map[string]uint64{}, ignored: map[string]uint64{},
		records: newRecordStore(maxRecords), recLim: newRateLimiter(1/recordEvery.Seconds(), recordBurst, 4096),
		recGlobal: newBucket(recordGlobalRate, recordGlobalBurst), recDialSem: make(chan struct{}, recordDials),
	}
	for i := range g.global {
		g.global[i] = newBucket(o.GossipGlobalRate, o.GossipGlobalBurst)
	}
	for i, name := range names {
		if err := ps.RegisterTopicValidator(name, g.validator(i)); err != nil {
			return nil, err
		}
		tp, err := ps.Join(name)
		if err != nil {
			return nil, err
		}
		sub, err := tp.Subscribe(pubsub.WithBufferSize(64))
		if err != nil {
			return nil, err
		}
		g.topics[i], g.subs[i] = tp, sub
	}
	if err := ps.RegisterTopicValidator(peersName, g.recordValidator()); err != nil {
		return nil, err
	}
	if g.peersTopic, err = ps.Join(peersName); err != nil {
		return nil, err
	}
	if g.peersSub, err = g.peersTopic.Subscribe(pubsub.WithBufferSize(64)); err != nil {
		return nil, err
	}
	addrSub, err := t.host.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		return nil, err
	}
	joined, err := t.peerJoins(ctx, g.peersTopic)
	if err != nil {
		addrSub.Close()
		return nil, err
	}
	t.spawn(func() { g.readRecords(ctx) })
	if !t.spawn(func() {
		defer addrSub.Close()
		g.recordLoop(ctx, addrSub.Out(), joined)
	}) {
		addrSub.Close()
	}
	t.ps = ps
	return g, nil
}

func (g *gossipLink) verdict(m map[string]uint64, reason string) {
	g.verdictMu.Lock()
	m[reason]++
	g.verdictMu.Unlock()
}

func (g *gossipLink) reject(reason string) pubsub.ValidationResult {
	g.verdict(g.rejected, reason)
	return pubsub.ValidationReject
}

func (g *gossipLink) ignore(reason string) pubsub.ValidationResult {
	g.verdict(g.ignored, reason)
	return pubsub.ValidationIgnore
}

// validator checks a message before GossipSub delivers or forwards it:
// size, publisher, structure and topic first (cheap, reject), then the
// publisher's and the topic's rate (ignore: honest forwarders are not
// punished for a spammer's traffic), then signatures under a CPU budget.
func (g *gossipLink) validator(topic int) pubsub.ValidatorEx {
	return func(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		if from == g.t.pid {
			return pubsub.ValidationAccept // our own router's output
		}
		if len(m.Data) > g.t.opts.MaxGossipSize {
			return g.reject(RejectSize)
		}
		pub := m.GetFrom()
		if _, err := MeshKey(pub); err != nil {
			return g.reject(RejectPublisher)
		}
		e, err := envelope.Parse(m.Data)
		if err != nil {
			return g.reject(RejectMalformed)
		}
		if topicOf(e.Kind) != topic {
			return g.reject(RejectTopic)
		}
		now := time.Now()
		g.limMu.Lock()
		okPub := g.lim.allow(topic, pub, now)
		okGlobal := okPub && g.global[topic].take(now)
		signed := e.Kind == envelope.KindAnnounce || e.Kind == envelope.KindFlood
		okVerify := !signed || (okGlobal && g.verify.take(now))
		g.limMu.Unlock()
		switch {
		case !okPub:
			return g.ignore(IgnoreRate)
		case !okGlobal:
			return g.ignore(IgnoreGlobal)
		case !okVerify:
			return g.ignore(IgnoreVerify)
		}
		if signed {
			if err := e.Verify(); err != nil {
				return g.reject(RejectSignature)
			}
		}
		return pubsub.ValidationAccept
	}
}

// Info implements transport.Link.
func (g *gossipLink) Info() transport.Info { return g.info }

// Send implements transport.Link: a broadcast frame is published on the
// topic of its envelope kind; a frame to one neighbour (its 32-byte meshd
// key) goes over an envelope stream to it, opened if need be.
func (g *gossipLink) Send(ctx context.Context, f transport.Frame) error {
	if err := transport.CheckMTU(f.Data, g.info.MTU); err != nil {
		return err
	}
	select {
	case <-g.done:
		return transport.ErrClosed
	default:
	}
	if f.To != transport.Broadcast {
		return g.sendTo(ctx, f)
	}
	if len(f.Data) < envelope.HeaderSize {
		g.unicastKindDropped.Add(1)
		return nil
	}
	topic := topicOf(envelope.Kind(f.Data[3] & 0x0f))
	if topic < 0 {
		// Unicast kinds never go to the whole internet.
		g.unicastKindDropped.Add(1)
		return nil
	}
	data := append([]byte(nil), f.Data...)
	if err := g.topics[topic].Publish(ctx, data); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-g.done:
			return transport.ErrClosed
		default:
		}
		g.publishErrors.Add(1)
		return fmt.Errorf("libp2p: publish: %w", err)
	}
	g.published.Add(1)
	return nil
}

// sendTo sends a frame to one neighbour over its envelope link; without
// one it opens one in the background (bounded) and sends once it is up.
func (g *gossipLink) sendTo(ctx context.Context, f transport.Frame) error {
	k, err := envelope.ParsePublicKey([]byte(f.To))
	if err != nil {
		g.unicastDropped.Add(1)
		return nil
	}
	p, err := PeerIDFor(k)
	if err != nil || p == g.t.pid {
		g.unicastDropped.Add(1)
		return nil
	}
	if l := g.t.linkTo(p); l != nil {
		err := l.Send(ctx, transport.Frame{Priority: f.Priority, Data: f.Data})
		if err == nil {
			g.unicastSent.Add(1)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		g.unicastDropped.Add(1)
		return nil
	}
	select {
	case g.dialSem <- struct{}{}:
	default:
		g.unicastDropped.Add(1)
		return nil
	}
	data := append([]byte(nil), f.Data...)
	if !g.t.spawn(func() {
		defer func() { <-g.dialSem }()
		l, err := g.t.ensureLink(p)
		if err != nil {
			g.unicastDropped.Add(1)
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if l.Send(sctx, transport.Frame{Data: data}) == nil {
			g.unicastSent.Add(1)
		} else {
			g.unicastDropped.Add(1)
		}
	}) {
		<-g.dialSem
		return transport.ErrClosed
	}
	return nil
}

// Close implements transport.Link. The gossip link stays down until the
// transport restarts; GossipSub keeps relaying for others.
func (g *gossipLink) Close() error {
	g.shut(nil)
	return nil
}

func (g *gossipLink) shut(err error) {
	g.downOnce.Do(func() {
		g.err = err
		close(g.done)
	})
}

// run reports the link up, reads the subscriptions and hands accepted
// messages of other publishers to the handler, one at a time, until the
// link is closed; then it reports it down.
func (g *gossipLink) run(h transport.Handler) {
	h.LinkUp(g)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for _, sub := range g.subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := sub.Next(ctx)
				if err != nil {
					return
				}
				if m.ReceivedFrom == g.t.pid {
					continue // our own publish
				}
				k, err := MeshKey(m.GetFrom())
				if err != nil {
					continue
				}
				select {
				case g.rx <- rxMsg{data: m.Data, from: transport.Addr(k[:])}:
				default:
					g.rxDrops.Add(1)
				}
			}
		}()
	}
loop:
	for {
		select {
		case <-g.done:
			break loop
		case m := <-g.rx:
			g.received.Add(1)
			h.Receive(g, m.data, transport.Meta{From: m.from})
		}
	}
	cancel()
	for _, sub := range g.subs {
		sub.Cancel()
	}
	wg.Wait()
	h.LinkDown(g, g.err)
}

// bucket is a token bucket.
type bucket struct {
	rate, burst, tokens float64
	at                  time.Time
}

func newBucket(rate, burst float64) *bucket { return &bucket{rate: rate, burst: burst, tokens: burst} }

func (b *bucket) refill(now time.Time) {
	if !b.at.IsZero() {
		if el := now.Sub(b.at).Seconds(); el > 0 {
			b.tokens = min(b.burst, b.tokens+el*b.rate)
		}
	}
	b.at = now
}

func (b *bucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// rateLimiter keeps one bucket per (topic, publisher), at most max of them:
// when full it forgets the publishers whose buckets have refilled (they
// lose nothing), and if none has, all of them.
type rateLimiter struct {
	rate, burst float64
	max         int
	m           map[limKey]*bucket
}

type limKey struct {
	topic int
	p     peer.ID
}

func newRateLimiter(rate, burst float64, max int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: burst, max: max, m: map[limKey]*bucket{}}
}

func (r *rateLimiter) allow(topic int, p peer.ID, now time.Time) bool {
	k := limKey{topic, p}
	b := r.m[k]
	if b == nil {
		if len(r.m) >= r.max {
			for kk, bb := range r.m {
				bb.refill(now)
				if bb.tokens >= bb.burst {
					delete(r.m, kk)
				}
			}
			if len(r.m) >= r.max {
				clear(r.m)
			}
		}
		b = newBucket(r.rate, r.burst)
		r.m[k] = b
	}
	return b.take(now)
}

// score returns a peer's GossipSub score (tests and diagnostics).
func (g *gossipLink) score(p peer.ID) float64 {
	g.scores.mu.Lock()
	defer g.scores.mu.Unlock()
	return g.scores.m[p]
}
