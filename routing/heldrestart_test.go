package routing_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/routing"
)

// TestHeldRestart: a relay restarted while it holds envelopes (custody)
// still forwards them when the destination is back.
func TestHeldRestart(t *testing.T) {
	n, nodes := overhearLine(t, 6, "c", 4, true)
	n.run(15 * time.Minute)
	a, relay, z := nodes[0], nodes[2], nodes[3]
	z.up = false
	for i := 0; i < 3; i++ {
		if _, err := a.r.Send(n.now(), routing.ToKey(z.id.PublicKey()), 0, []byte(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
		n.collect(a)
		n.run(time.Minute)
	}
	n.run(20 * time.Minute)
	if s := relay.r.Stats(); s.Held != 3 {
		t.Fatalf("relay holds %d", s.Held)
	}
	n.restart(relay)
	if s := relay.r.Stats(); s.Held != 3 {
		t.Fatalf("relay holds %d after restart", s.Held)
	}
	a.up = false // only the relay's custody can deliver now
	n.run(5 * time.Minute)
	z.up = true
	n.restart(z)
	n.run(40 * time.Minute)
	if got := payloads(z.delivered); fmt.Sprint(got) != "[m0 m1 m2]" {
		t.Fatalf("delivered %q; relay holds %d", got, relay.r.Stats().Held)
	}
}
