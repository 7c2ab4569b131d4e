package routing_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/routing"
)

// TestHeldNotice: on a radio line whose relays overhear each other, the
// relay next to an offline destination keeps what it cannot pass on
// (custody), tells the sender (StateHeld), and forwards it when the
// destination is back; the sender retries rarely meanwhile, and every
// message is delivered once.
func TestHeldNotice(t *testing.T) {
	n := newNet(t, 6)
	n.radio.Overhears = true
	var nodes []*tnode
	for i := 0; i < 4; i++ {
		nodes = append(nodes, n.add(fmt.Sprint("c", i), nil))
		if i > 0 {
			n.connect(nodes[i-1], nodes[i], true)
		}
	}
	n.start()
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
