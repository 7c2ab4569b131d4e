package dutycycle

import (
	"fmt"
	"time"

	"github.com/openmeshd/meshd/transport"
)

// Options configure a Budget.
type Options struct {
	// Band is the sub-band whose rules the budget enforces (from
	// Region.SubBand). A band with no DutyCycle gives an unlimited budget
	// that still enforces MaxDwell.
	Band SubBand
	// Buckets is the number of slices the rolling window is kept in: memory
	// is O(Buckets), and airtime is forgotten only once the whole slice it
	// ended in is older than the window, so the budget over-counts by at
	// most one slice and never under-counts. Zero means 360 (ten-second
	// slices of an hour); at most 100000.
	Buckets int
	// Margin is the fraction of the legal limit the budget hands out, to
	// leave room for estimate error. Zero means 1 (the whole limit). Must be
	// in (0, 1].
	Margin float64
	// RelayShare is the fraction of the limit that relayed traffic
	// (transport.PriorityRelay) may fill: above it, only the node's own
	// traffic is sent. Zero means 0.9.
	RelayShare float64
	// BackgroundShare is the fraction of the limit that announces and other
	// background traffic may fill. Zero means 0.6, so announces can never
	// eat the headroom that own and relayed messages need.
	BackgroundShare float64
}

// Stats is a snapshot of a Budget's counters.
type Stats struct {
	// Limit is the airtime the budget hands out per window (Margin applied).
	Limit time.Duration
	// Window is the rolling observation period.
	Window time.Duration
	// Used is the airtime counted in the window as of the last call.
	Used time.Duration
	// Total is all airtime ever recorded.
	Total time.Duration
	// Granted, Deferred count Take calls per priority that fit now / had to
	// wait.
	Granted, Deferred [3]uint64
	// Refused counts requests that can never fit (ErrDwell, ErrTooLong).
	Refused uint64
	// ClockBackwards counts readings earlier than the previous one.
	ClockBackwards uint64
}

// Budget keeps one transmitter within one sub-band's duty cycle over a
// rolling window, with shares per priority. It is not safe for concurrent
// use; its owner serialises calls. Times passed in should not go backwards;
// when they do (a wall clock set back), the budget keeps the ages of what it
// counted, so it neither forgets airtime nor stalls.
type Budget struct {
	band   SubBand
	window time.Duration
	width  time.Duration // slice width; n*width >= window
	n      int64         // slices per window
	limit  time.Duration // 0 when unlimited
	caps   [3]time.Duration

	ticks []int64 // tick of each ring slot
	used  []time.Duration
	sum   time.Duration

	origin  time.Time
	last    time.Time
	started bool
	stats   Stats
}

// New returns a Budget for o.
func New(o Options) (*Budget, error) {
	if o.Buckets == 0 {
		o.Buckets = 360
	}
	if o.Margin == 0 {
		o.Margin = 1
	}
	if o.RelayShare == 0 {
		o.RelayShare = 0.9
	}
	if o.BackgroundShare == 0 {
		o.BackgroundShare = 0.6
	}
	switch {
	case o.Buckets < 1 || o.Buckets > 100000:
		return nil, fmt.Errorf("%w: Buckets %d not in 1..100000", ErrInvalid, o.Buckets)
	case !(o.Margin > 0 && o.Margin <= 1):
		return nil, fmt.Errorf("%w: Margin %v not in (0,1]", ErrInvalid, o.Margin)
	case !(o.RelayShare > 0 && o.RelayShare <= 1):
		return nil, fmt.Errorf("%w: RelayShare %v not in (0,1]", ErrInvalid, o.RelayShare)
	case !(o.BackgroundShare > 0 && o.BackgroundShare <= 1):
		return nil, fmt.Errorf("%w: BackgroundShare %v not in (0,1]", ErrInvalid, o.BackgroundShare)
	case !(o.Band.DutyCycle >= 0 && o.Band.DutyCycle <= 1):
		return nil, fmt.Errorf("%w: duty cycle %v not in [0,1]", ErrInvalid, o.Band.DutyCycle)
	case o.Band.MaxDwell < 0:
		return nil, fmt.Errorf("%w: negative dwell time", ErrInvalid)
	}
	b := &Budget{band: o.Band, window: o.Band.window()}
	b.stats.Window = b.window
	if o.Band.DutyCycle == 0 {
		return b, nil
	}
	b.n = int64(o.Buckets)
	b.width = (b.window + time.Duration(b.n) - 1) / time.Duration(b.n)
	b.limit = time.Duration(float64(b.window) * o.Band.DutyCycle * o.Margin)
	if b.limit <= 0 {
		return nil, fmt.Errorf("%w: limit rounds to zero", ErrInvalid)
	}
	b.caps = [3]time.Duration{
		transport.PriorityOwn:        b.limit,
		transport.PriorityRelay:      time.Duration(float64(b.limit) * o.RelayShare),
		transport.PriorityBackground: time.Duration(float64(b.limit) * o.BackgroundShare),
	}
	// Live slices span the window behind now plus the slices a transmission
	// that started now may end in (at most limit long).
	size := b.n + 2 + int64((b.limit+b.width-1)/b.width)
	b.ticks = make([]int64, size)
	b.used = make([]time.Duration, size)
	b.stats.Limit = b.limit
	return b, nil
}

// Band returns the sub-band the budget enforces.
func (b *Budget) Band() SubBand { return b.band }

// Limit returns the airtime handed out per window, or 0 when unlimited.
func (b *Budget) Limit() time.Duration { return b.limit }

// Cap returns the airtime priority p may fill per window, or 0 when
// unlimited.
func (b *Budget) Cap(p transport.Priority) time.Duration {
	if b.limit == 0 {
		return 0
	}
	return b.caps[clampPrio(p)]
}

