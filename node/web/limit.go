package web

import (
	"net"
	"sync"
	"time"
)

// bucket is a token bucket: burst tokens, one more every interval.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, burst int, every time.Duration) (ok bool, wait time.Duration) {
	b.refill(now, burst, every)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(every))
}

func (b *bucket) refill(now time.Time, burst int, every time.Duration) {
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(burst), b.tokens+float64(d)/float64(every))
	}
	b.last = now
}

// LimitOptions set the login rate limits. Zero fields take the defaults
// named on them.
type LimitOptions struct {
	ClientBurst int           // attempts one client may make at once; 0: 5
	ClientEvery time.Duration // one more attempt per client this often; 0: 30s
	GlobalBurst int           // attempts all clients together may make at once; 0: 20
	GlobalEvery time.Duration // one more attempt overall this often; 0: 5s
	MaxClients  int           // clients tracked; 0: 4096 (beyond, the fullest buckets are forgotten first)
}

func (o *LimitOptions) defaults() {
	if o.ClientBurst <= 0 {
		o.ClientBurst = 5
	}
	if o.ClientEvery <= 0 {
		o.ClientEvery = 30 * time.Second
	}
	if o.GlobalBurst <= 0 {
		o.GlobalBurst = 20
	}
	if o.GlobalEvery <= 0 {
		o.GlobalEvery = 5 * time.Second
	}
	if o.MaxClients <= 0 {
		o.MaxClients = 4096
	}
}

// limiter rate-limits login attempts per client and over all clients.
type limiter struct {
	o       LimitOptions
	mu      sync.Mutex
	global  bucket
	clients map[string]*bucket
}

func newLimiter(o LimitOptions) *limiter {
	o.defaults()
	return &limiter{o: o, clients: map[string]*bucket{}}
}

// allow takes one attempt for client; when refused it says how long to
// wait.
func (l *limiter) allow(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[client]
	if c == nil {
		if len(l.clients) >= l.o.MaxClients {
			l.pruneLocked(now, true)
		}
		c = &bucket{}
		l.clients[client] = c
	}
	// Check the client first, so that one client hammering the login does
	// not use up the global budget for everyone once it is refused.
	c.refill(now, l.o.ClientBurst, l.o.ClientEvery)
	if c.tokens < 1 {
		return false, time.Duration((1 - c.tokens) * float64(l.o.ClientEvery))
	}
	if ok, wait := l.global.take(now, l.o.GlobalBurst, l.o.GlobalEvery); !ok {
		return false, wait
	}
	c.tokens--
	return true, 0
}

// reset forgets a client's attempts (after a successful login).
func (l *limiter) reset(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.clients, client)
}

// prune forgets clients whose buckets are full again.
func (l *limiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now, false)
}

func (l *limiter) pruneLocked(now time.Time, force bool) {
	for k, b := range l.clients {
		b.refill(now, l.o.ClientBurst, l.o.ClientEvery)
		if b.tokens >= float64(l.o.ClientBurst) {
			delete(l.clients, k)
		}
	}
	if force && len(l.clients) >= l.o.MaxClients {
		// Still full of clients that are all limited: forget the one with
		// the most tokens left (arbitrary among equals).
		var best string
		bt := -1.0
		for k, b := range l.clients {
			if b.tokens > bt {
				best, bt = k, b.tokens
			}
		}
		delete(l.clients, best)
	}
}

// clientKey is the rate-limit key of a remote address: the IP, or its /64
// for IPv6 (one host usually holds a whole /64).
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
