package broadcast

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"golang.org/x/crypto/chacha20poly1305"
)

// Core is the sans-IO broadcast channel state machine of one node: every
// channel it holds, the history cache, and pending history requests. Feed
// it events (the Handle* methods for what the router delivers, the verbs for
// what the user asks, Tick when NextWake is due) and carry out what Actions
// returns. It has no goroutines and reads no clock: each event carries now.
// It is not safe for concurrent use; the driver serialises calls.
type Core struct {
	o    Options
	id   *envelope.Identity
	self envelope.PublicKey
	rand io.Reader
	log  *slog.Logger

	chans   map[ChannelID]*channel
	tags    map[[4]byte][]tagRef
	hist    history
	queries map[envelope.Token]*pendingQuery
	unknown []heldEnvelope // channel messages no epoch matched yet (a commit may be on its way)
	bucket  tokenBucket
	// catchingUntil: after CatchUp, epochs learnt from held commits are
	// caught up too, until then.
	catchingUntil time.Time

	actions []Action
	dirty   map[ChannelID]bool
	stats   Stats
	wake    time.Time
}

type tagRef struct {
	ch *channel
	ep *epoch // nil for an open channel
}

type heldEnvelope struct {
	raw []byte
	at  time.Time
}

const (
	maxHeldUnknown = 64
	heldUnknownFor = time.Hour
	maxPending     = 8
	maxInvites     = 64
	maxJoinReqs    = 64
	maxOpenSeen    = 4096
)

// New makes a core. Restore stored channels with Load and the history cache
// with LoadHistory before feeding events.
func New(o Options) (*Core, error) {
	if o.Identity == nil {
		return nil, errors.New("broadcast: Options.Identity is required")
	}
	o.withDefaults()
	c := &Core{
		o:       o,
		id:      o.Identity,
		self:    o.Identity.PublicKey(),
		rand:    o.Rand,
		log:     o.Logger,
		chans:   map[ChannelID]*channel{},
		tags:    map[[4]byte][]tagRef{},
		queries: map[envelope.Token]*pendingQuery{},
		dirty:   map[ChannelID]bool{},
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.hist.init()
	return c, nil
}

// Actions returns what the core asks the driver to do since the last call,
// in order, and forgets them. Saves come first (see Action for how to carry
// out a batch).
func (c *Core) Actions() []Action {
	var saves []Action
	ids := make([]ChannelID, 0, len(c.dirty))
	for id := range c.dirty {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	for _, id := range ids {
		if ch := c.chans[id]; ch != nil {
			saves = append(saves, &Save{Channel: id, State: c.marshalChannel(ch)})
		}
	}
	clear(c.dirty)
	out := append(saves, c.actions...)
	c.actions = nil
	return out
}

// NextWake returns when Tick should next be called (zero: nothing planned).
func (c *Core) NextWake() time.Time { return c.wake }

// Stats returns a snapshot of the counters.
func (c *Core) Stats() Stats {
	s := c.stats
	s.Channels = len(c.chans)
	s.HistoryItems, s.HistoryBytes = c.hist.n, c.hist.bytes
	return s
}

func (c *Core) emit(a Action) { c.actions = append(c.actions, a) }

func (c *Core) event(ch *channel, t EventType, member envelope.PublicKey, role Role, epoch uint32, err error) {
	c.emit(&Event{Channel: ch.id, Type: t, Member: member, Role: role, Epoch: epoch, Err: err})
}

func (c *Core) control(ch *channel, to envelope.PublicKey, typ string, payload []byte) {
	c.stats.ControlSent++
	c.stats.ControlBytes += uint64(len(payload))
	c.emit(&SendControl{To: to, Payload: payload, Channel: ch.id, Type: typ})
}

func (c *Core) random(b []byte) error {
	if _, err := io.ReadFull(c.rand, b); err != nil {
		return fmt.Errorf("broadcast: reading randomness: %w", err)
	}
	return nil
}

// Channels lists the channels held, sorted by name then id.
func (c *Core) Channels() []Info {
	out := make([]Info, 0, len(c.chans))
	for _, ch := range c.chans {
		out = append(out, ch.info())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return string(out[i].ID[:]) < string(out[j].ID[:])
	})
	return out
}

// Info describes one channel.
func (c *Core) Info(id ChannelID) (Info, error) {
	ch := c.chans[id]
	if ch == nil {
		return Info{}, fieldErr(ErrUnknownChannel, "%s", id)
	}
	return ch.info(), nil
}

func (ch *channel) info() Info {
	i := Info{ID: ch.id, Name: ch.name, Policy: ch.policy, Private: !ch.policy.Open(), Status: ch.status}
	if h := ch.head; h != nil {
		i.Epoch, i.EpochHash, i.Members, i.EpochSince = h.num, h.hash, len(h.roster), h.adopted
		i.Role = h.role()
	}
	return i
}

// Members returns the current roster (empty for open channels, which have
// none).
func (c *Core) Members(id ChannelID) ([]Member, error) {
	ch := c.chans[id]
	if ch == nil {
		return nil, fieldErr(ErrUnknownChannel, "%s", id)
	}
	if ch.head == nil {
		return nil, nil
	}
	return append([]Member(nil), ch.head.roster...), nil
}

// Lookup finds channels by name (open channel names are normalised).
func (c *Core) Lookup(name string) []ChannelID {
	var out []ChannelID
	for id, ch := range c.chans {
		if ch.name == name || (ch.policy.Open() && ch.name == NormalizeOpenName(name)) {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i][:]) < string(out[j][:]) })
	return out
}

