package broadcast

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/openmeshd/meshd/envelope"
)

// Channel message body (docs/channels.md, "Channel messages"):
//
//	offset size
//	0      2    type (bits 15-14, 0 = message) ‖ sender index (bits 13-0)
//	2      3    generation: the sender's chain position
//	5      n+16 ChaCha20-Poly1305 ciphertext of the content [‖ signature], tag
const (
	bodyHeaderSize = 5
	// Overhead is what a channel message adds to its content beyond the
	// envelope's routing header (4-byte common header and channel tag
	// hint): body header and AEAD tag.
	Overhead = bodyHeaderSize + envelope.TagSize
	// SignedOverhead is Overhead with the signature policy on.
	SignedOverhead = Overhead + envelope.SignatureSize
	// maxSender is the largest sender index the 14-bit field holds.
	maxSender = 1<<14 - 1
)

func appendBodyHeader(b []byte, sender uint16, gen uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, sender&maxSender)
	return append(b, byte(gen>>16), byte(gen>>8), byte(gen))
}

// parseBody splits a channel body into its header fields and ciphertext.
func parseBody(body []byte) (sender uint16, gen uint32, ct []byte, err error) {
	if len(body) < bodyHeaderSize+envelope.TagSize {
		return 0, 0, nil, fieldErr(ErrTruncated, "channel body is %d bytes, need at least %d", len(body), bodyHeaderSize+envelope.TagSize)
	}
	if t := body[0] >> 6; t != 0 {
		return 0, 0, nil, fieldErr(ErrVersion, "channel body type %d", t)
	}
	sender = binary.BigEndian.Uint16(body) & maxSender
	gen = uint32(body[2])<<16 | uint32(body[3])<<8 | uint32(body[4])
	return sender, gen, body[bodyHeaderSize:], nil
}

// Control message types (first payload byte on PortControl).
const (
	ctlJoin    = 0x01
	ctlWelcome = 0x02
	ctlCommit  = 0x03
	ctlLeave   = 0x04
	ctlSync    = 0x05
	ctlRefused = 0x06
	// replyHistory is the first byte of a history reply (an anon-reply on
	// PortControl, never a pairwise message).
	replyHistory = 0x10
	// queryHistory is the first byte of a history request body (query
	// topic 2).
	queryHistory = 0x01
)

var ctlNames = map[byte]string{ctlJoin: "join", ctlWelcome: "welcome", ctlCommit: "commit", ctlLeave: "leave", ctlSync: "sync", ctlRefused: "refused"}

// TokenSize is the size of an invite token.
const TokenSize = 16

type joinMsg struct {
	channel ChannelID
	token   [TokenSize]byte
}

func (m *joinMsg) append(b []byte) []byte {
	b = append(b, ctlJoin)
	b = append(b, m.channel[:]...)
	return append(b, m.token[:]...)
}

type welcomeMsg struct {
	channel ChannelID
	epoch   uint32
	hash    EpochHash
	policy  Policy
	name    string
	roster  []Member
	secret  key32
}

func (m *welcomeMsg) append(b []byte) []byte {
	b = append(b, ctlWelcome)
	b = append(b, m.channel[:]...)
	b = binary.BigEndian.AppendUint32(b, m.epoch)
	b = append(b, m.hash[:]...)
	b = append(b, byte(m.policy), byte(len(m.name)))
	b = append(b, m.name...)
	b = appendRoster(b, m.roster)
	return append(b, m.secret[:]...)
}

func appendRoster(b []byte, r []Member) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
	for _, m := range r {
		b = append(b, m.Key[:]...)
		b = append(b, byte(m.Role))
	}
	return b
}

type roleChange struct {
	index uint16
	role  Role
}

// commitMsg is a membership commit: the operations that turn the parent
// epoch's roster into the new one. Copies for members of the new roster
// carry the new epoch secret; a copy for a removed member (a notice) does
// not.
type commitMsg struct {
	channel   ChannelID
	epoch     uint32
	parent    EpochHash
	committer uint16
	removes   []uint16
	roles     []roleChange
	adds      []Member
	confirm   [16]byte
	secret    *key32

	signed []byte // bytes from the channel id to the end of the confirmation
}

