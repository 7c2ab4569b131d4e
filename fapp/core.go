// Package fapp is the Free Appointment Propagation Protocol: licensed
// psychotherapists announce free slots into the mesh, patients search and
// reserve them without revealing who they are.
//
// Core is a sans-IO state machine. Its inputs are events carrying the
// current time — a flood or query received (OnFlood), an anonymous message
// delivered on port 2 (OnAnon), an anon-reply on one of its tokens
// (OnAnonReply), a timer (Tick) — and requests from the local user
// (therapist: SetProfile, AddSlot, Confirm, ...; patient: Search,
// StartSearch, SubmitReservation, ...). Its outputs are Actions the node
// performs: Originate (flood this envelope), SendAnon (route this anon
// envelope to key K), SendReply (route this anon-reply back on token T),
// SearchUpdate / RequestUpdate / ReservationUpdate (deliver to the app) and
// SaveState (persist MarshalState before going on). docs/fapp.md specifies
// the wire formats, the privacy model and the threat model.
//
// A Core is not safe for concurrent use; the node serialises calls. The
// proof-of-work search (SearchDraft.Solve, ReservationDraft.Solve) is the
// one long computation and runs outside the core, on any goroutine.
package fapp

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Options configure a Core. Every zero value picks the documented default;
// config keys are named `fapp.<name>` where the node exposes one.
type Options struct {
	// Identity is the node's identity. A therapist's announces are signed
	// with it and reservations are sealed to it; a patient's traffic never
	// contains it. Nil: the node cannot act as a therapist.
	Identity *envelope.Identity
	// Entropy is the source of one-time keys, tokens, request ids and
	// jitter. Nil: crypto/rand.Reader. meshsim injects a seeded reader.
	Entropy io.Reader
	// Logger: nil discards.
	Logger *slog.Logger

	// Anchors are the trust anchors this node believes (fapp.anchors).
	// Nil: none, so every therapist shows as unverified.
	Anchors []Anchor

	// CacheEntries bounds the cached announce pages (fapp.cache_entries).
	// Zero: 1024.
	CacheEntries int
	// CacheBytes bounds the cache's memory, counting each page's wire bytes
	// plus 256 (fapp.cache_bytes). Zero: 512 KiB.
	CacheBytes int

	// QueryBits is the proof-of-work difficulty this node puts on its
	// network queries and requires of others' (fapp.query_bits). Zero:
	// DefaultQueryBits. Raising it above what the rest of the mesh uses
	// makes this node drop their queries.
	QueryBits int
	// ReserveBits is the difficulty of reservations, made by patients for
	// the therapist's node, which checks it (fapp.reserve_bits). Zero:
	// DefaultReserveBits.
	ReserveBits int

	// ClockSkew is how far in the future an announce, query or reservation
	// may be dated. Zero: 30 minutes.
	ClockSkew time.Duration
	// QueryMaxAge is how old a query may be. Zero: 15 minutes.
	QueryMaxAge time.Duration
	// ReservationMaxAge is how old a reservation (its first attempt) may
	// be, and how long the therapist remembers reply tokens against
	// replays. Zero: ReservationTimeout + 24h.
	ReservationMaxAge time.Duration

	// AnnounceRate limits the announces accepted per therapist identity
	// (fapp.announce_rate). Zero: burst 32, then one per 5 minutes.
	AnnounceRate Rate
	// QueryRate limits the queries accepted per neighbour
	// (fapp.query_rate). Zero: burst 10, then one per 30 seconds.
	QueryRate Rate
	// AnswerRate limits the queries this node answers, all neighbours
	// together. Zero: burst 30, then one per 10 seconds.
	AnswerRate Rate
	// MaxNeighbours bounds the neighbours and therapists rate limits are
	// kept for. Zero: 256.
	MaxNeighbours int
	// RepliesPerQuery bounds the anon-reply envelopes one answer uses.
	// Zero: 2.
	RepliesPerQuery int
	// ReplyPayload bounds one reply's payload in bytes. Zero: 480 (two
	// typical announces; a LoRa link fragments it).
	ReplyPayload int
	// AnswerSpread: answers to a query go out at a random instant within
	// this long after it arrived, so that the neighbours of a patient,
	// which all answer its query, do not transmit at once (on LoRa they
	// would collide at the patient's radio). Zero: at once (IP links).
	// The node sets it when it has a radio (fapp.answer_spread).
	AnswerSpread time.Duration
	// AnswerFanout is how many of a querier's neighbours should answer: a
	// node with matches answers with probability AnswerFanout/n, n being
	// its neighbours on the query's link (SetNeighbours), and does not
	// relay the query either way. Zero: 10.
	AnswerFanout int

	// AnnounceBudget is the largest own announce in bytes; slots beyond it
	// go to further pages (fapp.announce_budget). Zero:
	// DefaultAnnounceBudget (one LoRa frame on air, network key included).
	// At most MaxAnnounceSize.
	AnnounceBudget int
	// AnnounceTTL is the hop limit of own announces. Zero: 16.
	AnnounceTTL uint8
	// QueryTTL scopes a network search (hops). Zero: 6.
	QueryTTL uint8
	// QueryRepeat: a network search's query goes out once more between
	// half and one and a half of this after the first (on LoRa the one
	// copy may be lost at most neighbours; those that got it ignore the
	// second). Zero: 10 seconds. Negative: never.
	QueryRepeat time.Duration
	// AnonTTL is the hop limit of reservations and replies. Zero: 32.
	AnonTTL uint8

	// AnnounceLifetime is how long own announces live; they are refreshed
	// at half of it (fapp.announce_lifetime). Zero: 24h. At most
	// MaxLifetime.
	AnnounceLifetime time.Duration
	// PublishDelay gathers slot changes into one announce (fapp.publish_delay).
	// Zero: 30 seconds.
	PublishDelay time.Duration
	// AutoConfirm confirms the first valid reservation of a free slot at
	// once (fapp.auto_confirm). Zero (false): the therapist confirms or
	// declines each by hand; later requests for a confirmed slot are told
	// it is taken either way.
	AutoConfirm bool
	// MaxRequests bounds the reservation requests a therapist keeps. Zero:
	// 256.
	MaxRequests int
	// MaxPendingPerSlot bounds undecided requests per slot. Zero: 8.
	MaxPendingPerSlot int
	// RequestRetention is how long decided requests are kept. Zero: 14 days.
	RequestRetention time.Duration

	// SearchLifetime is how long a network search collects answers. Zero: 2
	// minutes.
	SearchLifetime time.Duration
	// MaxSearches bounds concurrent network searches. Zero: 4.
	MaxSearches int
	// ReservationRetry is the first resend interval of an unanswered
	// reservation; it doubles up to ReservationRetryMax. Each resend also
	// lays fresh breadcrumbs for the answer (relays keep them 15 minutes),
	// and the therapist re-sends a decision on the newest token, so a
	// decision made by hand reaches the patient at the latest one resend
	// interval later. Zero: 2 minutes (a lossy LoRa path loses an attempt
	// now and then; meshsim's fapp-200 measures the effect, docs/fapp.md).
	ReservationRetry time.Duration
	// ReservationRetryMax caps the resend interval. Zero: 2h (about 40
	// resends of ~130 bytes over a 72h timeout).
	ReservationRetryMax time.Duration
	// ReservationTimeout is when an unanswered reservation is given up.
	// Zero: 72h.
	ReservationTimeout time.Duration
	// MaxReservations bounds the patient's reservations kept. Zero: 32.
	MaxReservations int
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	u8 := func(v *uint8, d uint8) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Entropy == nil {
		o.Entropy = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def(&o.CacheEntries, 1024)
	def(&o.CacheBytes, 512<<10)
	def(&o.QueryBits, DefaultQueryBits)
	def(&o.ReserveBits, DefaultReserveBits)
	o.QueryBits, o.ReserveBits = min(o.QueryBits, MaxBits), min(o.ReserveBits, MaxBits)
	dur(&o.ClockSkew, 30*time.Minute)
	dur(&o.QueryMaxAge, 15*time.Minute)
	dur(&o.ReservationTimeout, 72*time.Hour)
	dur(&o.ReservationMaxAge, o.ReservationTimeout+24*time.Hour)
	o.AnnounceRate = o.AnnounceRate.or(Rate{Burst: 32, Every: 5 * time.Minute})
	o.QueryRate = o.QueryRate.or(Rate{Burst: 10, Every: 30 * time.Second})
	o.AnswerRate = o.AnswerRate.or(Rate{Burst: 30, Every: 10 * time.Second})
	def(&o.MaxNeighbours, 256)
	def(&o.RepliesPerQuery, 2)
	def(&o.ReplyPayload, 480)
	def(&o.AnswerFanout, 10)
	if o.QueryRepeat == 0 {
		o.QueryRepeat = 10 * time.Second
	}
	o.ReplyPayload = max(o.ReplyPayload, 2+recordOverhead+MaxBody)
	def(&o.AnnounceBudget, DefaultAnnounceBudget)
	o.AnnounceBudget = min(o.AnnounceBudget, MaxAnnounceSize)
	u8(&o.AnnounceTTL, 16)
	u8(&o.QueryTTL, 6)
	u8(&o.AnonTTL, 32)
	dur(&o.AnnounceLifetime, 24*time.Hour)
	o.AnnounceLifetime = min(o.AnnounceLifetime, MaxLifetime).Truncate(TickDuration)
	if o.AnnounceLifetime < 2*TickDuration {
		o.AnnounceLifetime = 2 * TickDuration
	}
	dur(&o.PublishDelay, 30*time.Second)
	def(&o.MaxRequests, 256)
	def(&o.MaxPendingPerSlot, 8)
	dur(&o.RequestRetention, 14*24*time.Hour)
	dur(&o.SearchLifetime, 2*time.Minute)
	def(&o.MaxSearches, 4)
	dur(&o.ReservationRetry, 2*time.Minute)
	dur(&o.ReservationRetryMax, 2*time.Hour)
	def(&o.MaxReservations, 32)
	return o
}

// Neighbour names the neighbour a flood or query came from, for per-
// neighbour rate limits: any stable string the node chooses (link id and
// link-layer address). It is never sent anywhere.
type Neighbour string

// Verdict is what OnFlood decides about relaying an envelope.
type Verdict uint8

// Verdicts. They map onto the router's flood filter.
const (
	// Drop: neither keep nor relay (invalid, duplicate, over a limit).
	Drop Verdict = iota
	// Keep: accepted here, but do not relay (a query this node answered in
	// full).
	Keep
	// Relay: accepted; relay under the router's flood budget.
	Relay
)

var verdictNames = [...]string{"drop", "keep", "relay"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict?"
}

// Action is an output of the core. The node type-switches on it.
type Action interface{ fappAction() }

// Originate: send this flood (an own announce) or query (an own search) on
// every link: the router's Originate.
type Originate struct {
	Kind envelope.Kind
	Raw  []byte
}

// SendAnon: route this anon envelope (a reservation, port 2) to To; the
// node must remember Token as its own so the answer is delivered to it
// (OnAnonReply) rather than relayed.
type SendAnon struct {
	To    envelope.PublicKey
	Token envelope.Token
	Raw   []byte
}

// SendReply: route this anon-reply (an answer or search results) back along
// the breadcrumbs of Token.
type SendReply struct {
	Token envelope.Token
	Raw   []byte
}

// SearchUpdate delivers new results of a network search to the app; Done
// says the search stopped collecting.
type SearchUpdate struct {
	ID   SearchID
	New  []Result
	Done bool
}

// RequestUpdate tells the therapist's app about a new or changed
// reservation request.
type RequestUpdate struct{ Request Request }

// ReservationUpdate tells the patient's app about a reservation's state.
type ReservationUpdate struct{ Reservation Reservation }

// SaveState asks the node to persist MarshalState() durably before it
// performs the actions after this one (an announce must not go out with a
// sequence number a crash could make the node reuse).
type SaveState struct{}

func (*Originate) fappAction()         {}
func (*SendAnon) fappAction()          {}
func (*SendReply) fappAction()         {}
func (*SearchUpdate) fappAction()      {}
func (*RequestUpdate) fappAction()     {}
func (*ReservationUpdate) fappAction() {}
func (*SaveState) fappAction()         {}

// Stats is a snapshot of the core's counters.
type Stats struct {
	CacheTherapists int // therapists with at least one cached page
	CachePages      int
	CacheBytes      int
	Accepted        uint64 // announce pages admitted (floods and replies)
	Evicted         uint64 // pages evicted for room
	Expired         uint64 // pages dropped at expiry
	// Rejected counts refused inputs by Reason ("forged", "rollback", ...).
	Rejected map[string]uint64

	QueriesAnswered uint64
	QueriesLeft     uint64 // queries with matches left to other neighbours (AnswerFanout)
	RepliesSent     uint64 // anon-reply envelopes with search results
	RecordsSent     uint64 // announces in them

	LocalSearches   uint64
	NetworkSearches uint64
	ResultsReceived uint64 // announces received in answers to own searches

	Published        uint64 // own announce pages originated
	RequestsReceived uint64
	Confirmed        uint64
	Declined         uint64 // declined, taken and gone answers
	AnswersSent      uint64

	ReservationsSent uint64 // first attempts
	ReservationRetry uint64 // resends
	AnswersReceived  uint64
}

// Core is the FAPP state machine of one node: cache and relay policy for
// everyone, plus the therapist and patient roles.
type Core struct {
	o     Options
	log   *slog.Logger
	cache *cache

	annLimit    *limiter[envelope.PublicKey]
	queryLimit  *limiter[Neighbour]
	answerLimit *limiter[struct{}]
	seenQueries *expirySet

	th       therapistState
	searches map[envelope.Token]*search
	nextID   SearchID
	res      map[RequestID]*pendingRes
	resByTok map[envelope.Token]RequestID
	delayed  []delayedReply // answers waiting for their instant (AnswerSpread)
	// neighbours on the link of the query being handled (SetNeighbours).
	neighbours int

	actions []Action
	dirty   bool
	stats   Stats
	logged  map[string]time.Time
}

// New makes a core. state is what MarshalState returned (nil: a fresh
// node).
func New(o Options, state []byte) (*Core, error) {
	o = o.withDefaults()
	c := &Core{
		o:           o,
		log:         o.Logger,
		cache:       newCache(o.CacheEntries, o.CacheBytes, o.Anchors),
		annLimit:    newLimiter[envelope.PublicKey](o.AnnounceRate, o.MaxNeighbours),
		queryLimit:  newLimiter[Neighbour](o.QueryRate, o.MaxNeighbours),
		answerLimit: newLimiter[struct{}](o.AnswerRate, 1),
		seenQueries: newExpirySet(4096),
		searches:    make(map[envelope.Token]*search),
		res:         make(map[RequestID]*pendingRes),
		resByTok:    make(map[envelope.Token]RequestID),
		logged:      make(map[string]time.Time),
		stats:       Stats{Rejected: make(map[string]uint64)},
	}
	c.th.init()
	if state != nil {
		if err := c.restore(state); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Actions returns the outputs accumulated since the last call, in order,
// and forgets them.
func (c *Core) Actions() []Action {
	a := c.actions
	c.actions = nil
	return a
}

// emit appends an action.
func (c *Core) emit(a Action) { c.actions = append(c.actions, a) }

// begin and end bracket every public event: when the event changed
// persisted state, its actions start with SaveState.
func (c *Core) begin() int { return len(c.actions) }

func (c *Core) end(start int) {
	if !c.dirty {
		return
	}
	c.dirty = false
	c.actions = append(c.actions, nil)
	copy(c.actions[start+1:], c.actions[start:])
	c.actions[start] = &SaveState{}
}

// Stats returns a snapshot of the counters.
func (c *Core) Stats() Stats {
	s := c.stats
	s.Rejected = make(map[string]uint64, len(c.stats.Rejected))
	for k, v := range c.stats.Rejected {
		s.Rejected[k] = v
	}
	s.CachePages, s.CacheBytes = c.cache.entries, c.cache.bytes
	for _, t := range c.cache.byKey {
		if t.live > 0 {
			s.CacheTherapists++
		}
	}
	s.Evicted, s.Expired = c.cache.evicted, c.cache.expired
	return s
}

// reject counts err and logs it at most once a minute per reason.
func (c *Core) reject(now time.Time, err error) error {
	r := Reason(err)
	c.stats.Rejected[r]++
	if last, ok := c.logged[r]; !ok || now.Sub(last) >= time.Minute || now.Before(last) {
		c.logged[r] = now
		c.log.Debug("fapp: refused input", "reason", r, "err", err, "count", c.stats.Rejected[r])
	}
	return err
}

// random fills b from the entropy source.
func (c *Core) random(b []byte) error {
	if _, err := io.ReadFull(c.o.Entropy, b); err != nil {
		return fmt.Errorf("fapp: reading randomness: %w", err)
	}
	return nil
}

// jitter returns 0, 1 or 2: the hop count a patient's envelope starts with
// (the TTL is lowered by as much), so that a neighbour cannot tell an
// originator from a relay by the hop count.
func (c *Core) jitter() uint8 {
	var b [1]byte
	if c.random(b[:]) != nil {
		return 0
	}
	return b[0] % 3
}

// OnFlood handles a flood (topic 1: a slot announce) or query (topic 1: a
// network search) received from neighbour from. It returns what the router
// should do with it and, when it was refused, why. Answers to a query are
// queued as SendReply actions.
func (c *Core) OnFlood(now time.Time, from Neighbour, raw []byte) (Verdict, error) {
	start := c.begin()
	defer c.end(start)
	if len(raw) >= envelope.HeaderSize && envelope.Kind(raw[3]&0x0f) == envelope.KindQuery {
		return c.onQuery(now, from, raw)
	}
	if _, err := c.ingest(now, raw, true); err != nil {
		return Drop, c.reject(now, err)
	}
	return Relay, nil
}

// ingest checks an announce and admits it to the cache. limited applies the
// per-therapist rate limit (floods; not answers to own searches).
func (c *Core) ingest(now time.Time, raw []byte, limited bool) (*entry, error) {
	if len(raw) > MaxAnnounceSize {
		return nil, fmt.Errorf("%w: announce %d bytes, at most %d", ErrOversize, len(raw), MaxAnnounceSize)
	}
	e, err := envelope.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if e.Kind != envelope.KindFlood || e.Topic != Topic {
		return nil, fmt.Errorf("%w: %s topic %d", ErrWrongTopic, e.Kind, e.Topic)
	}
	a, err := decodeBody(e.Body)
	if err != nil {
		return nil, err
	}
	a.Therapist, a.Seq = e.Key, e.Seq
	// Cheap checks before the signature.
	if !now.Before(a.Expires) {
		return nil, fmt.Errorf("%w: announce of %s expired at %s", ErrExpired, a.Therapist.Address(), a.Expires.Format(time.RFC3339))
	}
	if a.Issued.After(now.Add(c.o.ClockSkew)) {
		return nil, fmt.Errorf("%w: announce issued %s", ErrFuture, a.Issued.Format(time.RFC3339))
	}
	if err := c.cache.checkSeq(&a); err != nil {
		return nil, err
	}
	if err := e.Verify(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrForged, err)
	}
	if c.o.Identity != nil && a.Therapist == c.o.Identity.PublicKey() && limited {
		// Our own announce coming back: the router normally drops it.
		return nil, fmt.Errorf("%w: own announce", ErrDuplicate)
	}
	by, err := checkEndorsements(c.o.Anchors, &a)
	if err != nil {
		return nil, err
	}
	if limited && !c.annLimit.peek(a.Therapist, now) {
		return nil, fmt.Errorf("%w: therapist %s", ErrRateLimited, a.Therapist.Address())
	}
	norm := append([]byte(nil), raw...)
	norm[envelope.OffsetHops], norm[envelope.OffsetTTL] = 0, 0
	ent, err := c.cache.admit(now, &a, norm, by, judge(c.o.Anchors, &a, by, now).Verified)
	if err != nil {
		return nil, err
	}
	if limited {
		c.annLimit.allow(a.Therapist, now)
	}
	c.stats.Accepted++
	return ent, nil
}

// resultOf builds the Result for a cached slot.
func (c *Core) resultOf(e *entry, s *Slot, now time.Time) Result {
	return Result{
		Ref:     SlotRef{Therapist: e.ann.Therapist, Slot: s.ID},
		Profile: e.ann.Profile,
		Slot:    *s,
		Trust:   judge(c.o.Anchors, e.ann, e.by, now),
		Seq:     e.ann.Seq,
		Expires: e.ann.Expires,
	}
}

// Search is the local search: the node's own cache, no traffic at all.
// Results are sorted by start time, then therapist and slot. Unverified
// therapists are included and marked (Result.Trust).
func (c *Core) Search(now time.Time, f Filter) ([]Result, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	c.stats.LocalSearches++
	var out []Result
	c.cache.matches(&f, now, func(e *entry, s *Slot) { out = append(out, c.resultOf(e, s, now)) })
	sortResults(out)
	return out, nil
}

// Tick runs timers: cache expiry, the therapist's publishing and refresh,
// search ends, reservation resends and timeouts, forgetting old requests.
// Call it at NextWake (or any time).
func (c *Core) Tick(now time.Time) {
	start := c.begin()
	defer c.end(start)
	c.cache.expire(now)
	c.seenQueries.expire(now)
	c.tickTherapist(now)
	c.tickSearches(now)
	c.tickReservations(now)
	c.tickReplies(now)
}

// NextWake returns when Tick should next run (zero: nothing scheduled). The
// cache's expiry needs no exact wake: expired pages are never used.
func (c *Core) NextWake() time.Time {
	var w time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	c.wakeTherapist(at)
	for _, s := range c.searches {
		at(s.expires)
		at(s.repeat)
	}
	for _, d := range c.delayed {
		at(d.due)
	}
	for _, r := range c.res {
		if r.Outcome == Pending {
			at(r.nextRetry)
			at(r.Created.Add(c.o.ReservationTimeout))
		}
	}
	return w
}

// expirySet remembers keys until an expiry, for at most max keys (the
// soonest-expiring go first when full).
type expirySet struct {
	max int
	m   map[envelope.Token]time.Time
}

func newExpirySet(max int) *expirySet {
	return &expirySet{max: max, m: make(map[envelope.Token]time.Time)}
}

func (s *expirySet) has(k envelope.Token, now time.Time) bool {
	t, ok := s.m[k]
	return ok && now.Before(t)
}

func (s *expirySet) add(k envelope.Token, until time.Time) {
	if _, ok := s.m[k]; !ok && len(s.m) >= s.max {
		var victim envelope.Token
		var vt time.Time
		first := true
		for key, t := range s.m {
			if first || t.Before(vt) || (t.Equal(vt) && lessToken(key, victim)) {
				victim, vt, first = key, t, false
			}
		}
		delete(s.m, victim)
	}
	s.m[k] = until
}

func (s *expirySet) expire(now time.Time) {
	for k, t := range s.m {
		if !now.Before(t) {
			delete(s.m, k)
		}
	}
}

func lessToken(a, b envelope.Token) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
