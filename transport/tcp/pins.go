package tcp

import (
	"sync"

	"github.com/openmeshd/meshd/envelope"
)

// PinStore remembers which identity key answered at a configured endpoint,
// the way SSH's known_hosts does: the first successful handshake with a
// static peer that has no key in the configuration pins the key it proved
// (trust on first use); every later handshake at that endpoint must prove
// the same key or is refused loudly (ErrPinMismatch). The node backs it
// with its store. Implementations must be safe for concurrent use.
type PinStore interface {
	// Pinned returns the key pinned for endpoint, and whether there is one.
	Pinned(endpoint string) (envelope.PublicKey, bool, error)
	// Pin records key for endpoint. It is only called when Pinned said
	// there was none.
	Pin(endpoint string, key envelope.PublicKey) error
}

// MemoryPins is a PinStore in memory, for tests and for nodes that do not
// persist pins. The zero value is ready to use.
type MemoryPins struct {
	mu   sync.Mutex
	pins map[string]envelope.PublicKey
}

// Pinned implements PinStore.
func (m *MemoryPins) Pinned(endpoint string) (envelope.PublicKey, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.pins[endpoint]
	return k, ok, nil
}

// Pin implements PinStore.
func (m *MemoryPins) Pin(endpoint string, key envelope.PublicKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pins == nil {
		m.pins = make(map[string]envelope.PublicKey)
	}
	m.pins[endpoint] = key
	return nil
}