// appendPrefix writes the commit up to (not including) the confirmation.
func (m *commitMsg) appendPrefix(b []byte) []byte {
	b = append(b, ctlCommit)
	b = append(b, m.channel[:]...)
	b = binary.BigEndian.AppendUint32(b, m.epoch)
	b = append(b, m.parent[:]...)
	b = binary.BigEndian.AppendUint16(b, m.committer)
	b = append(b, byte(len(m.removes)))
	for _, i := range m.removes {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	b = append(b, byte(len(m.roles)))
	for _, rc := range m.roles {
		b = binary.BigEndian.AppendUint16(b, rc.index)
		b = append(b, byte(rc.role))
	}
	return appendRoster(b, m.adds)
}

type leaveMsg struct{ channel ChannelID }

type syncMsg struct {
	channel ChannelID
	epoch   uint32
	hash    EpochHash
}

// Refusal reasons.
const (
	refusedInvalid  = 1
	refusedUsed     = 2
	refusedExpired  = 3
	refusedNotAdmin = 4
)

type refusedMsg struct {
	channel ChannelID
	reason  uint8
}

func refusalErr(reason uint8) error {
	switch reason {
	case refusedInvalid:
		return ErrInviteInvalid
	case refusedUsed:
		return ErrInviteUsed
	case refusedExpired:
		return ErrInviteExpired
	}
	return ErrJoinRefused
}

// decodeControl decodes one control message. It checks structure and
// value ranges only; the core checks it against its state.
func decodeControl(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, fieldErr(ErrTruncated, "empty control message")
	}
	if len(b) > envelope.MaxSize {
		return nil, fieldErr(ErrTooLarge, "control message of %d bytes", len(b))
	}
	name, ok := ctlNames[b[0]]
	if !ok {
		return nil, fieldErr(ErrVersion, "control message type %#02x", b[0])
	}
	r := &reader{b: b[1:], what: name}
	switch b[0] {
	case ctlJoin:
		var m joinMsg
		r.copyTo(m.channel[:], "channel")
		r.copyTo(m.token[:], "token")
		return &m, r.end()
	case ctlWelcome:
		var m welcomeMsg
		r.copyTo(m.channel[:], "channel")
		m.epoch = r.u32("epoch")
		r.copyTo(m.hash[:], "hash")
		m.policy = Policy(r.u8("policy"))
		m.name = string(r.take(int(r.u8("name length")), "name"))
		m.roster = readRoster(r, 1, MaxMembers, false)
		r.copyTo(m.secret[:], "secret")
		if err := r.end(); err != nil {
			return nil, err
		}
		if err := checkPolicyName(m.policy, m.name); err != nil {
			return nil, err
		}
		if m.policy.Open() {
			return nil, fieldErr(ErrMalformed, "welcome for an open channel")
		}
		return &m, nil
	case ctlCommit:
		return decodeCommit(b)
	case ctlLeave:
		var m leaveMsg
		r.copyTo(m.channel[:], "channel")
		return &m, r.end()
	case ctlSync:
		var m syncMsg
		r.copyTo(m.channel[:], "channel")
		m.epoch = r.u32("epoch")
		r.copyTo(m.hash[:], "hash")
		return &m, r.end()
	case ctlRefused:
		var m refusedMsg
		r.copyTo(m.channel[:], "channel")
		m.reason = r.u8("reason")
		return &m, r.end()
	}
	return nil, fieldErr(ErrVersion, "control message type %#02x", b[0])
}

