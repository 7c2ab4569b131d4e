package routing_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

func TestLineDelivery(t *testing.T) {
	for _, radio := range []bool{false, true} {
		t.Run(fmt.Sprintf("radio=%v", radio), func(t *testing.T) {
			n, nodes := line(t, 5, radio, nil)
			n.run(10 * time.Minute) // announces spread
			a, z := nodes[0], nodes[4]
			id, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 7, []byte("hello"))
			if err != nil {
				t.Fatal(err)
			}
			n.collect(a)
			n.run(2 * time.Minute)
			if len(z.delivered) != 1 || string(z.delivered[0].Payload) != "hello" || z.delivered[0].Port != 7 ||
				z.delivered[0].From != a.id.PublicKey() {
				t.Fatalf("delivered %+v", z.delivered)
			}
			if st := lastState(a, id); st != routing.StateDelivered {
				t.Fatalf("status %v, want delivered", st)
			}
			s := a.r.Stats()
			if s.Outbox != 0 || s.Acked != 1 {
				t.Fatalf("stats %+v", s)
			}
			// A second message: the key is known now, no FlagKey.
			if _, err := a.r.Send(n.now(), routing.ToAddress(z.id.Address()), 0, []byte("again")); err != nil {
				t.Fatal(err)
			}
			n.collect(a)
			n.run(2 * time.Minute)
			if got := payloads(z.delivered); fmt.Sprint(got) != "[again hello]" {
				t.Fatalf("delivered %q", got)
			}
		})
	}
}

func TestPathRequestFindsUnknownDestination(t *testing.T) {
	// Announces effectively off: the route must come from a path request.
	n, nodes := line(t, 4, true, func(o *routing.Options) {
		o.AnnounceInterval = 100 * time.Hour
		o.AnnounceDelay = 90 * time.Hour
	})
	a, z := nodes[0], nodes[3]
	if _, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte("find me")); err != nil {
		t.Fatal(err)
	}
	n.collect(a)
	n.run(5 * time.Minute)
	if len(z.delivered) != 1 {
		t.Fatalf("delivered %d", len(z.delivered))
	}
	if s := a.r.Stats(); s.PathRequests == 0 {
		t.Fatalf("no path request: %+v", s)
	}
}

func TestStoreAndForwardOffline(t *testing.T) {
	for _, bolt := range []bool{false, true} {
		t.Run(fmt.Sprintf("bolt=%v", bolt), func(t *testing.T) {
			n, nodes := lineStore(t, 3, true, bolt, func(o *routing.Options) { o.RetryMax = 5 * time.Minute })
			n.run(10 * time.Minute)
			a, z := nodes[0], nodes[2]
			z.up = false
			for i := 0; i < 5; i++ {
				if _, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte(fmt.Sprint("m", i))); err != nil {
					t.Fatal(err)
				}
				n.collect(a)
				n.run(time.Minute)
			}
			n.run(time.Hour)
			if len(z.delivered) != 0 {
				t.Fatal("delivered to an offline node")
			}
			z.up = true
			n.restart(z)
			n.run(30 * time.Minute)
			if got := payloads(z.delivered); fmt.Sprint(got) != "[m0 m1 m2 m3 m4]" {
				t.Fatalf("delivered %q", got)
			}
			if s := a.r.Stats(); s.Outbox != 0 || s.Acked != 5 {
				t.Fatalf("sender stats %+v", s)
			}
		})
	}
}

func TestExactlyOnceAcrossRestart(t *testing.T) {
	for _, bolt := range []bool{false, true} {
		t.Run(fmt.Sprintf("bolt=%v", bolt), func(t *testing.T) {
			n, nodes := lineStore(t, 2, false, bolt, nil)
			n.run(time.Minute)
			a, z := nodes[0], nodes[1]
			// The first ack is lost: the sender retries the same bytes, the
			// receiver (restarted in between) must re-ack, not re-deliver.
			drop := true
			n.onSend = func(from *tnode, f *routing.SendFrame) bool {
				if from == z && f.Kind == envelope.KindAck && drop {
					drop = false
					return true
				}
				return false
			}
			if _, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte("once")); err != nil {
				t.Fatal(err)
			}
			n.collect(a)
			n.run(time.Second)
			if len(z.delivered) != 1 {
				t.Fatalf("delivered %d", len(z.delivered))
			}
			n.restart(z)
			n.run(10 * time.Minute)
			if len(z.delivered) != 1 {
				t.Fatalf("delivered %d times, want once", len(z.delivered))
			}
			if s := z.r.Stats(); s.Duplicates == 0 {
				t.Fatalf("no duplicate seen: %+v", s)
			}
			if s := a.r.Stats(); s.Acked != 1 || s.Outbox != 0 {
				t.Fatalf("sender %+v", s)
			}
		})
	}
}