// Create makes a new private channel with this node as its owner and only
// member (epoch 0). policy may be 0, PolicySigned or PolicyAnnounce.
func (c *Core) Create(now time.Time, name string, policy Policy) (ChannelID, error) {
	var id ChannelID
	if policy.Open() {
		return id, fieldErr(ErrOpenChannel, "use JoinOpen for open channels")
	}
	if policy&PolicyAnnounce != 0 {
		policy |= PolicySigned
	}
	if err := checkPolicyName(policy, name); err != nil {
		return id, err
	}
	var secret key32
	if err := c.random(id[:]); err != nil {
		return id, err
	}
	if err := c.random(secret[:]); err != nil {
		return id, err
	}
	defer clear(secret[:])
	ch := &channel{id: id, name: name, policy: policy, status: StatusActive}
	roster := []Member{{Key: c.self, Role: RoleOwner}}
	e := &epoch{num: 0, hash: genesisHash(id, c.self, policy, name), base: true, roster: roster, self: 0, adopted: now}
	e.k = newEpochKeys(&secret, groupContext(id, 0, e.hash, policy, name, roster), 1)
	ch.epochs = []*epoch{e}
	ch.root, ch.head = e, e
	c.chans[id] = ch
	c.reindex()
	c.dirty[id] = true
	c.event(ch, EventCreated, c.self, RoleOwner, 0, nil)
	c.schedule(now)
	return id, nil
}

// JoinOpen joins (or creates: it is the same) the open channel of that
// name. Open channels are NOT private: their key is derived from the name,
// so anyone who knows or guesses it reads and writes. signed makes every
// message carry its author's key and signature (a different channel from
// the unsigned one of the same name).
func (c *Core) JoinOpen(now time.Time, name string, signed bool) (ChannelID, error) {
	name = NormalizeOpenName(name)
	policy := PolicyOpen
	if signed {
		policy |= PolicySigned
	}
	if err := checkPolicyName(policy, name); err != nil {
		return ChannelID{}, err
	}
	if name == "" {
		return ChannelID{}, fieldErr(ErrMalformed, "empty channel name")
	}
	id := openID(name, policy)
	if c.chans[id] != nil {
		return id, fieldErr(ErrAlreadyMember, "open channel %q", name)
	}
	ch := &channel{id: id, name: name, policy: policy, status: StatusActive}
	ch.open = &openState{seen: map[[8]byte]time.Time{}}
	ch.open.prk, ch.open.tag = openKeys(name, policy)
	c.chans[id] = ch
	c.reindex()
	c.dirty[id] = true
	c.event(ch, EventCreated, envelope.PublicKey{}, RoleMember, 0, nil)
	return id, nil
}

