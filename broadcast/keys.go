package broadcast

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"strings"

	"github.com/openmeshd/meshd/envelope"
	"golang.org/x/crypto/chacha20poly1305"
)

// Domain-separation labels (docs/channels.md, "Key schedule"). Every hash,
// KDF and signature input starts with one, and each names v1, so nothing
// computed for one purpose or version is valid for another.
const (
	labelContext = "meshd/v1/channel/context\x00"
	labelRoster  = "meshd/v1/channel/roster\x00"
	labelGenesis = "meshd/v1/channel/genesis\x00"
	labelCommit  = "meshd/v1/channel/commit\x00"
	labelOpenID  = "meshd/v1/channel/open-id\x00"
	labelMsgID   = "meshd/v1/channel/id\x00"
	labelInvite  = "meshd/v1/channel/invite\x00"
	saltEpoch    = "meshd/v1/channel/epoch"
	saltConfirm  = "meshd/v1/channel/confirm"
	saltOpen     = "meshd/v1/channel/open"
	infoTree     = "meshd/v1/channel/tree\x00"
	infoTag      = "meshd/v1/channel/tag\x00"
	infoOpenKey  = "meshd/v1/channel/open-key\x00"
	ctxMsgSig    = "meshd/v1/channel/msg\x00"
	ctxOpenSig   = "meshd/v1/channel/open-msg\x00"
)

// One-byte HMAC labels of the secret tree and the sender chains. Each key
// they are used with plays exactly one role, and the labels differ anyway.
const (
	lblMsgKey    = 0x01 // chain key → message key
	lblNextChain = 0x02 // chain key → next chain key
	lblLeft      = 0x10 // tree node → left child
	lblRight     = 0x11 // tree node → right child
	lblChain     = 0x12 // tree leaf → first chain key of that member
)

// TagSize is the size of an epoch tag. Channel messages carry its first
// four bytes (or all sixteen with FlagFull) where the envelope format has the
// channel id.
const TagSize = 16

type key32 = [32]byte

// hkdfExtract is HKDF-Extract with SHA-256 (RFC 5869).
func hkdfExtract(salt string, ikm []byte) key32 {
	m := hmac.New(sha256.New, []byte(salt))
	m.Write(ikm)
	var out key32
	m.Sum(out[:0])
	return out
}

// hkdfExpand is HKDF-Expand with SHA-256 for one block (32 bytes; callers
// needing fewer take a prefix, which is what HKDF gives for a shorter L):
// HMAC(prk, info ‖ 0x01). The info is the concatenation of the parts.
func hkdfExpand(prk *key32, info string, parts ...[]byte) key32 {
	m := hmac.New(sha256.New, prk[:])
	m.Write([]byte(info))
	for _, p := range parts {
		m.Write(p)
	}
	m.Write([]byte{1})
	var out key32
	m.Sum(out[:0])
	return out
}

func hmac1(k *key32, label byte) key32 {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte{label})
	var out key32
	m.Sum(out[:0])
	return out
}

// step ratchets a sender chain once: it returns the message key of the
// current position and moves ck to the next one. The old chain key is
// overwritten, so it is gone.
func step(ck *key32) key32 {
	mk := hmac1(ck, lblMsgKey)
	*ck = hmac1(ck, lblNextChain)
	return mk
}

// advance ratchets ck n times, discarding the message keys.
func advance(ck key32, n uint32) key32 {
	for ; n > 0; n-- {
		ck = hmac1(&ck, lblNextChain)
	}
	return ck
}

