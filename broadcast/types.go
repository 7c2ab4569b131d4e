package broadcast

import (
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Registry numbers this package owns (docs/protocol.md, "Registries").
const (
	// PortControl is the unicast port of channel control messages: join
	// requests, welcomes, commits, leave and sync requests, and history
	// replies.
	PortControl = 1
	// TopicHistory is the query topic of history requests.
	TopicHistory = 2
)

// Limits.
const (
	// IDSize is the size of a channel id.
	IDSize = 16
	// HashSize is the size of an epoch hash.
	HashSize = 16
	// SecretSize is the size of an epoch secret.
	SecretSize = 32
	// MaxMembers bounds a roster, so that a welcome always fits one
	// envelope.
	MaxMembers = 1024
	// MaxName bounds a channel name, in bytes of UTF-8.
	MaxName = 64
	// MaxGeneration is the last message number of a sender chain (24 bits on
	// the wire).
	MaxGeneration = 1<<24 - 1
)

// ChannelID names a channel. Private channels get 16 random bytes at
// creation; open channels derive theirs from the name. The id never appears
// on the air in channel messages (they carry a per-epoch tag instead), only
// inside encrypted control messages and invite codes.
type ChannelID [IDSize]byte

func (id ChannelID) String() string { return hex.EncodeToString(id[:]) }

// ParseChannelID reads an id written by String.
func ParseChannelID(s string) (ChannelID, error) {
	var id ChannelID
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != IDSize {
		return id, fmt.Errorf("%w: %q is not a channel id (want %d hex digits)", ErrMalformed, s, 2*IDSize)
	}
	copy(id[:], b)
	return id, nil
}

// EpochHash identifies an epoch: the hash of the commit that created it (or
// of the channel's genesis).
type EpochHash [HashSize]byte

func (h EpochHash) String() string { return hex.EncodeToString(h[:]) }

// Role is a member's rank.
type Role uint8

// Roles. A higher role can do everything a lower one can.
const (
	// RoleMember reads and posts.
	RoleMember Role = 0
	// RoleAdmin also invites, admits, removes members and admins, and
	// rotates the epoch.
	RoleAdmin Role = 1
	// RoleOwner also adds, removes and re-ranks anyone, owners included.
	RoleOwner Role = 2
)

var roleNames = [...]string{"member", "admin", "owner"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames {
		if strings.EqualFold(s, n) {
			return Role(i), nil
		}
	}
	return 0, fmt.Errorf("%w: role %q", ErrMalformed, s)
}

func (r Role) valid() bool { return r <= RoleOwner }

// Policy is a channel's fixed set of rules, chosen at creation.
type Policy uint8

// Policy bits.
const (
	// PolicySigned: every message carries its author's Ed25519 signature
	// (inside the encryption), so members can tell who wrote what, not only
	// that a member did. Costs 64 bytes per message.
	PolicySigned Policy = 1 << 0
	// PolicyAnnounce: only owners and admins post (an announcement
	// channel). Implies PolicySigned, which is what makes it enforceable.
	PolicyAnnounce Policy = 1 << 1
	// PolicyOpen: an open community channel whose key is derived from its
	// name. NOT PRIVATE: anyone who knows or guesses the name reads and
	// writes it. Set only by JoinOpen.
	PolicyOpen Policy = 1 << 2

	policyKnown = PolicySigned | PolicyAnnounce | PolicyOpen
)

// Signed reports whether messages carry signatures.
func (p Policy) Signed() bool { return p&(PolicySigned|PolicyAnnounce) != 0 }

// Open reports whether the channel is open (not private).
func (p Policy) Open() bool { return p&PolicyOpen != 0 }

func (p Policy) String() string {
	var parts []string
	if p.Open() {
		parts = append(parts, "open (not private)")
	} else {
		parts = append(parts, "private")
	}
	if p&PolicyAnnounce != 0 {
		parts = append(parts, "announce")
	}
	if p.Signed() {
		parts = append(parts, "signed")
	}
	return strings.Join(parts, ",")
}

// Member is one entry of a roster.
type Member struct {
	Key  envelope.PublicKey
	Role Role
}

// Status is where this node stands in a channel.
type Status uint8

// Statuses.
const (
	// StatusJoining: a join request was sent with an invite code; waiting
	// for the welcome.
	StatusJoining Status = iota
	// StatusActive: a member (or reader of an open channel).
	StatusActive
	// StatusRemoved: removed by an admin. Old messages stay readable; the
	// channel can be forgotten with Leave.
	StatusRemoved
)

var statusNames = [...]string{"joining", "active", "removed"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status?"
}

// Info describes a channel for the API.
type Info struct {
	ID     ChannelID
	Name   string
	Policy Policy
	// Private is false for open channels: their key is public.
	Private bool
	Status  Status
	// Role is this node's role (zero for open channels).
	Role      Role
	Epoch     uint32
	EpochHash EpochHash
	Members   int
	// EpochSince is when this node adopted the current epoch.
	EpochSince time.Time
}

// Action is an output of the core. The driver type-switches on it:
// *Flood, *SendControl, *Reply (network), *Deliver, *Event (application),
// *Save, *Forget, *SaveHistory (store).
//
// Carry out one batch (the slice Actions returns) like this: first every
// Save, Forget, SaveHistory and Deliver, in one store transaction; then,
// once that is durable, the network actions in order. Saving first is what
// keeps a crash from ever making this node reuse a message key (docs/channels.md,
// "Crash safety"); delivering in the same transaction is what makes
// delivery exactly-once across restarts.
type Action interface{ action() }

// Flood asks the driver to originate a channel or query envelope:
// routing.Router.Originate(now, Raw).
type Flood struct {
	Raw []byte
	// Kind is envelope.KindChannel or envelope.KindQuery (a history
	// request), for counters.
	Kind envelope.Kind
}

// SendControl asks the driver to send Payload end-to-end to To on
// PortControl: routing.Router.Send(now, routing.ToKey(To), PortControl, Payload).
type SendControl struct {
	To      envelope.PublicKey
	Payload []byte
	// Channel is the channel the message is about, for logs.
	Channel ChannelID
	// Type names the control message ("commit", "welcome", ...), for logs
	// and counters.
	Type string
}

// Reply asks the driver to answer a history request:
// routing.Router.Reply(now, To, PortControl, Payload).
type Reply struct {
	To      envelope.ReplyTo
	Payload []byte
}

// Deliver hands a channel message to the application, exactly once.
type Deliver struct {
	Channel ChannelID
	// From is the author as the channel knows it: for a private channel the
	// roster key of the sender; zero for an unsigned open channel.
	From envelope.PublicKey
	// Verified: From is proven by an Ed25519 signature. Without it, the
	// channel AEAD proves only that some member wrote the message.
	Verified bool
	// Private is false for open channels: anyone could have read it.
	Private bool
	Epoch   uint32
	Payload []byte
	// Time is when the message reached the mesh as far as this node can
	// tell: now for live messages, now minus the age a history responder
	// reported for caught-up ones.
	Time time.Time
	// History: the message came from a history reply (catch-up).
	History bool
}

// EventType says what changed.
type EventType uint8

// Event types.
const (
	EventCreated       EventType = iota // a channel was created or an open one joined
	EventJoined                         // our join was welcomed; Epoch is the first readable epoch
	EventJoinRequested                  // a join request awaits Admit (invite with approval)
	EventJoinRefused                    // the inviter refused our join request (Err says why)
	EventJoinExpired                    // no welcome came before the code expired
	EventMemberAdded                    // Member joined the roster
	EventMemberRemoved                  // Member left the roster (removed or left)
	EventRoleChanged                    // Member's role is now Role
	EventEpoch                          // a new epoch became current
	EventRemoved                        // this node was removed
	EventResynced                       // a welcome replaced this node's view (resync)
)

var eventNames = [...]string{"created", "joined", "join-requested", "join-refused", "join-expired",
	"member-added", "member-removed", "role-changed", "epoch", "removed", "resynced"}

func (t EventType) String() string {
	if int(t) < len(eventNames) {
		return eventNames[t]
	}
	return "event?"
}

// Event reports a change in a channel, for the API's event stream.
type Event struct {
	Channel ChannelID
	Type    EventType
	Member  envelope.PublicKey
	Role    Role
	Epoch   uint32
	Err     error
}

// Save asks the driver to store State under Channel (overwriting). Load
// restores it.
type Save struct {
	Channel ChannelID
	State   []byte
}

// Forget asks the driver to delete the stored state of Channel.
type Forget struct{ Channel ChannelID }

// SaveHistory asks the driver to store the history cache (overwriting);
// LoadHistory restores it. It comes at most every Options.HistorySaveEvery.
type SaveHistory struct{ State []byte }

func (*Flood) action()       {}
func (*SendControl) action() {}
func (*Reply) action()       {}
func (*Deliver) action()     {}
func (*Event) action()       {}
func (*Save) action()        {}
func (*Forget) action()      {}
func (*SaveHistory) action() {}

// Options configure a Core. Every zero value has a documented default; the
// config key (in the daemon's configuration) is named where there is one.
type Options struct {
	// Identity is this node's identity. Required.
	Identity *envelope.Identity
	// Rand is the source of epoch secrets, channel ids, invite tokens and
	// one-time keys. Nil: crypto/rand.Reader. Tests pass a deterministic
	// reader.
	Rand io.Reader
	// Logger receives debug logs. Nil: discard.
	Logger *slog.Logger

	// RotateEvery is the age after which an admin rotates the epoch
	// (channels.rotate_every). Zero: 24h.
	RotateEvery time.Duration
	// RotateAfter is the number of messages after which an admin rotates
	// the epoch (channels.rotate_after). Zero: 1000.
	RotateAfter int
	// Stagger spaces the admins taking a scheduled duty (rotation,
	// processing a leave, serving a resync): the admin of rank r waits
	// r×Stagger, so normally one admin commits. Zero: 10 minutes.
	Stagger time.Duration

	// InviteTTL is the default lifetime of an invite code. Zero: 24h.
	InviteTTL time.Duration
	// JoinTimeout is how long a joiner waits for its welcome past the
	// code's expiry before giving up. Zero: 24h.
	JoinTimeout time.Duration

	// MaxSkip bounds how far ahead in a sender's chain a message may be
	// (messages skipped at once). Zero: 2048.
	MaxSkip int
	// MaxSkipped bounds the skipped-message keys and ranges kept per epoch
	// for out-of-order messages. Zero: 256.
	MaxSkipped int
	// KeepEpochs bounds the epochs kept per channel (current, recent and
	// competing ones), for late messages. Zero: 6.
	KeepEpochs int
	// EpochGrace is how long an epoch stays readable after it stopped being
	// current. Zero: 24h.
	EpochGrace time.Duration
	// RemovedGrace is how long after this node learnt that a member was
	// removed (or left) it still accepts that member's messages of the
	// epochs before: messages sent before the removal but still on their
	// way. After it, the removed member's old keys post nothing. Zero: 15
	// minutes.
	RemovedGrace time.Duration
	// SyncAfter is how long a member waits with a commit it cannot place
	// (its parent never came) before asking the admins to resync it. Zero:
	// 10 minutes.
	SyncAfter time.Duration

	// FloodTTL is the hop scope of channel messages. Zero: 8.
	FloodTTL uint8
	// HistoryTTL is the hop scope of history requests. Zero: 1 (neighbours
	// and theirs).
	HistoryTTL uint8
	// HistoryMaxAge bounds the age of kept channel messages
	// (channels.history_age). Zero: 24h.
	HistoryMaxAge time.Duration
	// HistoryMaxCount bounds the kept messages per channel tag. Zero: 512.
	HistoryMaxCount int
	// HistoryMaxBytes bounds the whole history cache. Zero: 1 MiB.
	HistoryMaxBytes int
	// HistoryReplyBytes bounds one history reply. Zero: 4096.
	HistoryReplyBytes int
	// HistoryRepliesPerMinute bounds the history replies this node sends.
	// Zero: 20.
	HistoryRepliesPerMinute int
	// HistorySaveEvery spaces SaveHistory actions (flash wear). Zero: 5
	// minutes.
	HistorySaveEvery time.Duration
	// CacheForeign keeps messages of channels this node is not a member of
	// in the history cache too, so that it can serve their members'
	// catch-up (channels.cache_foreign). Zero: false.
	CacheForeign bool
	// GapWait is how long a gap in a sender's chain may stay open before
	// the core asks neighbours for history. Zero: 30s.
	GapWait time.Duration
}

func (o *Options) withDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defi := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RotateEvery, 24*time.Hour)
	defi(&o.RotateAfter, 1000)
	def(&o.Stagger, 10*time.Minute)
	def(&o.InviteTTL, 24*time.Hour)
	def(&o.JoinTimeout, 24*time.Hour)
	defi(&o.MaxSkip, 2048)
	defi(&o.MaxSkipped, 256)
	defi(&o.KeepEpochs, 6)
	def(&o.EpochGrace, 24*time.Hour)
	def(&o.SyncAfter, 10*time.Minute)
	def(&o.RemovedGrace, 15*time.Minute)
	if o.FloodTTL == 0 {
		o.FloodTTL = 8
	}
	if o.HistoryTTL == 0 {
		o.HistoryTTL = 1
	}
	def(&o.HistoryMaxAge, 24*time.Hour)
	defi(&o.HistoryMaxCount, 512)
	defi(&o.HistoryMaxBytes, 1<<20)
	defi(&o.HistoryReplyBytes, 4096)
	defi(&o.HistoryRepliesPerMinute, 20)
	def(&o.HistorySaveEvery, 5*time.Minute)
	def(&o.GapWait, 30*time.Second)
	if o.KeepEpochs < 2 {
		o.KeepEpochs = 2
	}
}

// Stats are the core's counters, as a snapshot.
type Stats struct {
	Channels int

	Sent          uint64 // own channel messages
	Delivered     uint64 // messages delivered to the application
	FromHistory   uint64 // of which came from history replies
	Duplicates    uint64 // replays and echoes of own messages, dropped
	UnknownEpoch  uint64 // channel messages no epoch key matched (relays: all foreign traffic)
	AuthFailed    uint64
	Forged        uint64
	Stale         uint64 // too old or too far ahead
	BadControl    uint64 // control messages refused
	Commits       uint64 // commits this node made
	EpochsAdopted uint64
	// ControlSent / ControlBytes count control payloads this node asked to
	// send (before the pairwise envelope, which adds 33 bytes with hints).
	ControlSent  uint64
	ControlBytes uint64

	HistoryRequests uint64 // history requests sent
	HistoryReplies  uint64 // history replies sent
	HistoryServed   uint64 // messages sent in history replies
	HistoryItems    int    // messages in the cache
	HistoryBytes    int
	RateLimited     uint64
}
