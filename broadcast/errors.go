package broadcast

import (
	"errors"
	"fmt"
)

// Errors. Each names one reason an input or a request was refused, so the
// node and its counters can tell them apart with errors.Is; the wrapping
// error adds the details. An event method that returns an error has changed
// no state (it may still have queued a network action, e.g. the refusal it
// sends to a joiner whose invite is no longer valid).
var (
	// ErrTruncated: an input ends before a field its type requires (a
	// channel body shorter than its header and tag, a cut-off control
	// message or state record).
	ErrTruncated = errors.New("broadcast: truncated")
	// ErrTooLarge: an input or a field exceeds its bound.
	ErrTooLarge = errors.New("broadcast: too large")
	// ErrMalformed: a field holds a value its type does not allow
	// (non-canonical order, out-of-range index, bad role, trailing bytes).
	ErrMalformed = errors.New("broadcast: malformed")
	// ErrVersion: a body, message type or record version this code does not
	// speak.
	ErrVersion = errors.New("broadcast: unsupported version or type")

	// ErrUnknownChannel: no channel with this id is held here.
	ErrUnknownChannel = errors.New("broadcast: unknown channel")
	// ErrUnknownEpoch: a channel message whose tag names no epoch this node
	// has keys for: an epoch before it joined, after it was removed, one it
	// has not learnt yet, or a channel it is not in. Relays see this for
	// every channel they are not a member of.
	ErrUnknownEpoch = errors.New("broadcast: no keys for this epoch")
	// ErrAuth: the channel AEAD failed: a changed or truncated ciphertext,
	// or a key that is not the channel's. Nothing about the plaintext is
	// revealed.
	ErrAuth = errors.New("broadcast: authentication failed")
	// ErrForgedSender: the message names a sender that is not in its
	// epoch's roster, or (signature policy) its Ed25519 signature does not
	// verify with the named sender's key.
	ErrForgedSender = errors.New("broadcast: forged sender")
	// ErrReplay: this message was already delivered.
	ErrReplay = errors.New("broadcast: replayed message")
	// ErrStale: the message is older than the out-of-order window: its key
	// was deleted, so it can no longer be told apart from a replay.
	ErrStale = errors.New("broadcast: message older than the window")
	// ErrTooFarAhead: the message skips more of its sender's chain than the
	// window allows (Options.MaxSkip).
	ErrTooFarAhead = errors.New("broadcast: message too far ahead")
	// ErrExhausted: the sender chain of this epoch is used up (2^24
	// messages); a rotation is needed.
	ErrExhausted = errors.New("broadcast: sender chain exhausted")

	// ErrNotAllowed: the role of the actor does not permit the operation
	// (a member committing, an admin removing an owner, a member posting to
	// an announcement channel).
	ErrNotAllowed = errors.New("broadcast: not allowed")
	// ErrNotMember: the key is not a member of the channel (for a message:
	// its author was removed more than Options.RemovedGrace ago), or this
	// node is not (any more) an active member.
	ErrNotMember = errors.New("broadcast: not a member")
	// ErrAlreadyMember: the key is already a member, or this node already
	// holds the channel.
	ErrAlreadyMember = errors.New("broadcast: already a member")
	// ErrLastOwner: the only owner cannot leave a channel that has other
	// members; make someone else owner first.
	ErrLastOwner = errors.New("broadcast: last owner")
	// ErrOpenChannel: the operation has no meaning on an open channel.
	ErrOpenChannel = errors.New("broadcast: not possible on an open channel")

	// ErrInviteCorrupt: an invite code does not decode or its checksum is
	// wrong (a typo or an altered code).
	ErrInviteCorrupt = errors.New("broadcast: invite code corrupt")
	// ErrInviteInvalid: the inviter does not know the code's token (an
	// altered code, or one the inviter never issued or has forgotten).
	ErrInviteInvalid = errors.New("broadcast: invite code invalid")
	// ErrInviteUsed: the code was already used as many times as allowed.
	ErrInviteUsed = errors.New("broadcast: invite code already used")
	// ErrInviteExpired: the code's lifetime is over.
	ErrInviteExpired = errors.New("broadcast: invite code expired")
	// ErrJoinRefused: the inviter refused our join request.
	ErrJoinRefused = errors.New("broadcast: join refused")
	// ErrNoJoinRequest: Admit named a key that has no pending join request.
	ErrNoJoinRequest = errors.New("broadcast: no pending join request")

	// ErrBadCommit: a membership commit fails verification (committer not
	// in the parent roster or not the sender, role too low, operations
	// invalid for the parent roster, secret not matching its confirmation).
	ErrBadCommit = errors.New("broadcast: invalid commit")
	// ErrStaleCommit: a commit builds on an epoch older than this node's
	// final (root) epoch; it can no longer change the outcome.
	ErrStaleCommit = errors.New("broadcast: commit too old")
	// ErrBadWelcome: a welcome is not from a party allowed to send it, or
	// does not list this node.
	ErrBadWelcome = errors.New("broadcast: invalid welcome")

	// ErrUnknownReply: a history reply for a token this node is not waiting
	// on (expired, or never issued).
	ErrUnknownReply = errors.New("broadcast: unknown history reply")
	// ErrRateLimited: a history request was not answered because of the
	// reply budget.
	ErrRateLimited = errors.New("broadcast: rate limited")

	// ErrCorrupt: a persisted state record does not decode, or belongs to
	// another identity.
	ErrCorrupt = errors.New("broadcast: corrupt state record")
)

// fieldErr wraps a sentinel with the field at fault.
func fieldErr(sentinel error, what string, args ...any) error {
	if len(args) > 0 {
		what = fmt.Sprintf(what, args...)
	}
	return fmt.Errorf("%w: %s", sentinel, what)
}
