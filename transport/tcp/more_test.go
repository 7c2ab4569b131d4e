package tcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

func TestBackoffDelay(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	min, max := time.Second, time.Minute
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{0, 500 * time.Millisecond, time.Second},
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{3, 2 * time.Second, 4 * time.Second},
		{7, 30 * time.Second, time.Minute},
		{100, 30 * time.Second, time.Minute},
	} {
		for i := 0; i < 100; i++ {
			if d := backoffDelay(tc.n, min, max, r); d < tc.lo || d > tc.hi {
				t.Fatalf("backoffDelay(%d) = %v, want within [%v, %v]", tc.n, d, tc.lo, tc.hi)
			}
		}
	}
}

func TestRateLog(t *testing.T) {
	var buf logBuf
	now := time.Unix(0, 0)
	rl := newRateLog(buf.logger(), time.Minute)
	rl.now = func() time.Time { return now }
	for i := 0; i < 1000; i++ {
		rl.Log("a", slog.LevelWarn, "flood")
	}
	rl.Log("b", slog.LevelWarn, "other")
	now = now.Add(time.Minute)
	rl.Log("a", slog.LevelWarn, "flood")
	if got := buf.count("flood"); got != 2 {
		t.Fatalf("logged %d lines for one key, want 2:\n%s", got, buf.String())
	}
	if buf.count("suppressed_since_last=999") != 1 || buf.count("other") != 1 {
		t.Fatalf("log:\n%s", buf.String())
	}
}

// handshakePair runs the sans-IO handshake between two key sets.
func handshakePair(ki, kr *localKeys, tamper func(msg int, b []byte)) (si, sr *session, err error) {
	hi, _ := newHandshake(ki, true, nil)
	hr, _ := newHandshake(kr, false, nil)
	if tamper == nil {
		tamper = func(int, []byte) {}
	}
	m1, _, err := hi.Step(nil)
	if err != nil {
		return nil, nil, err
	}
	tamper(1, m1)
	m2, _, err := hr.Step(m1)
	if err != nil {
		return nil, nil, err
	}
	tamper(2, m2)
	m3, done, err := hi.Step(m2)
	if err != nil || !done {
		return nil, nil, err
	}
	tamper(3, m3)
	if _, done, err = hr.Step(m3); err != nil || !done {
		return nil, nil, err
	}
	return hi.Session(), hr.Session(), nil
}

