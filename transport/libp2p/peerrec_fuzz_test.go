//go:build !router

package libp2p

import (
	"crypto/ed25519"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// fuzzAuthor is the fixed author of FuzzPeerRecord's records (the seed
// corpus in testdata/fuzz/FuzzPeerRecord holds records it signed).
func fuzzAuthor(tb testing.TB, seed byte) (crypto.PrivKey, peer.ID) {
	tb.Helper()
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(s))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return k, id
}

// FuzzPeerRecord: the peers-topic decoder never panics, refuses with a
// reason or accepts a record that names its author, is within the bounds,
// and is refused for anyone else; the address filter and the store take
// any accepted record.
func FuzzPeerRecord(f *testing.F) {
	k, author := fuzzAuthor(f, 1)
	_, other := fuzzAuthor(f, 2)
	f.Add(sealRecord(f, k, author, 1, "/ip4/127.0.0.1/tcp/4732", "/ip6/::1/udp/4732/quic-v1"))
	f.Add([]byte("junk"))
	via := []ma.Multiaddr{nil, ma.StringCast("/ip4/127.0.0.1/tcp/1"), ma.StringCast("/ip4/10.1.2.3/tcp/1"), ma.StringCast("/ip4/8.8.8.8/tcp/1")}
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, why := decodePeerRecord(data, author)
		if rec == nil {
			if why == "" {
				t.Fatal("refused without a reason")
			}
			return
		}
		if why != "" || rec.PeerID != author || len(data) > MaxRecordSize || len(rec.Addrs) > MaxRecordAddrs {
			t.Fatalf("accepted %q: %+v", why, rec)
		}
		for _, a := range rec.Addrs {
			if len(a.Bytes()) > MaxRecordAddrLen {
				t.Fatalf("address of %d bytes", len(a.Bytes()))
			}
		}
		if r2, why := decodePeerRecord(data, other); r2 != nil || why != RejectRecordSigner {
			t.Fatalf("another author's record: %q", why)
		}
		s := newRecordStore(2)
		for _, v := range via {
			got := usableAddrs(rec.Addrs, v)
			if len(got) > len(rec.Addrs) {
				t.Fatal("usableAddrs added addresses")
			}
			s.put(rec.PeerID, heldRecord{seq: rec.Seq, addrs: got})
		}
		if s.len() != 1 || s.newer(rec.PeerID, rec.Seq) {
			t.Fatalf("store: %d held", s.len())
		}
	})
}
