package routing

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/transport"
)

type zeroReader struct{ n byte }

func (z *zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		z.n++
		p[i] = z.n
	}
	return len(p), nil
}

// fuzzSeeds returns valid envelopes of every kind, to seed the corpus.
func fuzzSeeds(tb testing.TB) [][]byte {
	a, _ := envelope.IdentityFromSeed(make([]byte, 32))
	seed := make([]byte, 32)
	seed[0] = 1
	b, _ := envelope.IdentityFromSeed(seed)
	var out [][]byte
	ann, err := envelope.SignAnnounce(a, envelope.AnnounceOptions{Seq: 7, TTL: 5, AppData: []byte("node")})
	if err != nil {
		tb.Fatal(err)
	}
	out = append(out, ann)
	ae, _ := envelope.Parse(ann)
	pr, _ := envelope.NewPathReply(&ae, envelope.PathReplyOptions{To: envelope.FullAddr(b.Address()), RequestID: 9, Dist: 1, TTL: 4})
	out = append(out, pr)
	req := envelope.Envelope{Kind: envelope.KindPathRequest, Flags: envelope.FlagFull, TTL: 3,
		Dst: envelope.FullAddr(a.Address()), Src: envelope.FullAddr(b.Address()), RequestID: 1}
	rb, _ := req.Append(nil)
	out = append(out, rb)
	p, _ := envelope.NewPair(b, a.PublicKey(), nil)
	d, _ := p.Seal(nil, 1, []byte("hi"), envelope.SealOptions{IncludeKey: true, TTL: 4})
	out = append(out, d)
	ack, _ := p.Ack(1, envelope.SealOptions{TTL: 4})
	out = append(out, ack)
	an, _, _ := envelope.SealAnonymous(&zeroReader{}, a.PublicKey(), envelope.Token{1}, []byte("q"), envelope.AnonOptions{TTL: 3})
	out = append(out, an)
	rep, _ := envelope.SealAnonReply(&zeroReader{}, envelope.ReplyTo{Token: envelope.Token{1}, Key: a.X25519Public()}, []byte("r"), 0, 3)
	out = append(out, rep)
	fl, _ := envelope.SignFlood(b, envelope.FloodOptions{Topic: 1, Seq: 1, Body: []byte("slot"), TTL: 3})
	out = append(out, fl)
	q := envelope.Envelope{Kind: envelope.KindQuery, TTL: 2, Topic: 1, Body: []byte("?")}
	qb, _ := q.Append(nil)
	out = append(out, qb)
	ch := envelope.Envelope{Kind: envelope.KindChannel, TTL: 2, Dst: envelope.HintAddr(a.Address().Hint()), Body: []byte("c")}
	cb, _ := ch.Append(nil)
	out = append(out, cb)
	de, _ := envelope.Parse(d)
	held, _ := envelope.NewHeld(&de, 4)
	out = append(out, held)
	return out
}

// FuzzReceive feeds arbitrary frames to a router with a radio and a TCP
// link, then runs its timers: nothing may panic, state stays bounded.
func FuzzReceive(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	f.Add([]byte{1, 0, 0, 3}, uint8(0))
	id, _ := envelope.IdentityFromSeed(make([]byte, 32))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		now := clock.Epoch()
		r, err := New(Options{Identity: id, Entropy: &zeroReader{}, Rand: rand.New(rand.NewPCG(1, 2)), DedupEntries: 64}, now)
		if err != nil {
			t.Fatal(err)
		}
		r.LinkUp(now, LinkInfo{Info: transport.Info{ID: "radio", Broadcast: true, Bitrate: 5470, Cost: 100}, Overhears: true})
		r.LinkUp(now, LinkInfo{Info: transport.Info{ID: "tcp", Bitrate: 1e7, Cost: 1}})
		link := LinkID("radio")
		if which&1 == 1 {
			link = "tcp"
		}
		m := transport.Meta{From: "abcd", HasSignal: true, SNR: float32(int8(which))}
		if which&2 != 0 {
			r.Overhear(now, link, data, m)
		} else {
			r.Receive(now, link, data, m)
		}
		r.Receive(now, link, data, m) // a duplicate
		for i := 0; i < 3; i++ {
			now = now.Add(time.Minute)
			r.Tick(now)
		}
		r.Actions()
		if s := r.Stats(); s.Held > 1 || s.Peers > 2 {
			t.Fatalf("one frame made %d held, %d peers", s.Held, s.Peers)
		}
	})
}

