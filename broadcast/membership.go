package broadcast

import (
	"crypto/subtle"
	"encoding/binary"
	"sort"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// activeAdmin returns the channel's current epoch if this node is an active
// member with keys and at least role min in it.
func (c *Core) activeAdmin(id ChannelID, min Role) (*channel, *epoch, error) {
	ch := c.chans[id]
	if ch == nil {
		return nil, nil, fieldErr(ErrUnknownChannel, "%s", id)
	}
	if ch.open != nil {
		return nil, nil, fieldErr(ErrOpenChannel, "%q", ch.name)
	}
	if ch.status != StatusActive || ch.head == nil || ch.head.k == nil || ch.head.self < 0 {
		return nil, nil, fieldErr(ErrNotMember, "channel %s is %s", id, ch.status)
	}
	if ch.head.role() < min {
		return nil, nil, fieldErr(ErrNotAllowed, "this node is %s, needs %s", ch.head.role(), min)
	}
	return ch, ch.head, nil
}

// Invite issues an invite code for the channel. Only owners and admins
// invite; only owners invite admins and owners. The code must be shown only
// after the Save in this batch is durable.
func (c *Core) Invite(now time.Time, id ChannelID, o InviteOptions) (Invite, error) {
	ch, ep, err := c.activeAdmin(id, RoleAdmin)
	if err != nil {
		return Invite{}, err
	}
	if !o.Role.valid() {
		return Invite{}, fieldErr(ErrMalformed, "role %d", o.Role)
	}
	if o.Role > RoleMember && ep.role() < RoleOwner {
		return Invite{}, fieldErr(ErrNotAllowed, "only owners invite %ss", o.Role)
	}
	if o.TTL <= 0 {
		o.TTL = c.o.InviteTTL
	}
	if o.MaxUses <= 0 {
		o.MaxUses = 1
	}
	if o.MaxUses > 255 {
		return Invite{}, fieldErr(ErrTooLarge, "max uses %d (at most 255)", o.MaxUses)
	}
	c.pruneInvites(now, ch)
	if len(ch.invites) >= maxInvites {
		return Invite{}, fieldErr(ErrTooLarge, "%d open invites", len(ch.invites))
	}
	inv := Invite{Channel: id, Inviter: c.self, Expires: now.Add(o.TTL).Truncate(time.Second)}
	if err := c.random(inv.Token[:]); err != nil {
		return Invite{}, err
	}
	ch.invites = append(ch.invites, &invite{hash: tokenHash(inv.Token), expires: inv.Expires, usesLeft: uint8(o.MaxUses), role: o.Role, approve: o.Approve})
	c.dirty[id] = true
	return inv, nil
}

func (c *Core) pruneInvites(now time.Time, ch *channel) {
	keep := ch.invites[:0]
	for _, inv := range ch.invites {
		// A used-up invite is kept until it expires, so that a second joiner
		// hears "used", not "invalid".
		if now.Before(inv.expires) {
			keep = append(keep, inv)
		} else {
			c.dirty[ch.id] = true
		}
	}
	ch.invites = keep
}

// Join asks the inviter of code for admission. The channel appears in
// StatusJoining until the welcome comes (EventJoined) or the inviter
// refuses (EventJoinRefused). Errors: ErrInviteCorrupt, ErrInviteExpired,
// ErrAlreadyMember.
func (c *Core) Join(now time.Time, code string) (ChannelID, error) {
	inv, err := ParseInvite(code)
	if err != nil {
		return ChannelID{}, err
	}
	if !now.Before(inv.Expires) {
		return inv.Channel, fieldErr(ErrInviteExpired, "code expired at %s", inv.Expires.Format(time.RFC3339))
	}
	if inv.Inviter == c.self {
		return inv.Channel, fieldErr(ErrAlreadyMember, "this node issued the code")
	}
	if ch := c.chans[inv.Channel]; ch != nil {
		switch {
		case ch.status == StatusJoining && ch.joining != nil && ch.joining.Token == inv.Token:
			return inv.Channel, fieldErr(ErrInviteUsed, "a join with this code is already under way")
		case ch.status != StatusRemoved:
			return inv.Channel, fieldErr(ErrAlreadyMember, "channel %s is %s", inv.Channel, ch.status)
		}
		// Removed earlier and invited again: start afresh.
		c.drop(ch)
	}
	ch := &channel{id: inv.Channel, status: StatusJoining, joining: &inv, joinedAt: now}
	c.chans[inv.Channel] = ch
	c.dirty[inv.Channel] = true
	c.control(ch, inv.Inviter, "join", (&joinMsg{channel: inv.Channel, token: inv.Token}).append(nil))
	c.schedule(now)
	return inv.Channel, nil
}

// drop deletes a channel and asks the driver to forget it.
func (c *Core) drop(ch *channel) {
	delete(c.chans, ch.id)
	delete(c.dirty, ch.id)
	c.emit(&Forget{Channel: ch.id})
	c.reindex()
}

// Admit admits keys whose join requests wait for approval, in one commit.
func (c *Core) Admit(now time.Time, id ChannelID, keys ...envelope.PublicKey) error {
	ch, ep, err := c.activeAdmin(id, RoleAdmin)
	if err != nil {
		return err
	}
	var adds []Member
	for _, k := range keys {
		i := -1
		for j, r := range ch.joinReqs {
			if r.key == k {
				i = j
			}
		}
		if i < 0 {
			return fieldErr(ErrNoJoinRequest, "%s", k.Address())
		}
		if rosterIndex(ep.roster, k) >= 0 {
			return fieldErr(ErrAlreadyMember, "%s", k.Address())
		}
		adds = append(adds, Member{Key: k, Role: ch.joinReqs[i].role})
	}
	if err := c.commit(now, ch, ops{adds: adds}); err != nil {
		return err
	}
	keep := ch.joinReqs[:0]
	for _, r := range ch.joinReqs {
		if rosterIndex(ch.head.roster, r.key) < 0 {
			keep = append(keep, r)
		}
	}
	ch.joinReqs = keep
	c.schedule(now)
	return nil
}

// Reject drops a pending join request.
func (c *Core) Reject(now time.Time, id ChannelID, key envelope.PublicKey) error {
	ch := c.chans[id]
	if ch == nil {
		return fieldErr(ErrUnknownChannel, "%s", id)
	}
	for i, r := range ch.joinReqs {
		if r.key == key {
			ch.joinReqs = append(ch.joinReqs[:i], ch.joinReqs[i+1:]...)
			c.dirty[id] = true
			c.control(ch, key, "refused", (&refusedMsg{channel: id, reason: 0}).append(nil))
			return nil
		}
	}
	return fieldErr(ErrNoJoinRequest, "%s", key.Address())
}

// JoinRequests lists the keys waiting for Admit.
func (c *Core) JoinRequests(id ChannelID) []Member {
	ch := c.chans[id]
	if ch == nil {
		return nil
	}
	out := make([]Member, len(ch.joinReqs))
	for i, r := range ch.joinReqs {
		out[i] = Member{Key: r.key, Role: r.role}
	}
	return out
}

// Remove removes members: a new epoch whose secret goes to every remaining
// member and not to them. Admins remove members and admins; owners remove
// anyone.
func (c *Core) Remove(now time.Time, id ChannelID, keys ...envelope.PublicKey) error {
	ch, ep, err := c.activeAdmin(id, RoleAdmin)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if rosterIndex(ep.roster, k) < 0 {
			return fieldErr(ErrNotMember, "%s", k.Address())
		}
	}
	err = c.commit(now, ch, ops{removes: keys})
	c.schedule(now)
	return err
}

