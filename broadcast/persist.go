package broadcast

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Channel state record (Save.State). Local to this node, never sent; the
// layout is in docs/channels.md, "Stored state". It holds secrets: the node
// keeps it in its 0600 data directory.
const (
	chanMagic   = "MSHC"
	chanVersion = 1
	// Bounds a decoder enforces beyond what the input length implies.
	maxStoredEpochs = 64
	maxStoredSkip   = 4096
	maxStoredSeen   = maxOpenSeen
)

type writer struct{ b []byte }

func (w *writer) u8(v uint8)    { w.b = append(w.b, v) }
func (w *writer) u16(v uint16)  { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32)  { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) u64(v uint64)  { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *writer) raw(b []byte)  { w.b = append(w.b, b...) }
func (w *writer) t(t time.Time) { w.b = appendTime(w.b, t) }
func (w *writer) bool(v bool) {
	if v {
		w.u8(1)
	} else {
		w.u8(0)
	}
}
func (w *writer) roster(r []Member) { w.b = appendRoster(w.b, r) }

func (w *writer) keys(ks []envelope.PublicKey) {
	w.u16(uint16(len(ks)))
	for _, k := range ks {
		w.raw(k[:])
	}
}

func (c *Core) marshalChannel(ch *channel) []byte {
	w := &writer{b: make([]byte, 0, 512)}
	w.raw([]byte(chanMagic))
	w.u8(chanVersion)
	w.raw(c.self[:])
	w.raw(ch.id[:])
	w.u8(uint8(len(ch.name)))
	w.raw([]byte(ch.name))
	w.u8(uint8(ch.policy))
	w.u8(uint8(ch.status))
	switch {
	case ch.open != nil:
		w.u16(uint16(len(ch.open.seen)))
		for _, id := range sortedSeen(ch.open.seen) {
			w.raw(id[:])
			w.t(ch.open.seen[id])
		}
	case ch.status == StatusJoining:
		w.raw(ch.joining.Inviter[:])
		w.raw(ch.joining.Token[:])
		w.t(ch.joining.Expires)
		w.t(ch.joinedAt)
	default:
		c.marshalPrivate(w, ch)
	}
	return w.b
}

