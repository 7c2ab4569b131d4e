// Package clock is the only source of time for meshd's sans-IO protocol cores.
//
// A core never calls time.Now: it is handed a Clock. The daemon hands it
// System; tests and meshsim hand it a Manual clock they move themselves, which
// is what makes every run reproducible from its seed. Cores do not sleep or set
// timers through the Clock either: they return "wake me at T" as an output and
// the driver (real goroutine or simulator event queue) calls back.
package clock

import (
	"sync"
	"time"
)

// Clock tells the current time.
type Clock interface {
	Now() time.Time
}

// System is the wall clock (with Go's monotonic reading, so durations between
// two Now calls are immune to the wall clock being set).
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// Manual is a clock that only moves when told to. It is safe for concurrent
// use. The zero value starts at the zero time.Time; NewManual picks a start.
type Manual struct {
	mu  sync.Mutex
	now time.Time
}

// EpochUnix is the default start of a Manual clock (2026-01-01T00:00:00Z): a
// fixed, recognisable instant so that logs and golden files from tests do not
// depend on the day they ran.
const EpochUnix = 1767225600

// Epoch returns EpochUnix as a time.Time in UTC.
func Epoch() time.Time { return time.Unix(EpochUnix, 0).UTC() }

// NewManual returns a Manual clock reading start. A zero start means Epoch.
func NewManual(start time.Time) *Manual {
	if start.IsZero() {
		start = Epoch()
	}
	return &Manual{now: start}
}

// Now returns the clock's current reading.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Advance moves the clock forward by d and returns the new reading. A
// negative d moves it backwards, which is how tests model a wall clock being
// set back; cores must cope with that.
func (m *Manual) Advance(d time.Duration) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = m.now.Add(d)
	return m.now
}

// Set moves the clock to t.
func (m *Manual) Set(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = t
}