// SetRole changes members' roles (owners only).
func (c *Core) SetRole(now time.Time, id ChannelID, key envelope.PublicKey, role Role) error {
	ch, ep, err := c.activeAdmin(id, RoleOwner)
	if err != nil {
		return err
	}
	i := rosterIndex(ep.roster, key)
	if i < 0 {
		return fieldErr(ErrNotMember, "%s", key.Address())
	}
	if ep.roster[i].Role == role {
		return nil
	}
	err = c.commit(now, ch, ops{roles: []Member{{Key: key, Role: role}}})
	c.schedule(now)
	return err
}

// Rotate starts a new epoch with the same members now.
func (c *Core) Rotate(now time.Time, id ChannelID) error {
	ch, _, err := c.activeAdmin(id, RoleAdmin)
	if err != nil {
		return err
	}
	err = c.commit(now, ch, ops{})
	c.schedule(now)
	return err
}

// Leave leaves a channel: the owners and admins are asked to remove this
// node (they commit a new epoch without it) and the channel is forgotten
// here. The only owner of a channel with other members gets ErrLastOwner.
func (c *Core) Leave(now time.Time, id ChannelID) error {
	ch := c.chans[id]
	if ch == nil {
		return fieldErr(ErrUnknownChannel, "%s", id)
	}
	if ch.open == nil && ch.status == StatusActive && ch.head != nil && ch.head.self >= 0 {
		ep := ch.head
		owners, admins := 0, 0
		for _, m := range ep.roster {
			if m.Key == c.self {
				continue
			}
			switch m.Role {
			case RoleOwner:
				owners++
			case RoleAdmin:
				admins++
			}
		}
		if ep.role() == RoleOwner && owners == 0 && len(ep.roster) > 1 {
			return fieldErr(ErrLastOwner, "make another member owner first")
		}
		for _, m := range ep.roster {
			if m.Key != c.self && m.Role >= RoleAdmin && (m.Role == RoleOwner || ep.role() < RoleOwner) {
				c.control(ch, m.Key, "leave", (&leaveMsg{channel: id}).append(nil))
			}
		}
	}
	c.drop(ch)
	c.schedule(now)
	return nil
}

