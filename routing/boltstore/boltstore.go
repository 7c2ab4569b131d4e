// Package boltstore is the router's Store on bbolt: one file in the data
// directory, one bbolt bucket per routing.Bucket, one fsynced transaction
// per routing.Batch. The router groups its writes (Options.CommitDelay), so
// the number of transactions per hour, and with it flash wear, is bounded by
// the router, not by traffic.
package boltstore

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openmeshd/meshd/routing"
)

// Store is a routing.Store in a bbolt file.
type Store struct {
	db     *bolt.DB
	shared bool // db belongs to the caller (Wrap): Close leaves it open
}

// Open opens (creating if needed, mode 0600) the store at path. It fails
// after timeout if another process holds the file.
func Open(path string, timeout time.Duration) (*Store, error) {
	if timeout <= 0 {
		timeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("routing store %s: %w", path, err)
	}
	s, err := Wrap(db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("routing store %s: %w", path, err)
	}
	s.shared = false
	return s, nil
}

// Wrap uses an open bbolt database that other parts of the node share (one
// file per node). The router's buckets are created if missing; their names
// are routing.Bucket.String(). Close leaves db open for its owner.
func Wrap(db *bolt.DB) (*Store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for b := routing.Bucket(0); b < routing.NumBuckets; b++ {
			if _, err := tx.CreateBucketIfNotExists([]byte(b.String())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Store{db: db, shared: true}, nil
}

func bucket(tx *bolt.Tx, b routing.Bucket) (*bolt.Bucket, error) {
	if b >= routing.NumBuckets {
		return nil, fmt.Errorf("routing store: unknown bucket %d", b)
	}
	bk := tx.Bucket([]byte(b.String()))
	if bk == nil {
		return nil, fmt.Errorf("routing store: bucket %s missing", b)
	}
	return bk, nil
}

// Apply implements routing.Store: one read-write transaction, fsynced on
// commit by bbolt.
func (s *Store) Apply(b *routing.Batch) error {
	if len(b.Ops) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, op := range b.Ops {
			bk, err := bucket(tx, op.Bucket)
			if err != nil {
				return err
			}
			if op.Value == nil {
				err = bk.Delete(op.Key)
			} else {
				err = bk.Put(op.Key, op.Value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return routing.ErrStoreClosed
	}
	return err
}

// Scan implements routing.Store.
func (s *Store) Scan(b routing.Bucket, fn func(key, value []byte) error) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		bk, err := bucket(tx, b)
		if err != nil {
			return err
		}
		return bk.ForEach(fn)
	})
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return routing.ErrStoreClosed
	}
	return err
}

// Close implements routing.Store.
func (s *Store) Close() error {
	if s.shared {
		return nil
	}
	return s.db.Close()
}

// Size returns the database file's size in bytes.
func (s *Store) Size() int64 {
	var n int64
	_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}
