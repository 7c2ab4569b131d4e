package broadcast

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// history keeps recent channel envelopes, as they came off the air, to
// answer catch-up requests: bounded by age, count per tag and total bytes.
// The ciphertexts are opaque to it; it never needs keys. Items are kept in
// one queue per tag, in arrival order, so every bound drops from a queue's
// front.
type history struct {
	byTag      map[[4]byte][]*hitem
	byID       map[[8]byte]*hitem
	n          int
	bytes      int
	seq        uint64
	dirty      bool
	dirtySince time.Time
}

type hitem struct {
	tag [4]byte
	id  [8]byte
	at  time.Time
	seq uint64 // arrival order
	raw []byte
}

func (h *history) init() {
	h.byID = map[[8]byte]*hitem{}
	h.byTag = map[[4]byte][]*hitem{}
}

func (h *history) markDirty(now time.Time) {
	if !h.dirty {
		h.dirty, h.dirtySince = true, now
	}
}

// add keeps raw (a parsed channel envelope); false if it was there.
func (h *history) add(now time.Time, raw []byte, o *Options) bool {
	if len(raw) < envelope.HeaderSize+envelope.HintSize {
		return false
	}
	id := messageID(raw)
	if _, ok := h.byID[id]; ok {
		return false
	}
	h.seq++
	it := &hitem{id: id, at: now, seq: h.seq, raw: append([]byte(nil), raw...)}
	copy(it.tag[:], raw[envelope.HeaderSize:])
	// Normalise the hop count: a reply hands the envelope on as it was
	// first sent, whatever path it took to us.
	it.raw[envelope.OffsetHops] = 0
	h.insert(it)
	h.markDirty(now)
	h.prune(now, o)
	return true
}

func (h *history) insert(it *hitem) {
	h.byTag[it.tag] = append(h.byTag[it.tag], it)
	h.byID[it.id] = it
	h.n++
	h.bytes += len(it.raw)
}

// popFront drops the oldest item of a tag.
func (h *history) popFront(tag [4]byte) {
	q := h.byTag[tag]
	it := q[0]
	q[0] = nil
	if len(q) == 1 {
		delete(h.byTag, tag)
	} else {
		h.byTag[tag] = q[1:]
	}
	delete(h.byID, it.id)
	h.n--
	h.bytes -= len(it.raw)
}

// prune enforces the bounds, dropping oldest first.
func (h *history) prune(now time.Time, o *Options) {
	n := h.n
	for tag, q := range h.byTag {
		for len(q) > 0 && (len(q) > o.HistoryMaxCount || now.Sub(q[0].at) > o.HistoryMaxAge) {
			h.popFront(tag)
			q = h.byTag[tag]
		}
	}
	for h.bytes > o.HistoryMaxBytes && h.n > 0 {
		var oldest [4]byte
		first := true
		for tag, q := range h.byTag {
			if first || q[0].seq < h.byTag[oldest][0].seq {
				oldest, first = tag, false
			}
		}
		h.popFront(oldest)
	}
	if h.n != n {
		h.markDirty(now)
	}
}