// Resync asks the channel's owners and admins for a fresh welcome: for a
// member that missed commits for longer than the router holds messages.
func (c *Core) Resync(now time.Time, id ChannelID) error {
	ch, ep, err := c.activeAdmin(id, RoleMember)
	if err != nil {
		return err
	}
	c.sendSync(now, ch, ep)
	return nil
}

func (c *Core) sendSync(now time.Time, ch *channel, ep *epoch) {
	ch.lastSync = now
	for _, m := range ep.roster {
		if m.Key != c.self && m.Role >= RoleAdmin {
			c.control(ch, m.Key, "sync", (&syncMsg{channel: ch.id, epoch: ep.num, hash: ep.hash}).append(nil))
		}
	}
}

// ops is what a commit does, by key.
type ops struct {
	removes []envelope.PublicKey
	adds    []Member
	roles   []Member
	welcome []envelope.PublicKey // members to send a welcome instead of the commit (resync)
}

func (o *ops) empty() bool { return len(o.removes)+len(o.adds)+len(o.roles) == 0 }

// commit makes a new epoch on top of the current one: a fresh secret, the
// operations applied, and the control messages that carry it to every
// member of the new roster (a welcome for those added or resyncing, the
// commit for the others, a notice without the secret for the removed).
// Pending leaves are folded in.
func (c *Core) commit(now time.Time, ch *channel, o ops) error {
	parent := ch.head
	for _, d := range ch.leaves {
		if rosterIndex(parent.roster, d.key) >= 0 && !containsKey(o.removes, d.key) && d.key != c.self {
			o.removes = append(o.removes, d.key)
		}
	}
	for _, d := range ch.syncs {
		if !containsKey(o.welcome, d.key) {
			o.welcome = append(o.welcome, d.key)
		}
	}
	m := &commitMsg{channel: ch.id, epoch: parent.num + 1, parent: parent.hash, committer: uint16(parent.self)}
	for _, k := range o.removes {
		i := rosterIndex(parent.roster, k)
		if i < 0 {
			return fieldErr(ErrNotMember, "%s", k.Address())
		}
		m.removes = append(m.removes, uint16(i))
	}
	sort.Slice(m.removes, func(i, j int) bool { return m.removes[i] < m.removes[j] })
	for _, r := range o.roles {
		i := rosterIndex(parent.roster, r.Key)
		if i < 0 {
			return fieldErr(ErrNotMember, "%s", r.Key.Address())
		}
		m.roles = append(m.roles, roleChange{index: uint16(i), role: r.Role})
	}
	sort.Slice(m.roles, func(i, j int) bool { return m.roles[i].index < m.roles[j].index })
	m.adds = o.adds
	if parent.num == ^uint32(0) {
		return fieldErr(ErrExhausted, "epoch numbers")
	}
	roster, err := deriveRoster(parent.roster, m)
	if err != nil {
		return err
	}
	var secret key32
	if err := c.random(secret[:]); err != nil {
		return err
	}
	defer clear(secret[:])
	prefix := m.appendPrefix(nil)
	m.confirm = confirmation(&secret, prefix[1:])
	notice := append(prefix, m.confirm[:]...)
	m.signed = notice[1:]
	hash := commitHash(m.signed)
	withSecret := append(append([]byte(nil), notice...), secret[:]...)

	e := &epoch{num: m.epoch, hash: hash, parent: parent.hash, committer: m.committer, removes: len(m.removes),
		roster: roster, self: rosterIndex(roster, c.self), adopted: now}
	e.k = newEpochKeys(&secret, groupContext(ch.id, e.num, hash, ch.policy, ch.name, roster), len(roster))

	welcome := (&welcomeMsg{channel: ch.id, epoch: e.num, hash: hash, policy: ch.policy, name: ch.name, roster: roster, secret: secret}).append(nil)
	for _, mb := range roster {
		switch {
		case mb.Key == c.self:
		case rosterIndex(parent.roster, mb.Key) < 0 || containsKey(o.welcome, mb.Key):
			c.control(ch, mb.Key, "welcome", append([]byte(nil), welcome...))
		default:
			c.control(ch, mb.Key, "commit", append([]byte(nil), withSecret...))
		}
	}
	for _, i := range m.removes {
		c.control(ch, parent.roster[i].Key, "notice", append([]byte(nil), notice...))
	}
	c.stats.Commits++
	if !o.empty() {
		ch.mine = &ownCommit{hash: hash, num: e.num, removes: o.removes, adds: o.adds, roles: o.roles}
	}
	ch.syncs = nil
	c.addEpoch(now, ch, e)
	return nil
}

