package fapp

import "time"

// Rate is a token bucket: Burst events at once, then one more every Every.
type Rate struct {
	Burst int
	Every time.Duration
}

func (r Rate) or(d Rate) Rate {
	if r.Burst <= 0 {
		r.Burst = d.Burst
	}
	if r.Every <= 0 {
		r.Every = d.Every
	}
	return r
}

type bucket struct {
	tokens int
	last   time.Time // when tokens was last brought up to date
	order  uint64    // creation order: a deterministic tie-break
}

// limiter keeps one bucket per key, for at most max keys; when full, the
// bucket idle longest is forgotten (a forgotten key starts full again,
// which errs on the side of letting honest traffic through).
type limiter[K comparable] struct {
	rate    Rate
	max     int
	buckets map[K]*bucket
	next    uint64
}

func newLimiter[K comparable](r Rate, max int) *limiter[K] {
	return &limiter[K]{rate: r, max: max, buckets: make(map[K]*bucket)}
}

// refill brings b up to date at now. A clock that went backwards refills
// nothing and restarts the interval.
func (l *limiter[K]) refill(b *bucket, now time.Time) {
	el := now.Sub(b.last)
	if el < 0 {
		b.last = now
		return
	}
	n := int(el / l.rate.Every)
	if n <= 0 {
		return
	}
	if b.tokens+n >= l.rate.Burst {
		b.tokens = l.rate.Burst
		b.last = now
		return
	}
	b.tokens += n
	b.last = b.last.Add(time.Duration(n) * l.rate.Every)
}

// allow reports whether key may act at now, and if so spends a token.
func (l *limiter[K]) allow(key K, now time.Time) bool {
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.forgetIdlest()
		}
		l.next++
		b = &bucket{tokens: l.rate.Burst, last: now, order: l.next}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens <= 0 {
		return false
	}
	b.tokens--
	return true
}

// peek reports whether key could act, without spending.
func (l *limiter[K]) peek(key K, now time.Time) bool {
	b, ok := l.buckets[key]
	if !ok {
		return true
	}
	c := *b
	l.refill(&c, now)
	return c.tokens > 0
}

func (l *limiter[K]) forgetIdlest() {
	var victim K
	var vb *bucket
	for k, b := range l.buckets {
		if vb == nil || b.last.Before(vb.last) || (b.last.Equal(vb.last) && b.order < vb.order) {
			victim, vb = k, b
		}
	}
	if vb != nil {
		delete(l.buckets, victim)
	}
}
