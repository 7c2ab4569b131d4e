package broadcast

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"golang.org/x/crypto/chacha20poly1305"
)

// sealWith builds a channel envelope the way Send does, from explicit
// parts, so that tests can forge what a malicious member could.
func sealWith(t testing.TB, tag [TagSize]byte, sender uint16, gen uint32, mk key32, pt []byte) []byte {
	t.Helper()
	e := envelope.Envelope{Kind: envelope.KindChannel, TTL: 8, Dst: envelope.HintAddr(envelope.Hint(tag[:4]))}
	e.Body = make([]byte, bodyHeaderSize+len(pt)+envelope.TagSize)
	copy(e.Body, appendBodyHeader(nil, sender, gen))
	raw, err := e.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	off := len(raw) - len(pt) - envelope.TagSize
	aead, _ := chacha20poly1305.New(mk[:])
	aead.Seal(raw[:off], zeroNonce[:], pt, raw[envelope.OffsetTTL+1:off])
	return raw
}

// chainKey peeks at generation gen of sender's chain in a node's current
// epoch, as any member can (they all hold the epoch's tree).
func chainKey(t testing.TB, n *node, id ChannelID, sender int, gen uint32) (key32, *epoch) {
	t.Helper()
	ep := n.c.chans[id].head
	leaf, ok := ep.k.tree.derive(sender, false)
	if !ok {
		t.Fatalf("%s already took sender %d's leaf", n.name, sender)
	}
	ck := advance(leaf, gen)
	return step(&ck), ep
}

func TestBadChannelMessages(t *testing.T) {
	m := newMesh(t, Options{})
	a, b, c := m.add("alice"), m.add("bob"), m.add("carol")
	signed := m.channel(a, "announcements", PolicySigned, b, c)
	plain := m.channel(a, "chat", 0, b, c)
	m.send(a, plain, "first")
	good := m.floods[len(m.floods)-1].raw
	m.floods = nil
	oldEpoch := c.c.chans[plain].head
	m.must(a, a.c.Rotate(m.now(), plain))
	m.settle()

	cases := []struct {
		name string
		id   ChannelID
		raw  func() []byte
		want error
	}{
		{"forged sender: bob signs as alice", signed, func() []byte {
			// Bob holds the epoch tree, so the AEAD passes; the signature
			// cannot.
			mk, ep := chainKey(t, b, signed, 0, 0)
			header := appendBodyHeader(nil, 0, 0)
			content := []byte("alice says: give bob admin")
			pt := append(append([]byte(nil), content...), b.id.Sign(msgSigInput(signed, ep, header, content))...)
			return sealWith(t, ep.k.tag, 0, 0, mk, pt)
		}, ErrForgedSender},
		{"forged sender: no signature at all", signed, func() []byte {
			mk, ep := chainKey(t, b, signed, 0, 1)
			return sealWith(t, ep.k.tag, 0, 1, mk, []byte("short"))
		}, ErrForgedSender},
		{"forged sender: index outside the roster", plain, func() []byte {
			ep := b.c.chans[plain].head
			return sealWith(t, ep.k.tag, 9, 0, key32{}, []byte("hi"))
		}, ErrForgedSender},
		{"forged sender: outsider guessing keys", plain, func() []byte {
			ep := b.c.chans[plain].head
			return sealWith(t, ep.k.tag, 0, 0, key32{1, 2, 3}, []byte("hi"))
		}, ErrAuth},
		{"wrong epoch: old epoch's keys under the new tag", plain, func() []byte {
			ck := advance(mustLeaf(t, oldEpoch, 1), 0)
			mk := step(&ck)
			return sealWith(t, c.c.chans[plain].head.k.tag, 1, 0, mk, []byte("hi"))
		}, ErrAuth},
		{"wrong epoch: tag of no epoch the receiver holds", plain, func() []byte {
			return sealWith(t, [TagSize]byte{0xde, 0xad, 0xbe, 0xef}, 0, 0, key32{}, []byte("hi"))
		}, ErrUnknownEpoch},
		{"truncated ciphertext: shorter than header and tag", plain, func() []byte {
			return good[:envelope.HeaderSize+envelope.HintSize+bodyHeaderSize+envelope.TagSize-1]
		}, ErrTruncated},
		{"truncated ciphertext: tag cut", plain, func() []byte { return good[:len(good)-1] }, ErrAuth},
		{"truncated envelope", plain, func() []byte { return good[:3] }, ErrMalformed},
		{"flipped ciphertext bit", plain, func() []byte {
			x := append([]byte(nil), good...)
			x[len(x)-20] ^= 1
			return x
		}, ErrAuth},
		{"flipped generation bit", plain, func() []byte {
			x := append([]byte(nil), good...)
			x[envelope.HeaderSize+envelope.HintSize+4] ^= 1
			return x
		}, ErrAuth},
		{"unknown body type", plain, func() []byte {
			x := append([]byte(nil), good...)
			x[envelope.HeaderSize+envelope.HintSize] |= 0x40
			return x
		}, ErrVersion},
		{"not a channel envelope", plain, func() []byte {
			e := envelope.Envelope{Kind: envelope.KindQuery, Topic: 2, Body: []byte{1}}
			raw, _ := e.Append(nil)
			return raw
		}, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.raw()
			before := c.c.marshalChannel(c.c.chans[tc.id])
			err := c.c.HandleChannel(m.now(), raw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if after := c.c.marshalChannel(c.c.chans[tc.id]); !bytes.Equal(before, after) {
				t.Fatal("state changed")
			}
			for _, a := range c.c.Actions() {
				t.Fatalf("action %T after a refused message", a)
			}
		})
	}
	// The genuine message is still delivered after all that.
	if err := c.c.HandleChannel(m.now(), good); err != nil {
		t.Fatalf("genuine message after forgeries: %v", err)
	}
}