// reindex rebuilds the tag → epoch map after epochs changed.
func (c *Core) reindex() {
	clear(c.tags)
	for _, ch := range c.chans {
		if ch.open != nil {
			var h [4]byte
			copy(h[:], ch.open.tag[:4])
			c.tags[h] = append(c.tags[h], tagRef{ch: ch})
			continue
		}
		for _, e := range ch.epochs {
			if e.k != nil {
				h := e.tagHint()
				c.tags[h] = append(c.tags[h], tagRef{ch: ch, ep: e})
			}
		}
	}
}

// Send encrypts content for the channel and floods it. With the signature
// policy the content is signed first. The returned error is
// ErrUnknownChannel, ErrNotMember, ErrNotAllowed, ErrTooLarge or
// ErrExhausted; nothing was sent then.
func (c *Core) Send(now time.Time, id ChannelID, content []byte) error {
	ch := c.chans[id]
	if ch == nil {
		return fieldErr(ErrUnknownChannel, "%s", id)
	}
	if ch.status != StatusActive {
		return fieldErr(ErrNotMember, "channel %s is %s", id, ch.status)
	}
	ptLen := len(content)
	if ch.policy.Signed() {
		ptLen += envelope.SignatureSize
		if ch.open != nil {
			ptLen += envelope.PublicKeySize
		}
	}
	if total := envelope.HeaderSize + envelope.HintSize + bodyHeaderSize + ptLen + envelope.TagSize; total > envelope.MaxSize {
		return fieldErr(ErrTooLarge, "message of %d bytes makes a %d-byte envelope", len(content), total)
	}
	var header []byte
	var mk key32
	var tag [TagSize]byte
	var ep *epoch
	if ch.open != nil {
		var h [bodyHeaderSize]byte
		if err := c.random(h[:]); err != nil {
			return err
		}
		h[0] &= 0x3f
		header = h[:]
		mk, tag = openMsgKey(&ch.open.prk, header), ch.open.tag
	} else {
		ep = ch.head
		if ep == nil || ep.k == nil || ep.self < 0 {
			return fieldErr(ErrNotMember, "no keys for the current epoch")
		}
		if ch.policy&PolicyAnnounce != 0 && ep.role() < RoleAdmin {
			return fieldErr(ErrNotAllowed, "only owners and admins post to an announcement channel")
		}
		sc := ep.k.send
		if sc == nil {
			leaf, ok := ep.k.tree.derive(ep.self, false)
			if !ok {
				return fieldErr(ErrExhausted, "own chain already taken")
			}
			sc = &sendChain{live: key32Gen{ck: leaf}, ceil: key32Gen{ck: leaf}}
		}
		if sc.live.gen > MaxGeneration {
			return fieldErr(ErrExhausted, "epoch %d", ep.num)
		}
		if ep.k.send == nil {
			ep.k.tree.derive(ep.self, true)
			ep.k.send = sc
		}
		if sc.live.gen >= sc.ceil.gen {
			// Reserve ahead in the stored state before using the key: the
			// Save comes before this message's Flood in the batch.
			end := min(uint64(sc.live.gen)+sendReserve, MaxGeneration+1)
			sc.ceil = key32Gen{gen: uint32(end), ck: advance(sc.live.ck, uint32(end)-sc.live.gen)}
			c.dirty[id] = true
		}
		header = appendBodyHeader(nil, uint16(ep.self), sc.live.gen)
		mk = step(&sc.live.ck)
		sc.live.gen++
		tag = ep.k.tag
		ep.msgs++
		c.countMessage(now, ep)
	}
	defer clear(mk[:])
	pt := content
	if ch.policy.Signed() {
		pt = append([]byte(nil), content...)
		if ch.open != nil {
			pt = append(pt, c.self[:]...)
			pt = append(pt, c.id.Sign(openSigInput(ch.id, header, c.self, content))...)
		} else {
			pt = append(pt, c.id.Sign(msgSigInput(ch.id, ep, header, content))...)
		}
	}
	e := envelope.Envelope{Kind: envelope.KindChannel, TTL: c.o.FloodTTL, Dst: envelope.HintAddr(envelope.Hint(tag[:4]))}
	e.Body = make([]byte, bodyHeaderSize+len(pt)+envelope.TagSize)
	copy(e.Body, header)
	raw, err := e.Append(nil)
	if err != nil {
		return fmt.Errorf("broadcast: building channel envelope: %w", err)
	}
	ctOff := len(raw) - len(pt) - envelope.TagSize
	aead, err := chacha20poly1305.New(mk[:])
	if err != nil {
		return err
	}
	aead.Seal(raw[:ctOff], zeroNonce[:], pt, raw[envelope.OffsetTTL+1:ctOff])
	if ch.open != nil {
		ch.open.seen[messageID(raw)] = now
		c.trimSeen(ch)
	}
	c.hist.add(now, raw, &c.o)
	c.stats.Sent++
	c.emit(&Flood{Raw: raw, Kind: envelope.KindChannel})
	c.schedule(now)
	return nil
}

