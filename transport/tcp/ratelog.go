package tcp

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLog logs a repeated condition once per interval per key, with the
// number of occurrences it swallowed in between, so a flood of bad
// connections makes one line, not thousands.
type rateLog struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]*rateEntry
}

type rateEntry struct {
	last       time.Time
	suppressed int
}

// maxRateKeys bounds the map; past it, old entries are forgotten.
const maxRateKeys = 1024

func newRateLog(log *slog.Logger, interval time.Duration) *rateLog {
	return &rateLog{log: log, interval: interval, now: time.Now, seen: make(map[string]*rateEntry)}
}

// Log emits msg at level unless key was logged less than interval ago.
func (r *rateLog) Log(key string, level slog.Level, msg string, attrs ...slog.Attr) {
	if !r.log.Enabled(context.Background(), level) {
		return
	}
	now := r.now()
	r.mu.Lock()
	e := r.seen[key]
	if e != nil && now.Sub(e.last) < r.interval {
		e.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := 0
	if e == nil {
		if len(r.seen) >= maxRateKeys {
			for k, v := range r.seen {
				if now.Sub(v.last) >= r.interval {
					delete(r.seen, k)
				}
			}
			if len(r.seen) >= maxRateKeys {
				clear(r.seen)
			}
		}
		e = &rateEntry{}
		r.seen[key] = e
	} else {
		suppressed = e.suppressed
	}
	e.last, e.suppressed = now, 0
	r.mu.Unlock()
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed_since_last", suppressed))
	}
	r.log.LogAttrs(context.Background(), level, msg, attrs...)
}