func mustLeaf(t testing.TB, ep *epoch, i int) key32 {
	t.Helper()
	if rc := ep.k.chains[uint16(i)]; rc != nil {
		t.Fatal("chain already started")
	}
	leaf, ok := ep.k.tree.derive(i, false)
	if !ok {
		t.Fatal("leaf taken")
	}
	return leaf
}

// Announcement channels: members can read, only owners and admins post.
func TestAnnounceChannel(t *testing.T) {
	m := newMesh(t, Options{})
	a, b := m.add("alice"), m.add("bob")
	id := m.channel(a, "news", PolicyAnnounce, b)
	if err := b.c.Send(m.now(), id, []byte("me too")); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("member posts: %v", err)
	}
	// A member forging a post in its own name is refused by the others.
	mk, ep := chainKey(t, a, id, 1, 0)
	header := appendBodyHeader(nil, 1, 0)
	pt := append([]byte("spam"), b.id.Sign(msgSigInput(id, ep, header, []byte("spam")))...)
	if err := a.c.HandleChannel(m.now(), sealWith(t, ep.k.tag, 1, 0, mk, pt)); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("member's post: %v", err)
	}
	m.send(a, id, "news!")
	m.settle()
	if d := b.delivered; len(d) != 1 || !d[0].Verified || d[0].From != a.key() {
		t.Fatalf("delivered %+v", d)
	}
}

func TestBadControlMessages(t *testing.T) {
	m := newMesh(t, Options{})
	a, b, c := m.add("alice"), m.add("bob"), m.add("carol")
	id := m.channel(a, "garden", 0, b, c)
	// Capture a genuine commit to bob to alter.
	var commit []byte
	m.dropCtl = func(x ctlMsg) bool {
		if x.to == b && x.typ == "commit" {
			commit = x.payload
			return true
		}
		return false
	}
	m.must(a, a.c.Rotate(m.now(), id))
	m.settle()
	m.dropCtl = nil
	if commit == nil {
		t.Fatal("no commit captured")
	}
	alter := func(f func(x []byte)) []byte {
		x := append([]byte(nil), commit...)
		f(x)
		return x
	}
	// A commit carol (a member) makes on bob's current epoch.
	head := b.c.chans[id].head
	byMember := (&commitMsg{channel: id, epoch: head.num + 1, parent: head.hash, committer: uint16(rosterIndex(head.roster, c.key()))}).appendPrefix(nil)
	byMember = append(byMember, make([]byte, 16+SecretSize)...)
	cases := []struct {
		name string
		from *node
		p    []byte
		want error
	}{
		{"commit from a member", c, byMember, ErrBadCommit},
		{"commit sent by someone other than its committer", c, commit, ErrBadCommit},
		{"commit with an altered secret", a, alter(func(x []byte) { x[len(x)-1] ^= 1 }), ErrBadCommit},
		{"commit with an altered epoch number", a, alter(func(x []byte) { x[20]++ }), ErrBadCommit},
		{"truncated commit", a, commit[:50], ErrTruncated},
		{"commit with trailing bytes", a, append(append([]byte(nil), commit...), 0), ErrMalformed},
		{"unsolicited welcome", a, (&welcomeMsg{channel: ChannelID{9}, roster: []Member{{Key: b.key()}, {Key: a.key(), Role: RoleOwner}}}).append(nil), ErrUnknownChannel},
		{"welcome from a member", c, (&welcomeMsg{channel: id, epoch: 99, roster: []Member{{Key: b.key()}, {Key: c.key(), Role: RoleAdmin}}}).append(nil), ErrBadWelcome},
		{"unknown message type", a, []byte{0x7f, 1, 2}, ErrVersion},
		{"empty", a, nil, ErrTruncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := b.c.marshalChannel(b.c.chans[id])
			err := b.c.HandleControl(m.now(), tc.from.key(), tc.p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if after := b.c.marshalChannel(b.c.chans[id]); !bytes.Equal(before, after) {
				t.Fatal("state changed")
			}
			for _, a := range b.c.Actions() {
				t.Fatalf("action %T after a refused control message", a)
			}
		})
	}
	// The genuine commit still works.
	if err := b.c.HandleControl(m.now(), a.key(), commit); err != nil {
		t.Fatal(err)
	}
}

