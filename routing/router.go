// Package routing is meshd's router core: a sans-IO state machine that
// learns routes from signed announces, forwards envelopes hop by hop on
// address hints, holds what cannot be delivered yet, and owns the node's
// end-to-end unicast crypto (pairwise keys, counters, replay windows,
// acknowledgements, the outbox). docs/routing.md explains the design.
//
// The driver calls the event methods (LinkUp, LinkDown, Receive, Overhear,
// Tick, Send, ...) with the current time, then collects the resulting
// actions with Actions and calls Tick again at NextWake. A Router is not safe
// for concurrent use.
package routing

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sort"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Router is the routing state machine. Build it with New.
type Router struct {
	o       Options
	id      *envelope.Identity
	addr    envelope.Address
	store   Store
	rnd     *mrand.Rand
	entropy io.Reader
	log     *slog.Logger
	sip     sipKey

	links    []*link // in LinkUp order
	linkByID map[LinkID]*link

	peers map[envelope.Address]*peer
	hints map[envelope.Hint][]*peer

	dedup    *dedup
	relays   []*pendingRelay
	crumbs   map[envelope.Token]crumb
	crumbQ   []envelope.Token
	ownToks  map[envelope.Token]time.Time
	hintReqs map[envelope.Hint]time.Time

	outbox   []*outMsg // by id
	outByAck map[ackKey]*outMsg
	nextID   MsgID
	idRsv    MsgID // ids below this are reserved in the store

	held      []*heldMsg
	heldBytes int

	waits []*hopWait

	// Smoothed end-to-end round trip per hop on radio and on fast links.
	rttHopRadio, rttHopFast time.Duration

	annSeq uint32
	annRaw []byte
	annAt  time.Time

	batch       Batch
	batchSince  time.Time
	afterCommit []func(now time.Time)

	pathTokens float64 // own path-request floods (TTL > 2) allowed now
	nearTokens float64 // own near path requests allowed now
	// Retry budget on radio links (congestion.go).
	retryTokens float64
	retryAt     time.Time
	pathReqAt   time.Time

	verifyTokens float64
	verifyKnown  float64
	verifyAt     time.Time

	actions []Action
	debug   bool // the logger wants debug records
	wake    time.Time
	now     time.Time
	stats   Stats
	logAt   time.Time
}

type ackKey struct {
	peer    envelope.Address
	counter uint32
}

type crumb struct {
	link    *link
	nb      transport.Addr
	expires time.Time
	// ack is the Ack this node carried back along a Data breadcrumb (as
	// it sent it on), to answer retries of that Data.
	ack []byte
}

type pendingRelay struct {
	due      time.Time
	link     *link
	key      uint64
	data     []byte
	kind     envelope.Kind
	prio     transport.Priority
	to       transport.Addr
	heard    int
	control  bool
	suppress bool
	// origin and seq: for an announce relay, whose announce it is.
	origin *peer
	seq    uint32
	// refresh: we had a route to origin when the announce came, so
	// relaying it renews routes more than it makes them (fireRelay).
	refresh bool
	// costs advertised by the relays of the same announce heard (at most
	// eight), for suppression.
	costs []uint8
}

// counterBlock is how many send counters one store write reserves.
const counterBlock = 64

// idBlock is how many message ids one store write reserves.
const idBlock = 64

// crumbLife is how long a breadcrumb (reply token → previous hop) lives.
const crumbLife = 15 * time.Minute

// maxCrumbs bounds the breadcrumb table.
const maxCrumbs = 2048

// unicastDedupWindow: a unicast envelope seen again within this window is a
// loop, a duplicate copy or a hop retransmission from a neighbour that did
// not hear us pass it on; later it is an end-to-end retry (never sooner:
// see rto) and is forwarded again.
const unicastDedupWindow = 20 * time.Second

