package broadcast

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// A member back online whose commit the router delivers late (its retry
// backoff reaches 30 minutes, long after the catch-up window): messages of
// that epoch it held unread meanwhile make it ask for the rest of the
// epoch's history once the commit arrives.
func TestLateCommitCatchesUp(t *testing.T) {
	m := newMesh(t, Options{})
	a, b, mo := m.add("alice"), m.add("bob"), m.add("mo")
	id := m.channel(a, "garden", 0, b, mo)
	m.send(a, id, "before")
	m.settle()
	mo.online = false
	var held []ctlMsg
	m.dropCtl = func(x ctlMsg) bool {
		if x.to == mo {
			held = append(held, x)
			return true
		}
		return false
	}
	m.must(a, a.c.Rotate(m.now(), id))
	m.settle()
	var want []string
	for i := 0; i < 5; i++ {
		text := fmt.Sprintf("while away %d", i)
		m.send(a, id, text)
		want = append(want, text)
		m.settle()
	}
	// Back online; catching up finds nothing of the epoch it does not know.
	mo.online = true
	mo.c.CatchUpAll(m.now())
	m.drain(mo)
	m.settle()
	m.advance(15 * time.Minute)
	// bob posts (his first message of the epoch: no gap to notice); mo
	// holds it unread.
	m.send(b, id, "live from bob")
	want = append(want, "live from bob")
	m.settle()
	m.advance(2 * time.Minute)
	if len(held) == 0 {
		t.Fatal("no commit was held for mo")
	}
	m.dropCtl = nil
	for _, c := range held {
		mo.record(mo.c.HandleControl(m.now(), c.from.key(), c.payload))
		m.drain(mo)
	}
	m.settle()
	m.advance(2 * time.Minute)
	got := mo.texts(id)[1:]
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("mo has %q, want %q (stats %+v)", got, want, mo.c.Stats())
	}
}