// Window returns the rolling observation period.
func (b *Budget) Window() time.Duration { return b.window }

func clampPrio(p transport.Priority) transport.Priority {
	if p > transport.PriorityBackground {
		return transport.PriorityBackground
	}
	return p
}

// advance moves the budget's notion of now, rebasing on a backwards jump,
// and forgets expired slices.
func (b *Budget) advance(now time.Time) {
	if !b.started {
		b.started = true
		b.origin, b.last = now, now
		return
	}
	if now.Before(b.last) {
		// Keep every counted slice's age: shift the origin with the clock.
		b.origin = b.origin.Add(now.Sub(b.last))
		b.stats.ClockBackwards++
	}
	b.last = now
	if b.limit == 0 {
		return
	}
	cur := b.tick(now)
	for i := range b.used {
		if b.used[i] != 0 && cur >= b.ticks[i]+1+b.n {
			b.sum -= b.used[i]
			b.used[i] = 0
		}
	}
}

func (b *Budget) tick(t time.Time) int64 {
	d := t.Sub(b.origin)
	k := int64(d / b.width)
	if d < 0 && d%b.width != 0 {
		k--
	}
	return k
}

// expiry is when a slice's airtime stops counting.
func (b *Budget) expiry(k int64) time.Time {
	return b.origin.Add(time.Duration(k+1+b.n) * b.width)
}

// Used returns the airtime counted in the window at now.
func (b *Budget) Used(now time.Time) time.Duration {
	b.advance(now)
	b.stats.Used = b.sum
	return b.sum
}

// Available returns how much airtime priority p may still use at now; -1
// when unlimited.
func (b *Budget) Available(now time.Time, p transport.Priority) time.Duration {
	if b.limit == 0 {
		return -1
	}
	b.advance(now)
	if c := b.caps[clampPrio(p)]; b.sum < c {
		return c - b.sum
	}
	return 0
}

// Check reports the earliest time, at or after now, at which a transmission
// of the given airtime at priority p fits the budget (now itself when it
// fits at once). The error is ErrDwell or ErrTooLong when it can never fit.
// Check records nothing.
func (b *Budget) Check(now time.Time, airtime time.Duration, p transport.Priority) (time.Time, error) {
	b.advance(now)
	if err := b.never(airtime, p); err != nil {
		return time.Time{}, err
	}
	if b.limit == 0 {
		return now, nil
	}
	c := b.caps[clampPrio(p)]
	excess := b.sum + airtime - c
	if excess <= 0 {
		return now, nil
	}
	// Walk the live slices oldest first until enough has expired.
	cur := b.tick(now)
	for k := cur - b.n; ; k++ {
		i := b.slot(k)
		if b.used[i] != 0 && b.ticks[i] == k {
			excess -= b.used[i]
			if excess <= 0 {
				return b.expiry(k), nil
			}
		}
		if k > cur+int64(len(b.used)) { // cannot happen: sum is in slots
			return b.expiry(k), nil
		}
	}
}

func (b *Budget) never(airtime time.Duration, p transport.Priority) error {
	if airtime < 0 {
		return fmt.Errorf("%w: negative airtime", ErrInvalid)
	}
	if b.band.MaxDwell > 0 && airtime > b.band.MaxDwell {
		return fmt.Errorf("%w: %v > %v in %s", ErrDwell, airtime, b.band.MaxDwell, b.band.Name)
	}
	if b.limit > 0 && airtime > b.caps[clampPrio(p)] {
		return fmt.Errorf("%w: %v > %v for %v traffic in %s", ErrTooLong, airtime, b.caps[clampPrio(p)], clampPrio(p), b.band.Name)
	}
	return nil
}

func (b *Budget) slot(k int64) int {
	m := k % int64(len(b.used))
	if m < 0 {
		m += int64(len(b.used))
	}
	return int(m)
}

// Take records a transmission of the given airtime starting at now if it
// fits the budget for priority p, and reports whether it did; when it does
// not, at is the earliest time it would (see Check).
func (b *Budget) Take(now time.Time, airtime time.Duration, p transport.Priority) (ok bool, at time.Time, err error) {
	at, err = b.Check(now, airtime, p)
	if err != nil {
		b.stats.Refused++
		return false, at, err
	}
	if at.After(now) {
		b.stats.Deferred[clampPrio(p)]++
		return false, at, nil
	}
	b.stats.Granted[clampPrio(p)]++
	b.Record(now, airtime)
	return true, now, nil
}

// Record counts a transmission of the given airtime that started at now,
// whether or not it fitted (the radio sent it anyway). Negative airtime is
// ignored.
func (b *Budget) Record(now time.Time, airtime time.Duration) {
	b.advance(now)
	if airtime <= 0 {
		return
	}
	b.stats.Total += airtime
	if b.limit == 0 {
		return
	}
	k := b.tick(now.Add(airtime))
	if max := b.tick(now) + int64(len(b.used)) - b.n - 2; k > max {
		k = max // longer than the ring covers: count it in the last slice
	}
	i := b.slot(k)
	if b.used[i] != 0 && b.ticks[i] != k {
		// Cannot happen with live accounting; keep the sum honest anyway
		// by merging into the newer tick (forgets later, never sooner).
		if b.ticks[i] > k {
			k = b.ticks[i]
		}
	}
	b.ticks[i] = k
	b.used[i] += airtime
	b.sum += airtime
	b.stats.Used = b.sum
}

// Stats returns a snapshot of the counters.
func (b *Budget) Stats() Stats {
	s := b.stats
	s.Used = b.sum
	return s
}
