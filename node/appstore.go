package node

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openmeshd/meshd/envelope"
)

// The node's own buckets in the shared bbolt file. The router's buckets are
// prefixed "routing/" by its store.
var (
	bucketOutbox   = []byte("dm/outbox")   // MsgID → OutMessage
	bucketInbox    = []byte("dm/inbox")    // seq → InMessage
	bucketInboxIDs = []byte("dm/inbox-id") // sender ‖ counter → seq (dedup)
	bucketContacts = []byte("contacts")    // name → Contact
	bucketMeta     = []byte("node/meta")
)

// Message states as the API and CLI show them.
const (
	StateAccepted  = "accepted"  // taken by the API, not yet durable in the router
	StateQueued    = "queued"    // durable; waiting for a key or a route
	StateSent      = "sent"      // transmitted towards the destination
	StateHeld      = "held"      // a relay holds it for the offline destination
	StateDelivered = "delivered" // end-to-end acknowledgement received
	StateExpired   = "expired"   // not acknowledged in time
	StateFailed    = "failed"    // could not be sent at all
)

func finalState(s string) bool {
	return s == StateDelivered || s == StateExpired || s == StateFailed
}

// OutMessage is a direct message this node sent.
type OutMessage struct {
	ID        uint64    `json:"id"`
	To        string    `json:"to"`       // address
	ToName    string    `json:"to_name"`  // local petname, if any
	Text      string    `json:"text"`     //
	State     string    `json:"state"`    //
	Reason    string    `json:"reason"`   // why expired or failed
	Attempts  int       `json:"attempts"` //
	Created   time.Time `json:"created"`  //
	Updated   time.Time `json:"updated"`  //
	Delivered time.Time `json:"delivered,omitzero"`
}

// InMessage is a direct message this node received.
type InMessage struct {
	Seq      uint64 `json:"seq"`
	From     string `json:"from"`      // address
	FromKey  string `json:"from_key"`  // public key
	FromName string `json:"from_name"` // local petname, if a contact
	// Claimed is the sender's self-chosen display name from its announces,
	// shown marked as unverified.
	Claimed  string    `json:"claimed_name,omitempty"`
	Text     string    `json:"text"`
	Received time.Time `json:"received"`
	Read     bool      `json:"read"`
	Counter  uint32    `json:"counter"`
}

// Contact is a local petname for a peer.
type Contact struct {
	Name     string    `json:"name"`
	Address  string    `json:"address"`
	Key      string    `json:"key,omitempty"` // known once seen
	Verified bool      `json:"verified"`      // safety number compared
	Added    time.Time `json:"added"`
}

// ErrNotFound is returned for unknown messages and contacts.
var ErrNotFound = errors.New("not found")

// appStore keeps the applications' records in the node's bbolt file.
type appStore struct {
	db *bolt.DB
}

func openAppStore(db *bolt.DB) (*appStore, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketOutbox, bucketInbox, bucketInboxIDs, bucketContacts, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("app store: %w", err)
	}
	return &appStore{db: db}, nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, buf)
}

// decodeRecord reads a stored record; a record that does not decode is
// reported, never silently dropped.
func decodeRecord(key, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("corrupt record %x: %w", key, err)
	}
	return nil
}

func (s *appStore) putOut(m *OutMessage) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketOutbox), u64(m.ID), m)
	})
}

func (s *appStore) getOut(id uint64) (*OutMessage, error) {
	var m OutMessage
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketOutbox).Get(u64(id))
		if raw == nil {
			return ErrNotFound
		}
		return decodeRecord(u64(id), raw, &m)
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// updateOut applies f to a stored outgoing message.
func (s *appStore) updateOut(id uint64, f func(*OutMessage)) (*OutMessage, error) {
	var m OutMessage
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		raw := b.Get(u64(id))
		if raw == nil {
			return ErrNotFound
		}
		if err := decodeRecord(u64(id), raw, &m); err != nil {
			return err
		}
		f(&m)
		return putJSON(b, u64(id), &m)
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

func (s *appStore) listOut(limit int) ([]OutMessage, error) {
	var out []OutMessage
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var m OutMessage
			if err := decodeRecord(k, v, &m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	// Oldest first, like a conversation.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

func inboxIDKey(from envelope.Address, counter uint32) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(nil), from[:]...), counter)
}

// addIn stores a received message once: it returns false when (sender,
// counter) was stored before (a redelivery after a crash).
func (s *appStore) addIn(m *InMessage, from envelope.Address) (bool, error) {
	added := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		ids := tx.Bucket(bucketInboxIDs)
		idk := inboxIDKey(from, m.Counter)
		if ids.Get(idk) != nil {
			return nil
		}
		b := tx.Bucket(bucketInbox)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		m.Seq = seq
		if err := putJSON(b, u64(seq), m); err != nil {
			return err
		}
		added = true
		return ids.Put(idk, u64(seq))
	})
	return added, err
}

func (s *appStore) listIn(after uint64, unreadOnly bool, limit int) ([]InMessage, error) {
	var out []InMessage
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketInbox).Cursor()
		for k, v := seekAfter(c, u64(after)); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			var m InMessage
			if err := decodeRecord(k, v, &m); err != nil {
				return err
			}
			if unreadOnly && m.Read {
				continue
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

func (s *appStore) markRead(seq uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInbox)
		raw := b.Get(u64(seq))
		if raw == nil {
			return ErrNotFound
		}
		var m InMessage
		if err := decodeRecord(u64(seq), raw, &m); err != nil {
			return err
		}
		m.Read = true
		return putJSON(b, u64(seq), &m)
	})
}

func (s *appStore) putContact(c *Contact) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketContacts), []byte(c.Name), c)
	})
}

func (s *appStore) deleteContact(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContacts)
		if b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(name))
	})
}

func (s *appStore) contacts() ([]Contact, error) {
	var out []Contact
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketContacts).ForEach(func(k, v []byte) error {
			var c Contact
			if err := decodeRecord(k, v, &c); err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

func (s *appStore) contact(name string) (*Contact, error) {
	var c Contact
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketContacts).Get([]byte(name))
		if raw == nil {
			return ErrNotFound
		}
		return decodeRecord([]byte(name), raw, &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// contactByAddress finds the petname of an address ("" when none).
func (s *appStore) contactByAddress(addr string) string {
	name := ""
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketContacts).ForEach(func(k, v []byte) error {
			var c Contact
			if json.Unmarshal(v, &c) == nil && c.Address == addr {
				name = c.Name
			}
			return nil
		})
	})
	return name
}

// counts returns how many records each app bucket holds.
func (s *appStore) counts() (out, in, unread, contacts int) {
	_ = s.db.View(func(tx *bolt.Tx) error {
		out = tx.Bucket(bucketOutbox).Stats().KeyN
		contacts = tx.Bucket(bucketContacts).Stats().KeyN
		return tx.Bucket(bucketInbox).ForEach(func(k, v []byte) error {
			in++
			if !bytes.Contains(v, []byte(`"read":true`)) {
				unread++
			}
			return nil
		})
	})
	return
}

// seekAfter positions c on the first key after key (?after= paging):
// seeking key itself and stepping over it, not key+1, which wraps to zero
// for the largest id and would list everything again.
func seekAfter(c *bolt.Cursor, key []byte) ([]byte, []byte) {
	k, v := c.Seek(key)
	if k != nil && bytes.Equal(k, key) {
		return c.Next()
	}
	return k, v
}
