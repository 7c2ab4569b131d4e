package broadcast

import (
	"bytes"
	"sort"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// sendReserve is how many generations of its own chain a member reserves in
// its stored state at a time. The stored chain key is always the one at the
// reservation's end, so a restart resumes past every generation that could
// have been used: a crash never reuses a message key, and the stored key
// derives no key of a message already sent (forward secrecy of the disk).
const sendReserve = 32

// smallGap: skipped stretches up to this long are kept as individual
// message keys; longer ones as one range holding the chain key at its start
// (docs/channels.md, "Out-of-order messages").
const smallGap = 32

// epoch is one epoch of a private channel as this node knows it.
type epoch struct {
	num       uint32
	hash      EpochHash
	parent    EpochHash
	committer uint16 // committer's index in the parent roster
	removes   int    // members the commit removed (fork-choice priority)
	// base: this node learnt the epoch from a genesis or a welcome, not from
	// a commit on a known parent. It is never a fork-choice candidate.
	base   bool
	roster []Member
	self   int // this node's index in roster, -1 when not a member (a notice)

	adopted time.Time // when this node learnt it
	retired time.Time // when it stopped being current (zero: current or never was)
	msgs    uint32    // messages seen in it
	countAt time.Time // when msgs reached Options.RotateAfter

	k *epochKeys // nil for a notice: this node was removed by the commit
}

type epochKeys struct {
	tag    [TagSize]byte
	tree   secretTree
	chains map[uint16]*recvChain
	skip   []skipEntry
	seq    uint64 // insertion counter of skip entries (eviction order)
	send   *sendChain
}

// recvChain is one sender's chain as this node has received it.
type recvChain struct {
	next key32Gen
	// staleBelow: generations below it that are not in a skip entry were
	// evicted from the window (ErrStale); at or above it they were
	// delivered (ErrReplay).
	staleBelow uint32
}

type key32Gen struct {
	gen uint32 // next generation expected
	ck  key32  // chain key at gen
}

// skipEntry is undelivered material below a chain's position: one message
// key (n == 1, key is the message key) or a range [from, from+n) whose key
// is the chain key at from.
type skipEntry struct {
	sender uint16
	from   uint32
	n      uint32
	key    key32
	seq    uint64
}

func (s *skipEntry) isRange() bool { return s.n > 1 }

// sendChain is this node's own chain in an epoch.
type sendChain struct {
	live key32Gen // in memory: the next generation to use
	ceil key32Gen // stored: the end of the reservation
}

func newEpochKeys(secret *key32, ctx [32]byte, members int) *epochKeys {
	root, tag := deriveEpoch(secret, ctx)
	k := &epochKeys{tag: tag, tree: newSecretTree(root, members), chains: map[uint16]*recvChain{}}
	clear(root[:])
	return k
}

func rosterIndex(r []Member, k envelope.PublicKey) int {
	for i, m := range r {
		if m.Key == k {
			return i
		}
	}
	return -1
}

// rank is the position of key among the roster's owners and admins, or -1.
// Scheduled duties are staggered by rank so that normally one admin acts.
func rank(r []Member, k envelope.PublicKey) int {
	n := 0
	for _, m := range r {
		if m.Role < RoleAdmin {
			continue
		}
		if m.Key == k {
			return n
		}
		n++
	}
	return -1
}

func (e *epoch) role() Role {
	if e.self < 0 {
		return RoleMember
	}
	return e.roster[e.self].Role
}

func (e *epoch) tagHint() [4]byte {
	var h [4]byte
	if e.k != nil {
		copy(h[:], e.k.tag[:4])
	}
	return h
}

// recvPlan is the outcome of opening a message, computed without touching
// state; apply makes it so.
type recvPlan struct {
	sender uint16
	gen    uint32
	mk     key32
	// Either the chain advances (fromChain) or a skip entry is consumed.
	fromChain bool
	newChain  bool     // the sender's chain is created from the tree
	gapStart  key32Gen // chain position before the message (gap start)
	after     key32    // chain key at gen+1
	entry     int      // index of the consumed skip entry
}

// plan finds the message key of (sender, gen) without changing anything.
func (k *epochKeys) plan(sender uint16, gen uint32, maxSkip int) (recvPlan, error) {
	p := recvPlan{sender: sender, gen: gen}
	ch := k.chains[sender]
	var cur key32Gen
	if ch == nil {
		leaf, ok := k.tree.derive(int(sender), false)
		if !ok {
			return p, fieldErr(ErrForgedSender, "sender %d has no chain", sender)
		}
		cur = key32Gen{gen: 0, ck: leaf}
		p.newChain = true
	} else {
		cur = ch.next
	}
	if gen >= cur.gen {
		if gen-cur.gen > uint32(maxSkip) {
			return p, fieldErr(ErrTooFarAhead, "generation %d is %d past %d", gen, gen-cur.gen, cur.gen)
		}
		p.fromChain, p.gapStart = true, cur
		ck := advance(cur.ck, gen-cur.gen)
		p.mk = step(&ck)
		p.after = ck
		return p, nil
	}
	for i := range k.skip {
		s := &k.skip[i]
		if s.sender != sender || gen < s.from || gen-s.from >= s.n {
			continue
		}
		p.entry = i
		if !s.isRange() {
			p.mk = s.key
			return p, nil
		}
		ck := advance(s.key, gen-s.from)
		p.mk = step(&ck)
		p.after = ck
		return p, nil
	}
	if ch != nil && gen < ch.staleBelow {
		return p, fieldErr(ErrStale, "generation %d of sender %d is below the window", gen, sender)
	}
	return p, fieldErr(ErrReplay, "generation %d of sender %d", gen, sender)
}

// apply commits a plan: the used key is gone, skipped material is kept
// (bounded), and the evicted material marks its generations stale.
// It reports whether a new gap was opened.
func (k *epochKeys) apply(p *recvPlan, maxSkipped int) (gap bool) {
	if p.fromChain {
		if p.newChain {
			k.tree.derive(int(p.sender), true)
			k.chains[p.sender] = &recvChain{}
		}
		ch := k.chains[p.sender]
		if p.gen > p.gapStart.gen {
			k.addSkipped(p.sender, p.gapStart.gen, p.gen-p.gapStart.gen, p.gapStart.ck, maxSkipped)
			gap = true
		}
		ch.next = key32Gen{gen: p.gen + 1, ck: p.after}
	} else {
		s := k.skip[p.entry]
		k.skip = append(k.skip[:p.entry], k.skip[p.entry+1:]...)
		if s.isRange() {
			if p.gen > s.from {
				k.addSkipped(p.sender, s.from, p.gen-s.from, s.key, maxSkipped)
			}
			if end := s.from + s.n; end > p.gen+1 {
				k.addSkipped(p.sender, p.gen+1, end-p.gen-1, p.after, maxSkipped)
			}
		}
	}
	k.evict(maxSkipped)
	clear(p.mk[:])
	return gap
}

// addSkipped records n undelivered generations from `from`, whose chain key
// at from is ck: as single message keys when few and there is room, else as
// one range.
func (k *epochKeys) addSkipped(sender uint16, from, n uint32, ck key32, maxSkipped int) {
	if n == 0 {
		return
	}
	if n > smallGap || len(k.skip)+int(n) > maxSkipped {
		k.seq++
		k.skip = append(k.skip, skipEntry{sender: sender, from: from, n: n, key: ck, seq: k.seq})
		return
	}
	for i := uint32(0); i < n; i++ {
		k.seq++
		k.skip = append(k.skip, skipEntry{sender: sender, from: from + i, n: 1, key: step(&ck), seq: k.seq})
	}
	clear(ck[:])
}

// evict drops the oldest skip entries beyond max.
func (k *epochKeys) evict(max int) {
	for len(k.skip) > max {
		oldest := 0
		for i := range k.skip {
			if k.skip[i].seq < k.skip[oldest].seq {
				oldest = i
			}
		}
		s := k.skip[oldest]
		if ch := k.chains[s.sender]; ch != nil && s.from+s.n > ch.staleBelow {
			ch.staleBelow = s.from + s.n
		}
		k.skip = append(k.skip[:oldest], k.skip[oldest+1:]...)
	}
}

// gaps reports whether any sender has undelivered generations below its
// position.
func (k *epochKeys) gaps() bool { return len(k.skip) > 0 }

// better is the fork choice between two commits on the same parent: more
// removals first (a removal must not be undone by a concurrent rotation or
// addition), then the lower hash. Every member applies it identically, and
// it depends only on the commits themselves, so members converge once they
// hold the same commits, whatever the order they got them in.
func better(a, b *epoch) bool {
	if a.removes != b.removes {
		return a.removes > b.removes
	}
	return bytes.Compare(a.hash[:], b.hash[:]) < 0
}

// channel is one channel this node holds.
type channel struct {
	id     ChannelID
	name   string
	policy Policy
	status Status

	open *openState // open channels only

	epochs     []*epoch
	root, head *epoch
	pending    []pendingCommit
	placing    bool // placePending is running

	invites  []*invite
	joinReqs []joinReq
	joining  *Invite
	joinedAt time.Time // when the join request was sent

	mine   *ownCommit // this node's last commit with operations, until it is final
	leaves []duty
	syncs  []duty

	lastSync    time.Time // last sync request sent
	dutyAfter   time.Time // no scheduled commit before (back-off after a failure)
	catchUpAt   time.Time // when to ask for history (zero: not planned)
	lastCatchUp time.Time
}

type openState struct {
	prk  key32
	tag  [TagSize]byte
	seen map[[8]byte]time.Time // ids of delivered messages (no chains to dedup with)
}

type pendingCommit struct {
	from envelope.PublicKey
	raw  []byte
	at   time.Time
}

type joinReq struct {
	key  envelope.PublicKey
	role Role
	at   time.Time
}

type duty struct {
	key envelope.PublicKey
	due time.Time
}

// ownCommit remembers what this node's last commit meant to do, so that it
// can be redone on top of the winner if a concurrent commit wins.
type ownCommit struct {
	hash    EpochHash
	num     uint32
	removes []envelope.PublicKey
	adds    []Member
	roles   []Member
}

func (c *channel) byHash(h EpochHash) *epoch {
	for _, e := range c.epochs {
		if e.hash == h {
			return e
		}
	}
	return nil
}

// choose runs the fork choice from the root: at every height, the best
// child of the current choice.
func (c *channel) choose() *epoch {
	cur := c.root
	for cur != nil {
		var best *epoch
		for _, e := range c.epochs {
			if e.base || e.parent != cur.hash || e.num != cur.num+1 {
				continue
			}
			if best == nil || better(e, best) {
				best = e
			}
		}
		if best == nil {
			return cur
		}
		cur = best
	}
	return nil
}

// chain returns the canonical chain, root first.
func (c *channel) chain() []*epoch {
	var out []*epoch
	for e := c.head; e != nil; {
		out = append(out, e)
		if e == c.root {
			break
		}
		e = c.byHash(e.parent)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func (c *channel) onChain(e *epoch) bool {
	for _, x := range c.chain() {
		if x == e {
			return true
		}
	}
	return false
}

// prune drops epochs that are no longer useful: off-chain epochs (lost
// forks, old bases) and then the root, oldest first, when they retired more
// than grace ago or when more than keep are held. Dropping the root moves
// it up the canonical chain; that is what makes an epoch final here. The
// head is never dropped.
func (c *channel) prune(now time.Time, keep int, grace time.Duration) {
	expired := func(e *epoch) bool { return !e.retired.IsZero() && now.Sub(e.retired) > grace }
	for {
		chain := c.chain()
		on := make(map[*epoch]bool, len(chain))
		for _, e := range chain {
			on[e] = true
		}
		cands := append([]*epoch(nil), c.epochs...)
		sort.SliceStable(cands, func(i, j int) bool { return cands[i].num < cands[j].num })
		var victim *epoch
		for _, e := range cands {
			if e != c.head && !on[e] && (expired(e) || len(c.epochs) > keep) {
				victim = e
				break
			}
		}
		if victim == nil && c.root != c.head && len(chain) > 1 && (expired(c.root) || len(c.epochs) > keep) {
			victim = c.root
			c.root = chain[1]
		}
		if victim == nil {
			return
		}
		for i, x := range c.epochs {
			if x == victim {
				c.epochs = append(c.epochs[:i], c.epochs[i+1:]...)
				break
			}
		}
		if victim.k != nil {
			clear(victim.k.tree.nodes)
			clear(victim.k.chains)
			clear(victim.k.skip)
			victim.k = nil
		}
	}
}