func msgSigInput(id ChannelID, ep *epoch, header, content []byte) []byte {
	b := make([]byte, 0, len(ctxMsgSig)+IDSize+4+HashSize+len(header)+len(content))
	b = append(b, ctxMsgSig...)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint32(b, ep.num)
	b = append(b, ep.hash[:]...)
	b = append(b, header...)
	return append(b, content...)
}

func openSigInput(id ChannelID, header []byte, key envelope.PublicKey, content []byte) []byte {
	b := make([]byte, 0, len(ctxOpenSig)+IDSize+len(header)+len(key)+len(content))
	b = append(b, ctxOpenSig...)
	b = append(b, id[:]...)
	b = append(b, header...)
	b = append(b, key[:]...)
	return append(b, content...)
}

// countMessage counts a message of an epoch towards its rotation.
func (c *Core) countMessage(now time.Time, ep *epoch) {
	if ep.countAt.IsZero() && ep.msgs >= uint32(c.o.RotateAfter) {
		ep.countAt = now
	}
}

func (c *Core) trimSeen(ch *channel) {
	for len(ch.open.seen) > maxOpenSeen {
		var oldID [8]byte
		var oldAt time.Time
		first := true
		for id, at := range ch.open.seen {
			if first || at.Before(oldAt) || (at.Equal(oldAt) && string(id[:]) < string(oldID[:])) {
				oldID, oldAt, first = id, at, false
			}
		}
		delete(ch.open.seen, oldID)
	}
}

// HandleChannel takes a channel envelope the router received
// (routing.FloodReceived with Kind envelope.KindChannel). A message is
// delivered at most once. Errors say why nothing was delivered and nothing
// changed: ErrUnknownEpoch (not for us, or not yet: relays get this for all
// foreign traffic), ErrAuth, ErrForgedSender, ErrReplay, ErrStale,
// ErrTooFarAhead, ErrNotAllowed, or a decoding error.
func (c *Core) HandleChannel(now time.Time, raw []byte) error {
	err := c.receive(now, raw, now, false)
	c.schedule(now)
	return err
}

func (c *Core) receive(now time.Time, raw []byte, at time.Time, fromHistory bool) error {
	e, err := envelope.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if e.Kind != envelope.KindChannel {
		return fieldErr(ErrMalformed, "%s envelope is not a channel message", e.Kind)
	}
	sender, gen, ct, err := parseBody(e.Body)
	if err != nil {
		return err
	}
	hint := e.Dst.Hint()
	full, isFull := e.Dst.Full()
	refs := c.tags[hint]
	if len(refs) == 0 {
		c.stats.UnknownEpoch++
		c.holdUnknown(now, raw)
		return fieldErr(ErrUnknownEpoch, "tag %s", hint)
	}
	ctOff := len(raw) - len(ct)
	ad := raw[envelope.OffsetTTL+1 : ctOff]
	var best error
	for _, ref := range refs {
		var err error
		if ref.ep == nil {
			if isFull && [TagSize]byte(full) != ref.ch.open.tag {
				continue
			}
			err = c.receiveOpen(now, ref.ch, raw, e.Body[:bodyHeaderSize], ct, ad, at, fromHistory)
		} else {
			if isFull && [TagSize]byte(full) != ref.ep.k.tag {
				continue
			}
			err = c.receivePrivate(now, ref.ch, ref.ep, raw, sender, gen, ct, ad, at, fromHistory)
		}
		if err == nil {
			return nil
		}
		// Keep the most telling error: a wrong candidate fails with ErrAuth,
		// the right one with whatever is really wrong.
		if best == nil || errors.Is(best, ErrAuth) {
			best = err
		}
	}
	if best == nil {
		best = fieldErr(ErrUnknownEpoch, "tag %s", hint)
	}
	switch {
	case errors.Is(best, ErrAuth):
		c.stats.AuthFailed++
	case errors.Is(best, ErrForgedSender), errors.Is(best, ErrNotAllowed):
		c.stats.Forged++
	case errors.Is(best, ErrReplay):
		c.stats.Duplicates++
	case errors.Is(best, ErrStale), errors.Is(best, ErrTooFarAhead):
		c.stats.Stale++
	case errors.Is(best, ErrUnknownEpoch):
		c.stats.UnknownEpoch++
	}
	return best
}

