package routing_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

// TestHeldNotice: on a radio line whose relays overhear each other, the
// relay next to an offline destination keeps what it cannot pass on
// (custody), tells the sender (StateHeld), and forwards it when the
// destination is back; the sender retries rarely meanwhile, and every
// message is delivered once.
func TestHeldNotice(t *testing.T) {
	n, nodes := overhearLine(t, 6, "c", 4, false)
	n.run(15 * time.Minute)
	a, relay, z := nodes[0], nodes[2], nodes[3]
	z.up = false
	var ids []routing.MsgID
	for i := 0; i < 3; i++ {
		id, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte(fmt.Sprint("m", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		n.collect(a)
		n.run(time.Minute)
	}
	n.run(20 * time.Minute)
	rs := relay.r.Stats()
	for _, id := range ids {
		if st := lastState(a, id); st != routing.StateHeld {
			t.Fatalf("%v: state %v, want held", id, st)
		}
	}
	if rs.Held != 3 || rs.HeldNotices == 0 {
		t.Fatalf("relay holds %d, sent %d notices", rs.Held, rs.HeldNotices)
	}
	n.run(40 * time.Minute)
	retries := a.r.Stats().Retries
	t.Logf("sender retries in an hour: %d for 3 messages; relay notices %d", retries, rs.HeldNotices)
	// Without custody the sender retries each message about eight times
	// in an hour (10 s doubling to 30 minutes).
	if retries > 4*3 {
		t.Fatalf("sender retried %d times while the relay held its messages", retries)
	}
	z.up = true
	n.restart(z)
	n.run(40 * time.Minute)
	if got := payloads(z.delivered); fmt.Sprint(got) != "[m0 m1 m2]" {
		t.Fatalf("delivered %q", got)
	}
	for _, id := range ids {
		if st := lastState(a, id); st != routing.StateDelivered {
			t.Fatalf("%v: state %v, want delivered", id, st)
		}
	}
	if s := relay.r.Stats(); s.Held != 0 {
		t.Fatalf("relay still holds %d", s.Held)
	}
}

// TestHeldNoticeReplay: held notices are not authenticated, so one forged
// or replayed again and again puts each end-to-end retry off only once: the
// sender keeps retrying.
func TestHeldNoticeReplay(t *testing.T) {
	n, nodes := line(t, 2, false, nil)
	n.run(5 * time.Minute)
	a, z := nodes[0], nodes[1]
	z.up = false
	var data []byte
	n.onSend = func(from *tnode, f *routing.SendFrame) bool {
		if from == a && f.Kind == envelope.KindData && data == nil {
			data = bytes.Clone(f.Data)
		}
		return false
	}
	if _, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte("m")); err != nil {
		t.Fatal(err)
	}
	n.collect(a)
	if data == nil {
		t.Fatal("no Data frame sent")
	}
	e, err := envelope.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	notice, err := envelope.NewHeld(&e, 8)
	if err != nil {
		t.Fatal(err)
	}
	before := a.r.Stats().Retries
	for i := 0; i < 120; i++ { // a notice every 30 s for an hour
		a.r.Receive(n.now(), p2pID(a, z), bytes.Clone(notice), transport.Meta{})
		n.collect(a)
		n.run(30 * time.Second)
	}
	retries := a.r.Stats().Retries - before
	t.Logf("sender retries in an hour under replayed notices: %d", retries)
	if retries < 2 {
		t.Fatalf("replayed held notices held off the sender's retries (%d in an hour)", retries)
	}
}
