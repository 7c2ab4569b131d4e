package fapp

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// SearchID names one of this node's network searches.
type SearchID uint64

// search is an own network search collecting answers.
type search struct {
	id      SearchID
	token   envelope.Token
	key     *envelope.ReplyKey
	filter  Filter // the full local filter: answers are filtered again with it
	expires time.Time
	results map[SlotRef]Result
	// repeat is when the query goes out once more (zero: done); raw is
	// the query envelope.
	repeat time.Time
	raw    []byte
}

// SearchDraft is a network search being prepared: its query is built but
// its proof of work not yet found. Solve may run on any goroutine; then
// hand the draft to StartSearch.
type SearchDraft struct {
	filter Filter
	q      Query
	key    *envelope.ReplyKey
	body   []byte
	solved bool
	bits   int
	// started: StartSearch took the key (or destroyed it).
	started bool
}

// PrepareSearch builds a network search for f. The query carries f with
// its PLZ prefix capped to 3 digits, whole days and no language; the
// one-time reply key and token are fresh and random.
func (c *Core) PrepareSearch(now time.Time, f Filter) (*SearchDraft, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	t, ok := toTicks(now)
	if !ok {
		return nil, fmt.Errorf("%w: clock %s", ErrInvalid, now)
	}
	key, err := envelope.NewReplyKey(c.o.Entropy)
	if err != nil {
		return nil, err
	}
	d := &SearchDraft{filter: f, key: key, bits: c.o.QueryBits}
	d.q = Query{ReplyKey: key.Public(), Time: fromTicks(t), Filter: networkFilter(f)}
	if err := c.random(d.q.Token[:]); err != nil {
		return nil, err
	}
	var start [8]byte
	if err := c.random(start[:]); err != nil {
		return nil, err
	}
	d.q.Nonce = binary.BigEndian.Uint64(start[:])
	if d.body, err = appendQueryBody(nil, &d.q); err != nil {
		key.Destroy()
		return nil, err
	}
	return d, nil
}

// Solve finds the proof of work (about 2^QueryBits hashes; see
// docs/fapp.md for what that costs on a router). It touches nothing but the
// draft, so it may run outside the core's goroutine.
func (d *SearchDraft) Solve(ctx context.Context) error {
	if d.solved {
		return nil
	}
	n, err := solve(ctx, queryPoWInput(d.q.Token, d.body), d.bits, d.q.Nonce)
	if err != nil {
		return err
	}
	d.q.Nonce = n
	binary.BigEndian.PutUint64(d.body[len(d.body)-8:], n)
	d.solved = true
	return nil
}

// Discard destroys the draft's one-time key: for a draft that will not be
// started (its proof of work was cancelled). StartSearch takes ownership of
// the key otherwise.
func (d *SearchDraft) Discard() {
	if d != nil && d.key != nil && !d.started {
		d.key.Destroy()
	}
}

// StartSearch sends a solved search: an Originate of the query envelope.
// It returns the search's id and the local results (the cache), which the
// answers extend through SearchUpdate actions until the search ends.
func (c *Core) StartSearch(now time.Time, d *SearchDraft) (SearchID, []Result, error) {
	start := c.begin()
	defer c.end(start)
	if d == nil || !d.solved {
		return 0, nil, fmt.Errorf("%w: search draft not solved", ErrInvalid)
	}
	if _, dup := c.searches[d.q.Token]; dup || d.started {
		// Even after the search ended: its token and key are used once.
		return 0, nil, fmt.Errorf("%w: search draft already started", ErrInvalid)
	}
	d.started = true
	if len(c.searches) >= c.o.MaxSearches {
		d.key.Destroy()
		return 0, nil, fmt.Errorf("%w: %d searches running", ErrRateLimited, len(c.searches))
	}
	local, err := c.Search(now, d.filter)
	if err != nil {
		d.key.Destroy()
		return 0, nil, err
	}
	j := c.jitter()
	raw, err := buildQuery(&d.q, j, c.o.QueryTTL-min(j, c.o.QueryTTL-1))
	if err != nil {
		d.key.Destroy()
		return 0, nil, err
	}
	c.nextID++
	s := &search{id: c.nextID, token: d.q.Token, key: d.key, filter: d.filter,
		expires: now.Add(c.o.SearchLifetime), results: make(map[SlotRef]Result)}
	for _, r := range local {
		s.results[r.Ref] = r
	}
	c.searches[s.token] = s
	c.stats.NetworkSearches++
	if c.o.QueryRepeat > 0 {
		// Half to one and a half QueryRepeat later, so that the patients'
		// neighbours that repeat too do not do so in step.
		s.repeat = now.Add(c.o.QueryRepeat/2 + time.Duration(c.randN(uint64(c.o.QueryRepeat))))
		s.raw = raw
	}
	c.emit(&Originate{Kind: envelope.KindQuery, Raw: raw})
	return s.id, local, nil
}