func openAEAD(mk *key32, ct, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.New(mk[:])
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, zeroNonce[:], ct, ad)
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

func (c *Core) receivePrivate(now time.Time, ch *channel, ep *epoch, raw []byte, sender uint16, gen uint32, ct, ad []byte, at time.Time, fromHistory bool) error {
	if int(sender) >= len(ep.roster) {
		return fieldErr(ErrForgedSender, "sender %d of a %d-member epoch", sender, len(ep.roster))
	}
	if int(sender) == ep.self {
		if sc := ep.k.send; sc != nil && gen < sc.live.gen {
			return fieldErr(ErrReplay, "own message %d", gen)
		}
		return fieldErr(ErrForgedSender, "a message in this node's name it did not send")
	}
	author := ep.roster[sender]
	if removedAt := ch.removedAt(ep, author.Key); !removedAt.IsZero() && now.Sub(removedAt) > c.o.RemovedGrace {
		return fieldErr(ErrNotMember, "sender %d of epoch %d was removed at %s", sender, ep.num, removedAt.Format(time.RFC3339))
	}
	p, err := ep.k.plan(sender, gen, c.o.MaxSkip)
	if err != nil {
		return err
	}
	pt, err := openAEAD(&p.mk, ct, ad)
	if err != nil {
		return fieldErr(ErrAuth, "epoch %d sender %d generation %d", ep.num, sender, gen)
	}
	verified := false
	if ch.policy.Signed() {
		if len(pt) < envelope.SignatureSize {
			return fieldErr(ErrForgedSender, "signed message without a signature")
		}
		content, sig := pt[:len(pt)-envelope.SignatureSize], pt[len(pt)-envelope.SignatureSize:]
		if !ed25519.Verify(author.Key[:], msgSigInput(ch.id, ep, raw[ctOff(raw, ct)-bodyHeaderSize:ctOff(raw, ct)], content), sig) {
			return fieldErr(ErrForgedSender, "signature of sender %d does not verify", sender)
		}
		if ch.policy&PolicyAnnounce != 0 && author.Role < RoleAdmin {
			return fieldErr(ErrNotAllowed, "member %d posted to an announcement channel", sender)
		}
		pt, verified = content, true
	}
	if ep.k.apply(&p, c.o.MaxSkipped) && ch.catchUpAt.IsZero() {
		ch.catchUpAt = now.Add(c.o.GapWait)
	}
	ep.msgs++
	c.countMessage(now, ep)
	c.dirty[ch.id] = true
	c.hist.add(now, raw, &c.o)
	c.deliver(&Deliver{Channel: ch.id, From: author.Key, Verified: verified, Private: true, Epoch: ep.num, Payload: pt, Time: at, History: fromHistory})
	return nil
}

func ctOff(raw, ct []byte) int { return len(raw) - len(ct) }

// removedAt is when this node learnt that key, a member of ep, is no longer
// a member: the adoption of the earliest later epoch without it, if the
// current epoch is without it too. Zero when key is still a member.
func (ch *channel) removedAt(ep *epoch, key envelope.PublicKey) time.Time {
	if ch.head == nil || ep == ch.head || rosterIndex(ch.head.roster, key) >= 0 {
		return time.Time{}
	}
	at := ch.head.adopted
	for _, e := range ch.epochs {
		if e.num > ep.num && e.adopted.Before(at) && rosterIndex(e.roster, key) < 0 {
			at = e.adopted
		}
	}
	return at
}