// readRoster reads a count and that many (key, role) entries, refusing bad
// roles and duplicates, and with checkKeys keys that are not safe curve
// points. Commits check the keys they add; a welcome's roster is made of
// keys every member checked when they were added, so re-checking a
// thousand points on a router CPU buys nothing.
func readRoster(r *reader, minN, maxN int, checkKeys bool) []Member {
	n := int(r.u16("member count"))
	if r.err != nil {
		return nil
	}
	if n < minN || n > maxN {
		r.fail(ErrTooLarge, "member count")
		return nil
	}
	if len(r.b) < n*(envelope.PublicKeySize+1) {
		r.fail(ErrTruncated, "members")
		return nil
	}
	out := make([]Member, n)
	seen := make(map[envelope.PublicKey]struct{}, n)
	for i := range out {
		r.copyTo(out[i].Key[:], "member key")
		out[i].Role = Role(r.u8("member role"))
		if r.err != nil {
			return nil
		}
		if !out[i].Role.valid() {
			r.fail(ErrMalformed, "member role")
			return nil
		}
		if _, dup := seen[out[i].Key]; dup {
			r.fail(ErrMalformed, "duplicate member")
			return nil
		}
		seen[out[i].Key] = struct{}{}
		if !checkKeys {
			continue
		}
		if _, err := envelope.ParsePublicKey(out[i].Key[:]); err != nil {
			r.fail(ErrMalformed, "member key: "+err.Error())
			return nil
		}
	}
	return out
}

func checkPolicyName(p Policy, name string) error {
	if p&^policyKnown != 0 {
		return fieldErr(ErrVersion, "policy bits %#02x", uint8(p&^policyKnown))
	}
	if len(name) > MaxName {
		return fieldErr(ErrTooLarge, "name of %d bytes", len(name))
	}
	if !utf8.ValidString(name) {
		return fieldErr(ErrMalformed, "name is not UTF-8")
	}
	return nil
}

func decodeCommit(b []byte) (*commitMsg, error) {
	if len(b) == 0 || b[0] != ctlCommit {
		return nil, fieldErr(ErrMalformed, "not a commit")
	}
	if len(b) > envelope.MaxSize {
		return nil, fieldErr(ErrTooLarge, "commit of %d bytes", len(b))
	}
	r := &reader{b: b[1:], what: "commit"}
	var m commitMsg
	r.copyTo(m.channel[:], "channel")
	m.epoch = r.u32("epoch")
	r.copyTo(m.parent[:], "parent")
	m.committer = r.u16("committer")
	nr := int(r.u8("remove count"))
	for i := 0; i < nr && r.err == nil; i++ {
		m.removes = append(m.removes, r.u16("removed index"))
	}
	nc := int(r.u8("role change count"))
	for i := 0; i < nc && r.err == nil; i++ {
		rc := roleChange{index: r.u16("role change index"), role: Role(r.u8("role"))}
		m.roles = append(m.roles, rc)
	}
	m.adds = readRoster(r, 0, MaxMembers, true)
	r.copyTo(m.confirm[:], "confirmation")
	if r.err != nil {
		return nil, r.err
	}
	m.signed = b[1 : len(b)-len(r.b)]
	switch len(r.b) {
	case 0:
	case SecretSize:
		m.secret = new(key32)
		copy(m.secret[:], r.b)
	default:
		return nil, fieldErr(ErrMalformed, "commit has %d bytes after the confirmation, want 0 or %d", len(r.b), SecretSize)
	}
	if m.epoch == 0 {
		return nil, fieldErr(ErrMalformed, "commit to epoch 0")
	}
	// One encoding per meaning: strictly ascending indices.
	for i := 1; i < len(m.removes); i++ {
		if m.removes[i] <= m.removes[i-1] {
			return nil, fieldErr(ErrMalformed, "removed indices not strictly ascending")
		}
	}
	for i, rc := range m.roles {
		if !rc.role.valid() {
			return nil, fieldErr(ErrMalformed, "role %d", rc.role)
		}
		if i > 0 && rc.index <= m.roles[i-1].index {
			return nil, fieldErr(ErrMalformed, "role changes not strictly ascending")
		}
	}
	return &m, nil
}

func (m *leaveMsg) append(b []byte) []byte {
	b = append(b, ctlLeave)
	return append(b, m.channel[:]...)
}

func (m *syncMsg) append(b []byte) []byte {
	b = append(b, ctlSync)
	b = append(b, m.channel[:]...)
	b = binary.BigEndian.AppendUint32(b, m.epoch)
	return append(b, m.hash[:]...)
}

