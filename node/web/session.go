package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"sync"
	"time"
)

// session is one logged-in browser. The cookie holds a random token; the
// server keeps only its SHA-256.
type session struct {
	key     [32]byte
	csrf    string
	created time.Time
	seen    time.Time
	gen     uint64 // password generation it was opened under
	ctx     context.Context
	cancel  context.CancelFunc
}

// sessions is the in-memory session store (a restart logs everyone out).
type sessions struct {
	mu  sync.Mutex
	m   map[[32]byte]*session
	max int
}

func newSessions(max int) *sessions { return &sessions{m: map[[32]byte]*session{}, max: max} }

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create opens a session and returns its cookie token. When the store is
// full the least recently used session ends.
func (s *sessions) create(now time.Time, gen uint64) (string, *session) {
	token := randomToken()
	var csrf [16]byte
	_, _ = rand.Read(csrf[:])
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{key: sha256.Sum256([]byte(token)), csrf: hex.EncodeToString(csrf[:]), created: now, seen: now, gen: gen, ctx: ctx, cancel: cancel}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.max {
		var oldest *session
		for _, o := range s.m {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		s.dropLocked(oldest)
	}
	s.m[ss.key] = ss
	return token, ss
}

// get finds the session of a cookie token and marks it used, if it is
// still valid: opened under the current password, not idle for longer than
// idle, not older than maxAge.
func (s *sessions) get(token string, now time.Time, gen uint64, idle, maxAge time.Duration) *session {
	if token == "" {
		return nil
	}
	key := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[key]
	if ss == nil {
		return nil
	}
	if ss.gen != gen || now.Sub(ss.seen) > idle || now.Sub(ss.created) > maxAge {
		s.dropLocked(ss)
		return nil
	}
	ss.seen = now
	return ss
}

func (s *sessions) drop(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(ss)
}

func (s *sessions) dropLocked(ss *session) {
	if ss == nil {
		return
	}
	delete(s.m, ss.key)
	ss.cancel() // ends its event streams
}

// expire ends sessions that are no longer valid.
func (s *sessions) expire(now time.Time, gen uint64, idle, maxAge time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.m {
		if ss.gen != gen || now.Sub(ss.seen) > idle || now.Sub(ss.created) > maxAge {
			s.dropLocked(ss)
		}
	}
}

func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
