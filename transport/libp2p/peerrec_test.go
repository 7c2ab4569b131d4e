//go:build !router

package libp2p

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

// sealRecord seals a peer record for id with key.
func sealRecord(t testing.TB, key crypto.PrivKey, id peer.ID, seq uint64, addrs ...string) []byte {
	t.Helper()
	rec := &peer.PeerRecord{PeerID: id, Seq: seq}
	for _, a := range addrs {
		rec.Addrs = append(rec.Addrs, ma.StringCast(a))
	}
	env, err := record.Seal(rec, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keyAndID(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _ := ed25519Key(t)
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// TestFiveNodesRecords: one bootstrap node and four others that know only
// it, in the default build (no DHT): through the peer records every pair
// ends up directly connected and linked (not only through the bootstrap
// node), floods reach all, unicast works.
func TestFiveNodesRecords(t *testing.T) {
	start := time.Now()
	boot := startNode(t, nil)
	nodes := []*node{boot}
	for i := 0; i < 4; i++ {
		nodes = append(nodes, startNode(t, func(o *Options) { o.BootstrapPeers = []string{boot.multiaddr()} }))
	}
	waitFor(t, 15*time.Second, "every pair directly connected and linked", func() error {
		for i, n := range nodes {
			peers := n.rec.streamPeers()
			bh := n.t.hostOrNil()
			for j, m := range nodes {
				if i == j {
					continue
				}
				if bh.Network().Connectedness(m.ai.ID) != network.Connected {
					return fmt.Errorf("node %d is not connected to node %d", i, j)
				}
				if peers[m.id.PublicKey()] == nil {
					return fmt.Errorf("node %d has no link to node %d (%d links)", i, j, len(peers))
				}
			}
		}
		return nil
	})
	t.Logf("all 5 nodes pairwise connected and linked after %v", time.Since(start).Round(time.Millisecond))
	// With -tags dht the DHT may connect the nodes first; the records
	// come all the same.
	waitFor(t, 10*time.Second, "every node holds the others' records", func() error {
		for i, n := range nodes {
			st := n.t.Stats()
			if st.PeerRecords < 4 || st.PeerRecordsPublished == 0 {
				return fmt.Errorf("node %d: %d records held, %d published", i, st.PeerRecords, st.PeerRecordsPublished)
			}
			if len(st.GossipRejected) != 0 {
				return fmt.Errorf("node %d rejected honest messages: %v", i, st.GossipRejected)
			}
		}
		return nil
	})
	checkFloodsAndUnicast(t, nodes, 4)
	waitFor(t, 10*time.Second, "a rendezvous round counts the four others", func() error {
		if f := nodes[1].t.Stats().RendezvousFound; f < 4 {
			return fmt.Errorf("found %d", f)
		}
		return nil
	})
}

// TestBadPeerRecords: stock GossipSub peers publish forged, oversized,
// malformed and replayed records on the peers topic. The node refuses each
// (counted by reason) and forwards none of them to an observer that is
// connected to it alone; the one valid record reaches the observer.
func TestBadPeerRecords(t *testing.T) {
	a := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	topic := PeersTopic("test")
	join := func(k crypto.PrivKey) (*pubsub.PubSub, *pubsub.Topic) {
		h := plainHost(t, k)
		if err := h.Connect(ctx, a.ai); err != nil {
			t.Fatal(err)
		}
		ps, _ := plainGossip(t, h, "test")
		tp, err := ps.Join(topic)
		if err != nil {
			t.Fatal(err)
		}
		return ps, tp
	}
	// The observer.
	okey, _ := keyAndID(t)
	ops, otp := join(okey)
	osub, err := otp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 64)
	go func() {
		for {
			m, err := osub.Next(ctx)
			if err != nil {
				return
			}
			if m.GetFrom() != a.ai.ID { // the node's own record is not what is tested
				got <- m.Data
			}
		}
	}()
	waitFor(t, 10*time.Second, "the node sees the observer on the peers topic", func() error {
		if !slices.Contains(ops.ListPeers(topic), a.ai.ID) || len(a.rec.gossip().(*gossipLink).peersTopic.ListPeers()) == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	otherKey, otherID := keyAndID(t)
	type pub struct {
		data   []byte
		reason string // "" valid; Reject* or Ignore*
	}
	// One valid record, then its replay with an older sequence, from the
	// same author (ignoring costs it no score).
	vkey, vid := keyAndID(t)
	valid := sealRecord(t, vkey, vid, 1000, "/ip4/127.0.0.1/tcp/1")
	many := make([]string, 100) // about 3 KB
	for i := range many {
		many[i] = fmt.Sprintf("/dns4/host-%02d.example.org/tcp/4001", i)
	}
	nine := many[:9]
	long := "/dns4/" + strings.Repeat("a", 200) + ".org/tcp/1"
	sigFlip := func(k crypto.PrivKey, id peer.ID) []byte {
		b := sealRecord(t, k, id, 5, "/ip4/127.0.0.1/tcp/1")
		b[len(b)-1] ^= 1
		return b
	}
	cases := []struct {
		name string
		make func(k crypto.PrivKey, id peer.ID) []pub
	}{
		{"valid, then an older sequence", func(crypto.PrivKey, peer.ID) []pub {
			return nil // published by vkey below
		}},
		{"signed by another key", func(_ crypto.PrivKey, id peer.ID) []pub {
			return []pub{{sealRecord(t, otherKey, id, 1, "/ip4/127.0.0.1/tcp/1"), RejectRecordSigner}}
		}},
		{"another peer's record, relayed as one's own", func(crypto.PrivKey, peer.ID) []pub {
			return []pub{{sealRecord(t, otherKey, otherID, 1, "/ip4/127.0.0.1/tcp/1"), RejectRecordSigner}}
		}},
		{"signed by the author, naming another peer", func(k crypto.PrivKey, _ peer.ID) []pub {
			return []pub{{sealRecord(t, k, otherID, 1, "/ip4/127.0.0.1/tcp/1"), RejectRecordSigner}}
		}},
		{"bad signature", func(k crypto.PrivKey, id peer.ID) []pub { return []pub{{sigFlip(k, id), RejectRecordSignature}} }},
		{"oversized", func(k crypto.PrivKey, id peer.ID) []pub {
			return []pub{{sealRecord(t, k, id, 1, many...), RejectRecordSize}}
		}},
		{"nine addresses", func(k crypto.PrivKey, id peer.ID) []pub {
			return []pub{{sealRecord(t, k, id, 1, nine...), RejectRecordAddrs}}
		}},
		{"a long address", func(k crypto.PrivKey, id peer.ID) []pub {
			return []pub{{sealRecord(t, k, id, 1, long), RejectRecordAddrs}}
		}},
		{"junk", func(crypto.PrivKey, peer.ID) []pub { return []pub{{[]byte("junk junk junk"), RejectRecordMalformed}} }},
		{"empty", func(crypto.PrivKey, peer.ID) []pub { return []pub{{[]byte{}, RejectRecordMalformed}} }},
	}
	counts := func(reason string) uint64 {
		st := a.t.Stats()
		if strings.HasPrefix(reason, "record_old") || strings.HasPrefix(reason, "record_rate") {
			return st.GossipIgnored[reason]
		}
		return st.GossipRejected[reason]
	}
	publish := func(tp *pubsub.Topic, p pub) {
		t.Helper()
		before := counts(p.reason)
		if err := tp.Publish(ctx, p.data); err != nil {
			t.Fatal(err)
		}
		if p.reason == "" {
			return
		}
		waitFor(t, 10*time.Second, "refused as "+p.reason, func() error {
			if counts(p.reason) == before {
				return fmt.Errorf("not counted: rejected %v, ignored %v", a.t.Stats().GossipRejected, a.t.Stats().GossipIgnored)
			}
			return nil
		})
	}
	for i, c := range cases {
		if i == 0 {
			vps, vtp := join(vkey)
			waitFor(t, 10*time.Second, "the author sees the node", func() error {
				if !slices.Contains(vps.ListPeers(topic), a.ai.ID) {
					return fmt.Errorf("not yet")
				}
				return nil
			})
			time.Sleep(1500 * time.Millisecond) // a heartbeat grafts the meshes
			publish(vtp, pub{valid, ""})
			select {
			case d := <-got:
				if string(d) != string(valid) {
					t.Fatalf("the observer got %x", d)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the valid record did not reach the observer")
			}
			if r, ok := a.t.gossipOrNil().records.get(vid); !ok || r.seq != 1000 {
				t.Fatalf("the valid record is not held: %+v %v", r, ok)
			}
			publish(vtp, pub{sealRecord(t, vkey, vid, 999, "/ip4/127.0.0.1/tcp/2"), IgnoreRecordOld})
			publish(vtp, pub{valid, ""}) // the same bytes: a duplicate to GossipSub, not even validated
			continue
		}
		// Each bad record from a fresh author (one past a few invalid
		// messages is graylisted and no longer looked at).
		k, id := keyAndID(t)
		ps, tp := join(k)
		waitFor(t, 10*time.Second, "the author sees the node", func() error {
			if !slices.Contains(ps.ListPeers(topic), a.ai.ID) {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		for _, p := range c.make(k, id) {
			publish(tp, p)
		}
	}
	select {
	case d := <-got:
		t.Fatalf("a refused record reached the observer: %q", d)
	case <-time.After(2 * time.Second):
	}
	st := a.t.Stats()
	t.Logf("rejected %v, ignored %v, records held %d", st.GossipRejected, st.GossipIgnored, st.PeerRecords)
	if st.PeerRecords != 1 {
		t.Fatalf("%d records held, want the valid one only", st.PeerRecords)
	}
}

// TestPeerRecordFlood: records from thousands of generated keys, all
// valid. The topic's global rate ignores most; with it lifted, the store
// still holds at most 256 (the oldest go), and the per-author buckets stay
// bounded.
func TestPeerRecordFlood(t *testing.T) {
	a := startNode(t, func(o *Options) { o.VerifyPerSecond = 1e9 })
	g := a.t.gossipOrNil()
	topic := PeersTopic("test")
	_, via := keyAndID(t)
	v := g.recordValidator()
	const n = 3000
	msgs := make([]*pubsub.Message, n)
	for i := range msgs {
		k, id := keyAndID(t)
		msgs[i] = &pubsub.Message{Message: &pb.Message{From: []byte(id), Topic: &topic,
			Data: sealRecord(t, k, id, uint64(i+1), fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 1000+i), "/ip4/198.51.100.7/udp/4001/quic-v1")}, ReceivedFrom: via}
	}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	feed := func(ms []*pubsub.Message) (accepted int) {
		for _, m := range ms {
			if v(context.Background(), via, m) == pubsub.ValidationAccept {
				accepted++
				g.remember(m.ValidatorData.(*peer.PeerRecord), via)
			}
		}
		return accepted
	}
	acc := feed(msgs[:n/2])
	if acc > recordGlobalBurst+50 || a.t.Stats().GossipIgnored[IgnoreRecordRate] < uint64(n/2-acc) {
		t.Fatalf("global rate: %d of %d accepted, ignored %v", acc, n/2, a.t.Stats().GossipIgnored)
	}
	g.limMu.Lock()
	g.recGlobal = newBucket(1e9, 1e9)
	g.limMu.Unlock()
	acc2 := feed(msgs[n/2:])
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	st := a.t.Stats()
	g.limMu.Lock()
	buckets := len(g.recLim.m)
	g.limMu.Unlock()
	t.Logf("%d records: %d accepted at the default global rate, %d with it lifted; held %d, buckets %d, heap %+d KiB",
		n, acc, acc2, st.PeerRecords, buckets, (int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/1024)
	if acc2 != n/2 {
		t.Fatalf("%d of %d valid records accepted with the global rate lifted", acc2, n/2)
	}
	if st.PeerRecords != maxRecords {
		t.Fatalf("store holds %d records, want %d", st.PeerRecords, maxRecords)
	}
	if buckets > 4096 {
		t.Fatalf("%d rate buckets", buckets)
	}
	// The newest are held; the oldest went.
	last, _ := peer.IDFromBytes(msgs[n-1].From)
	first, _ := peer.IDFromBytes(msgs[0].From)
	if _, ok := g.records.get(last); !ok {
		t.Fatal("the newest record is not held")
	}
	if _, ok := g.records.get(first); ok {
		t.Fatal("the oldest record is still held")
	}
	// Through a peer that is not connected (the internet, as far as
	// the node knows), the loopback address is not kept: only the public one.
	if r, _ := g.records.get(last); len(r.addrs) != 1 || manetClass(r.addrs[0]) != 0 {
		t.Fatalf("held addresses %v", r.addrs)
	}
}

func manetClass(a ma.Multiaddr) int { return addrClass(a) }

func TestUsableAddrs(t *testing.T) {
	addrs := []ma.Multiaddr{
		ma.StringCast("/ip4/203.0.114.1/tcp/1"), // public
		ma.StringCast("/ip4/192.168.1.2/tcp/1"),
		ma.StringCast("/ip4/100.64.0.1/tcp/1"), // CGNAT
		ma.StringCast("/ip6/fd00::1/tcp/1"),
		ma.StringCast("/ip4/127.0.0.1/tcp/1"),
		ma.StringCast("/ip6/::1/tcp/1"),
		ma.StringCast("/ip4/0.0.0.0/tcp/1"),
		ma.StringCast("/ip6/fe80::1/tcp/1"),
		ma.StringCast("/dns4/example.org/tcp/1"),
	}
	for _, c := range []struct {
		via  string
		want int
	}{
		{"", 2}, {"/ip4/8.8.8.8/tcp/1", 2}, {"/ip4/10.0.0.1/tcp/1", 5}, {"/ip4/127.0.0.1/tcp/1", 7},
	} {
		var via ma.Multiaddr
		if c.via != "" {
			via = ma.StringCast(c.via)
		}
		if got := usableAddrs(addrs, via); len(got) != c.want {
			t.Errorf("via %q: %v, want %d", c.via, got, c.want)
		}
	}
}

func TestDecodePeerRecord(t *testing.T) {
	k, id := keyAndID(t)
	ok := sealRecord(t, k, id, 7, "/ip4/127.0.0.1/tcp/1")
	if r, why := decodePeerRecord(ok, id); r == nil || r.Seq != 7 || r.PeerID != id {
		t.Fatalf("valid record refused: %s", why)
	}
	_, other := keyAndID(t)
	if _, why := decodePeerRecord(ok, other); why != RejectRecordSigner {
		t.Fatalf("someone else's record: %q", why)
	}
	// A signed envelope of another domain or payload type is not a peer
	// record.
	env, err := record.Seal(&peer.PeerRecord{PeerID: id, Seq: 1}, k)
	if err != nil {
		t.Fatal(err)
	}
	env.PayloadType = []byte("/junk")
	b, _ := env.Marshal()
	if _, why := decodePeerRecord(b, id); why != RejectRecordSignature && why != RejectRecordMalformed {
		t.Fatalf("wrong payload type: %q", why)
	}
}

// TestDHTClientNeedsTheDHT: libp2p.dht_client is an error at start in a
// build without the DHT, naming the tag.
func TestDHTClientNeedsTheDHT(t *testing.T) {
	o := testOptions(newID(t))
	o.DHTClient = true
	_, err := New(o)
	if dhtBuilt {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if !errors.Is(err, errNoDHT) || !strings.Contains(err.Error(), "-tags dht") {
		t.Fatalf("New with DHTClient in a build without the DHT: %v", err)
	}
}