func containsKey(ks []envelope.PublicKey, k envelope.PublicKey) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// deriveRoster checks a commit against its parent roster and returns the
// new roster: the parent's members minus the removed, with the role
// changes, then the added in commit order. Rules: the committer is an owner
// or admin and stays; admins remove members and admins and add members;
// owners do anything to others; nobody changes their own role; a key is
// added only if absent; the roster stays within MaxMembers.
func deriveRoster(parent []Member, m *commitMsg) ([]Member, error) {
	n := len(parent)
	ci := int(m.committer)
	if ci >= n {
		return nil, fieldErr(ErrBadCommit, "committer %d of %d members", ci, n)
	}
	cr := parent[ci].Role
	if cr < RoleAdmin {
		return nil, fieldErr(ErrBadCommit, "committer is a %s", cr)
	}
	removed := make(map[int]bool, len(m.removes))
	for _, i := range m.removes {
		if int(i) >= n {
			return nil, fieldErr(ErrBadCommit, "removes index %d of %d", i, n)
		}
		if int(i) == ci {
			return nil, fieldErr(ErrBadCommit, "committer removes itself")
		}
		if parent[i].Role == RoleOwner && cr < RoleOwner {
			return nil, fieldErr(ErrBadCommit, "an admin removes an owner")
		}
		removed[int(i)] = true
	}
	roles := make(map[int]Role, len(m.roles))
	for _, rc := range m.roles {
		if int(rc.index) >= n || removed[int(rc.index)] {
			return nil, fieldErr(ErrBadCommit, "role change of index %d", rc.index)
		}
		if cr < RoleOwner {
			return nil, fieldErr(ErrBadCommit, "an admin changes roles")
		}
		if int(rc.index) == ci {
			return nil, fieldErr(ErrBadCommit, "committer changes its own role")
		}
		roles[int(rc.index)] = rc.role
	}
	out := make([]Member, 0, n-len(removed)+len(m.adds))
	for i, mb := range parent {
		if removed[i] {
			continue
		}
		if r, ok := roles[i]; ok {
			mb.Role = r
		}
		out = append(out, mb)
	}
	for _, a := range m.adds {
		if rosterIndex(parent, a.Key) >= 0 {
			return nil, fieldErr(ErrBadCommit, "adds a key already in the roster")
		}
		if a.Role > RoleMember && cr < RoleOwner {
			return nil, fieldErr(ErrBadCommit, "an admin adds a %s", a.Role)
		}
		out = append(out, a)
	}
	if len(out) > MaxMembers {
		return nil, fieldErr(ErrBadCommit, "%d members (at most %d)", len(out), MaxMembers)
	}
	return out, nil
}

// addEpoch adds a verified epoch and reruns the fork choice.
func (c *Core) addEpoch(now time.Time, ch *channel, e *epoch) {
	ch.epochs = append(ch.epochs, e)
	c.dirty[ch.id] = true
	c.recompute(now, ch)
}

// recompute reruns the fork choice and reacts to a new head: events,
// status, duties, redoing a lost own commit, pruning, pending commits,
// held messages, catch-up.
func (c *Core) recompute(now time.Time, ch *channel) {
	old := ch.head
	ch.head = ch.choose()
	for _, e := range ch.epochs {
		if e != ch.head && e.retired.IsZero() {
			e.retired = now
		}
	}
	if ch.head != old {
		ch.head.retired = time.Time{}
		c.stats.EpochsAdopted++
		c.diffEvents(ch, old, ch.head)
		if ch.head.self < 0 || ch.head.k == nil {
			if ch.status != StatusRemoved {
				ch.status = StatusRemoved
				c.event(ch, EventRemoved, c.self, RoleMember, ch.head.num, nil)
			}
		} else if ch.status == StatusRemoved {
			ch.status = StatusActive
		}
		ch.leaves = filterDuties(ch.leaves, ch.head.roster, true)
		ch.syncs = nil
	}
	c.redoMine(now, ch)
	ch.prune(now, c.o.KeepEpochs, c.o.EpochGrace)
	c.reindex()
	c.placePending(now, ch)
	c.retryUnknown(now)
}

func filterDuties(ds []duty, roster []Member, present bool) []duty {
	keep := ds[:0]
	for _, d := range ds {
		if (rosterIndex(roster, d.key) >= 0) == present {
			keep = append(keep, d)
		}
	}
	return keep
}

func (c *Core) diffEvents(ch *channel, old, cur *epoch) {
	if old == nil {
		return
	}
	c.event(ch, EventEpoch, envelope.PublicKey{}, cur.role(), cur.num, nil)
	for _, m := range old.roster {
		if i := rosterIndex(cur.roster, m.Key); i < 0 {
			c.event(ch, EventMemberRemoved, m.Key, m.Role, cur.num, nil)
		} else if cur.roster[i].Role != m.Role {
			c.event(ch, EventRoleChanged, m.Key, cur.roster[i].Role, cur.num, nil)
		}
	}
	for _, m := range cur.roster {
		if rosterIndex(old.roster, m.Key) < 0 {
			c.event(ch, EventMemberAdded, m.Key, m.Role, cur.num, nil)
		}
	}
}