// SearchNetwork prepares, solves (on the calling goroutine) and starts a
// network search. Convenient for tests and low difficulties; the daemon
// should Solve outside its event loop.
func (c *Core) SearchNetwork(ctx context.Context, now time.Time, f Filter) (SearchID, []Result, error) {
	d, err := c.PrepareSearch(now, f)
	if err != nil {
		return 0, nil, err
	}
	if err := d.Solve(ctx); err != nil {
		return 0, nil, err
	}
	return c.StartSearch(now, d)
}

// SearchResults returns everything a search found so far (local and
// network, deduplicated, sorted) and whether it is still running. A search
// that ended is forgotten: ok is false.
func (c *Core) SearchResults(id SearchID) (results []Result, ok bool) {
	for _, s := range c.searches {
		if s.id == id {
			for _, r := range s.results {
				results = append(results, r)
			}
			sortResults(results)
			return results, true
		}
	}
	return nil, false
}

func sortResults(rs []Result) {
	slices.SortFunc(rs, func(a, b Result) int {
		if c := a.Slot.Start.Compare(b.Slot.Start); c != 0 {
			return c
		}
		if c := bytes.Compare(a.Ref.Therapist[:], b.Ref.Therapist[:]); c != 0 {
			return c
		}
		return int(a.Ref.Slot) - int(b.Ref.Slot)
	})
}

func (c *Core) tickSearches(now time.Time) {
	var done, again []*search
	for _, s := range c.searches {
		if !now.Before(s.expires) {
			done = append(done, s)
		} else if !s.repeat.IsZero() && !now.Before(s.repeat) {
			again = append(again, s)
		}
	}
	// The query once more: on a shared medium the first copy may have been
	// lost at most neighbours; those that got it drop the copy (the
	// router's duplicate check, and the core's token replay set).
	slices.SortFunc(again, func(a, b *search) int { return cmp.Compare(a.id, b.id) })
	for _, s := range again {
		s.repeat = time.Time{}
		c.emit(&Originate{Kind: envelope.KindQuery, Raw: s.raw})
	}
	slices.SortFunc(done, func(a, b *search) int { return cmp.Compare(a.id, b.id) })
	for _, s := range done {
		s.key.Destroy()
		delete(c.searches, s.token)
		c.emit(&SearchUpdate{ID: s.id, Done: true})
	}
}