// rosterHash binds the exact roster (order, keys, roles).
func rosterHash(r []Member) [32]byte {
	h := sha256.New()
	h.Write([]byte(labelRoster))
	h.Write(binary.BigEndian.AppendUint16(nil, uint16(len(r))))
	for _, m := range r {
		h.Write(m.Key[:])
		h.Write([]byte{byte(m.Role)})
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// groupContext is what every member of an epoch must agree on: the epoch's
// keys depend on it, so members who disagree about the roster, the policy
// or the epoch's history cannot read each other (they fail safe).
func groupContext(id ChannelID, num uint32, hash EpochHash, policy Policy, name string, roster []Member) [32]byte {
	rh := rosterHash(roster)
	h := sha256.New()
	h.Write([]byte(labelContext))
	h.Write(id[:])
	h.Write(binary.BigEndian.AppendUint32(nil, num))
	h.Write(hash[:])
	h.Write([]byte{byte(policy), byte(len(name))})
	h.Write([]byte(name))
	h.Write(rh[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// deriveEpoch turns an epoch secret and the group context into the root of
// the epoch's secret tree and the epoch's tag.
func deriveEpoch(secret *key32, ctx [32]byte) (root key32, tag [TagSize]byte) {
	prk := hkdfExtract(saltEpoch, secret[:])
	root = hkdfExpand(&prk, infoTree, ctx[:])
	t := hkdfExpand(&prk, infoTag, ctx[:])
	copy(tag[:], t[:])
	clear(prk[:])
	return root, tag
}

// genesisHash is the hash of epoch 0 of a private channel.
func genesisHash(id ChannelID, creator envelope.PublicKey, policy Policy, name string) EpochHash {
	h := sha256.New()
	h.Write([]byte(labelGenesis))
	h.Write(id[:])
	h.Write(creator[:])
	h.Write([]byte{byte(policy), byte(len(name))})
	h.Write([]byte(name))
	var out EpochHash
	copy(out[:], h.Sum(nil))
	return out
}

// commitHash is the epoch hash of a commit: the hash of its bytes from the
// channel id to the end of the confirmation.
func commitHash(signed []byte) EpochHash {
	h := sha256.New()
	h.Write([]byte(labelCommit))
	h.Write(signed)
	var out EpochHash
	copy(out[:], h.Sum(nil))
	return out
}

// confirmation commits a commit to its epoch secret, so that two commits
// with the same operations but different secrets have different hashes:
// members can never silently end up in "the same" epoch with different keys.
func confirmation(secret *key32, prefix []byte) [16]byte {
	prk := hkdfExtract(saltConfirm, secret[:])
	m := hmac.New(sha256.New, prk[:])
	clear(prk[:])
	m.Write(prefix)
	var out [16]byte
	copy(out[:], m.Sum(nil))
	return out
}

// NormalizeOpenName is how open channel names are compared: trimmed, a
// leading '#' dropped, lower case. "#General " and "general" are one channel.
func NormalizeOpenName(name string) string {
	return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(name), "#"))
}

// openID is the id of an open channel: anyone can compute it from the name.
func openID(name string, policy Policy) ChannelID {
	h := sha256.New()
	h.Write([]byte(labelOpenID))
	h.Write([]byte{byte(policy)})
	h.Write([]byte(name))
	var id ChannelID
	copy(id[:], h.Sum(nil))
	return id
}

// openKeys derives the well-known key and tag of an open channel.
func openKeys(name string, policy Policy) (prk key32, tag [TagSize]byte) {
	prk = hkdfExtract(saltOpen, append([]byte{byte(policy)}, name...))
	t := hkdfExpand(&prk, infoTag)
	copy(tag[:], t[:])
	return prk, tag
}

// openMsgKey is the key of one open-channel message: the well-known key
// expanded with the message's random header, so that keys never repeat in
// practice (it protects nothing: the channel is public; it only keeps the
// AEAD's integrity check meaningful).
func openMsgKey(prk *key32, header []byte) key32 {
	return hkdfExpand(prk, infoOpenKey, header)
}

// messageID names a channel envelope for history and dedup: a hash of its
// bytes from the type byte on (hops and TTL change on the way).
func messageID(raw []byte) [8]byte {
	h := sha256.New()
	h.Write([]byte(labelMsgID))
	if len(raw) > envelope.OffsetTTL {
		h.Write(raw[envelope.OffsetTTL+1:])
	}
	var out [8]byte
	copy(out[:], h.Sum(nil))
	return out
}

// zeroNonce: every message key encrypts exactly one message, so the nonce
// can be constant (as in envelope's anonymous messages).
var zeroNonce [chacha20poly1305.NonceSize]byte

// secretTree derives every member's first chain key of an epoch from one
// root, lazily: a node's secret gives its two children's and is then
// deleted, so the tree holds only the subtrees of members that have not
// been derived yet (O(log n) secrets plus one per derived member), and a
// member's chain key cannot be rederived once taken. This is the secret tree
// of MLS (RFC 9420, section 9), reimplemented.
type secretTree struct {
	depth uint8
	nodes map[uint32]key32 // key: depth<<16 | index
}

func treeDepth(n int) uint8 {
	d := uint8(0)
	for (1 << d) < n {
		d++
	}
	return d
}

func nodeKey(depth uint8, idx uint32) uint32 { return uint32(depth)<<16 | idx }

func newSecretTree(root key32, members int) secretTree {
	return secretTree{depth: treeDepth(members), nodes: map[uint32]key32{nodeKey(0, 0): root}}
}

// derive returns leaf i's secret; with take it also consumes it (replacing
// its ancestor by the ancestor's other descendants). ok is false when the
// leaf was already taken.
func (t *secretTree) derive(i int, take bool) (leaf key32, ok bool) {
	idx := uint32(i)
	for d := uint8(0); d <= t.depth; d++ {
		at := idx >> (t.depth - d)
		cur, found := t.nodes[nodeKey(d, at)]
		if !found {
			continue
		}
		if take {
			delete(t.nodes, nodeKey(d, at))
		}
		for ; d < t.depth; d++ {
			bit := (idx >> (t.depth - d - 1)) & 1
			l, r := hmac1(&cur, lblLeft), hmac1(&cur, lblRight)
			if bit == 0 {
				if take {
					t.nodes[nodeKey(d+1, 2*at+1)] = r
				}
				cur = l
			} else {
				if take {
					t.nodes[nodeKey(d+1, 2*at)] = l
				}
				cur = r
			}
			at = 2*at + bit
		}
		return hmac1(&cur, lblChain), true
	}
	return leaf, false
}

func (t *secretTree) clone() secretTree {
	n := secretTree{depth: t.depth, nodes: make(map[uint32]key32, len(t.nodes))}
	for k, v := range t.nodes {
		n.nodes[k] = v
	}
	return n
}
