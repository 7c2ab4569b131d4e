package routing

import (
	"bytes"
	"errors"
	"sort"
	"sync"
)

// Bucket names one keyspace of the Store.
type Bucket uint8

// The buckets the router uses. Records are encoded by records.go.
const (
	// BucketMeta holds single values: the message id reservation.
	BucketMeta Bucket = iota
	// BucketPeers holds per-peer end-to-end state: key, send counter
	// reservation, replay window. Key: the 16-byte address.
	BucketPeers
	// BucketOutbox holds this node's own messages until acknowledged or
	// expired. Key: the 8-byte message id.
	BucketOutbox
	// BucketHeld holds other nodes' envelopes waiting for a route
	// (store-and-forward). Key: the 8-byte keyed hash of the envelope.
	BucketHeld
	// BucketInbox holds delivered messages until the application
	// acknowledges them. Key: sender address ‖ counter.
	BucketInbox
	// NumBuckets is the number of buckets.
	NumBuckets
)

var bucketNames = [NumBuckets]string{"meta", "peers", "outbox", "held", "inbox"}

func (b Bucket) String() string {
	if b < NumBuckets {
		return bucketNames[b]
	}
	return "bucket?"
}

// Op is one write of a Batch: a Put (Value non-nil) or a Delete (Value nil).
type Op struct {
	Bucket Bucket
	Key    []byte
	Value  []byte
}

// Batch is a set of writes applied atomically by Store.Apply. Later writes
// to the same key win.
type Batch struct {
	Ops []Op
}

// Put records a write. The batch keeps key and value; callers must not
// change them afterwards.
func (b *Batch) Put(bk Bucket, key, value []byte) {
	if value == nil {
		value = []byte{}
	}
	b.Ops = append(b.Ops, Op{Bucket: bk, Key: key, Value: value})
}

// Delete records a deletion.
func (b *Batch) Delete(bk Bucket, key []byte) {
	b.Ops = append(b.Ops, Op{Bucket: bk, Key: key})
}

// Len is the number of writes.
func (b *Batch) Len() int { return len(b.Ops) }

// Reset empties the batch, keeping its capacity.
func (b *Batch) Reset() {
	clear(b.Ops)
	b.Ops = b.Ops[:0]
}

// Store is the router's persistent memory: a few buckets of key/value pairs
// written in atomic batches. The router reads everything once at start
// (Scan) and afterwards only writes, so an implementation needs no caching.
// After Apply returns nil, the batch must survive a crash (kill -9, power
// loss); if Apply returns an error, none of the batch may be visible after a
// restart.
type Store interface {
	// Apply writes the batch atomically and durably.
	Apply(b *Batch) error
	// Scan calls fn for every pair of the bucket in key order. fn must not
	// keep key or value after it returns. An error from fn stops the scan
	// and is returned.
	Scan(b Bucket, fn func(key, value []byte) error) error
	// Close releases the store.
	Close() error
}

// ErrStoreClosed is returned by a closed store.
var ErrStoreClosed = errors.New("routing: store closed")

// MemStore is a Store in memory, for tests and meshsim. It survives a
// "restart" of a Router built on the same MemStore, which is how meshsim
// models a node that reboots. Safe for concurrent use.
type MemStore struct {
	mu      sync.Mutex
	buckets [NumBuckets]map[string][]byte
	closed  bool
	applies int
	// FailNext, when set, makes the next Apply fail without writing, to test
	// the router's handling of a failing disk.
	FailNext error
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	s := &MemStore{}
	for i := range s.buckets {
		s.buckets[i] = map[string][]byte{}
	}
	return s
}

// Apply implements Store.
func (s *MemStore) Apply(b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStoreClosed
	}
	if err := s.FailNext; err != nil {
		s.FailNext = nil
		return err
	}
	for _, op := range b.Ops {
		if op.Bucket >= NumBuckets {
			return errors.New("routing: unknown bucket")
		}
	}
	for _, op := range b.Ops {
		if op.Value == nil {
			delete(s.buckets[op.Bucket], string(op.Key))
		} else {
			s.buckets[op.Bucket][string(op.Key)] = bytes.Clone(op.Value)
		}
	}
	s.applies++
	return nil
}

// Scan implements Store.
func (s *MemStore) Scan(bk Bucket, fn func(key, value []byte) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrStoreClosed
	}
	if bk >= NumBuckets {
		s.mu.Unlock()
		return errors.New("routing: unknown bucket")
	}
	m := s.buckets[bk]
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = bytes.Clone(m[k])
	}
	s.mu.Unlock()
	for i, k := range keys {
		if err := fn([]byte(k), vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// Close implements Store. A MemStore can be reopened with Reopen.
func (s *MemStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// Reopen makes a closed MemStore usable again, as if the process had
// restarted with the same disk.
func (s *MemStore) Reopen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = false
}

// Applies returns how many batches were applied (the number of disk
// commits a real store would have made).
func (s *MemStore) Applies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applies
}

// Size returns the number of bytes of keys and values held.
func (s *MemStore) Size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.buckets {
		for k, v := range m {
			n += len(k) + len(v)
		}
	}
	return n
}