// onSearchReply handles an answer to an own search.
func (c *Core) onSearchReply(now time.Time, s *search, e *envelope.Envelope) error {
	payload, port, err := s.key.OpenReply(e)
	if err != nil {
		return c.reject(now, fmt.Errorf("%w: %w", ErrForged, err))
	}
	if port != Port {
		return c.reject(now, fmt.Errorf("%w: reply on port %d", ErrWrongTopic, port))
	}
	raws, err := decodeResults(payload)
	if err != nil {
		return c.reject(now, err)
	}
	var fresh []Result
	var firstErr error
	for _, raw := range raws {
		c.stats.ResultsReceived++
		if _, err := c.ingest(now, raw, false); err != nil && !errorsIsDup(err) {
			c.reject(now, err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		a, err := peekAnnounce(raw)
		if err != nil {
			continue
		}
		// Match against the cache's view of this therapist, so a page
		// superseded meanwhile does not resurrect slots.
		ref := SlotRef{Therapist: a.Therapist}
		for i := range a.Slots {
			ref.Slot = a.Slots[i].ID
			ce, cs := c.cache.find(ref, now)
			if ce == nil || !s.filter.matchProfile(&ce.ann.Profile) || !s.filter.matchSlot(cs, now) {
				continue
			}
			if _, dup := s.results[ref]; dup {
				continue
			}
			r := c.resultOf(ce, cs, now)
			s.results[ref] = r
			fresh = append(fresh, r)
		}
	}
	if len(fresh) > 0 {
		sortResults(fresh)
		c.emit(&SearchUpdate{ID: s.id, New: fresh})
	}
	if len(fresh) == 0 && firstErr != nil {
		return firstErr
	}
	return nil
}

func errorsIsDup(err error) bool { return Reason(err) == "duplicate" }

// onQuery answers and judges a network search from a neighbour.
func (c *Core) onQuery(now time.Time, from Neighbour, raw []byte) (Verdict, error) {
	e, err := envelope.Parse(raw)
	if err != nil {
		return Drop, c.reject(now, fmt.Errorf("%w: %w", ErrMalformed, err))
	}
	if e.Kind != envelope.KindQuery || e.Topic != Topic {
		return Drop, c.reject(now, fmt.Errorf("%w: %s topic %d", ErrWrongTopic, e.Kind, e.Topic))
	}
	if _, own := c.searches[e.Token]; own {
		return Drop, nil
	}
	q, err := decodeQueryBody(e.Token, e.Body)
	if err != nil {
		return Drop, c.reject(now, err)
	}
	if q.Time.Before(now.Add(-c.o.QueryMaxAge)) {
		return Drop, c.reject(now, fmt.Errorf("%w: query made %s", ErrExpired, q.Time.Format(time.RFC3339)))
	}
	if q.Time.After(now.Add(c.o.ClockSkew)) {
		return Drop, c.reject(now, fmt.Errorf("%w: query made %s", ErrFuture, q.Time.Format(time.RFC3339)))
	}
	if got := stampBits(queryPoWInput(q.Token, e.Body), q.Nonce); got < c.o.QueryBits {
		return Drop, c.reject(now, fmt.Errorf("%w: %d bits, need %d", ErrProofOfWork, got, c.o.QueryBits))
	}
	if c.seenQueries.has(q.Token, now) {
		return Drop, c.reject(now, fmt.Errorf("%w: query token %x", ErrReplay, q.Token[:]))
	}
	if !c.queryLimit.allow(from, now) {
		return Drop, c.reject(now, fmt.Errorf("%w: neighbour %q", ErrRateLimited, from))
	}
	c.seenQueries.add(q.Token, now.Add(c.o.QueryMaxAge+c.o.ClockSkew))
	// A node with matches does not relay: the announce floods replicate
	// caches, so the nodes behind it would send the same announces again
	// (measured in meshsim's fapp-200: every node in the query's scope
	// answering cost over 100 KB on air per search). Only nodes without a
	// match (or over their answer limit) pass the query on: a ring that
	// expands until it finds answers.
	if c.answer(now, &q) {
		return Keep, nil
	}
	return Relay, nil
}

// SetNeighbours tells the core how many neighbours this node hears on the
// link a query arrives on (its radio neighbours on a LoRa link, 1 on a
// point-to-point link), before OnFlood. The answer fan-out uses it
// (Options.AnswerFanout). Zero: unknown; every node with matches answers.
func (c *Core) SetNeighbours(n int) { c.neighbours = max(0, n) }

// answer replies to q from the cache. It reports whether the query is
// dealt with here: answered, or left to the other neighbours of the
// querier (the fan-out); false when nothing matched or the answer limit
// was reached.
func (c *Core) answer(now time.Time, q *Query) bool {
	type page struct {
		e        *entry
		first    time.Time
		verified bool
	}
	var pages []page
	idx := map[*entry]int{}
	c.cache.matches(&q.Filter, now, func(e *entry, s *Slot) {
		if i, ok := idx[e]; ok {
			if s.Start.Before(pages[i].first) {
				pages[i].first = s.Start
			}
			return
		}
		idx[e] = len(pages)
		pages = append(pages, page{e: e, first: s.Start, verified: c.cache.verifiedOf(e, now)})
	})
	if len(pages) == 0 {
		return false
	}
	// Fan-out: the querier's neighbours all hold about the same cache, and
	// on a shared medium their answers compete for its one radio (in
	// fapp-200 a patient with 34 neighbours got under a third of their
	// answers). Each answers with probability AnswerFanout/neighbours, so
	// about AnswerFanout answers come, whatever the density; in random
	// orders (below) they carry different pages.
	if k := c.o.AnswerFanout; c.neighbours > k && c.randN(uint64(c.neighbours)) >= uint64(k) {
		c.stats.QueriesLeft++
		return true
	}
	if !c.answerLimit.allow(struct{}{}, now) {
		c.reject(now, fmt.Errorf("%w: answers", ErrRateLimited))
		return false
	}
	// Verified first; within each class a random order. Every neighbour of
	// the patient answers from a cache much like its own, so answers in a
	// fixed order (say, soonest slot first) would all carry the same few
	// pages when more match than one answer holds; in random orders the
	// answers together carry them all (measured in meshsim's fapp-200).
	slices.SortStableFunc(pages, func(a, b page) int { return cmp.Compare(a.e.order, b.e.order) })
	for i := len(pages) - 1; i > 0; i-- {
		j := int(c.randN(uint64(i + 1)))
		pages[i], pages[j] = pages[j], pages[i]
	}
	slices.SortStableFunc(pages, func(a, b page) int {
		switch {
		case a.verified == b.verified:
			return 0
		case a.verified:
			return -1
		}
		return 1
	})
	limit := min(q.Filter.Limit, c.o.RepliesPerQuery*MaxReplyRecords)
	if len(pages) > limit {
		pages = pages[:limit]
	}
	to := envelope.ReplyTo{Token: q.Token, Key: q.ReplyKey}
	sent, replies := 0, 0
	var batch [][]byte
	size := 2
	flush := func() {
		if len(batch) == 0 {
			return
		}
		payload, err := appendResults(nil, batch)
		if err == nil {
			var raw []byte
			raw, err = envelope.SealAnonReply(c.o.Entropy, to, payload, Port, c.o.AnonTTL)
			if err == nil {
				c.sendReply(now, &SendReply{Token: q.Token, Raw: raw})
				replies++
				sent += len(batch)
				c.stats.RepliesSent++
				c.stats.RecordsSent += uint64(len(batch))
			}
		}
		if err != nil {
			c.log.Debug("fapp: cannot answer query", "err", err)
		}
		batch, size = nil, 2
	}
	for _, p := range pages {
		rec, err := recordOf(p.e.raw)
		if err != nil {
			continue
		}
		if len(batch) == MaxReplyRecords || size+len(rec) > c.o.ReplyPayload {
			flush()
			if replies >= c.o.RepliesPerQuery {
				break
			}
		}
		batch = append(batch, rec)
		size += len(rec)
	}
	if replies < c.o.RepliesPerQuery {
		flush()
	}
	if sent > 0 {
		c.stats.QueriesAnswered++
	}
	return sent > 0
}

// maxDelayedReplies bounds the answers waiting for their instant
// (Options.AnswerSpread).
const maxDelayedReplies = 256

type delayedReply struct {
	due time.Time
	r   *SendReply
}

// sendReply emits an answer to a query now, or at a random instant within
// AnswerSpread.
func (c *Core) sendReply(now time.Time, r *SendReply) {
	if c.o.AnswerSpread <= 0 {
		c.emit(r)
		return
	}
	if len(c.delayed) >= maxDelayedReplies {
		c.reject(now, fmt.Errorf("%w: %d answers waiting", ErrRateLimited, len(c.delayed)))
		return
	}
	due := now.Add(time.Duration(c.randN(uint64(c.o.AnswerSpread))))
	c.delayed = append(c.delayed, delayedReply{due: due, r: r})
}

// tickReplies emits the answers that are due.
func (c *Core) tickReplies(now time.Time) {
	keep := c.delayed[:0]
	for _, d := range c.delayed {
		if now.Before(d.due) {
			keep = append(keep, d)
			continue
		}
		c.emit(d.r)
	}
	clear(c.delayed[len(keep):])
	c.delayed = keep
}

// randN returns a uniform number below n (n > 0) from the entropy source.
func (c *Core) randN(n uint64) uint64 {
	var b [8]byte
	if c.random(b[:]) != nil || n == 0 {
		return 0
	}
	return binary.BigEndian.Uint64(b[:]) % n
}

// OwnsToken reports whether token is one this core is waiting on: a
// running search's or a reservation attempt's. The node offers an
// anon-reply to FAPP only then (other applications issue tokens too).
func (c *Core) OwnsToken(token envelope.Token) bool {
	if _, ok := c.searches[token]; ok {
		return true
	}
	_, ok := c.resByTok[token]
	return ok
}

// OnAnonReply handles an anon-reply the router delivered for token: the
// answers to an own search or reservation.
func (c *Core) OnAnonReply(now time.Time, token envelope.Token, raw []byte) error {
	start := c.begin()
	defer c.end(start)
	e, err := envelope.Parse(raw)
	if err != nil {
		return c.reject(now, fmt.Errorf("%w: %w", ErrMalformed, err))
	}
	if e.Kind != envelope.KindAnonReply {
		return c.reject(now, fmt.Errorf("%w: %s", ErrWrongTopic, e.Kind))
	}
	if e.Token != token {
		return c.reject(now, fmt.Errorf("%w: envelope token differs", ErrMalformed))
	}
	if s, ok := c.searches[token]; ok {
		return c.onSearchReply(now, s, &e) // counts its own rejects
	}
	if id, ok := c.resByTok[token]; ok {
		if r := c.res[id]; r != nil {
			if err := c.onAnswer(now, r, &e); err != nil {
				return c.reject(now, err)
			}
			return nil
		}
	}
	return c.reject(now, fmt.Errorf("%w: %x", ErrUnknownToken, token[:]))
}

// peekAnnounce decodes an announce envelope without checking its signature
// (for bytes already authenticated, or to be looked up in the cache).
func peekAnnounce(raw []byte) (*Announce, error) {
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
	return &a, nil
}
