package fapp

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// SlotRef names one slot of one therapist: what `fapp reserve` takes.
type SlotRef struct {
	Therapist envelope.PublicKey
	Slot      SlotID
}

// String is the therapist key in hex, a slash, and the slot id.
func (r SlotRef) String() string { return r.Therapist.String() + "/" + strconv.Itoa(int(r.Slot)) }

// ParseSlotRef reads what String writes.
func ParseSlotRef(s string) (SlotRef, error) {
	var r SlotRef
	k, id, ok := strings.Cut(strings.TrimSpace(s), "/")
	kb, err := hex.DecodeString(k)
	if !ok || err != nil || len(kb) != envelope.PublicKeySize {
		return r, fmt.Errorf("%w: slot %q (want <64 hex digits>/<id>)", ErrInvalid, s)
	}
	n, err := strconv.ParseUint(id, 10, 16)
	if err != nil {
		return r, fmt.Errorf("%w: slot id %q", ErrInvalid, id)
	}
	copy(r.Therapist[:], kb)
	r.Slot = SlotID(n)
	return r, nil
}

// MarshalText writes String.
func (r SlotRef) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads String's form.
func (r *SlotRef) UnmarshalText(b []byte) (err error) {
	*r, err = ParseSlotRef(string(b))
	return err
}

// Result is one matching slot.
type Result struct {
	Ref     SlotRef   `json:"ref"`
	Profile Profile   `json:"profile"`
	Slot    Slot      `json:"slot"`
	Trust   Trust     `json:"trust"`
	Seq     uint32    `json:"seq"`
	Expires time.Time `json:"expires"`
}

// entry is one cached announce page.
type entry struct {
	ann   *Announce
	raw   []byte // the envelope with hops and TTL zeroed
	by    []int  // per endorsement: index of the signing anchor, or -1
	order uint64 // admission order: a deterministic tie-break
}

func (e *entry) size() int { return len(e.raw) + entryOverhead }

// entryOverhead approximates the decoded form's memory, so that CacheBytes
// bounds real memory rather than wire bytes alone.
const entryOverhead = 256

// therapist is everything cached about one therapist key. It outlives its
// pages (as a skeleton) so that an old announce replayed after its page
// expired or was evicted is still recognised as a rollback.
type therapist struct {
	key   envelope.PublicKey
	pages [MaxPages]*entry
	seqs  [MaxPages]uint32 // last accepted sequence per page
	top   uint32           // highest accepted sequence
	count int              // page count announced at top
	live  int              // pages held
	used  uint64           // admission order of the newest page (skeleton eviction)
}

// cache holds current announces, bounded by entries and bytes.
type cache struct {
	maxEntries, maxBytes, maxSkeletons int
	anchors                            []Anchor
	byKey                              map[envelope.PublicKey]*therapist
	entries, bytes                     int
	next                               uint64
	evicted, expired                   uint64
}

func newCache(maxEntries, maxBytes int, anchors []Anchor) *cache {
	return &cache{maxEntries: maxEntries, maxBytes: maxBytes, maxSkeletons: 4 * maxEntries, anchors: anchors,
		byKey: make(map[envelope.PublicKey]*therapist)}
}

// checkSeq says whether a could be admitted as far as sequence numbers go:
// ErrDuplicate for a page already held at that sequence, ErrRollback for an
// older one or for a page beyond the count the newest announce gave.
func (c *cache) checkSeq(a *Announce) error {
	t := c.byKey[a.Therapist]
	if t == nil {
		return nil
	}
	switch s := t.seqs[a.Page]; {
	case a.Seq < t.top && a.Page >= t.count:
		return fmt.Errorf("%w: therapist %s page %d was withdrawn at seq %d", ErrRollback, a.Therapist.Address(), a.Page, t.top)
	case s != 0 && a.Seq == s:
		return fmt.Errorf("%w: therapist %s page %d seq %d", ErrDuplicate, a.Therapist.Address(), a.Page, a.Seq)
	case a.Seq < s:
		return fmt.Errorf("%w: therapist %s page %d seq %d, have %d", ErrRollback, a.Therapist.Address(), a.Page, a.Seq, s)
	case a.Seq == t.top:
		// Another page claiming the sequence number of the newest one: only
		// a therapist reusing numbers does that.
		return fmt.Errorf("%w: therapist %s seq %d already used by another page", ErrRollback, a.Therapist.Address(), a.Seq)
	}
	return nil
}

