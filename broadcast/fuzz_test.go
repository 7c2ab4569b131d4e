package broadcast

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Every decoder of outside bytes has a fuzz target here: channel messages
// (the body), control messages, invite codes, history requests and
// replies, and the two stored-state records. The seed corpus is the valid
// samples of fuzzWorld (f.Add) plus testdata/fuzz/<Target>/, written by
// go test ./broadcast -run FuzzCorpus -update.

var knownErrors = []error{ErrTruncated, ErrTooLarge, ErrMalformed, ErrVersion, ErrUnknownChannel,
	ErrUnknownEpoch, ErrAuth, ErrForgedSender, ErrReplay, ErrStale, ErrTooFarAhead, ErrExhausted,
	ErrNotAllowed, ErrNotMember, ErrAlreadyMember, ErrLastOwner, ErrOpenChannel, ErrInviteCorrupt,
	ErrInviteInvalid, ErrInviteUsed, ErrInviteExpired, ErrJoinRefused, ErrNoJoinRequest, ErrBadCommit,
	ErrStaleCommit, ErrBadWelcome, ErrUnknownReply, ErrRateLimited, ErrCorrupt}

func checkKnown(t *testing.T, err error) {
	t.Helper()
	for _, k := range knownErrors {
		if errors.Is(err, k) {
			return
		}
	}
	t.Fatalf("undocumented error: %v", err)
}

// world is a small channel setup seen from bob, with valid samples of
// everything bob decodes.
type world struct {
	m          *mesh
	a, b, c    *node
	plain      ChannelID
	signed     ChannelID
	open       ChannelID
	msgs       [][]byte // channel envelopes bob can read
	controls   [][]byte // control payloads (from alice unless noted)
	invites    []string
	queries    [][]byte // history request bodies
	replies    [][]byte // history reply payloads
	states     [][]byte // channel state records (bob's)
	histStates [][]byte
}

func fuzzWorld(tb testing.TB) *world {
	w := &world{}
	m := newMesh(tb, Options{})
	w.m = m
	a, b, c := m.add("alice"), m.add("bob"), m.add("carol")
	w.a, w.b, w.c = a, b, c
	// Capture everything alice sends bob on the way.
	m.dropCtl = func(x ctlMsg) bool {
		w.controls = append(w.controls, x.payload)
		return false
	}
	w.plain = m.channel(a, "plain", 0, b, c)
	w.signed = m.channel(a, "signed", PolicySigned, b)
	var err error
	w.open, err = a.c.JoinOpen(m.now(), "square", true)
	m.must(a, err)
	_, err = b.c.JoinOpen(m.now(), "square", true)
	m.must(b, err)
	m.must(a, a.c.Rotate(m.now(), w.plain))
	m.settle()
	m.must(c, c.c.Leave(m.now(), w.plain)) // a leave to alice
	m.settle()
	m.must(b, b.c.Resync(m.now(), w.plain))
	m.settle()
	m.dropCtl = nil
	w.controls = append(w.controls, (&refusedMsg{channel: w.plain, reason: refusedUsed}).append(nil))
	for i, id := range []ChannelID{w.plain, w.signed, w.open} {
		for j := 0; j < 3; j++ {
			m.must(a, a.c.Send(m.now(), id, []byte(fmt.Sprintf("sample %d/%d", i, j))))
			w.msgs = append(w.msgs, m.floods[len(m.floods)-1].raw)
		}
	}
	m.settle()
	inv, err := a.c.Invite(m.now(), w.plain, InviteOptions{})
	m.must(a, err)
	w.invites = append(w.invites, inv.Code())
	m.must(b, b.c.CatchUp(m.now(), w.plain))
	for _, f := range m.floods {
		if f.kind == envelope.KindQuery {
			e, _ := envelope.Parse(f.raw)
			w.queries = append(w.queries, e.Body)
			q, _ := decodeQuery(e.Body)
			items, more := a.c.hist.selectFor(m.now(), q, 4096)
			w.replies = append(w.replies, (&historyReply{more: more, items: items}).append(nil))
		}
	}
	m.settle()
	for _, id := range []ChannelID{w.plain, w.signed, w.open} {
		w.states = append(w.states, b.c.marshalChannel(b.c.chans[id]))
	}
	w.histStates = append(w.histStates, b.c.hist.marshal())
	return w
}

