package node

import (
	"math"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/openmeshd/meshd/envelope"
)

// An "after" at the largest id must list nothing, not wrap to the start.
func TestListInAfterLastID(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := openAppStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.addIn(&InMessage{Text: "first", Counter: 1}, envelope.Address{1}); err != nil {
		t.Fatal(err)
	}
	if out, err := s.listIn(0, false, 10); err != nil || len(out) != 1 {
		t.Fatalf("listIn(0) = %d messages, %v", len(out), err)
	}
	out, err := s.listIn(math.MaxUint64, false, 10)
	if err != nil || len(out) != 0 {
		t.Fatalf("listIn(max) = %d messages, %v", len(out), err)
	}
}

// seekAfter finds the first key after the one asked for, whether or not it
// exists, and nothing after the largest (the channel history's paging uses
// it too).
func TestSeekAfter(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys := []uint64{2, 5, math.MaxUint64}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		for _, k := range keys {
			if err == nil {
				err = b.Put(u64(k), []byte{1})
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		after uint64
		want  []byte
	}{{0, u64(2)}, {2, u64(5)}, {3, u64(5)}, {5, u64(math.MaxUint64)}, {math.MaxUint64 - 1, u64(math.MaxUint64)}, {math.MaxUint64, nil}} {
		_ = db.View(func(tx *bolt.Tx) error {
			k, _ := seekAfter(tx.Bucket([]byte("b")).Cursor(), u64(c.after))
			if string(k) != string(c.want) {
				t.Errorf("after %d: %x, want %x", c.after, k, c.want)
			}
			return nil
		})
	}
}
