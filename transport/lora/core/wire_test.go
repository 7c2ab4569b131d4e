package core

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/transport"
)

func TestWireRoundTrip(t *testing.T) {
	key := NewKey([]byte("secret"))
	frames := []Frame{
		{Kind: KindBroadcast, Src: Hint{1, 2, 3, 4}, ID: 7, Index: 0, Count: 1, Payload: []byte("hello")},
		{Kind: KindUnicast, Flag: true, Src: Hint{1, 2, 3, 4}, Dst: Hint{5, 6, 7, 8}, ID: 65535, Index: 255, Count: 256, Payload: []byte{0xC0, 0xDB}},
		{Kind: KindSACK, Src: Hint{1}, Dst: Hint{2}, ID: 1, Count: 9, Bitmap: []byte{0xFF, 0x01}},
		{Kind: KindSACK, Flag: true, Src: Hint{1}, Dst: Hint{2}, ID: 1, Count: 1},
	}
	for _, k := range []*Key{nil, &key} {
		for _, f := range frames {
			b := AppendFrame(nil, &f, k)
			g, err := Parse(b, k)
			if err != nil {
				t.Fatalf("%+v: %v", f, err)
			}
			if g.Kind != f.Kind || g.Flag != f.Flag || g.Src != f.Src || g.Dst != f.Dst || g.ID != f.ID ||
				g.Index != f.Index || g.Count != f.Count || !bytes.Equal(g.Payload, f.Payload) || !bytes.Equal(g.Bitmap, f.Bitmap) {
				t.Fatalf("got %+v want %+v", g, f)
			}
		}
	}
	if Overhead(KindBroadcast, Key{}) != 10 || Overhead(KindUnicast, Key{}) != 14 || Overhead(KindUnicast, key) != 18 {
		t.Fatal("overhead changed: update docs/lora.md")
	}
}

func TestWireRejects(t *testing.T) {
	key := NewKey([]byte("secret"))
	other := NewKey([]byte("other"))
	good := AppendFrame(nil, &Frame{Kind: KindBroadcast, Src: Hint{1}, Count: 1, Payload: []byte("x")}, &key)
	plain := AppendFrame(nil, &Frame{Kind: KindBroadcast, Src: Hint{1}, Count: 1, Payload: []byte("x")}, nil)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-6] ^= 1
	cases := []struct {
		name string
		b    []byte
		key  *Key
		err  error
	}{
		{"empty", nil, nil, ErrForeign},
		{"reticulum-like", []byte{0x08, 0x00, 1, 2, 3}, nil, ErrForeign},
		{"meshtastic-like", bytes.Repeat([]byte{0xFF}, 20), nil, ErrForeign},
		{"other version", []byte{Magic, 0x21, 1, 2, 3, 4, 5, 6, 7, 8}, nil, ErrForeign},
		{"wrong key", good, &other, ErrBadMAC},
		{"no key here", good, nil, ErrBadMAC},
		{"unkeyed into keyed", plain, &key, ErrBadMAC},
		{"tampered", flipped, &key, ErrBadMAC},
		{"short mac", []byte{Magic, 0x19, 1}, &key, ErrBadMAC},
		{"kind 0", []byte{Magic, 0x10, 1, 2, 3, 4, 5, 6, 7, 8}, nil, ErrMalformed},
		{"short", []byte{Magic, 0x11, 1, 2}, nil, ErrMalformed},
		{"index >= count", []byte{Magic, 0x11, 1, 2, 3, 4, 0, 1, 5, 4, 'x'}, nil, ErrMalformed},
		{"sack bitmap size", []byte{Magic, 0x13, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 15, 0xFF}, nil, ErrMalformed},
		{"oversized", append([]byte{Magic, 0x11}, make([]byte, 300)...), nil, ErrMalformed},
	}
	for _, c := range cases {
		if _, err := Parse(c.b, c.key); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
	}
}