// redoMine re-applies this node's last commit if a concurrent commit won
// over it: what it meant to do (remove X, add Y, make Z admin) is done
// again on top of the winner, where it still makes sense.
func (c *Core) redoMine(now time.Time, ch *channel) {
	mine := ch.mine
	if mine == nil {
		return
	}
	if e := ch.byHash(mine.hash); e != nil && ch.onChain(e) {
		// On the chain. A better sibling could still arrive until the root
		// passes it; only then is it final and forgotten.
		if ch.root.num >= mine.num {
			ch.mine = nil
			c.dirty[ch.id] = true
		}
		return
	}
	if ch.byHash(mine.hash) == nil && ch.root.num >= mine.num {
		ch.mine = nil // pruned after becoming final
		return
	}
	ch.mine = nil
	head := ch.head
	if ch.status != StatusActive || head.k == nil || head.role() < RoleAdmin {
		return
	}
	var o ops
	for _, k := range mine.removes {
		if i := rosterIndex(head.roster, k); i >= 0 && k != c.self && (head.roster[i].Role < RoleOwner || head.role() == RoleOwner) {
			o.removes = append(o.removes, k)
		}
	}
	for _, a := range mine.adds {
		if rosterIndex(head.roster, a.Key) < 0 && (a.Role == RoleMember || head.role() == RoleOwner) {
			o.adds = append(o.adds, a)
		}
	}
	for _, r := range mine.roles {
		if i := rosterIndex(head.roster, r.Key); i >= 0 && head.roster[i].Role != r.Role && head.role() == RoleOwner && r.Key != c.self {
			o.roles = append(o.roles, r)
		}
	}
	if o.empty() {
		return
	}
	if err := c.commit(now, ch, o); err != nil {
		c.log.Debug("redoing a lost commit failed", "channel", ch.id, "err", err)
	}
}

// HandleControl takes a control message a member sent this node end-to-end
// (routing.Deliver with Port PortControl; from is its authenticated
// sender). Errors say why it was refused; state is then unchanged.
func (c *Core) HandleControl(now time.Time, from envelope.PublicKey, payload []byte) error {
	msg, err := decodeControl(payload)
	if err == nil {
		switch m := msg.(type) {
		case *joinMsg:
			err = c.onJoin(now, from, m)
		case *welcomeMsg:
			err = c.onWelcome(now, from, m)
		case *commitMsg:
			err = c.onCommit(now, from, m, payload, false)
		case *leaveMsg:
			err = c.onLeave(now, from, m)
		case *syncMsg:
			err = c.onSync(now, from, m)
		case *refusedMsg:
			err = c.onRefused(now, from, m)
		}
	}
	if err != nil {
		c.stats.BadControl++
	}
	c.schedule(now)
	return err
}

func (c *Core) onJoin(now time.Time, from envelope.PublicKey, m *joinMsg) error {
	ch := c.chans[m.channel]
	if ch == nil || ch.open != nil {
		c.refuse(m.channel, from, refusedInvalid)
		return fieldErr(ErrUnknownChannel, "%s", m.channel)
	}
	th := tokenHash(m.token)
	var inv *invite
	for _, x := range ch.invites {
		if subtle.ConstantTimeCompare(x.hash[:], th[:]) == 1 {
			inv = x
		}
	}
	if inv == nil {
		c.refuse(ch.id, from, refusedInvalid)
		return fieldErr(ErrInviteInvalid, "unknown token")
	}
	if !now.Before(inv.expires) {
		c.refuse(ch.id, from, refusedExpired)
		return fieldErr(ErrInviteExpired, "expired at %s", inv.expires.Format(time.RFC3339))
	}
	if containsKey(inv.usedBy, from) {
		return nil // a repeat of a request already taken: its welcome is on its way
	}
	if inv.usesLeft == 0 {
		c.refuse(ch.id, from, refusedUsed)
		return fieldErr(ErrInviteUsed, "token already used")
	}
	head := ch.head
	if ch.status != StatusActive || head == nil || head.k == nil || head.role() < RoleAdmin || (inv.role > RoleMember && head.role() < RoleOwner) {
		c.refuse(ch.id, from, refusedNotAdmin)
		return fieldErr(ErrNotAllowed, "this node can no longer admit")
	}
	if rosterIndex(head.roster, from) >= 0 {
		return fieldErr(ErrAlreadyMember, "%s", from.Address())
	}
	if _, err := envelope.ParsePublicKey(from[:]); err != nil {
		return fieldErr(ErrMalformed, "joiner key: %v", err)
	}
	if inv.approve {
		for _, r := range ch.joinReqs {
			if r.key == from {
				return nil
			}
		}
		if len(ch.joinReqs) >= maxJoinReqs {
			return fieldErr(ErrTooLarge, "%d pending join requests", len(ch.joinReqs))
		}
		inv.usesLeft--
		inv.usedBy = append(inv.usedBy, from)
		ch.joinReqs = append(ch.joinReqs, joinReq{key: from, role: inv.role, at: now})
		c.dirty[ch.id] = true
		c.event(ch, EventJoinRequested, from, inv.role, head.num, nil)
		return nil
	}
	if err := c.commit(now, ch, ops{adds: []Member{{Key: from, Role: inv.role}}}); err != nil {
		return err
	}
	inv.usesLeft--
	inv.usedBy = append(inv.usedBy, from)
	return nil
}