// FuzzRecords feeds arbitrary bytes to every store record decoder.
func FuzzRecords(f *testing.F) {
	k := envelope.PublicKey{}
	id, _ := envelope.IdentityFromSeed(make([]byte, 32))
	k = id.PublicKey()
	out := outRecord{ID: 3, Dst: k.Address(), Key: k, HasKey: true, Port: 1, Payload: []byte("p")}
	f.Add(uint8(0), []byte(nil), out.marshal())
	peer := peerRecord{Key: k, Reserved: 64, HasWindow: true, PQ: make([]byte, 32)}
	_ = peer.Window.Accept(5)
	a := k.Address()
	f.Add(uint8(1), a[:], peer.marshal())
	held := heldRecord{Raw: fuzzSeeds(f)[3]}
	f.Add(uint8(2), []byte(nil), held.marshal())
	in := inboxRecord{From: k, Payload: []byte("x")}
	f.Add(uint8(3), inboxKey(InboundID{From: a, Counter: 1}), in.marshal())
	f.Fuzz(func(t *testing.T, which uint8, key, b []byte) {
		switch which % 4 {
		case 0:
			if r, err := decodeOut(b); err == nil {
				if r2, err := decodeOut(r.marshal()); err != nil || r2.ID != r.ID || string(r2.Sealed) != string(r.Sealed) {
					t.Fatalf("outbox record does not round-trip: %v", err)
				}
			}
		case 1:
			if r, err := decodePeer(key, b); err == nil {
				if _, err := decodePeer(key, r.marshal()); err != nil {
					t.Fatalf("peer record does not round-trip: %v", err)
				}
			}
		case 2:
			if r, _, err := decodeHeld(b); err == nil {
				if _, _, err := decodeHeld(r.marshal()); err != nil {
					t.Fatalf("held record does not round-trip: %v", err)
				}
			}
		case 3:
			if id, r, err := decodeInbox(key, b); err == nil {
				if _, _, err := decodeInbox(inboxKey(id), r.marshal()); err != nil {
					t.Fatalf("inbox record does not round-trip: %v", err)
				}
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz seed files from the seeds
// above when MESHD_WRITE_CORPUS is set.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("MESHD_WRITE_CORPUS") == "" {
		t.Skip("set MESHD_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	write := func(target string, i int, vals ...any) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b := []byte("go test fuzz v1\n")
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				b = append(b, fmt.Sprintf("[]byte(%q)\n", v)...)
			case uint8:
				b = append(b, fmt.Sprintf("byte(%q)\n", v)...)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range fuzzSeeds(t) {
		write("FuzzReceive", i, s, uint8(i))
	}
	id, _ := envelope.IdentityFromSeed(make([]byte, 32))
	k := id.PublicKey()
	a := k.Address()
	out := outRecord{ID: 3, Dst: a, Key: k, HasKey: true, Port: 1, Counter: 1, Sealed: fuzzSeeds(t)[3]}
	write("FuzzRecords", 0, uint8(0), []byte(nil), out.marshal())
	peer := peerRecord{Key: k, Reserved: 64, Acked: true}
	write("FuzzRecords", 1, uint8(1), a[:], peer.marshal())
	held := heldRecord{Raw: fuzzSeeds(t)[4]}
	write("FuzzRecords", 2, uint8(2), []byte(nil), held.marshal())
	in := inboxRecord{From: k, Port: 2, Payload: []byte("hello")}
	write("FuzzRecords", 3, uint8(3), inboxKey(InboundID{From: a, Counter: 7}), in.marshal())
}
