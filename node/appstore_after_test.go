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
