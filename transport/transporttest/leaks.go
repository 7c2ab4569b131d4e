package transporttest

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// leakGrace is how long goroutines that are ending get to end.
const leakGrace = 5 * time.Second

// checkLeaks snapshots the live goroutines and registers a cleanup that
// fails the test if goroutines started since are still alive once the
// grace period is over. Registered first, it runs after every other
// cleanup of the test (they run last-in first-out).
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		if leaked := leakedSince(before, leakGrace); len(leaked) > 0 {
			t.Errorf("%d goroutine(s) leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
	})
}

// leakedSince returns the stacks of goroutines that are not in before and
// are still alive after waiting up to grace for them to end.
func leakedSince(before map[uint64]string, grace time.Duration) []string {
	deadline := time.Now().Add(grace)
	for {
		var leaked []string
		for id, stack := range goroutines() {
			if _, ok := before[id]; ok || ignorable(stack) {
				continue
			}
			leaked = append(leaked, stack)
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goroutines returns every goroutine's stack by goroutine ID.
func goroutines() map[uint64]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[uint64]string)
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		rest, ok := strings.CutPrefix(s, "goroutine ")
		if !ok {
			continue
		}
		idStr, _, _ := strings.Cut(rest, " ")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil {
			continue
		}
		out[id] = s
	}
	return out
}

// ignorable names goroutines that belong to the runtime or the testing
// package, not to the code under test.
func ignorable(stack string) bool {
	for _, s := range []string{
		"testing.(*T).Run",
		"testing.tRunner",
		"testing.runFuzzing",
		"runtime.goexit0",
		"os/signal.signal_recv",
		"runtime/trace.Start",
		"goroutines()", // this function's own caller
		"transporttest.checkLeaks",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