// ordered returns the items of the given tags (nil: all) in arrival order.
func (h *history) ordered(tags [][4]byte) []*hitem {
	var out []*hitem
	if tags == nil {
		for _, q := range h.byTag {
			out = append(out, q...)
		}
	} else {
		seen := map[[4]byte]bool{}
		for _, t := range tags {
			if !seen[t] {
				seen[t] = true
				out = append(out, h.byTag[t]...)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

func (h *history) nextWake(o *Options) time.Time {
	if !h.dirty {
		return time.Time{}
	}
	return h.dirtySince.Add(o.HistorySaveEvery)
}

// selectFor picks what a request lacks, oldest first, within budget bytes.
func (h *history) selectFor(now time.Time, q *historyQuery, budget int) (items []wireItem, more bool) {
	have := make(map[[4]byte]bool, len(q.have))
	for _, x := range q.have {
		have[x] = true
	}
	maxAge := time.Duration(q.maxAge) * time.Second
	used := historyReplyHeader
	for _, it := range h.ordered(q.tags) {
		age := now.Sub(it.at)
		if age > maxAge || have[[4]byte(it.id[:4])] {
			continue
		}
		if used+historyItemOverhead+len(it.raw) > budget || len(items) == 255 {
			more = true
			break
		}
		used += historyItemOverhead + len(it.raw)
		items = append(items, wireItem{age: uint32(max(age, 0) / time.Second), raw: it.raw})
	}
	return items, more
}

// haveIDs lists the id prefixes held for tags, newest first, and when the
// oldest listed arrived.
func (h *history) haveIDs(now time.Time, tags [][4]byte, maxAge time.Duration) (ids [][4]byte, oldest time.Time) {
	items := h.ordered(tags)
	for i := len(items) - 1; i >= 0 && len(ids) < maxQueryHave; i-- {
		if now.Sub(items[i].at) <= maxAge {
			ids = append(ids, [4]byte(items[i].id[:4]))
			oldest = items[i].at
		}
	}
	return ids, oldest
}

// pendingQuery is a history request this node sent: the one-time key that
// opens the replies.
type pendingQuery struct {
	ch       ChannelID
	key      *envelope.ReplyKey
	expires  time.Time
	round    int
	followed bool
}

const (
	queryLife           = 2 * time.Minute
	maxQueries          = 16
	maxRounds           = 8
	minCatchUpInterval  = 20 * time.Second
	catchingUpFor       = 10 * time.Minute
	historyReplyHeader  = 3
	historySlack        = 5 * time.Minute
	historyItemOverhead = 6
)

// CatchUp asks neighbours for the channel's recent messages this node
// lacks (a history request, query topic 2). Call it when the node comes
// back online; for the next minutes, epochs learnt from commits that were
// held for this node are caught up too.
func (c *Core) CatchUp(now time.Time, id ChannelID) error {
	ch := c.chans[id]
	if ch == nil {
		return fieldErr(ErrUnknownChannel, "%s", id)
	}
	if ch.status != StatusActive {
		return fieldErr(ErrNotMember, "channel %s is %s", id, ch.status)
	}
	c.catchingUntil = now.Add(catchingUpFor)
	c.requestHistory(now, ch, 0)
	c.schedule(now)
	return nil
}

// CatchUpAll is CatchUp for every active channel.
func (c *Core) CatchUpAll(now time.Time) {
	c.catchingUntil = now.Add(catchingUpFor)
	for _, id := range c.sortedIDs() {
		if ch := c.chans[id]; ch.status == StatusActive {
			c.requestHistory(now, ch, 0)
		}
	}
	c.schedule(now)
}

func (c *Core) sortedIDs() []ChannelID {
	ids := make([]ChannelID, 0, len(c.chans))
	for id := range c.chans {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	return ids
}

// planCatchUp schedules a history request after an epoch was learnt from
// someone else: at once after a resync, else only while catching up after
// coming back online (messages of an epoch whose commit was held for us).
func (c *Core) planCatchUp(now time.Time, ch *channel, force bool) {
	if force {
		ch.catchUpAt = now
	} else if now.Before(c.catchingUntil) {
		ch.catchUpAt = earliest(ch.catchUpAt, now.Add(c.o.GapWait))
	}
}

// requestHistory floods a history request for the channel's known tags.
func (c *Core) requestHistory(now time.Time, ch *channel, round int) {
	if round == 0 && !ch.lastCatchUp.IsZero() && now.Sub(ch.lastCatchUp) < minCatchUpInterval {
		ch.catchUpAt = ch.lastCatchUp.Add(minCatchUpInterval)
		return
	}
	var tags [][4]byte
	if ch.open != nil {
		tags = append(tags, [4]byte(ch.open.tag[:4]))
	} else {
		eps := append([]*epoch(nil), ch.epochs...)
		sort.SliceStable(eps, func(i, j int) bool { return eps[i].num > eps[j].num })
		for _, e := range eps {
			if e.k != nil && len(tags) < maxQueryTags {
				tags = append(tags, e.tagHint())
			}
		}
	}
	if len(tags) == 0 {
		return
	}
	for t, q := range c.queries {
		if !now.Before(q.expires) {
			q.key.Destroy()
			delete(c.queries, t)
		}
	}
	if len(c.queries) >= maxQueries {
		return
	}
	key, err := envelope.NewReplyKey(c.rand)
	if err != nil {
		c.log.Debug("history request: no reply key", "err", err)
		return
	}
	var tok envelope.Token
	if err := c.random(tok[:]); err != nil {
		return
	}
	q := historyQuery{replyKey: key.Public(), maxAge: uint32(c.o.HistoryMaxAge / time.Second), tags: tags}
	var oldest time.Time
	q.have, oldest = c.hist.haveIDs(now, tags, c.o.HistoryMaxAge)
	if len(q.have) == maxQueryHave {
		// The list cannot name everything held: ask only for what is younger
		// than the oldest listed (with slack for the responders' arrival
		// times), or responders would resend what this node has but could
		// not list.
		q.maxAge = uint32(min(c.o.HistoryMaxAge, now.Sub(oldest)+historySlack) / time.Second)
	}
	e := envelope.Envelope{Kind: envelope.KindQuery, TTL: c.o.HistoryTTL, Topic: TopicHistory, Token: tok, Body: q.append(nil)}
	raw, err := e.Append(nil)
	if err != nil {
		c.log.Debug("history request does not encode", "err", err)
		return
	}
	c.queries[tok] = &pendingQuery{ch: ch.id, key: key, expires: now.Add(queryLife), round: round}
	ch.lastCatchUp = now
	c.stats.HistoryRequests++
	c.emit(&Flood{Raw: raw, Kind: envelope.KindQuery})
}

// HandleQuery answers a history request (routing.FloodReceived with Kind
// envelope.KindQuery and topic TopicHistory) with the messages this node
// holds for its tags that the requester lacks, if any. A request that is
// answered yields a Reply action.
func (c *Core) HandleQuery(now time.Time, raw []byte) error {
	e, err := envelope.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if e.Kind != envelope.KindQuery || e.Topic != TopicHistory {
		return fieldErr(ErrMalformed, "%s envelope (topic %d) is not a history request", e.Kind, e.Topic)
	}
	if _, own := c.queries[e.Token]; own {
		return nil
	}
	q, err := decodeQuery(e.Body)
	if err != nil {
		return err
	}
	c.hist.prune(now, &c.o)
	items, more := c.hist.selectFor(now, q, c.o.HistoryReplyBytes)
	if len(items) == 0 {
		return nil
	}
	if !c.bucket.take(now, c.o.HistoryRepliesPerMinute) {
		c.stats.RateLimited++
		return fieldErr(ErrRateLimited, "history reply budget spent")
	}
	rep := historyReply{more: more, items: items}
	c.stats.HistoryReplies++
	c.stats.HistoryServed += uint64(len(items))
	c.emit(&Reply{To: envelope.ReplyTo{Token: e.Token, Key: q.replyKey}, Payload: rep.append(nil)})
	c.schedule(now)
	return nil
}

// OwnsToken reports whether t is the reply token of a history request this
// node has pending, so the driver knows to pass the AnonReplyReceived to
// HandleReply (other applications use anon replies too).
func (c *Core) OwnsToken(t envelope.Token) bool {
	_, ok := c.queries[t]
	return ok
}

// HandleReply takes a history reply (routing.AnonReplyReceived for a token
// of a request this node sent). Each message in it is handled like a
// received one: delivered at most once, with Deliver.History set.
func (c *Core) HandleReply(now time.Time, token envelope.Token, raw []byte) error {
	pq := c.queries[token]
	if pq == nil || !now.Before(pq.expires) {
		return fieldErr(ErrUnknownReply, "token %x", token[:])
	}
	e, err := envelope.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	payload, port, err := pq.key.OpenReply(&e)
	if err != nil {
		return fmt.Errorf("%w: history reply: %w", ErrAuth, err)
	}
	if port != PortControl {
		return fieldErr(ErrMalformed, "history reply on port %d", port)
	}
	err = c.handleReplyPayload(now, pq, payload)
	c.schedule(now)
	return err
}

// handleReplyPayload handles the opened payload of a history reply.
func (c *Core) handleReplyPayload(now time.Time, pq *pendingQuery, payload []byte) error {
	rep, err := decodeReply(payload)
	if err != nil {
		return err
	}
	for _, it := range rep.items {
		age := time.Duration(it.age) * time.Second
		if age > c.o.HistoryMaxAge {
			age = c.o.HistoryMaxAge
		}
		if err := c.receive(now, it.raw, now.Add(-age), true); err != nil {
			c.log.Debug("history item refused", "err", err)
		}
	}
	if ch := c.chans[pq.ch]; ch != nil && rep.more && !pq.followed && pq.round+1 < maxRounds {
		pq.followed = true
		c.requestHistory(now, ch, pq.round+1)
	}
	return nil
}

func (c *Core) tickHistory(now time.Time) {
	c.hist.prune(now, &c.o)
	if c.hist.dirty && !now.Before(c.hist.nextWake(&c.o)) {
		c.emit(&SaveHistory{State: c.hist.marshal()})
		c.hist.dirty = false
	}
	for t, q := range c.queries {
		if !now.Before(q.expires) {
			q.key.Destroy()
			delete(c.queries, t)
		}
	}
}

// FlushHistory returns a SaveHistory action now if the cache changed (for
// a clean shutdown).
func (c *Core) FlushHistory() {
	if c.hist.dirty {
		c.emit(&SaveHistory{State: c.hist.marshal()})
		c.hist.dirty = false
	}
}

// tokenBucket paces history replies.
type tokenBucket struct {
	tokens float64
	last   time.Time
	init   bool
}

func (b *tokenBucket) take(now time.Time, perMinute int) bool {
	capacity := float64(perMinute)
	if !b.init {
		b.tokens, b.last, b.init = capacity, now, true
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(capacity, b.tokens+capacity*d.Minutes())
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// History state record: "MSHH", version 1, count (4), then per item:
// arrival time (8, Unix ns), length (2), envelope.
const (
	histMagic   = "MSHH"
	histVersion = 1
)

func (h *history) marshal() []byte {
	b := append([]byte(histMagic), histVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(h.n))
	for _, it := range h.ordered(nil) {
		b = appendTime(b, it.at)
		b = binary.BigEndian.AppendUint16(b, uint16(len(it.raw)))
		b = append(b, it.raw...)
	}
	return b
}

// LoadHistory restores the history cache from a SaveHistory record.
// Entries that are malformed make the whole record refused (ErrCorrupt);
// the cache is then unchanged.
func (c *Core) LoadHistory(now time.Time, b []byte) error {
	var h history
	h.init()
	if err := h.unmarshal(b); err != nil {
		return err
	}
	h.prune(now, &c.o)
	h.dirty = false
	c.hist = h
	return nil
}

func (h *history) unmarshal(b []byte) error {
	r := &reader{b: b, what: "history"}
	if m := r.take(len(histMagic), "magic"); r.err == nil && string(m) != histMagic {
		r.fail(ErrCorrupt, "magic")
	}
	if v := r.u8("version"); r.err == nil && v != histVersion {
		r.fail(ErrVersion, "version")
	}
	n := int(r.u32("count"))
	if r.err == nil && n > len(r.b)/(8+2+envelope.HeaderSize) {
		r.fail(ErrCorrupt, "count")
	}
	for i := 0; i < n && r.err == nil; i++ {
		at := r.time("arrival")
		raw := r.take(int(r.u16("length")), "envelope")
		if r.err != nil {
			break
		}
		e, err := envelope.Parse(raw)
		if err != nil || e.Kind != envelope.KindChannel {
			r.fail(ErrCorrupt, "envelope")
			break
		}
		h.seq++
		it := &hitem{id: messageID(raw), at: at, seq: h.seq, raw: append([]byte(nil), raw...)}
		copy(it.tag[:], raw[envelope.HeaderSize:])
		if _, dup := h.byID[it.id]; dup {
			r.fail(ErrCorrupt, "duplicate envelope")
			break
		}
		h.insert(it)
	}
	if err := r.end(); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}
