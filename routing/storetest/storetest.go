// Package storetest is the conformance suite every routing.Store passes.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/openmeshd/meshd/routing"
)

// Opener opens the store under test. reopen is true when the test wants the
// same store as before a simulated restart (the previous one was closed).
type Opener func(t *testing.T, reopen bool) routing.Store

func dump(t *testing.T, s routing.Store, b routing.Bucket) map[string]string {
	t.Helper()
	m := map[string]string{}
	var last []byte
	err := s.Scan(b, func(k, v []byte) error {
		if last != nil && bytes.Compare(last, k) >= 0 {
			return fmt.Errorf("scan out of order: %x after %x", k, last)
		}
		last = append(last[:0], k...)
		m[string(k)] = string(v)
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", b, err)
	}
	return m
}

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	t.Run("PutDeleteScan", func(t *testing.T) {
		s := open(t, false)
		defer s.Close()
		var b routing.Batch
		b.Put(routing.BucketOutbox, []byte{2}, []byte("two"))
		b.Put(routing.BucketOutbox, []byte{1}, []byte("one"))
		b.Put(routing.BucketHeld, []byte{1}, []byte("held"))
		b.Put(routing.BucketOutbox, []byte{3}, nil) // empty value is a value
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
		got := dump(t, s, routing.BucketOutbox)
		want := map[string]string{"\x01": "one", "\x02": "two", "\x03": ""}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("outbox = %q, want %q", got, want)
		}
		b.Reset()
		b.Delete(routing.BucketOutbox, []byte{1})
		b.Put(routing.BucketOutbox, []byte{2}, []byte("TWO"))
		b.Delete(routing.BucketOutbox, []byte{9}) // absent: fine
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
		got = dump(t, s, routing.BucketOutbox)
		want = map[string]string{"\x02": "TWO", "\x03": ""}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("outbox = %q, want %q", got, want)
		}
		if h := dump(t, s, routing.BucketHeld); len(h) != 1 {
			t.Fatalf("held = %q", h)
		}
		if e := dump(t, s, routing.BucketInbox); len(e) != 0 {
			t.Fatalf("inbox = %q", e)
		}
	})
	t.Run("ScanError", func(t *testing.T) {
		s := open(t, false)
		defer s.Close()
		var b routing.Batch
		b.Put(routing.BucketMeta, []byte("a"), []byte("1"))
		b.Put(routing.BucketMeta, []byte("b"), []byte("2"))
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
		stop := errors.New("stop")
		n := 0
		err := s.Scan(routing.BucketMeta, func(k, v []byte) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("scan = %v after %d calls, want stop after 1", err, n)
		}
	})
	t.Run("SurvivesReopen", func(t *testing.T) {
		s := open(t, false)
		var b routing.Batch
		for i := 0; i < 100; i++ {
			b.Put(routing.BucketPeers, []byte{byte(i)}, bytes.Repeat([]byte{byte(i)}, i))
		}
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, true)
		defer s.Close()
		got := dump(t, s, routing.BucketPeers)
		if len(got) != 100 {
			t.Fatalf("after reopen: %d records, want 100", len(got))
		}
		for i := 0; i < 100; i++ {
			if got[string([]byte{byte(i)})] != string(bytes.Repeat([]byte{byte(i)}, i)) {
				t.Fatalf("record %d changed", i)
			}
		}
	})
	t.Run("UnknownBucketAtomic", func(t *testing.T) {
		s := open(t, false)
		defer s.Close()
		var b routing.Batch
		b.Put(routing.BucketMeta, []byte("x"), []byte("1"))
		b.Put(routing.NumBuckets, []byte("y"), []byte("2"))
		if err := s.Apply(&b); err == nil {
			t.Fatal("Apply with an unknown bucket succeeded")
		}
		if m := dump(t, s, routing.BucketMeta); len(m) != 0 {
			t.Fatalf("failed batch left %q", m)
		}
	})
	t.Run("Closed", func(t *testing.T) {
		s := open(t, false)
		s.Close()
		var b routing.Batch
		b.Put(routing.BucketMeta, []byte("x"), []byte("1"))
		if err := s.Apply(&b); err == nil {
			t.Fatal("Apply on a closed store succeeded")
		}
	})
}
