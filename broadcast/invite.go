package broadcast

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Invite is what an invite code carries: enough for a joiner to ask the
// inviter for admission, and nothing that would let anyone read the
// channel. docs/channels.md, "Invite codes".
type Invite struct {
	Channel ChannelID
	// Inviter is the admin the join request goes to, and the only party
	// whose welcome the joiner accepts.
	Inviter envelope.PublicKey
	// Token proves possession of the code. The inviter stores only its
	// hash.
	Token [TokenSize]byte
	// Expires is when the inviter stops accepting the code (whole seconds).
	Expires time.Time
}

const (
	invitePrefix  = "MESHD:JOIN:"
	inviteVersion = 1
	inviteSize    = 1 + IDSize + envelope.PublicKeySize + TokenSize + 4 + 4
)

// base32 without padding, upper case: every character of a code is in the
// QR alphanumeric set, so a QR code of it uses the compact mode.
var inviteEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func inviteChecksum(b []byte) [4]byte {
	h := sha256.New()
	h.Write([]byte(labelInvite))
	h.Write(b)
	var out [4]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Code returns the text form: "MESHD:JOIN:" and 117 base32 characters.
func (i Invite) Code() string {
	b := make([]byte, 0, inviteSize)
	b = append(b, inviteVersion)
	b = append(b, i.Channel[:]...)
	b = append(b, i.Inviter[:]...)
	b = append(b, i.Token[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(i.Expires.Unix()))
	sum := inviteChecksum(b)
	b = append(b, sum[:]...)
	return invitePrefix + inviteEncoding.EncodeToString(b)
}

func (i Invite) String() string { return i.Code() }

// ParseInvite decodes a code written by Code. It forgives case, spaces,
// line breaks and dashes (codes get pasted from chats and read aloud), and
// refuses anything else that does not decode or whose checksum is wrong
// with ErrInviteCorrupt.
func ParseInvite(code string) (Invite, error) {
	var inv Invite
	if len(code) > 1024 {
		return inv, fieldErr(ErrInviteCorrupt, "code of %d characters", len(code))
	}
	s := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n', '-':
			return -1
		}
		return r
	}, strings.ToUpper(code))
	if !strings.HasPrefix(s, invitePrefix) {
		return inv, fieldErr(ErrInviteCorrupt, "code does not start with %s", invitePrefix)
	}
	b, err := inviteEncoding.DecodeString(s[len(invitePrefix):])
	if err != nil {
		return inv, fieldErr(ErrInviteCorrupt, "code is not base32: %v", err)
	}
	if len(b) != inviteSize {
		return inv, fieldErr(ErrInviteCorrupt, "code holds %d bytes, want %d", len(b), inviteSize)
	}
	if b[0] != inviteVersion {
		return inv, fieldErr(ErrInviteCorrupt, "code version %d", b[0])
	}
	sum := inviteChecksum(b[:inviteSize-4])
	if subtle.ConstantTimeCompare(sum[:], b[inviteSize-4:]) != 1 {
		return inv, fieldErr(ErrInviteCorrupt, "checksum mismatch (typo or altered code)")
	}
	r := &reader{b: b[1:], what: "invite"}
	r.copyTo(inv.Channel[:], "channel")
	r.copyTo(inv.Inviter[:], "inviter")
	r.copyTo(inv.Token[:], "token")
	inv.Expires = time.Unix(int64(r.u32("expiry")), 0).UTC()
	if r.err != nil {
		return Invite{}, fieldErr(ErrInviteCorrupt, "%v", r.err)
	}
	if _, err := envelope.ParsePublicKey(inv.Inviter[:]); err != nil {
		return Invite{}, fieldErr(ErrInviteCorrupt, "inviter key: %v", err)
	}
	return inv, nil
}

// tokenHash is what an inviter keeps of a token.
func tokenHash(t [TokenSize]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(labelInvite))
	h.Write([]byte("token\x00"))
	h.Write(t[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// InviteOptions shape an invite.
type InviteOptions struct {
	// TTL is the code's lifetime. Zero: Options.InviteTTL.
	TTL time.Duration
	// MaxUses is how many different joiners may use the code. Zero: 1
	// (single use).
	MaxUses int
	// Role is the joiner's role. Zero: RoleMember. Only owners may invite
	// admins and owners.
	Role Role
	// Approve: join requests wait for Admit instead of being admitted at
	// once (EventJoinRequested).
	Approve bool
}

// invite is the inviter's record of a code it issued.
type invite struct {
	hash     [32]byte
	expires  time.Time
	usesLeft uint8
	role     Role
	approve  bool
	usedBy   []envelope.PublicKey
}
