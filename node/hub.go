package node

import (
	"sync"
	"time"
)

// Event is one item of the live event stream (/v1/events).
type Event struct {
	Seq  uint64    `json:"seq"`
	Type string    `json:"type"` // message, status, link-up, link-down, ...
	Time time.Time `json:"time"`
	Data any       `json:"data"`
}

// hub fans events out to subscribers. A subscriber that does not keep up
// loses events (and is told so by a gap in Seq) rather than slowing the node.
type hub struct {
	mu   sync.Mutex
	seq  uint64
	subs map[chan Event]struct{}
}

func newHub() *hub { return &hub{subs: map[chan Event]struct{}{}} }

func (h *hub) publish(typ string, now time.Time, data any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	ev := Event{Seq: h.seq, Type: typ, Time: now.UTC(), Data: data}
	for c := range h.subs {
		select {
		case c <- ev:
		default: // slow subscriber: drop
		}
	}
}

// subscribe returns a channel of events and a cancel function.
func (h *hub) subscribe(buf int) (<-chan Event, func()) {
	c := make(chan Event, buf)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		if _, ok := h.subs[c]; ok {
			delete(h.subs, c)
			close(c)
		}
		h.mu.Unlock()
	}
}

func (h *hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