func (c *Core) receiveOpen(now time.Time, ch *channel, raw, header, ct, ad []byte, at time.Time, fromHistory bool) error {
	id := messageID(raw)
	if _, dup := ch.open.seen[id]; dup {
		return fieldErr(ErrReplay, "open channel message")
	}
	mk := openMsgKey(&ch.open.prk, header)
	pt, err := openAEAD(&mk, ct, ad)
	clear(mk[:])
	if err != nil {
		return fieldErr(ErrAuth, "open channel %q", ch.name)
	}
	d := &Deliver{Channel: ch.id, Private: false, Payload: pt, Time: at, History: fromHistory}
	if ch.policy.Signed() {
		if len(pt) < envelope.PublicKeySize+envelope.SignatureSize {
			return fieldErr(ErrForgedSender, "signed open message without key and signature")
		}
		n := len(pt) - envelope.PublicKeySize - envelope.SignatureSize
		content := pt[:n]
		key := envelope.PublicKey(pt[n : n+envelope.PublicKeySize])
		sig := pt[n+envelope.PublicKeySize:]
		if _, err := envelope.ParsePublicKey(key[:]); err != nil {
			return fieldErr(ErrForgedSender, "author key: %v", err)
		}
		if !ed25519.Verify(key[:], openSigInput(ch.id, header, key, content), sig) {
			return fieldErr(ErrForgedSender, "signature does not verify")
		}
		d.From, d.Verified, d.Payload = key, true, content
	}
	ch.open.seen[id] = now
	c.trimSeen(ch)
	c.dirty[ch.id] = true
	c.hist.add(now, raw, &c.o)
	c.deliver(d)
	return nil
}

func (c *Core) deliver(d *Deliver) {
	c.stats.Delivered++
	if d.History {
		c.stats.FromHistory++
	}
	c.emit(d)
}

// holdUnknown keeps a channel message no epoch matched for a while: it may
// belong to an epoch whose commit has not reached us yet. Relays with no
// private channel keep nothing (unless CacheForeign puts it in history).
func (c *Core) holdUnknown(now time.Time, raw []byte) {
	if c.o.CacheForeign {
		c.hist.add(now, raw, &c.o)
	}
	private := false
	for _, ch := range c.chans {
		if ch.open == nil && ch.status == StatusActive {
			private = true
			break
		}
	}
	if !private {
		return
	}
	for _, h := range c.unknown {
		if string(h.raw) == string(raw) {
			return
		}
	}
	if len(c.unknown) >= maxHeldUnknown {
		c.unknown = c.unknown[1:]
	}
	c.unknown = append(c.unknown, heldEnvelope{raw: append([]byte(nil), raw...), at: now})
}

// retryUnknown feeds held messages whose tag became known.
func (c *Core) retryUnknown(now time.Time) {
	keep := c.unknown[:0]
	var retry []heldEnvelope
	for _, h := range c.unknown {
		if now.Sub(h.at) > heldUnknownFor {
			continue
		}
		if len(c.tags[[4]byte(h.raw[envelope.HeaderSize:envelope.HeaderSize+4])]) > 0 {
			retry = append(retry, h)
			continue
		}
		keep = append(keep, h)
	}
	c.unknown = keep
	for _, h := range retry {
		before := c.stats.Delivered
		if err := c.receive(now, h.raw, h.at, false); err != nil {
			c.log.Debug("held channel message still refused", "err", err)
			continue
		}
		// A message that waited longer than GapWait for its epoch's commit
		// means this node lacked the epoch for a while (a commit the router
		// held for it while it was away, delivered late): others of that
		// epoch may have passed meanwhile, so ask for them. Commits that
		// arrive seconds after the first message do not trigger this.
		if c.stats.Delivered > before && now.Sub(h.at) >= c.o.GapWait {
			for _, ref := range c.tags[[4]byte(h.raw[envelope.HeaderSize:envelope.HeaderSize+4])] {
				if ch := ref.ch; ch.status == StatusActive && ch.open == nil {
					ch.catchUpAt = earliest(ch.catchUpAt, now.Add(c.o.GapWait))
				}
			}
		}
	}
}