func TestHandshakeStateMachine(t *testing.T) {
	ki, kr := mustKeys(t), mustKeys(t)
	si, sr, err := handshakePair(ki, kr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if si.peer != kr.id.PublicKey() || sr.peer != ki.id.PublicKey() {
		t.Fatal("sessions name the wrong peers")
	}
	if !si.pq || !bytes.Equal(si.pqSecret, sr.pqSecret) || len(si.pqSecret) != envelope.PQSecretSize {
		t.Fatalf("PQ secrets: %x / %x", si.pqSecret, sr.pqSecret)
	}
	// Session keys work both ways.
	ct, _ := si.send.Encrypt(nil, nil, []byte("ping"))
	if pt, err := sr.recv.Decrypt(nil, nil, ct); err != nil || string(pt) != "ping" {
		t.Fatalf("initiator→responder: %q %v", pt, err)
	}
	// Two handshakes between the same keys give different PQ secrets.
	si2, _, err := handshakePair(ki, kr, nil)
	if err != nil || bytes.Equal(si2.pqSecret, si.pqSecret) {
		t.Fatalf("PQ secret repeated across sessions (%v)", err)
	}
	// Every flipped bit in any message is caught.
	for msg := 1; msg <= 3; msg++ {
		for _, pos := range []int{0, 10, 40, 100, 150, 500, 1200} {
			flipped := false
			_, _, err := handshakePair(ki, kr, func(m int, b []byte) {
				if m == msg && pos < len(b) {
					b[pos] ^= 1
					flipped = true
				}
			})
			if flipped && err == nil {
				t.Errorf("flipped bit %d of message %d went unnoticed", pos, msg)
			}
		}
	}
}

// The late psk makes the session depend on ML-KEM: a responder whose
// ML-KEM shared secret differs from the initiator's cannot read message 3.
func TestHandshakeDependsOnMLKEM(t *testing.T) {
	ki, kr := mustKeys(t), mustKeys(t)
	hi, _ := newHandshake(ki, true, nil)
	hr, _ := newHandshake(kr, false, nil)
	m1, _, _ := hi.Step(nil)
	m2, _, err := hr.Step(m1)
	if err != nil {
		t.Fatal(err)
	}
	// Swap in a different late psk on the responder, as if its ML-KEM
	// secret were not the one the initiator decapsulated.
	hr.hs.SetPresharedKey(bytes.Repeat([]byte{0x42}, 32))
	m3, _, err := hi.Step(m2)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := hr.Step(m3); !errors.Is(err, ErrMalformed) {
		t.Fatalf("message 3 under a different ML-KEM secret: %v, want ErrMalformed", err)
	}
}

func TestHandshakeIdentityProof(t *testing.T) {
	ki, kr := mustKeys(t), mustKeys(t)
	// The responder's signature covers another static key: refused.
	kr.sig[0] ^= 1
	if _, _, err := handshakePair(ki, kr, nil); !errors.Is(err, ErrIdentity) {
		t.Fatalf("bad signature: %v, want ErrIdentity", err)
	}
	kr.sig[0] ^= 1
	// A node talking to itself.
	if _, _, err := handshakePair(ki, ki, nil); !errors.Is(err, ErrSelf) {
		t.Fatalf("self: %v, want ErrSelf", err)
	}
}

func TestDialSelf(t *testing.T) {
	a := startNode(t, nil)
	_, err := a.t.Dial(ctxT(t), Peer{Endpoint: a.addr()})
	if !errors.Is(err, ErrSelf) {
		t.Fatalf("dialing our own listener: %v, want ErrSelf", err)
	}
	if _, err := a.t.Dial(ctxT(t), Peer{Endpoint: a.addr(), Address: a.id.Address(), HasAddress: true}); !errors.Is(err, ErrSelf) {
		t.Fatalf("dialing our own address: %v, want ErrSelf", err)
	}
	a.h.none(t, "up", 50*time.Millisecond)
}

func TestStaticPeerReconnects(t *testing.T) {
	b := startNode(t, nil)
	a := startNode(t, func(o *Options) {
		o.Peers = []Peer{{Endpoint: b.addr(), Key: b.id.PublicKey(), HasKey: true}}
	})
	first := a.h.wait(t, "up", 3*time.Second).link
	b.h.wait(t, "up", time.Second).link.Close()
	if e := a.h.wait(t, "down", 2*time.Second); e.link != first || e.err == nil {
		t.Fatalf("down event %+v", e)
	}
	second := a.h.wait(t, "up", 3*time.Second).link
	if second == first || second.Info().ID == first.Info().ID {
		t.Fatal("reconnected link reuses the old link or its ID")
	}
	if !a.t.Linked(b.id.Address()) {
		t.Fatal("Linked is false with the link up")
	}
}

// Both sides dial each other at the same moment: the tie-break leaves one
// link, the same connection on both ends.
func TestSimultaneousDial(t *testing.T) {
	for i := 0; i < 5; i++ {
		a, b := startNode(t, nil), startNode(t, nil)
		done := make(chan error, 2)
		go func() { _, err := a.t.Dial(context.Background(), Peer{Endpoint: b.addr()}); done <- err }()
		go func() { _, err := b.t.Dial(context.Background(), Peer{Endpoint: a.addr()}); done <- err }()
		<-done
		<-done
		ok := waitFor(func() bool {
			sa, sb := a.t.Stats().Links, b.t.Stats().Links
			if len(sa) != 1 || len(sb) != 1 {
				return false
			}
			return sa[0].Outbound != sb[0].Outbound
		})
		if !ok {
			t.Fatalf("after simultaneous dials: a %+v, b %+v", a.t.Stats().Links, b.t.Stats().Links)
		}
		time.Sleep(50 * time.Millisecond)
		if len(a.t.Stats().Links) != 1 || len(b.t.Stats().Links) != 1 {
			t.Fatal("the surviving link went down")
		}
	}
}

// The sizes docs/transports.md gives for each handshake message.
func TestHandshakeSizes(t *testing.T) {
	for _, tc := range []struct {
		pq         bool
		m1, m2, m3 int
	}{
		{true, 1234, 1282, 162},
		{false, 50, 194, 162},
	} {
		ki, _ := newLocalKeys(newID(t), nil, tc.pq, nil)
		kr, _ := newLocalKeys(newID(t), nil, tc.pq, nil)
		var sizes []int
		if _, _, err := handshakePair(ki, kr, func(m int, b []byte) { sizes = append(sizes, len(b)) }); err != nil {
			t.Fatal(err)
		}
		if sizes[0] != tc.m1 || sizes[1] != tc.m2 || sizes[2] != tc.m3 {
			t.Errorf("pq=%v: messages of %v bytes, documented %d, %d, %d", tc.pq, sizes, tc.m1, tc.m2, tc.m3)
		}
	}
	conf, _ := appendRecord(nil, nullCipher{}, recKeepalive, nil)
	if len(conf) != 19 {
		t.Errorf("confirmation record is %d bytes, documented 19", len(conf))
	}
}

// TestHandshakeGolden pins the wire format: with every random input drawn
// from a fixed stream, the three messages hash to a fixed value. A change
// here is a protocol change: bump ProtocolVersion and update the docs.
func TestHandshakeGolden(t *testing.T) {
	rnd := mrand.NewChaCha8([32]byte{'m', 'e', 's', 'h', 'd'})
	idI, _ := envelope.IdentityFromSeed(bytes.Repeat([]byte{1}, 32))
	idR, _ := envelope.IdentityFromSeed(bytes.Repeat([]byte{2}, 32))
	ki, err := newLocalKeys(idI, bytes.Repeat([]byte{3}, 32), true, rnd)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := newLocalKeys(idR, bytes.Repeat([]byte{3}, 32), true, rnd)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	si, sr, err := handshakePair(ki, kr, func(m int, b []byte) { h.Write(b) })
	if err != nil {
		t.Fatal(err)
	}
	h.Write(si.pqSecret)
	if !bytes.Equal(si.pqSecret, sr.pqSecret) {
		t.Fatal("PQ secrets differ")
	}
	const want = "2ea0a6257b0337f6a43bbf45ce4b52b08ce8e464587e9d06bde8544525f70e57"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("handshake transcript hash %s, want %s", got, want)
	}
}

// A static peer that is already linked (it dialed us) is not dialed again
// and again: Dial hands back the existing link.
func TestStaticPeerAlreadyLinked(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, nil)
	// b dials a first.
	if _, err := b.t.Dial(ctxT(t), Peer{Endpoint: a.addr()}); err != nil {
		t.Fatal(err)
	}
	inbound := a.h.wait(t, "up", time.Second).link
	// Whoever wins the tie-break, a's Dial to b reports success.
	l, err := a.t.Dial(ctxT(t), Peer{Endpoint: b.addr()})
	if err != nil {
		t.Fatalf("dialing a peer already linked: %v", err)
	}
	if !waitFor(func() bool { return len(a.t.Stats().Links) == 1 && len(b.t.Stats().Links) == 1 }) {
		t.Fatalf("links: %+v / %+v", a.t.Stats().Links, b.t.Stats().Links)
	}
	_ = inbound
	select {
	case <-l.Done():
		t.Fatal("Dial returned a link that is down")
	default:
	}
}