// New builds a Router, loading its state from o.Store. now is the current
// time. Messages delivered before a restart but not acknowledged by the
// application are queued again as Deliver actions with Redelivery set.
func New(o Options, now time.Time) (*Router, error) {
	if o.Identity == nil {
		return nil, fmt.Errorf("routing: Options.Identity is required")
	}
	if len(o.AppData) > envelope.MaxAppData {
		return nil, fmt.Errorf("routing: AppData is %d bytes, max %d", len(o.AppData), envelope.MaxAppData)
	}
	o.withDefaults()
	r := &Router{
		o:        o,
		id:       o.Identity,
		addr:     o.Identity.Address(),
		store:    o.Store,
		entropy:  o.Entropy,
		log:      o.Logger,
		linkByID: map[LinkID]*link{},
		peers:    map[envelope.Address]*peer{},
		hints:    map[envelope.Hint][]*peer{},
		dedup:    newDedup(o.DedupEntries),
		crumbs:   map[envelope.Token]crumb{},
		ownToks:  map[envelope.Token]time.Time{},
		hintReqs: map[envelope.Hint]time.Time{},
		outByAck: map[ackKey]*outMsg{},
		now:      now,
	}
	if r.store == nil {
		r.store = NewMemStore()
	}
	if r.entropy == nil {
		r.entropy = rand.Reader
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.debug = r.log.Enabled(context.Background(), slog.LevelDebug)
	var seed [32]byte
	if _, err := io.ReadFull(r.entropy, seed[:]); err != nil {
		return nil, fmt.Errorf("routing: reading entropy: %w", err)
	}
	r.sip = sipKey{binary.LittleEndian.Uint64(seed[0:]), binary.LittleEndian.Uint64(seed[8:])}
	r.rnd = o.Rand
	if r.rnd == nil {
		r.rnd = mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[16:]), binary.LittleEndian.Uint64(seed[24:])))
	}
	r.rttHopRadio, r.rttHopFast = 8*time.Second, 300*time.Millisecond
	r.pathTokens, r.nearTokens, r.pathReqAt = 1, 2, now
	r.retryTokens, r.retryAt = retryBurst, now
	r.verifyTokens = float64(4 * o.VerifyPerSecond)
	r.verifyKnown = float64(16 * o.VerifyPerSecond)
	r.verifyAt = now
	if err := r.load(now); err != nil {
		return nil, err
	}
	r.commit(now)
	return r, nil
}