func (c *Core) refuse(id ChannelID, to envelope.PublicKey, reason uint8) {
	c.stats.ControlSent++
	p := (&refusedMsg{channel: id, reason: reason}).append(nil)
	c.stats.ControlBytes += uint64(len(p))
	c.emit(&SendControl{To: to, Payload: p, Channel: id, Type: "refused"})
}

func (c *Core) onRefused(now time.Time, from envelope.PublicKey, m *refusedMsg) error {
	ch := c.chans[m.channel]
	if ch == nil || ch.status != StatusJoining || ch.joining == nil || ch.joining.Inviter != from {
		return fieldErr(ErrUnknownChannel, "no join under way for %s with this inviter", m.channel)
	}
	err := refusalErr(m.reason)
	c.event(ch, EventJoinRefused, from, RoleMember, 0, err)
	c.drop(ch)
	return nil
}

// onWelcome accepts a welcome: from the inviter while joining, or from an
// owner or admin of the current epoch for a newer epoch (resync, or
// re-admission after a lost concurrent commit).
func (c *Core) onWelcome(now time.Time, from envelope.PublicKey, m *welcomeMsg) error {
	ch := c.chans[m.channel]
	if ch == nil {
		return fieldErr(ErrUnknownChannel, "unsolicited welcome to %s", m.channel)
	}
	self := rosterIndex(m.roster, c.self)
	if self < 0 {
		return fieldErr(ErrBadWelcome, "welcome does not list this node")
	}
	fi := rosterIndex(m.roster, from)
	if fi < 0 || m.roster[fi].Role < RoleAdmin {
		return fieldErr(ErrBadWelcome, "sender is not an owner or admin of the welcomed epoch")
	}
	resync := false
	switch {
	case ch.status == StatusJoining:
		if ch.joining == nil || from != ch.joining.Inviter {
			return fieldErr(ErrBadWelcome, "welcome from someone other than the inviter")
		}
	case ch.open != nil:
		return fieldErr(ErrOpenChannel, "welcome to an open channel")
	default:
		head := ch.head
		if i := rosterIndex(head.roster, from); i < 0 || head.roster[i].Role < RoleAdmin {
			return fieldErr(ErrBadWelcome, "sender is not an owner or admin of the current epoch")
		}
		if m.epoch <= head.num && head.self >= 0 {
			if ch.byHash(m.hash) != nil {
				return nil // a copy of what we have
			}
			return fieldErr(ErrStaleCommit, "welcome to epoch %d, current is %d", m.epoch, head.num)
		}
		if ch.policy != m.policy || ch.name != m.name {
			return fieldErr(ErrBadWelcome, "welcome changes the channel's name or policy")
		}
		resync = true
	}
	e := &epoch{num: m.epoch, hash: m.hash, base: true, roster: m.roster, self: self, adopted: now}
	e.k = newEpochKeys(&m.secret, groupContext(m.channel, m.epoch, m.hash, m.policy, m.name, m.roster), len(m.roster))
	clear(m.secret[:])
	if ch.status == StatusJoining {
		ch.name, ch.policy, ch.status, ch.joining = m.name, m.policy, StatusActive, nil
	}
	ch.epochs = append(ch.epochs, e)
	ch.root = e
	ch.pending = nil
	old := ch.head
	ch.head = nil
	c.dirty[ch.id] = true
	if resync {
		c.event(ch, EventResynced, from, m.roster[self].Role, m.epoch, nil)
		ch.head = old
		// Keep the old epochs readable; the fork choice restarts at the welcome.
		c.recompute(now, ch)
		c.planCatchUp(now, ch, true)
	} else {
		c.event(ch, EventJoined, c.self, m.roster[self].Role, m.epoch, nil)
		c.recompute(now, ch)
	}
	return nil
}