// snapshot is every channel's state record, to check that refused input
// changed nothing.
func snapshot(c *Core) map[ChannelID]string {
	s := map[ChannelID]string{}
	for id, ch := range c.chans {
		s[id] = string(c.marshalChannel(ch))
	}
	return s
}

func sameSnapshot(a, b map[ChannelID]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func FuzzChannelMessage(f *testing.F) {
	w := fuzzWorld(f)
	for _, raw := range w.msgs {
		f.Add(raw)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		before := snapshot(w.b.c)
		err := w.b.c.HandleChannel(w.m.now(), raw)
		if err != nil {
			checkKnown(t, err)
			if !sameSnapshot(before, snapshot(w.b.c)) {
				t.Fatalf("refused message changed the state: %v", err)
			}
		}
		w.b.c.Actions()
	})
}

// encodeControl re-encodes a decoded control message.
func encodeControl(msg any) []byte {
	switch m := msg.(type) {
	case *joinMsg:
		return m.append(nil)
	case *welcomeMsg:
		return m.append(nil)
	case *commitMsg:
		b := append(m.appendPrefix(nil), m.confirm[:]...)
		if m.secret != nil {
			b = append(b, m.secret[:]...)
		}
		return b
	case *leaveMsg:
		return m.append(nil)
	case *syncMsg:
		return m.append(nil)
	case *refusedMsg:
		return m.append(nil)
	}
	return nil
}

func FuzzControl(f *testing.F) {
	w := fuzzWorld(f)
	for _, p := range w.controls {
		f.Add(uint8(0), p)
		f.Add(uint8(2), p)
	}
	f.Add(uint8(1), []byte{ctlCommit})
	f.Fuzz(func(t *testing.T, from uint8, p []byte) {
		msg, err := decodeControl(p)
		if err != nil {
			checkKnown(t, err)
		} else if again := encodeControl(msg); !bytes.Equal(again, p) {
			t.Fatalf("decoded but re-encodes differently:\n got %x\nwant %x", again, p)
		}
		sender := []*node{w.a, w.b, w.c}[int(from)%3].key()
		before := snapshot(w.b.c)
		if err := w.b.c.HandleControl(w.m.now(), sender, p); err != nil {
			checkKnown(t, err)
			if !sameSnapshot(before, snapshot(w.b.c)) {
				t.Fatalf("refused control message changed the state: %v", err)
			}
		}
		w.b.c.Actions()
	})
}

func FuzzInvite(f *testing.F) {
	w := fuzzWorld(f)
	for _, code := range w.invites {
		f.Add(code)
	}
	f.Add("MESHD:JOIN:")
	f.Fuzz(func(t *testing.T, code string) {
		inv, err := ParseInvite(code)
		if err != nil {
			checkKnown(t, err)
			return
		}
		again, err := ParseInvite(inv.Code())
		if err != nil || again != inv {
			t.Fatalf("invite does not round-trip: %v", err)
		}
	})
}

func FuzzHistoryQuery(f *testing.F) {
	w := fuzzWorld(f)
	for _, q := range w.queries {
		f.Add(q)
	}
	f.Add([]byte{queryHistory})
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := decodeQuery(body)
		if err != nil {
			checkKnown(t, err)
		} else if again := q.append(nil); !bytes.Equal(again, body) {
			t.Fatalf("query re-encodes differently")
		}
		e := envelope.Envelope{Kind: envelope.KindQuery, Topic: TopicHistory, Token: envelope.Token{1}, Body: body}
		raw, err := e.Append(nil)
		if err != nil {
			return
		}
		if err := w.a.c.HandleQuery(w.m.now(), raw); err != nil {
			checkKnown(t, err)
		}
		for _, act := range w.a.c.Actions() {
			if r, ok := act.(*Reply); ok {
				if len(r.Payload) > w.a.c.o.HistoryReplyBytes {
					t.Fatalf("reply of %d bytes over the budget", len(r.Payload))
				}
				if _, err := decodeReply(r.Payload); err != nil {
					t.Fatalf("own reply does not decode: %v", err)
				}
			}
		}
	})
}