func TestSenderRestartKeepsOutboxAndCounters(t *testing.T) {
	for _, bolt := range []bool{false, true} {
		t.Run(fmt.Sprintf("bolt=%v", bolt), func(t *testing.T) {
			n, nodes := lineStore(t, 2, false, bolt, nil)
			n.run(time.Minute)
			a, z := nodes[0], nodes[1]
			z.up = false
			for i := 0; i < 3; i++ {
				if _, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte(fmt.Sprint("x", i))); err != nil {
					t.Fatal(err)
				}
				n.collect(a)
			}
			n.run(time.Minute)
			n.restart(a) // kill -9 and back
			// New messages after the restart must not reuse counters.
			if _, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte("x3")); err != nil {
				t.Fatal(err)
			}
			n.collect(a)
			z.up = true
			n.restart(z)
			n.run(2 * time.Hour)
			if got := payloads(z.delivered); fmt.Sprint(got) != "[x0 x1 x2 x3]" {
				t.Fatalf("delivered %q", got)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	n, nodes := line(t, 2, false, func(o *routing.Options) { o.MessageTTL = 10 * time.Minute })
	n.run(time.Minute)
	a, z := nodes[0], nodes[1]
	z.up = false
	id, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte("late"))
	if err != nil {
		t.Fatal(err)
	}
	n.collect(a)
	n.run(20 * time.Minute)
	if st := lastState(a, id); st != routing.StateExpired {
		t.Fatalf("state %v", st)
	}
}

func TestAnonymousAndReply(t *testing.T) {
	n, nodes := line(t, 4, true, nil)
	n.run(10 * time.Minute)
	a, z := nodes[0], nodes[3]
	tok, rk, err := a.r.SendAnonymous(n.now(), z.id.PublicKey(), 9, []byte("who has slots?"))
	if err != nil {
		t.Fatal(err)
	}
	n.collect(a)
	n.run(time.Minute)
	if len(z.delivered) != 1 || !z.delivered[0].Anonymous || z.delivered[0].From != (envelope.PublicKey{}) {
		t.Fatalf("delivered %+v", z.delivered)
	}
	if err := z.r.Reply(n.now(), z.delivered[0].ReplyTo, 9, []byte("tuesday")); err != nil {
		t.Fatal(err)
	}
	n.collect(z)
	n.run(time.Minute)
	if len(a.replies) != 1 || a.replies[0].Token != tok {
		t.Fatalf("replies %+v", a.replies)
	}
	e, err := envelope.Parse(a.replies[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	pl, port, err := rk.OpenReply(&e)
	if err != nil || string(pl) != "tuesday" || port != 9 {
		t.Fatalf("reply %q %d %v", pl, port, err)
	}
}

func TestFloodsReachEveryoneOnce(t *testing.T) {
	n, nodes := line(t, 5, true, nil)
	n.run(time.Minute)
	id, _ := envelope.GenerateIdentity(newSeeded(99))
	raw, err := envelope.SignFlood(id, envelope.FloodOptions{Topic: 1, Seq: 1, Body: []byte("slot"), TTL: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].r.Originate(n.now(), raw); err != nil {
		t.Fatal(err)
	}
	n.collect(nodes[0])
	n.run(5 * time.Minute)
	for _, nd := range nodes[1:] {
		if len(nd.floods) != 1 {
			t.Fatalf("%s saw %d floods", nd.name, len(nd.floods))
		}
	}
}

func TestMixedLinksPreferCheapPath(t *testing.T) {
	// a - b - c over radio, and a == c directly over TCP: a must use TCP.
	n := newNet(t, 3)
	a, b, c := n.add("a", nil), n.add("b", nil), n.add("c", nil)
	n.connect(a, b, true)
	n.connect(b, c, true)
	n.connect(a, c, false)
	n.start()
	n.run(10 * time.Minute)
	var radioData int
	n.onSend = func(from *tnode, f *routing.SendFrame) bool {
		if f.Kind == envelope.KindData && f.Link == "radio" {
			radioData++
		}
		return false
	}
	if _, err := a.r.Send(n.now(), routing.ToKey(c.id.PublicKey()), 0, []byte("via tcp")); err != nil {
		t.Fatal(err)
	}
	n.collect(a)
	n.run(time.Minute)
	if len(c.delivered) != 1 || radioData != 0 {
		t.Fatalf("delivered %d, radio data frames %d", len(c.delivered), radioData)
	}
}

func TestSendErrors(t *testing.T) {
	n, nodes := line(t, 1, false, func(o *routing.Options) { o.MaxOutbox = 4 })
	a := nodes[0]
	if _, err := a.r.Send(n.now(), routing.ToKey(a.id.PublicKey()), 0, nil); err != routing.ErrSelf {
		t.Fatalf("self: %v", err)
	}
	other, _ := envelope.GenerateIdentity(newSeeded(5))
	if _, err := a.r.Send(n.now(), routing.ToKey(other.PublicKey()), 0, make([]byte, 70000)); err == nil {
		t.Fatal("huge payload accepted")
	}
	if _, err := a.r.Send(n.now(), routing.ToKey(other.PublicKey()), 0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.r.Send(n.now(), routing.ToKey(other.PublicKey()), 0, nil); err != routing.ErrOutboxFull {
		t.Fatalf("per-destination quota: %v", err)
	}
	_ = transport.Broadcast
}

func TestHopAcks(t *testing.T) {
	n, nodes := overhearLine(t, 4, "h", 5, false)
	n.run(10 * time.Minute)
	a, z := nodes[0], nodes[4]
	for i := 0; i < 10; i++ {
		if _, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
		n.collect(a)
		n.run(time.Minute)
	}
	var hopRetries uint64
	for _, nd := range nodes {
		hopRetries += nd.r.Stats().HopRetries
	}
	if len(z.delivered) != 10 || hopRetries != 0 {
		t.Fatalf("delivered %d, hop retries %d on a lossless line", len(z.delivered), hopRetries)
	}
	// 30% loss between h2 and h3: hop retries, not end-to-end ones, fix it.
	n.edgeFor(nodes[2], nodes[3], true).loss = 0.3
	for i := 0; i < 20; i++ {
		if _, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte(fmt.Sprint("l", i))); err != nil {
			t.Fatal(err)
		}
		n.collect(a)
		n.run(time.Minute)
	}
	n.run(10 * time.Minute)
	if len(z.delivered) != 30 {
		t.Fatalf("delivered %d", len(z.delivered))
	}
	s := a.r.Stats()
	t.Logf("e2e retries %d, hop retries at h2 %d", s.Retries, nodes[2].r.Stats().HopRetries)
	if nodes[2].r.Stats().HopRetries == 0 {
		t.Fatal("no hop retries over a lossy hop")
	}
}

// TestCrashBeforeCommit: with group commits, a message is only promised
// (StateQueued) once durable, a delivery only acknowledged once the replay
// window and the inbox are durable; a crash before the commit loses nothing
// that was promised.
func TestCrashBeforeCommit(t *testing.T) {
	for _, bolt := range []bool{false, true} {
		t.Run(fmt.Sprintf("bolt=%v", bolt), func(t *testing.T) {
			n, nodes := lineStore(t, 2, false, bolt, func(o *routing.Options) { o.CommitDelay = 2 * time.Second })
			n.run(time.Minute)
			a, z := nodes[0], nodes[1]
			id, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte("lost before commit"))
			if err != nil {
				t.Fatal(err)
			}
			n.collect(a)
			if st := lastState(a, id); st != 255 {
				t.Fatalf("state %v before the commit", st)
			}
			n.restart(a) // kill -9 before the group commit
			if a.r.Stats().Outbox != 0 {
				t.Fatal("an uncommitted message survived")
			}
			id, err = a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte("kept"))
			if err != nil {
				t.Fatal(err)
			}
			n.collect(a)
			n.run(3 * time.Second) // committed, sent; z received but not yet committed
			if lastState(a, id) < routing.StateQueued || lastState(a, id) == 255 {
				t.Fatalf("not queued after the commit delay: %v", lastState(a, id))
			}
			if len(z.delivered) != 0 {
				t.Fatal("delivered before the delivery was durable")
			}
			n.restart(z) // z crashes before committing the delivery
			n.restart(a) // and so does a, after committing the message
			n.run(10 * time.Minute)
			if got := payloads(z.delivered); fmt.Sprint(got) != "[kept]" {
				t.Fatalf("delivered %q", got)
			}
			if a.r.Stats().Outbox != 0 {
				t.Fatal("not acknowledged")
			}
		})
	}
}