// onCommit verifies a commit and adds its epoch. A commit whose parent is
// unknown waits (bounded) for the parent; one older than the root is stale.
func (c *Core) onCommit(now time.Time, from envelope.PublicKey, m *commitMsg, raw []byte, retry bool) error {
	ch := c.chans[m.channel]
	if ch == nil || ch.open != nil || ch.status == StatusJoining {
		return fieldErr(ErrUnknownChannel, "commit for %s", m.channel)
	}
	hash := commitHash(m.signed)
	if ch.byHash(hash) != nil {
		return nil // already have it
	}
	parent := ch.byHash(m.parent)
	if parent == nil {
		if m.epoch <= ch.root.num+1 {
			return fieldErr(ErrStaleCommit, "commit to epoch %d on an unknown parent, root is %d", m.epoch, ch.root.num)
		}
		for _, p := range ch.pending {
			if string(p.raw) == string(raw) {
				return nil
			}
		}
		if len(ch.pending) >= maxPending {
			ch.pending = ch.pending[1:]
		}
		ch.pending = append(ch.pending, pendingCommit{from: from, raw: append([]byte(nil), raw...), at: now})
		c.dirty[ch.id] = true
		return nil
	}
	if m.epoch != parent.num+1 {
		return fieldErr(ErrBadCommit, "epoch %d on a parent of epoch %d", m.epoch, parent.num)
	}
	if int(m.committer) >= len(parent.roster) || parent.roster[m.committer].Key != from {
		return fieldErr(ErrBadCommit, "committer index %d is not the sender", m.committer)
	}
	roster, err := deriveRoster(parent.roster, m)
	if err != nil {
		return err
	}
	self := rosterIndex(roster, c.self)
	e := &epoch{num: m.epoch, hash: hash, parent: m.parent, committer: m.committer, removes: len(m.removes), roster: roster, self: self, adopted: now}
	if self >= 0 {
		if m.secret == nil {
			return fieldErr(ErrBadCommit, "a member's copy without the epoch secret")
		}
		conf := confirmation(m.secret, m.signed[:len(m.signed)-len(m.confirm)])
		if subtle.ConstantTimeCompare(conf[:], m.confirm[:]) != 1 {
			return fieldErr(ErrBadCommit, "epoch secret does not match the confirmation")
		}
		e.k = newEpochKeys(m.secret, groupContext(ch.id, e.num, hash, ch.policy, ch.name, roster), len(roster))
	}
	if m.secret != nil {
		clear(m.secret[:])
	}
	c.addEpoch(now, ch, e)
	c.planCatchUp(now, ch, false)
	return nil
}

// placePending retries commits that waited for their parent. It is not
// re-entrant: adding an epoch reruns the fork choice, which calls it again;
// the outer loop picks up whatever that made placeable.
func (c *Core) placePending(now time.Time, ch *channel) {
	if ch.placing {
		return
	}
	ch.placing = true
	defer func() { ch.placing = false }()
	for progress := true; progress; {
		progress = false
		for i := 0; i < len(ch.pending); i++ {
			p := ch.pending[i]
			m, err := decodeCommit(p.raw)
			if err == nil && ch.byHash(m.parent) == nil && m.epoch > ch.root.num+1 {
				continue // still waiting for its parent
			}
			ch.pending = append(ch.pending[:i:i], ch.pending[i+1:]...)
			c.dirty[ch.id] = true
			if err == nil {
				err = c.onCommit(now, p.from, m, p.raw, true)
			}
			if err != nil {
				c.log.Debug("pending commit refused", "channel", ch.id, "err", err)
			}
			progress = true
			break
		}
	}
}

func (c *Core) onLeave(now time.Time, from envelope.PublicKey, m *leaveMsg) error {
	ch, ep, err := c.activeAdmin(m.channel, RoleAdmin)
	if err != nil {
		return err
	}
	i := rosterIndex(ep.roster, from)
	if i < 0 {
		return fieldErr(ErrNotMember, "%s", from.Address())
	}
	if ep.roster[i].Role == RoleOwner && ep.role() < RoleOwner {
		return fieldErr(ErrNotAllowed, "only owners remove a leaving owner")
	}
	for _, d := range ch.leaves {
		if d.key == from {
			return nil
		}
	}
	r := max(rank(ep.roster, c.self), 0)
	ch.leaves = append(ch.leaves, duty{key: from, due: now.Add(time.Duration(r) * c.o.Stagger)})
	c.dirty[ch.id] = true
	return nil
}

func (c *Core) onSync(now time.Time, from envelope.PublicKey, m *syncMsg) error {
	ch, ep, err := c.activeAdmin(m.channel, RoleAdmin)
	if err != nil {
		return err
	}
	if rosterIndex(ep.roster, from) < 0 {
		return fieldErr(ErrNotMember, "%s", from.Address())
	}
	if m.hash == ep.hash {
		return nil // in step
	}
	for _, d := range ch.syncs {
		if d.key == from {
			return nil
		}
	}
	r := max(rank(ep.roster, c.self), 0)
	ch.syncs = append(ch.syncs, duty{key: from, due: now.Add(time.Duration(r) * c.o.Stagger)})
	return nil
}