func (m *refusedMsg) append(b []byte) []byte {
	b = append(b, ctlRefused)
	b = append(b, m.channel[:]...)
	return append(b, m.reason)
}

// History request (body of a query envelope, topic 2):
//
//	0  1   type 0x01
//	1  32  one-time X25519 reply key
//	33 4   max age, seconds
//	37 1   tag count t (1..8)
//	38 4t  tag hints
//	.. 1   have count h (0..255)
//	.. 4h  id prefixes of messages the requester holds
const (
	maxQueryTags = 8
	maxQueryHave = 255
)

type historyQuery struct {
	replyKey [32]byte
	maxAge   uint32
	tags     [][4]byte
	have     [][4]byte
}

func (q *historyQuery) append(b []byte) []byte {
	b = append(b, queryHistory)
	b = append(b, q.replyKey[:]...)
	b = binary.BigEndian.AppendUint32(b, q.maxAge)
	b = append(b, byte(len(q.tags)))
	for _, t := range q.tags {
		b = append(b, t[:]...)
	}
	b = append(b, byte(len(q.have)))
	for _, h := range q.have {
		b = append(b, h[:]...)
	}
	return b
}

func decodeQuery(b []byte) (*historyQuery, error) {
	if len(b) == 0 {
		return nil, fieldErr(ErrTruncated, "empty history request")
	}
	if b[0] != queryHistory {
		return nil, fieldErr(ErrVersion, "history request type %#02x", b[0])
	}
	r := &reader{b: b[1:], what: "history request"}
	var q historyQuery
	r.copyTo(q.replyKey[:], "reply key")
	q.maxAge = r.u32("max age")
	nt := int(r.u8("tag count"))
	if r.err == nil && (nt == 0 || nt > maxQueryTags) {
		r.fail(ErrMalformed, "tag count")
	}
	for i := 0; i < nt && r.err == nil; i++ {
		var t [4]byte
		r.copyTo(t[:], "tag")
		q.tags = append(q.tags, t)
	}
	nh := int(r.u8("have count"))
	if r.err == nil && len(r.b) < 4*nh {
		r.fail(ErrTruncated, "have ids")
	}
	for i := 0; i < nh && r.err == nil; i++ {
		var h [4]byte
		r.copyTo(h[:], "have id")
		q.have = append(q.have, h)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return &q, nil
}

// History reply (anon-reply payload on PortControl):
//
//	0  1  type 0x10
//	1  1  flags: bit 0 = more (the responder had more than fitted)
//	2  1  item count n
//	then n items: age in seconds (4), length (2), channel envelope
type wireItem struct {
	age uint32
	raw []byte
}

type historyReply struct {
	more  bool
	items []wireItem
}

func (h *historyReply) append(b []byte) []byte {
	b = append(b, replyHistory)
	var flags byte
	if h.more {
		flags |= 1
	}
	b = append(b, flags, byte(len(h.items)))
	for _, it := range h.items {
		b = binary.BigEndian.AppendUint32(b, it.age)
		b = binary.BigEndian.AppendUint16(b, uint16(len(it.raw)))
		b = append(b, it.raw...)
	}
	return b
}

func decodeReply(b []byte) (*historyReply, error) {
	if len(b) == 0 {
		return nil, fieldErr(ErrTruncated, "empty history reply")
	}
	if b[0] != replyHistory {
		return nil, fieldErr(ErrVersion, "history reply type %#02x", b[0])
	}
	r := &reader{b: b[1:], what: "history reply"}
	flags := r.u8("flags")
	n := int(r.u8("item count"))
	if r.err == nil && flags&^1 != 0 {
		r.fail(ErrMalformed, "flags")
	}
	h := &historyReply{more: flags&1 != 0}
	for i := 0; i < n && r.err == nil; i++ {
		age := r.u32("age")
		raw := r.take(int(r.u16("length")), "envelope")
		if r.err == nil && len(raw) < envelope.HeaderSize {
			r.fail(ErrMalformed, "envelope length")
		}
		h.items = append(h.items, wireItem{age: age, raw: raw})
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return h, nil
}
