//go:build !router

package libp2p

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// providerStore is the DHT's provider record store, bounded: at most
// maxKeys keys with at most maxPerKey providers each, records expiring
// after providerTTL. A peer flooding the DHT with junk provider records
// fills it and is then refused (new keys) or replaces the oldest record
// (known keys); memory stays bounded either way. meshd itself only needs
// the few rendezvous keys.
type providerStore struct {
	maxKeys, maxPerKey int

	mu      sync.Mutex
	m       map[string]map[peer.ID]provRec
	refused uint64
}

type provRec struct {
	ai      peer.AddrInfo
	expires time.Time
}

// providerTTL is how long a provider record lives (the DHT reprovides
// every RendezvousInterval).
const providerTTL = 48 * time.Hour

// maxProvAddrs bounds the addresses kept per record.
const maxProvAddrs = 8

func newProviderStore(maxKeys, maxPerKey int) *providerStore {
	return &providerStore{maxKeys: maxKeys, maxPerKey: maxPerKey, m: map[string]map[peer.ID]provRec{}}
}

func (s *providerStore) AddProvider(_ context.Context, key []byte, prov peer.AddrInfo) error {
	now := time.Now()
	if len(prov.Addrs) > maxProvAddrs {
		prov.Addrs = prov.Addrs[:maxProvAddrs]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := string(key)
	ps := s.m[k]
	if ps == nil {
		if len(s.m) >= s.maxKeys {
			s.expire(now)
		}
		if len(s.m) >= s.maxKeys {
			s.refused++
			return nil
		}
		ps = map[peer.ID]provRec{}
		s.m[k] = ps
	}
	if _, ok := ps[prov.ID]; !ok && len(ps) >= s.maxPerKey {
		var oldest peer.ID
		var at time.Time
		for p, r := range ps {
			if at.IsZero() || r.expires.Before(at) {
				oldest, at = p, r.expires
			}
		}
		delete(ps, oldest)
	}
	ps[prov.ID] = provRec{ai: prov, expires: now.Add(providerTTL)}
	return nil
}

func (s *providerStore) expire(now time.Time) {
	for k, ps := range s.m {
		for p, r := range ps {
			if now.After(r.expires) {
				delete(ps, p)
			}
		}
		if len(ps) == 0 {
			delete(s.m, k)
		}
	}
}

func (s *providerStore) GetProviders(_ context.Context, key []byte) ([]peer.AddrInfo, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []peer.AddrInfo
	for _, r := range s.m[string(key)] {
		if now.Before(r.expires) {
			out = append(out, r.ai)
		}
	}
	return out, nil
}

func (s *providerStore) Close() error { return nil }

// size returns the keys and records held, and the keys refused.
func (s *providerStore) size() (keys, records int, refused uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ps := range s.m {
		records += len(ps)
	}
	return len(s.m), records, s.refused
}