// Tick runs what is due: scheduled rotations, staggered leaves and
// resyncs, join timeouts, sync requests of a member stuck behind a missing
// commit, catch-up requests, expiry of old epochs and history.
func (c *Core) Tick(now time.Time) {
	ids := make([]ChannelID, 0, len(c.chans))
	for id := range c.chans {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	for _, id := range ids {
		ch := c.chans[id]
		if ch == nil {
			continue
		}
		c.tickChannel(now, ch)
	}
	c.tickHistory(now)
	c.schedule(now)
}

func (c *Core) tickChannel(now time.Time, ch *channel) {
	if ch.status == StatusJoining {
		if ch.joining != nil && !now.Before(ch.joining.Expires.Add(c.o.JoinTimeout)) {
			c.event(ch, EventJoinExpired, ch.joining.Inviter, RoleMember, 0, ErrInviteExpired)
			c.drop(ch)
		}
		return
	}
	if ch.open == nil && ch.head != nil {
		if due := c.dutyDue(ch); !due.IsZero() && !now.Before(due) {
			var o ops
			for _, d := range ch.leaves {
				if !now.Before(d.due) {
					o.removes = append(o.removes, d.key)
				}
			}
			if err := c.commit(now, ch, o); err != nil {
				// Drop the duties that cannot be done and back off, so that a
				// commit that keeps failing does not keep NextWake at now.
				c.log.Debug("scheduled commit failed", "channel", ch.id, "err", err)
				ch.leaves, ch.syncs = nil, nil
				ch.dutyAfter = now.Add(c.o.Stagger)
			}
		}
		if since := c.laggingSince(ch); !since.IsZero() && ch.status == StatusActive && ch.head.self >= 0 {
			if now.Sub(since) >= c.o.SyncAfter && now.Sub(ch.lastSync) >= c.o.SyncAfter {
				c.sendSync(now, ch, ch.head)
			}
		}
		before := len(ch.epochs)
		ch.prune(now, c.o.KeepEpochs, c.o.EpochGrace)
		if len(ch.epochs) != before {
			c.dirty[ch.id] = true
			c.reindex()
		}
		c.pruneInvites(now, ch)
	}
	if !ch.catchUpAt.IsZero() && !now.Before(ch.catchUpAt) {
		ch.catchUpAt = time.Time{}
		if ch.status == StatusActive {
			c.requestHistory(now, ch, 0)
		}
	}
}

// laggingSince is when the oldest commit ahead of the current epoch that
// cannot be placed (its parent never came) arrived; zero if none. Only such
// commits mean this node is behind: a late commit of a lost fork is not.
func (c *Core) laggingSince(ch *channel) time.Time {
	var since time.Time
	for _, p := range ch.pending {
		if len(p.raw) >= 21 && binary.BigEndian.Uint32(p.raw[17:21]) > ch.head.num {
			since = earliest(since, p.at)
		}
	}
	return since
}

// dutyDue is when this node (an owner or admin) must next commit: the
// scheduled rotation (age or message count), a staggered leave or resync.
func (c *Core) dutyDue(ch *channel) time.Time {
	h := ch.head
	if ch.status != StatusActive || h == nil || h.k == nil || h.role() < RoleAdmin {
		return time.Time{}
	}
	r := time.Duration(max(rank(h.roster, c.self), 0)) * c.o.Stagger
	due := h.adopted.Add(c.o.RotateEvery + r)
	if !h.countAt.IsZero() {
		due = earliest(due, h.countAt.Add(r))
	}
	for _, d := range ch.leaves {
		due = earliest(due, d.due)
	}
	for _, d := range ch.syncs {
		due = earliest(due, d.due)
	}
	if due.Before(ch.dutyAfter) {
		due = ch.dutyAfter
	}
	return due
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// schedule recomputes NextWake.
func (c *Core) schedule(now time.Time) {
	var w time.Time
	for _, ch := range c.chans {
		if ch.status == StatusJoining && ch.joining != nil {
			w = earliest(w, ch.joining.Expires.Add(c.o.JoinTimeout))
			continue
		}
		w = earliest(w, ch.catchUpAt)
		if ch.open != nil || ch.head == nil {
			continue
		}
		w = earliest(w, c.dutyDue(ch))
		if since := c.laggingSince(ch); !since.IsZero() && ch.status == StatusActive {
			w = earliest(w, later(since, ch.lastSync).Add(c.o.SyncAfter))
		}
		for _, e := range ch.epochs {
			if e != ch.head && !e.retired.IsZero() {
				w = earliest(w, e.retired.Add(c.o.EpochGrace+time.Second))
			}
		}
	}
	w = earliest(w, c.hist.nextWake(&c.o))
	if !w.IsZero() && w.Before(now) {
		w = now
	}
	c.wake = w
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