// rank orders entries for eviction: the lower is evicted first. Verified
// entries (by this node's anchors) outrank unverified ones; then the later
// expiry; then the later admission.
type rank struct {
	verified bool
	expires  time.Time
	order    uint64
}

func (a rank) less(b rank) bool {
	if a.verified != b.verified {
		return !a.verified
	}
	if !a.expires.Equal(b.expires) {
		return a.expires.Before(b.expires)
	}
	return a.order < b.order
}

// admit stores a (already checked by checkSeq, authenticated, endorsements
// checked) and returns the new entry. When the cache is full, lower-ranked
// entries are evicted; if a itself ranks lowest, nothing changes and the
// error is ErrCacheFull.
func (c *cache) admit(now time.Time, a *Announce, raw []byte, by []int, verified bool) (*entry, error) {
	c.expire(now)
	e := &entry{ann: a, raw: raw, by: by, order: c.next + 1}
	t := c.byKey[a.Therapist]
	var replaced *entry
	if t != nil {
		replaced = t.pages[a.Page]
	}
	// Pages a newer announce withdraws free room too.
	var withdrawn []*entry
	if t != nil && a.Seq > t.top {
		for p := a.Pages; p < MaxPages; p++ {
			if t.pages[p] != nil && t.pages[p] != replaced {
				withdrawn = append(withdrawn, t.pages[p])
			}
		}
	}
	entries, size := c.entries+1, c.bytes+e.size()
	if replaced != nil {
		entries, size = entries-1, size-replaced.size()
	}
	for _, w := range withdrawn {
		entries, size = entries-1, size-w.size()
	}
	var victims []*entry
	if entries > c.maxEntries || size > c.maxBytes {
		cand := rank{verified, a.Expires, e.order}
		var all []*entry
		for _, th := range c.byKey {
			for _, pe := range th.pages {
				if pe != nil && pe != replaced && !slices.Contains(withdrawn, pe) {
					all = append(all, pe)
				}
			}
		}
		ranks := make(map[*entry]rank, len(all))
		for _, pe := range all {
			ranks[pe] = rank{c.verifiedOf(pe, now), pe.ann.Expires, pe.order}
		}
		slices.SortFunc(all, func(x, y *entry) int {
			if ranks[x].less(ranks[y]) {
				return -1
			}
			if ranks[y].less(ranks[x]) {
				return 1
			}
			return 0
		})
		for _, pe := range all {
			if entries <= c.maxEntries && size <= c.maxBytes {
				break
			}
			if !ranks[pe].less(cand) {
				return nil, fmt.Errorf("%w: %d entries, %d bytes", ErrCacheFull, c.entries, c.bytes)
			}
			victims = append(victims, pe)
			entries, size = entries-1, size-pe.size()
		}
		if entries > c.maxEntries || size > c.maxBytes {
			return nil, fmt.Errorf("%w: announce larger than the cache", ErrCacheFull)
		}
	}
	// Commit.
	c.next++
	for _, v := range victims {
		c.drop(v)
		c.evicted++
	}
	if t == nil {
		t = &therapist{key: a.Therapist}
		c.byKey[a.Therapist] = t
	}
	if a.Seq > t.top {
		t.top, t.count = a.Seq, a.Pages
		for p := a.Pages; p < MaxPages; p++ {
			if t.pages[p] != nil {
				c.drop(t.pages[p])
			}
		}
	}
	if old := t.pages[a.Page]; old != nil {
		c.drop(old)
	}
	t.pages[a.Page], t.seqs[a.Page] = e, a.Seq
	t.live++
	t.used = e.order
	c.entries++
	c.bytes += e.size()
	c.trimSkeletons() // after t has its page, so it is not a skeleton
	return e, nil
}