// load rebuilds state from the store.
func (r *Router) load(now time.Time) error {
	err := r.store.Scan(BucketMeta, func(k, v []byte) error {
		switch {
		case bytes.Equal(k, metaMsgID) && len(v) == 8:
			r.idRsv = MsgID(binary.BigEndian.Uint64(v))
			r.nextID = r.idRsv
		case bytes.Equal(k, metaSeq) && len(v) == 4:
			r.annSeq = binary.BigEndian.Uint32(v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("routing: loading store: %w", err)
	}
	err = r.store.Scan(BucketPeers, func(k, v []byte) error {
		rec, err := decodePeer(k, v)
		if err != nil {
			r.log.Warn("routing: dropping corrupt peer record", "err", err)
			return nil
		}
		p := r.peerForKey(rec.Key, now)
		s := p.e2eState()
		s.acked = rec.Acked
		s.reserved, s.next = rec.Reserved, rec.Reserved
		s.window, s.hasWindow = rec.Window, rec.HasWindow
		s.pq = rec.PQ
		return nil
	})
	if err != nil {
		return fmt.Errorf("routing: loading peers: %w", err)
	}
	err = r.store.Scan(BucketOutbox, func(k, v []byte) error {
		rec, err := decodeOut(v)
		if err != nil {
			r.log.Warn("routing: dropping corrupt outbox record", "err", err)
			r.batch.Delete(BucketOutbox, bytes.Clone(k))
			return nil
		}
		m := &outMsg{rec: rec, next: now}
		r.outbox = append(r.outbox, m)
		if rec.Counter != 0 {
			r.outByAck[ackKey{rec.Dst, rec.Counter}] = m
		}
		r.nextID = max(r.nextID, rec.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("routing: loading outbox: %w", err)
	}
	sort.Slice(r.outbox, func(i, j int) bool { return r.outbox[i].rec.ID < r.outbox[j].rec.ID })
	err = r.store.Scan(BucketHeld, func(k, v []byte) error {
		rec, e, err := decodeHeld(v)
		if err != nil || len(k) != 8 {
			r.log.Warn("routing: dropping corrupt held record", "err", err)
			r.batch.Delete(BucketHeld, bytes.Clone(k))
			return nil
		}
		// Ticked like a newly held one (a zero retry would wait for a
		// route to appear and never ask for one).
		r.addHeld(&heldMsg{key: binary.BigEndian.Uint64(k), rec: rec, dst: e.Dst, kind: e.Kind, src: srcHint(&e), retry: now.Add(time.Minute)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("routing: loading held messages: %w", err)
	}
	return r.store.Scan(BucketInbox, func(k, v []byte) error {
		id, rec, err := decodeInbox(k, v)
		if err != nil {
			r.log.Warn("routing: dropping corrupt inbox record", "err", err)
			r.batch.Delete(BucketInbox, bytes.Clone(k))
			return nil
		}
		r.actions = append(r.actions, &Deliver{ID: id, From: rec.From, Port: rec.Port, Payload: rec.Payload, Redelivery: true})
		return nil
	})
}

// Address returns the node's address.
func (r *Router) Address() envelope.Address { return r.addr }

// Actions returns the actions produced since the last call and forgets
// them. The driver performs them in order.
func (r *Router) Actions() []Action {
	a := r.actions
	r.actions = nil
	return a
}

// NextWake returns when Tick must be called next (zero: nothing pending).
func (r *Router) NextWake() time.Time { return r.wake }

// Stats returns a snapshot of the counters.
func (r *Router) Stats() Stats {
	s := r.stats
	s.Peers = len(r.peers)
	for _, p := range r.peers {
		if p.best(r.now) != nil {
			s.Routes++
		}
	}
	s.Outbox = len(r.outbox)
	s.Held = len(r.held)
	s.HeldBytes = r.heldBytes
	s.DedupEntries = r.dedup.len()
	s.Breadcrumbs = len(r.crumbs)
	return s
}

func (r *Router) drop(why DropReason) { r.stats.Drops[why]++ }

// begin starts an event at time now.
func (r *Router) begin(now time.Time) { r.now = now }

// end finishes an event: commits if due and recomputes the wake-up time.
func (r *Router) end() {
	if r.batch.Len() > 0 || len(r.afterCommit) > 0 {
		if r.o.CommitDelay <= 0 {
			r.commit(r.now)
		} else if r.batchSince.IsZero() {
			r.batchSince = r.now
		}
	}
	r.recomputeWake()
}

// commit writes the pending batch and releases what waited for it.
func (r *Router) commit(now time.Time) {
	if r.batch.Len() > 0 {
		r.stats.StoreCommits++
		if err := r.store.Apply(&r.batch); err != nil {
			r.stats.StoreErrors++
			if now.Sub(r.logAt) > time.Minute {
				r.logAt = now
				r.log.Error("routing: store write failed; retrying", "err", err)
			}
			r.batchSince = now // retry after CommitDelay (or next event)
			return
		}
		r.batch = Batch{}
	}
	r.batchSince = time.Time{}
	fns := r.afterCommit
	r.afterCommit = nil
	for _, f := range fns {
		f(now)
	}
}

// after runs f once everything written so far is durable.
func (r *Router) after(f func(now time.Time)) { r.afterCommit = append(r.afterCommit, f) }

func (r *Router) schedule(t time.Time) {
	if !t.IsZero() && (r.wake.IsZero() || t.Before(r.wake)) {
		r.wake = t
	}
}

func (r *Router) recomputeWake() {
	r.wake = time.Time{}
	if !r.batchSince.IsZero() {
		r.schedule(r.batchSince.Add(r.o.CommitDelay))
	}
	for _, pr := range r.relays {
		r.schedule(pr.due)
	}
	for _, l := range r.links {
		r.schedule(l.nextAnnounce)
		if len(l.queue) > 0 {
			r.schedule(l.queueWake)
		}
	}
	for _, m := range r.outbox {
		if !m.inFlightCommit {
			r.schedule(m.next)
		}
		r.schedule(m.rec.Expires)
	}
	for _, h := range r.held {
		r.schedule(h.rec.Expires)
		r.schedule(h.retry)
	}
	for _, w := range r.waits {
		r.schedule(w.deadline)
	}
	if r.wake.Before(r.now) && !r.wake.IsZero() {
		r.wake = r.now
	}
}

// Tick runs timers that are due at now.
func (r *Router) Tick(now time.Time) {
	r.begin(now)
	defer r.end()
	if !r.batchSince.IsZero() && !now.Before(r.batchSince.Add(r.o.CommitDelay)) {
		r.commit(now)
	}
	// Flood relays.
	keep := r.relays[:0]
	var due []*pendingRelay
	for _, pr := range r.relays {
		if now.Before(pr.due) {
			keep = append(keep, pr)
		} else {
			due = append(due, pr)
		}
	}
	clear(r.relays[len(keep):])
	r.relays = keep
	for _, pr := range due {
		r.fireRelay(now, pr)
	}
	for _, l := range r.links {
		if !l.nextAnnounce.IsZero() && !now.Before(l.nextAnnounce) {
			r.announceOn(now, l)
		}
		if len(l.queue) > 0 && !now.Before(l.queueWake) {
			r.drainQueue(now, l)
		}
	}
	r.tickHops(now)
	r.tickOutbox(now)
	r.tickHeld(now)
	r.gc(now)
}

// gc forgets expired breadcrumbs and tokens (cheap, bounded work).
func (r *Router) gc(now time.Time) {
	for len(r.crumbQ) > 0 {
		t := r.crumbQ[0]
		c, ok := r.crumbs[t]
		if ok && now.Before(c.expires) {
			break
		}
		delete(r.crumbs, t)
		r.crumbQ = r.crumbQ[1:]
	}
	if len(r.ownToks) > 256 {
		for t, exp := range r.ownToks {
			if now.After(exp) {
				delete(r.ownToks, t)
			}
		}
	}
}

func (r *Router) readEntropy(b []byte) error {
	_, err := io.ReadFull(r.entropy, b)
	return err
}

// logOnce logs at most once a minute.
func (r *Router) logOnce(msg string, args ...any) {
	if r.now.Sub(r.logAt) < time.Minute {
		return
	}
	r.logAt = r.now
	r.log.Warn(msg, args...)
}

// trace logs a debug record when debug logging is on.
func (r *Router) trace(msg string, args ...any) {
	if r.debug {
		r.log.Debug(msg, args...)
	}
}
