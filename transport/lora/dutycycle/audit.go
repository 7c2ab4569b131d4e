package dutycycle

import "time"

// Audit checks a log of transmissions against a sub-band's duty cycle
// exactly, over every rolling window, independently of Budget. Tests and
// meshsim use it to count violations. Memory is proportional to the number
// of transmissions within one window. Transmissions must be added in order
// of start time. Not safe for concurrent use.
type Audit struct {
	window time.Duration
	limit  time.Duration // 0: unlimited
	dwell  time.Duration
	spans  []span // transmissions that may still share a window with new ones
	stats  AuditStats
}

type span struct {
	start, end time.Time
	done       bool // the window starting at start was checked
}

// AuditStats is what an Audit found.
type AuditStats struct {
	// Transmissions counted.
	Transmissions uint64
	// Violations counts windows found over the limit (each offending
	// window edge once) and transmissions over the dwell time.
	Violations uint64
	// Peak is the most airtime seen in any window checked.
	Peak time.Duration
	// Limit is the legal airtime per window (0 when unlimited).
	Limit time.Duration
}

// NewAudit returns an Audit for the band's legal limit (no margin).
func NewAudit(band SubBand) *Audit {
	a := &Audit{window: band.window(), dwell: band.MaxDwell}
	a.limit = time.Duration(float64(a.window) * band.DutyCycle)
	a.stats.Limit = a.limit
	return a
}

// Add logs a transmission and reports whether it caused a violation.
func (a *Audit) Add(start time.Time, airtime time.Duration) bool {
	a.stats.Transmissions++
	bad := a.dwell > 0 && airtime > a.dwell
	end := start.Add(airtime)
	// Windows starting at an old transmission's start are complete once no
	// later transmission can start inside them.
	for i := range a.spans {
		if s := &a.spans[i]; !s.done && !s.start.Add(a.window).After(start) {
			s.done = true
			bad = a.check(s.start, s.start.Add(a.window)) || bad
		}
	}
	keep := a.spans[:0]
	for _, s := range a.spans {
		if s.done && !s.end.Add(a.window).After(start) {
			continue
		}
		keep = append(keep, s)
	}
	a.spans = append(keep, span{start: start, end: end})
	bad = a.check(end.Add(-a.window), end) || bad
	if bad {
		a.stats.Violations++
	}
	return bad
}

// Flush checks the windows still open (call at the end of a run).
func (a *Audit) Flush() AuditStats {
	for _, s := range a.spans {
		if !s.done && a.check(s.start, s.start.Add(a.window)) {
			a.stats.Violations++
		}
	}
	a.spans = a.spans[:0]
	return a.stats
}

func (a *Audit) check(from, to time.Time) bool {
	var sum time.Duration
	for _, s := range a.spans {
		lo, hi := s.start, s.end
		if lo.Before(from) {
			lo = from
		}
		if hi.After(to) {
			hi = to
		}
		if hi.After(lo) {
			sum += hi.Sub(lo)
		}
	}
	if sum > a.stats.Peak {
		a.stats.Peak = sum
	}
	return a.limit > 0 && sum > a.limit
}

// Stats returns what the audit found so far.
func (a *Audit) Stats() AuditStats { return a.stats }
