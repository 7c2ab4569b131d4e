package tcp

import (
	"math/rand/v2"
	"time"
)

// backoffDelay is the wait before redial attempt n (n ≥ 1) of a static
// peer: exponential from min, capped at max, with "equal jitter" (a
// uniformly random point in the upper half) so that many nodes that lost
// the same peer at once do not redial in lockstep.
func backoffDelay(n int, min, max time.Duration, r *rand.Rand) time.Duration {
	if n < 1 {
		n = 1
	}
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + time.Duration(r.Int64N(int64(half)+1))
}
