package sim

// evKind says what an event does when it fires.
type evKind uint8

const (
	evNodeTimer evKind = iota // node's wake-up (arg: generation)
	evTxAttempt               // radio may start its next transmission (arg: generation)
	evLinkWake                // meshd's LoRa link layer asked to be called (arg: generation)
	evTxEnd                   // a radio transmission ends (ptr: *transmission)
	evIPArrive                // a frame arrives over a point-to-point link (ptr: *ipFrame)
	evTraffic                 // a traffic source fires (arg: source index)
	evScript                  // a scripted scenario event (arg: index)
	evChurn                   // churn toggles a node (arg: node)
	evReply                   // a scheduled reply message (ptr: *pendingReply)
	evFunc                    // run a function (ptr: func()); tests use it
)

// event is one entry of the queue. Time is virtual nanoseconds since the
// start of the run. seq breaks ties: events at the same instant fire in the
// order they were scheduled, which keeps runs deterministic.
type event struct {
	at   int64
	seq  uint64
	kind evKind
	node int32
	arg  int64
	ptr  any
}

// eventQueue is a binary min-heap on (at, seq). It is hand-rolled rather
// than container/heap to avoid interface calls on the hottest path.
type eventQueue struct {
	h   []event
	seq uint64
}

func (q *eventQueue) Len() int { return len(q.h) }

func (q *eventQueue) less(i, j int) bool {
	a, b := &q.h[i], &q.h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

// push schedules e (its seq is assigned here).
func (q *eventQueue) push(e event) {
	q.seq++
	e.seq = q.seq
	q.h = append(q.h, e)
	i := len(q.h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q.h[i], q.h[p] = q.h[p], q.h[i]
		i = p
	}
}

// peek returns the earliest event's time; ok is false when empty.
func (q *eventQueue) peek() (at int64, ok bool) {
	if len(q.h) == 0 {
		return 0, false
	}
	return q.h[0].at, true
}

// pop removes and returns the earliest event.
func (q *eventQueue) pop() event {
	e := q.h[0]
	n := len(q.h) - 1
	q.h[0] = q.h[n]
	q.h[n] = event{}
	q.h = q.h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q.h[i], q.h[m] = q.h[m], q.h[i]
		i = m
	}
	return e
}