// verifiedOf reports whether an entry counts as verified at now by this
// node's anchors.
func (c *cache) verifiedOf(e *entry, now time.Time) bool {
	return judge(c.anchors, e.ann, e.by, now).Verified
}

// drop removes one page.
func (c *cache) drop(e *entry) {
	t := c.byKey[e.ann.Therapist]
	if t == nil || t.pages[e.ann.Page] != e {
		return
	}
	t.pages[e.ann.Page] = nil
	t.live--
	c.entries--
	c.bytes -= e.size()
}

// expire drops pages whose expiry has passed.
func (c *cache) expire(now time.Time) {
	for _, t := range c.byKey {
		for _, e := range t.pages {
			if e != nil && !now.Before(e.ann.Expires) {
				c.drop(e)
				c.expired++
			}
		}
	}
}

// trimSkeletons forgets the longest-unused therapists without pages when
// there are too many.
func (c *cache) trimSkeletons() {
	if len(c.byKey) <= c.maxEntries+c.maxSkeletons {
		return
	}
	var sk []*therapist
	for _, t := range c.byKey {
		if t.live == 0 {
			sk = append(sk, t)
		}
	}
	slices.SortFunc(sk, func(a, b *therapist) int {
		if a.used != b.used {
			if a.used < b.used {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.key[:], b.key[:])
	})
	for _, t := range sk {
		if len(c.byKey) <= c.maxEntries+c.maxSkeletons {
			break
		}
		delete(c.byKey, t.key)
	}
}

// sorted returns the therapists in key order, for deterministic output.
func (c *cache) sorted() []*therapist {
	ts := make([]*therapist, 0, len(c.byKey))
	for _, t := range c.byKey {
		if t.live > 0 {
			ts = append(ts, t)
		}
	}
	slices.SortFunc(ts, func(a, b *therapist) int { return bytes.Compare(a.key[:], b.key[:]) })
	return ts
}

// find returns the cached slot ref refers to (from the newest page holding
// it).
func (c *cache) find(ref SlotRef, now time.Time) (*entry, *Slot) {
	t := c.byKey[ref.Therapist]
	if t == nil {
		return nil, nil
	}
	var best *entry
	var bs *Slot
	for _, e := range t.pages {
		if e == nil || !now.Before(e.ann.Expires) {
			continue
		}
		for i := range e.ann.Slots {
			if e.ann.Slots[i].ID == ref.Slot && (best == nil || e.ann.Seq > best.ann.Seq) {
				best, bs = e, &e.ann.Slots[i]
			}
		}
	}
	return best, bs
}

// matches calls fn for every slot matching f at now, once per slot (the
// newest page wins when a slot moved between pages), therapists in key
// order.
func (c *cache) matches(f *Filter, now time.Time, fn func(e *entry, s *Slot)) {
	for _, t := range c.sorted() {
		type hit struct {
			e *entry
			s *Slot
		}
		var hits []hit
		seen := map[SlotID]int{}
		for _, e := range t.pages {
			if e == nil || !now.Before(e.ann.Expires) || !f.matchProfile(&e.ann.Profile) {
				continue
			}
			for i := range e.ann.Slots {
				s := &e.ann.Slots[i]
				if j, dup := seen[s.ID]; dup {
					if e.ann.Seq > hits[j].e.ann.Seq {
						hits[j] = hit{e, s}
					}
					continue
				}
				seen[s.ID] = len(hits)
				hits = append(hits, hit{e, s})
			}
		}
		for _, h := range hits {
			if f.matchSlot(h.s, now) {
				fn(h.e, h.s)
			}
		}
	}
}