// TestFloodsBounded: random garbage, foreign frames, bad MACs and fragment
// floods with random ids keep memory bounded and are counted.
func TestFloodsBounded(t *testing.T) {
	key := NewKey([]byte("net"))
	e, err := New(Options{Self: Hint{9, 9, 9, 9}, Modulation: fastMod(), Budget: budget(t, "US915", 915000000, 500000), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	now := clock.Epoch()
	buf := make([]byte, 254)
	for i := 0; i < 20000; i++ {
		now = now.Add(time.Millisecond)
		var b []byte
		switch i % 4 {
		case 0: // random bytes
			n := rng.Intn(len(buf))
			rng.Read(buf[:n])
			b = buf[:n]
		case 1: // fragments with random ids and sources, valid MAC
			f := Frame{Kind: KindBroadcast, ID: uint16(rng.Intn(65536)), Count: 2 + rng.Intn(255), Payload: make([]byte, 200)}
			rng.Read(f.Src[:2])
			f.Index = rng.Intn(f.Count - 1)
			b = AppendFrame(nil, &f, &key)
		case 2: // unicast flood from one source
			f := Frame{Kind: KindUnicast, Src: Hint{1}, Dst: Hint{9, 9, 9, 9}, ID: uint16(rng.Intn(65536)), Count: 256, Index: rng.Intn(255), Payload: make([]byte, 200)}
			b = AppendFrame(nil, &f, &key)
		case 3: // bad MAC
			f := Frame{Kind: KindBroadcast, Src: Hint{2}, Count: 1, Payload: []byte("x")}
			b = AppendFrame(nil, &f, nil)
		}
		if d := e.Receive(now, b, transport.Meta{}); len(d) != 0 {
			t.Fatal("delivered garbage")
		}
		st := e.Stats()
		if st.Reassemblies > 32 || st.ReassemblyBytes > 4*e.MTU() {
			t.Fatalf("unbounded: %+v", st)
		}
	}
	st := e.Stats()
	if st.Foreign == 0 || st.BadMAC < 5000 || st.Evictions == 0 {
		t.Fatalf("%+v", st)
	}
	// Valid traffic still flows.
	f := Frame{Kind: KindBroadcast, Src: Hint{7}, ID: 1, Count: 1, Payload: []byte("ok")}
	if d := e.Receive(now, AppendFrame(nil, &f, &key), transport.Meta{}); len(d) != 1 {
		t.Fatal("valid frame lost after flood")
	}
	t.Logf("after 20000 hostile frames: %+v", st)
}

func FuzzParse(f *testing.F) {
	key := NewKey([]byte("k"))
	f.Add(AppendFrame(nil, &Frame{Kind: KindBroadcast, Src: Hint{1}, Count: 1, Payload: []byte("a")}, nil), false)
	f.Add(AppendFrame(nil, &Frame{Kind: KindUnicast, Flag: true, Src: Hint{1}, Dst: Hint{2}, Index: 1, Count: 3, Payload: []byte("ab")}, nil), false)
	f.Add(AppendFrame(nil, &Frame{Kind: KindSACK, Src: Hint{1}, Dst: Hint{2}, Count: 10, Bitmap: []byte{1, 2}}, nil), false)
	f.Add(AppendFrame(nil, &Frame{Kind: KindSACK, Flag: true, Src: Hint{1}, Dst: Hint{2}, Count: 1}, &key), true)
	f.Add([]byte{Magic, 0x11}, false)
	f.Add([]byte{0x08, 0, 1}, false)
	f.Fuzz(func(t *testing.T, b []byte, keyed bool) {
		k := &Key{}
		if keyed {
			k = &key
		}
		fr, err := Parse(b, k)
		if err != nil {
			return
		}
		again := AppendFrame(nil, &fr, k)
		if !keyed && !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
		}
	})
}

// FuzzEngineReceive feeds arbitrary frame sequences to an engine: no panic,
// bounded state.
func FuzzEngineReceive(f *testing.F) {
	f.Add([]byte{Magic, 0x11, 1, 2, 3, 4, 0, 1, 0, 0, 'x'})
	f.Add(AppendFrame(nil, &Frame{Kind: KindUnicast, Flag: true, Src: Hint{1}, Dst: Hint{9, 9, 9, 9}, Index: 0, Count: 2, Payload: []byte("ab")}, nil))
	f.Add(AppendFrame(nil, &Frame{Kind: KindSACK, Src: Hint{1}, Dst: Hint{9, 9, 9, 9}, ID: 1, Count: 3, Bitmap: []byte{5}}, nil))
	f.Fuzz(func(t *testing.T, stream []byte) {
		e, err := New(Options{Self: Hint{9, 9, 9, 9}, Modulation: fastMod(), Budget: budget(t, "US915", 915000000, 500000), MaxReassemblies: 4, MaxPerSource: 2, MTU: 1024})
		if err != nil {
			t.Fatal(err)
		}
		now := clock.Epoch()
		e.Enqueue(now, transport.Addr([]byte{1, 0, 0, 0}), 0, make([]byte, 700))
		// Split the stream into frames at 0xFF bytes.
		for _, b := range bytes.Split(stream, []byte{0xFF}) {
			now = now.Add(10 * time.Millisecond)
			e.Receive(now, b, transport.Meta{})
			e.Next(now)
			if st := e.Stats(); st.Reassemblies > 4 || st.ReassemblyBytes > 4096 {
				t.Fatalf("%+v", st)
			}
		}
	})
}