func FuzzHistoryReply(f *testing.F) {
	w := fuzzWorld(f)
	for _, r := range w.replies {
		f.Add(r)
	}
	f.Add([]byte{replyHistory, 0, 0})
	key, _ := envelope.NewReplyKey(newDetRand("fuzz"))
	pq := &pendingQuery{ch: w.plain, key: key, expires: w.m.now().Add(time.Hour), followed: true}
	f.Fuzz(func(t *testing.T, p []byte) {
		rep, err := decodeReply(p)
		if err != nil {
			checkKnown(t, err)
		} else if again := rep.append(nil); !bytes.Equal(again, p) {
			t.Fatalf("reply re-encodes differently")
		}
		if err := w.b.c.handleReplyPayload(w.m.now(), pq, p); err != nil {
			checkKnown(t, err)
		}
		w.b.c.Actions()
	})
}

func FuzzChannelState(f *testing.F) {
	w := fuzzWorld(f)
	for _, s := range w.states {
		f.Add(s)
	}
	f.Add([]byte(chanMagic))
	f.Fuzz(func(t *testing.T, state []byte) {
		c, _ := New(w.b.o)
		id, err := c.Load(w.m.now(), state)
		if err != nil {
			checkKnown(t, err)
			if len(c.chans) != 0 {
				t.Fatal("refused record left a channel")
			}
			return
		}
		// Loading is stable: what it saves loads to the same record.
		first := c.marshalChannel(c.chans[id])
		c2, _ := New(w.b.o)
		if _, err := c2.Load(w.m.now(), first); err != nil {
			t.Fatalf("saved record does not load: %v", err)
		}
		if again := c2.marshalChannel(c2.chans[id]); !bytes.Equal(again, first) {
			t.Fatal("state is not stable across save and load")
		}
		// And the loaded channel works (or refuses) without panicking.
		_ = c.Send(w.m.now(), id, []byte("x"))
		for _, raw := range w.msgs[:2] {
			_ = c.HandleChannel(w.m.now(), raw)
		}
		_, _ = c.Invite(w.m.now(), id, InviteOptions{})
		_ = c.Rotate(w.m.now(), id)
		c.Tick(w.m.now().Add(48 * time.Hour))
		_, _ = c.Members(id)
		c.Actions()
	})
}

func FuzzHistoryState(f *testing.F) {
	w := fuzzWorld(f)
	for _, s := range w.histStates {
		f.Add(s)
	}
	f.Add([]byte(histMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h history
		h.init()
		if err := h.unmarshal(b); err != nil {
			checkKnown(t, err)
			return
		}
		if again := h.marshal(); !bytes.Equal(again, b) {
			t.Fatal("history record re-encodes differently")
		}
	})
}

// TestFuzzCorpus writes the seed corpus under -update and otherwise checks
// that it exists, so the corpus is in the tree and reviewable.
func TestFuzzCorpus(t *testing.T) {
	w := fuzzWorld(t)
	enc := func(vals ...any) string {
		s := "go test fuzz v1\n"
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				s += fmt.Sprintf("[]byte(%q)\n", v)
			case string:
				s += fmt.Sprintf("string(%q)\n", v)
			case uint8:
				s += fmt.Sprintf("byte(%q)\n", v)
			}
		}
		return s
	}
	targets := map[string][]string{}
	for _, r := range w.msgs {
		targets["FuzzChannelMessage"] = append(targets["FuzzChannelMessage"], enc(r))
	}
	for _, p := range w.controls {
		targets["FuzzControl"] = append(targets["FuzzControl"], enc(uint8(0), p))
	}
	for _, c := range w.invites {
		targets["FuzzInvite"] = append(targets["FuzzInvite"], enc(c))
	}
	for _, q := range w.queries {
		targets["FuzzHistoryQuery"] = append(targets["FuzzHistoryQuery"], enc(q))
	}
	for _, r := range w.replies {
		targets["FuzzHistoryReply"] = append(targets["FuzzHistoryReply"], enc(r))
	}
	for _, s := range w.states {
		targets["FuzzChannelState"] = append(targets["FuzzChannelState"], enc(s))
	}
	for _, s := range w.histStates {
		targets["FuzzHistoryState"] = append(targets["FuzzHistoryState"], enc(s))
	}
	for name, inputs := range targets {
		dir := filepath.Join("testdata", "fuzz", name)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for i, in := range inputs {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(in), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) == 0 {
			t.Fatalf("no seed corpus in %s (run with -update): %v", dir, err)
		}
	}
}