func sortedSeen(m map[[8]byte]time.Time) [][8]byte {
	out := make([][8]byte, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && string(out[j][:]) < string(out[j-1][:]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func (c *Core) marshalPrivate(w *writer, ch *channel) {
	w.u8(uint8(len(ch.epochs)))
	root := 0
	for i, e := range ch.epochs {
		if e == ch.root {
			root = i
		}
		w.u32(e.num)
		w.raw(e.hash[:])
		w.raw(e.parent[:])
		w.u16(e.committer)
		w.u16(uint16(e.removes))
		w.bool(e.base)
		w.roster(e.roster)
		w.t(e.adopted)
		w.t(e.retired)
		w.u32(e.msgs)
		w.t(e.countAt)
		w.bool(e.k != nil)
		if e.k == nil {
			continue
		}
		k := e.k
		w.raw(k.tag[:])
		w.u16(uint16(len(k.tree.nodes)))
		for _, nk := range sortedNodeKeys(k.tree.nodes) {
			v := k.tree.nodes[nk]
			w.u32(nk)
			w.raw(v[:])
		}
		w.u16(uint16(len(k.chains)))
		for s := 0; s < len(e.roster); s++ {
			if rc := k.chains[uint16(s)]; rc != nil {
				w.u16(uint16(s))
				w.u32(rc.next.gen)
				w.raw(rc.next.ck[:])
				w.u32(rc.staleBelow)
			}
		}
		w.u16(uint16(len(k.skip)))
		for _, s := range k.skip {
			w.u16(s.sender)
			w.u32(s.from)
			w.u32(s.n)
			w.raw(s.key[:])
			w.u64(s.seq)
		}
		w.u64(k.seq)
		w.bool(k.send != nil)
		if k.send != nil {
			// Only the reservation's end is stored (crash safety).
			w.u32(k.send.ceil.gen)
			w.raw(k.send.ceil.ck[:])
		}
	}
	w.u8(uint8(root))
	w.u8(uint8(len(ch.pending)))
	for _, p := range ch.pending {
		w.raw(p.from[:])
		w.u16(uint16(len(p.raw)))
		w.raw(p.raw)
		w.t(p.at)
	}
	w.u8(uint8(len(ch.invites)))
	for _, inv := range ch.invites {
		w.raw(inv.hash[:])
		w.t(inv.expires)
		w.u8(inv.usesLeft)
		w.u8(uint8(inv.role))
		w.bool(inv.approve)
		w.keys(inv.usedBy)
	}
	w.u8(uint8(len(ch.joinReqs)))
	for _, r := range ch.joinReqs {
		w.raw(r.key[:])
		w.u8(uint8(r.role))
		w.t(r.at)
	}
	w.bool(ch.mine != nil)
	if m := ch.mine; m != nil {
		w.raw(m.hash[:])
		w.u32(m.num)
		w.keys(m.removes)
		w.roster(m.adds)
		w.roster(m.roles)
	}
	w.u8(uint8(len(ch.leaves)))
	for _, d := range ch.leaves {
		w.raw(d.key[:])
		w.t(d.due)
	}
	w.t(ch.lastSync)
}

func sortedNodeKeys(m map[uint32]key32) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Load restores a channel from a Save record. A record that does not
// decode, or belongs to another identity, is refused with ErrCorrupt and
// nothing changes.
func (c *Core) Load(now time.Time, state []byte) (ChannelID, error) {
	ch, err := c.unmarshalChannel(state)
	if err != nil {
		return ChannelID{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	c.chans[ch.id] = ch
	c.reindex()
	c.schedule(now)
	return ch.id, nil
}

func (c *Core) unmarshalChannel(b []byte) (*channel, error) {
	r := &reader{b: b, what: "channel state"}
	if m := r.take(len(chanMagic), "magic"); r.err == nil && string(m) != chanMagic {
		r.fail(ErrCorrupt, "magic")
	}
	if v := r.u8("version"); r.err == nil && v != chanVersion {
		r.fail(ErrVersion, "version")
	}
	var self envelope.PublicKey
	r.copyTo(self[:], "identity")
	if r.err == nil && self != c.self {
		r.fail(ErrCorrupt, "identity (the record belongs to another node)")
	}
	ch := &channel{}
	r.copyTo(ch.id[:], "channel id")
	ch.name = string(r.take(int(r.u8("name length")), "name"))
	ch.policy = Policy(r.u8("policy"))
	ch.status = Status(r.u8("status"))
	if r.err != nil {
		return nil, r.err
	}
	if err := checkPolicyName(ch.policy, ch.name); err != nil {
		return nil, err
	}
	if ch.status > StatusRemoved {
		return nil, fieldErr(ErrMalformed, "status %d", ch.status)
	}
	switch {
	case ch.policy.Open():
		if ch.status != StatusActive || ch.id != openID(ch.name, ch.policy) {
			return nil, fieldErr(ErrMalformed, "open channel record")
		}
		ch.open = &openState{seen: map[[8]byte]time.Time{}}
		ch.open.prk, ch.open.tag = openKeys(ch.name, ch.policy)
		n := int(r.u16("seen count"))
		if n > maxStoredSeen {
			r.fail(ErrTooLarge, "seen count")
		}
		for i := 0; i < n && r.err == nil; i++ {
			var id [8]byte
			r.copyTo(id[:], "seen id")
			ch.open.seen[id] = r.time("seen time")
		}
	case ch.status == StatusJoining:
		inv := &Invite{Channel: ch.id}
		r.copyTo(inv.Inviter[:], "inviter")
		r.copyTo(inv.Token[:], "token")
		inv.Expires = r.time("expiry")
		ch.joining = inv
		ch.joinedAt = r.time("joined at")
	default:
		c.unmarshalPrivate(r, ch)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return ch, nil
}

func readKeys(r *reader, max int) []envelope.PublicKey {
	n := int(r.u16("key count"))
	if r.err == nil && (n > max || n*envelope.PublicKeySize > len(r.b)) {
		r.fail(ErrTooLarge, "key count")
	}
	var out []envelope.PublicKey
	for i := 0; i < n && r.err == nil; i++ {
		var k envelope.PublicKey
		r.copyTo(k[:], "key")
		out = append(out, k)
	}
	return out
}

// readStoredRoster reads a roster without checking that keys are curve
// points (they were checked when they came in; stored records are ours).
func readStoredRoster(r *reader, minN int) []Member {
	n := int(r.u16("member count"))
	if r.err != nil {
		return nil
	}
	if n < minN || n > MaxMembers || n*(envelope.PublicKeySize+1) > len(r.b) {
		r.fail(ErrTooLarge, "member count")
		return nil
	}
	out := make([]Member, n)
	seen := make(map[envelope.PublicKey]bool, n)
	for i := range out {
		r.copyTo(out[i].Key[:], "member key")
		out[i].Role = Role(r.u8("member role"))
		if r.err == nil && (!out[i].Role.valid() || seen[out[i].Key]) {
			r.fail(ErrMalformed, "member")
		}
		seen[out[i].Key] = true
	}
	return out
}

func (c *Core) unmarshalPrivate(r *reader, ch *channel) {
	ne := int(r.u8("epoch count"))
	if r.err == nil && (ne == 0 || ne > maxStoredEpochs) {
		r.fail(ErrMalformed, "epoch count")
	}
	hashes := map[EpochHash]bool{}
	for i := 0; i < ne && r.err == nil; i++ {
		e := &epoch{}
		e.num = r.u32("epoch")
		r.copyTo(e.hash[:], "hash")
		r.copyTo(e.parent[:], "parent")
		e.committer = r.u16("committer")
		e.removes = int(r.u16("removes"))
		e.base = r.u8("base") == 1
		e.roster = readStoredRoster(r, 1)
		e.self = rosterIndex(e.roster, c.self)
		e.adopted = r.time("adopted")
		e.retired = r.time("retired")
		e.msgs = r.u32("messages")
		e.countAt = r.time("count reached")
		hasKeys := r.u8("has keys")
		if r.err != nil {
			return
		}
		if hashes[e.hash] {
			r.fail(ErrMalformed, "duplicate epoch")
			return
		}
		hashes[e.hash] = true
		if hasKeys == 1 {
			if e.self < 0 {
				r.fail(ErrMalformed, "keys of an epoch this node is not in")
				return
			}
			e.k = readKeysState(r, e)
		} else if hasKeys != 0 {
			r.fail(ErrMalformed, "has keys")
		}
		ch.epochs = append(ch.epochs, e)
	}
	root := int(r.u8("root"))
	if r.err != nil {
		return
	}
	if root >= len(ch.epochs) {
		r.fail(ErrMalformed, "root index")
		return
	}
	ch.root = ch.epochs[root]
	np := int(r.u8("pending count"))
	if np > maxPending {
		r.fail(ErrTooLarge, "pending count")
	}
	for i := 0; i < np && r.err == nil; i++ {
		var p pendingCommit
		r.copyTo(p.from[:], "pending sender")
		p.raw = append([]byte(nil), r.take(int(r.u16("pending length")), "pending commit")...)
		p.at = r.time("pending time")
		if r.err == nil {
			if _, err := decodeCommit(p.raw); err != nil {
				r.fail(ErrMalformed, "pending commit")
			}
		}
		ch.pending = append(ch.pending, p)
	}
	ni := int(r.u8("invite count"))
	if ni > maxInvites {
		r.fail(ErrTooLarge, "invite count")
	}
	for i := 0; i < ni && r.err == nil; i++ {
		inv := &invite{}
		r.copyTo(inv.hash[:], "invite hash")
		inv.expires = r.time("invite expiry")
		inv.usesLeft = r.u8("uses left")
		inv.role = Role(r.u8("invite role"))
		inv.approve = r.u8("approve") == 1
		inv.usedBy = readKeys(r, 255)
		if r.err == nil && !inv.role.valid() {
			r.fail(ErrMalformed, "invite role")
		}
		ch.invites = append(ch.invites, inv)
	}
	nj := int(r.u8("join request count"))
	if nj > maxJoinReqs {
		r.fail(ErrTooLarge, "join request count")
	}
	for i := 0; i < nj && r.err == nil; i++ {
		var jr joinReq
		r.copyTo(jr.key[:], "join request key")
		jr.role = Role(r.u8("join request role"))
		jr.at = r.time("join request time")
		if r.err == nil && !jr.role.valid() {
			r.fail(ErrMalformed, "join request role")
		}
		ch.joinReqs = append(ch.joinReqs, jr)
	}
	if r.u8("has own commit") == 1 {
		m := &ownCommit{}
		r.copyTo(m.hash[:], "own commit hash")
		m.num = r.u32("own commit epoch")
		m.removes = readKeys(r, MaxMembers)
		m.adds = readStoredRoster(r, 0)
		m.roles = readStoredRoster(r, 0)
		ch.mine = m
	}
	nl := int(r.u8("leave count"))
	for i := 0; i < nl && r.err == nil; i++ {
		var d duty
		r.copyTo(d.key[:], "leave key")
		d.due = r.time("leave due")
		ch.leaves = append(ch.leaves, d)
	}
	ch.lastSync = r.time("last sync")
	if r.err != nil {
		return
	}
	ch.head = ch.choose()
	if ch.head == nil {
		r.fail(ErrMalformed, "no current epoch")
		return
	}
	if ch.status == StatusActive && (ch.head.k == nil || ch.head.self < 0) {
		ch.status = StatusRemoved
	}
}

func readKeysState(r *reader, e *epoch) *epochKeys {
	k := &epochKeys{chains: map[uint16]*recvChain{}}
	r.copyTo(k.tag[:], "tag")
	k.tree.depth = treeDepth(len(e.roster))
	k.tree.nodes = map[uint32]key32{}
	nn := int(r.u16("tree node count"))
	if r.err == nil && nn > 2*MaxMembers {
		r.fail(ErrTooLarge, "tree node count")
	}
	for i := 0; i < nn && r.err == nil; i++ {
		nk := r.u32("tree node")
		var v key32
		r.copyTo(v[:], "tree secret")
		d, idx := nk>>16, nk&0xffff
		if r.err == nil && (d > uint32(k.tree.depth) || idx >= 1<<d) {
			r.fail(ErrMalformed, "tree node position")
		}
		k.tree.nodes[nk] = v
	}
	nc := int(r.u16("chain count"))
	for i := 0; i < nc && r.err == nil; i++ {
		s := r.u16("chain sender")
		rc := &recvChain{}
		rc.next.gen = r.u32("chain generation")
		r.copyTo(rc.next.ck[:], "chain key")
		rc.staleBelow = r.u32("stale below")
		if r.err == nil && (int(s) >= len(e.roster) || int(s) == e.self || k.chains[s] != nil || rc.next.gen > MaxGeneration+1) {
			r.fail(ErrMalformed, "chain")
		}
		k.chains[s] = rc
	}
	ns := int(r.u16("skip count"))
	if r.err == nil && ns > maxStoredSkip {
		r.fail(ErrTooLarge, "skip count")
	}
	for i := 0; i < ns && r.err == nil; i++ {
		var s skipEntry
		s.sender = r.u16("skip sender")
		s.from = r.u32("skip from")
		s.n = r.u32("skip length")
		r.copyTo(s.key[:], "skip key")
		s.seq = r.u64("skip seq")
		if r.err == nil && (int(s.sender) >= len(e.roster) || s.n == 0 || uint64(s.from)+uint64(s.n) > MaxGeneration+1) {
			r.fail(ErrMalformed, "skip entry")
		}
		k.skip = append(k.skip, s)
	}
	k.seq = r.u64("skip counter")
	if r.u8("has send chain") == 1 {
		sc := &sendChain{}
		sc.ceil.gen = r.u32("send reservation")
		r.copyTo(sc.ceil.ck[:], "send key")
		if r.err == nil && sc.ceil.gen > MaxGeneration+1 {
			r.fail(ErrMalformed, "send reservation")
		}
		sc.live = sc.ceil // resume past every generation that may have been used
		k.send = sc
	}
	return k
}
