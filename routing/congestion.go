package routing

import "time"

// Retry budget. On a radio mesh every retransmission of a whole message —
// an own message's end-to-end retry, a held envelope forwarded again — adds
// to the load of a channel that is the bottleneck, and when the channel
// saturates more messages go unacknowledged, which makes more retries: in
// lora-500 the backlog of unacknowledged messages grew for the whole run
// and the retries of it smothered the channel (docs/routing.md). So a node
// with a radio link retries at most one message every retryEvery (burst
// retryBurst), stretched linearly with the mesh size beyond 50 nodes, as
// path requests are, and four times that beyond bigRadioMesh known nodes
// (one retry per 20 minutes in lora-500, a node there sends a new message
// every 10; one per 5 minutes gave 40.6 % delivery there, one per 10
// minutes 45 %, and with one-relay announce suppression 49.4 % at 3.06x
// the ideal airtime, this 49.6 % at 2.33x; one a minute at 30 nodes
// already delayed offline-return's messages past the end of the run). New
// messages and hop retries are not limited; what waits goes out later, in
// order of its timers.

const (
	retryEvery = 30 * time.Second
	retryBurst = 4
)

// retryInterval is the least average time between two retries.
func (r *Router) retryInterval() time.Duration {
	every := retryEvery
	if f := float64(len(r.peers)) / 50; f > 1 {
		every = time.Duration(float64(every) * f)
	}
	if len(r.peers) > bigRadioMesh {
		every *= 4
	}
	return every
}

// spendRetry takes a retry token if one is there; otherwise it reports how
// long until the next.
func (r *Router) spendRetry(now time.Time) (bool, time.Duration) {
	every := r.retryInterval()
	if el := now.Sub(r.retryAt); el > 0 {
		r.retryTokens = min(retryBurst, r.retryTokens+float64(el)/float64(every))
		r.retryAt = now
	}
	if r.retryTokens >= 1 {
		r.retryTokens--
		return true, 0
	}
	r.stats.RetriesDeferred++
	wait := time.Duration((1 - r.retryTokens) * float64(every))
	// Spread the waiting messages over the following intervals.
	return false, wait + time.Duration(r.rnd.Int64N(int64(every)+1))
}
