package node

import (
	bolt "go.etcd.io/bbolt"

	"github.com/openmeshd/meshd/envelope"
)

var bucketPins = []byte("tcp/pins")

// boltPins remembers the identity first seen at each static peer endpoint
// (trust on first use), in the node's store.
type boltPins struct {
	db *bolt.DB
}

func (p *boltPins) Pinned(endpoint string) (envelope.PublicKey, bool, error) {
	var k envelope.PublicKey
	found := false
	err := p.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPins)
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(endpoint)); len(v) == envelope.PublicKeySize {
			copy(k[:], v)
			found = true
		}
		return nil
	})
	return k, found, err
}

func (p *boltPins) Pin(endpoint string, key envelope.PublicKey) error {
	return p.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPins)
		if err != nil {
			return err
		}
		return b.Put([]byte(endpoint), key[:])
	})
}