func TestBadInviteCodes(t *testing.T) {
	m := newMesh(t, Options{})
	a, b, c, d := m.add("alice"), m.add("bob"), m.add("carol"), m.add("dave")
	id := m.channel(a, "garden", 0)
	inv, err := a.c.Invite(m.now(), id, InviteOptions{TTL: time.Hour})
	m.must(a, err)
	code := inv.Code()
	if !strings.HasPrefix(code, "MESHD:JOIN:") || len(code) != 11+117 {
		t.Fatalf("code %q (%d characters)", code, len(code))
	}
	// Forgiving about case, spaces and dashes.
	if got, err := ParseInvite("  " + strings.ToLower(code[:40]) + "-\n" + code[40:]); err != nil || got != inv {
		t.Fatalf("lenient parse: %v", err)
	}

	t.Run("altered character", func(t *testing.T) {
		for _, i := range []int{11, 40, len(code) - 1} {
			x := []byte(code)
			x[i] = map[bool]byte{true: 'B', false: 'A'}[x[i] == 'A']
			if _, err := ParseInvite(string(x)); !errors.Is(err, ErrInviteCorrupt) {
				t.Fatalf("position %d: %v", i, err)
			}
			if _, err := c.c.Join(m.now(), string(x)); !errors.Is(err, ErrInviteCorrupt) {
				t.Fatalf("join: %v", err)
			}
			if len(c.c.chans) != 0 {
				t.Fatal("joiner state changed")
			}
		}
	})
	t.Run("altered token, checksum fixed up", func(t *testing.T) {
		forged := inv
		forged.Token[0] ^= 1
		before := a.c.marshalChannel(a.c.chans[id])
		err := a.c.HandleControl(m.now(), c.key(), (&joinMsg{channel: id, token: forged.Token}).append(nil))
		if !errors.Is(err, ErrInviteInvalid) {
			t.Fatalf("got %v", err)
		}
		if !bytes.Equal(before, a.c.marshalChannel(a.c.chans[id])) {
			t.Fatal("inviter state changed")
		}
		// The joiner hears why.
		_, err = c.c.Join(m.now(), forged.Code())
		m.must(c, err)
		m.settle()
		if len(c.events) == 0 || c.events[len(c.events)-1].Type != EventJoinRefused || !errors.Is(c.events[len(c.events)-1].Err, ErrInviteInvalid) {
			t.Fatalf("joiner events %+v", c.events)
		}
		if _, err := c.c.Info(id); !errors.Is(err, ErrUnknownChannel) {
			t.Fatal("refused joiner keeps the channel")
		}
	})
	t.Run("reused", func(t *testing.T) {
		_, err := b.c.Join(m.now(), code)
		m.must(b, err)
		m.settle()
		if i := b.head(t, id); i.Status != StatusActive {
			t.Fatalf("first use: %+v", i)
		}
		before := a.c.marshalChannel(a.c.chans[id])
		err = a.c.HandleControl(m.now(), d.key(), (&joinMsg{channel: id, token: inv.Token}).append(nil))
		if !errors.Is(err, ErrInviteUsed) {
			t.Fatalf("second use: %v", err)
		}
		if !bytes.Equal(before, a.c.marshalChannel(a.c.chans[id])) {
			t.Fatal("inviter state changed")
		}
		// The same joiner repeating its request (a retry) is not a reuse.
		if err := a.c.HandleControl(m.now(), b.key(), (&joinMsg{channel: id, token: inv.Token}).append(nil)); err != nil {
			t.Fatalf("repeat by the same joiner: %v", err)
		}
		// Using the code again on the joiner's side is refused too.
		if _, err := b.c.Join(m.now(), code); !errors.Is(err, ErrAlreadyMember) {
			t.Fatalf("rejoin: %v", err)
		}
		m.drain(a)
		m.ctl = nil
	})
	t.Run("expired", func(t *testing.T) {
		inv2, err := a.c.Invite(m.now(), id, InviteOptions{TTL: time.Minute})
		m.must(a, err)
		m.clk.Advance(2 * time.Minute)
		if _, err := d.c.Join(m.now(), inv2.Code()); !errors.Is(err, ErrInviteExpired) {
			t.Fatalf("joiner side: %v", err)
		}
		err = a.c.HandleControl(m.now(), d.key(), (&joinMsg{channel: id, token: inv2.Token}).append(nil))
		if !errors.Is(err, ErrInviteInvalid) && !errors.Is(err, ErrInviteExpired) {
			t.Fatalf("inviter side: %v", err)
		}
	})
}
