package sim

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// FloodParams configure the managed-flooding baseline, from the scenario's
// "protocols": {"flood": {...}}. Zero values take the defaults noted.
type FloodParams struct {
	// HopLimit is the originator's hop limit, 1..7 (Meshtastic's
	// lora.hop_limit). Default 3, Meshtastic's default.
	HopLimit int `json:"hop_limit"`
	// Attempts is how many times an originator transmits a message that is
	// neither acknowledged nor heard relayed (Meshtastic's ReliableRouter:
	// NUM_RETRANSMISSIONS = 3, the first send included). Default 3.
	Attempts int `json:"attempts"`
	// Router gives every node Meshtastic's ROUTER role: rebroadcast early
	// and never cancel a rebroadcast on overhearing it. Default: CLIENT.
	Router bool `json:"router"`
	// NoPKI drops the 12 bytes that public-key-encrypted direct messages
	// carry (Meshtastic >= 2.5 encrypts DMs with PKI: 8-byte tag + 4-byte
	// extra nonce).
	NoPKI bool `json:"no_pki"`
	// SeenFor is how long a packet id is remembered for duplicate
	// detection. Default 10m.
	SeenFor Duration `json:"seen_for"`
}

// Meshtastic-like constants (RadioInterface / ReliableRouter behaviour,
// described in docs/meshsim.md; the code here is our own).
const (
	floodHeaderSize = 16 // to, from, id (4 each), flags, channel, next hop, relay
	// floodDataOverhead is the protobuf Data around a text payload: portnum
	// (2), payload tag and length (2), bitfield (2).
	floodDataOverhead = 6
	// floodAckBody is an encoded Data{portnum ROUTING_APP, payload
	// Routing{error_reason NONE}, request_id}: 2 + 4 + 5 + 2 bytes.
	floodAckBody    = 13
	floodPKIExtra   = 12
	floodCWMin      = 3
	floodCWMax      = 8
	floodSNRMin     = -20.0
	floodSNRMax     = 10.0
	floodProcessing = 4500 * time.Millisecond
	floodReack      = 10 * time.Second // re-acknowledge a repeated DM at most this often

	floodFlagWantAck = 1 << 3
	floodFlagPKI     = 1 << 4
	floodPortText    = 1
	floodPortRouting = 5
)

// RawRadio implements RawRadio: the baseline's frames go on air as they are.
func (f *floodNode) RawRadio() bool { return true }

// NewFlood is the Factory of the managed-flooding baseline.
func NewFlood(env Env) (Node, error) {
	var p FloodParams
	if len(env.Params) > 0 {
		d := json.NewDecoder(bytes.NewReader(env.Params))
		d.DisallowUnknownFields()
		if err := d.Decode(&p); err != nil {
			return nil, fmt.Errorf("%w: protocols.flood: %v", ErrScenario, err)
		}
	}
	if p.HopLimit == 0 {
		p.HopLimit = 3
	}
	if p.HopLimit < 1 || p.HopLimit > 7 {
		return nil, fmt.Errorf("%w: protocols.flood.hop_limit %d not in 1..7", ErrScenario, p.HopLimit)
	}
	if p.Attempts == 0 {
		p.Attempts = 3
	}
	if p.Attempts < 1 || p.Attempts > 10 {
		return nil, fmt.Errorf("%w: protocols.flood.attempts %d not in 1..10", ErrScenario, p.Attempts)
	}
	if p.SeenFor == 0 {
		p.SeenFor = Duration(10 * time.Minute)
	}
	f := &floodNode{
		p:     p,
		self:  nodeNum(env.Identity.Address()),
		rng:   env.Rand,
		links: env.Links,
		up:    make([]bool, len(env.Links)),
		book:  make(map[uint32]envelope.Address, len(env.Contacts)),
		seen:  make(map[uint64]time.Time),
		rebro: make(map[uint64]*floodTimer),
		own:   make(map[uint64]*floodOwn),
		acked: make(map[uint64]time.Time),
	}
	for _, k := range env.Contacts {
		a := k.Address()
		f.book[nodeNum(a)] = a
	}
	for _, l := range env.Links {
		if l.Info.Broadcast && l.Airtime != nil {
			// Meshtastic's slot: 2.5 symbols of channel activity detection
			// plus propagation, turnaround and MAC processing (7.6 ms).
			f.slot = 5*l.SymbolTime/2 + 7600*time.Microsecond
			f.airtime = l.Airtime
		}
	}
	if f.slot == 0 {
		f.slot = 10 * time.Millisecond
		f.airtime = func(int) time.Duration { return 0 }
	}
	return f, nil
}

func nodeNum(a envelope.Address) uint32 { return binary.BigEndian.Uint32(a[:4]) }

type floodTimerKind uint8

const (
	ftRebroadcast floodTimerKind = iota // relay a packet
	ftSendOwn                           // first transmission of an own packet
	ftRetransmit                        // originator's retransmission deadline
)

type floodTimer struct {
	at    time.Time
	seq   uint64
	kind  floodTimerKind
	key   uint64
	frame []byte
	dead  bool
}

type floodOwn struct {
	msgID    uint64
	frame    []byte
	left     int // transmissions left
	timer    *floodTimer
	done     bool // acknowledged (really or implicitly) or failed
	acked    bool
	implicit bool
}

type floodNode struct {
	p       FloodParams
	self    uint32
	rng     *rand.Rand
	links   []Link
	up      []bool
	book    map[uint32]envelope.Address
	slot    time.Duration
	airtime func(int) time.Duration

	seen    map[uint64]time.Time // key -> expiry
	lastGC  time.Time
	timers  []*floodTimer
	seq     uint64
	rebro   map[uint64]*floodTimer // pending rebroadcasts by key
	own     map[uint64]*floodOwn
	acked   map[uint64]time.Time // recipient side: when we last acked key
	nextMsg uint32
}

func floodKey(from, id uint32) uint64 { return uint64(from)<<32 | uint64(id) }

// --- wire format -------------------------------------------------------------

type floodPkt struct {
	to, from, id uint32
	hopLimit     int
	hopStart     int
	wantAck, pki bool
	port         byte
	payload      []byte // text payload
	requestID    uint32 // routing (ack)
}

var errFloodShort = errors.New("flood: short packet")

func (f *floodNode) encode(p *floodPkt) []byte {
	var b []byte
	size := floodHeaderSize
	if p.port == floodPortRouting {
		size += floodAckBody
	} else {
		size += len(p.payload) + floodDataOverhead
		if p.pki {
			size += floodPKIExtra
		}
	}
	b = make([]byte, floodHeaderSize, size)
	binary.BigEndian.PutUint32(b[0:], p.to)
	binary.BigEndian.PutUint32(b[4:], p.from)
	binary.BigEndian.PutUint32(b[8:], p.id)
	flags := byte(p.hopLimit&7) | byte(p.hopStart&7)<<5
	if p.wantAck {
		flags |= floodFlagWantAck
	}
	if p.pki {
		flags |= floodFlagPKI
	}
	b[12] = flags
	b[13] = 0x08 // channel hash
	b[15] = byte(f.self)
	b = append(b, p.port)
	if p.port == floodPortRouting {
		b = binary.BigEndian.AppendUint32(b, p.requestID)
	} else {
		b = append(b, p.payload...)
	}
	return b[:size] // the rest stands for protobuf framing and the PKI tag
}

func decodeFlood(b []byte) (floodPkt, error) {
	var p floodPkt
	if len(b) < floodHeaderSize+1 {
		return p, errFloodShort
	}
	p.to = binary.BigEndian.Uint32(b[0:])
	p.from = binary.BigEndian.Uint32(b[4:])
	p.id = binary.BigEndian.Uint32(b[8:])
	flags := b[12]
	p.hopLimit = int(flags & 7)
	p.hopStart = int(flags >> 5)
	p.wantAck = flags&floodFlagWantAck != 0
	p.pki = flags&floodFlagPKI != 0
	p.port = b[floodHeaderSize]
	body := b[floodHeaderSize+1:]
	switch p.port {
	case floodPortRouting:
		if len(body) < 4 {
			return p, errFloodShort
		}
		p.requestID = binary.BigEndian.Uint32(body)
	default:
		n := len(b) - floodHeaderSize - floodDataOverhead
		if p.pki {
			n -= floodPKIExtra
		}
		if n < 0 || n > len(body) {
			return p, errFloodShort
		}
		p.payload = body[:n]
	}
	return p, nil
}

// --- timers ------------------------------------------------------------------

func (f *floodNode) schedule(t *floodTimer) {
	f.seq++
	t.seq = f.seq
	f.timers = append(f.timers, t)
}

// NextWake implements Node.
func (f *floodNode) NextWake() time.Time {
	var w time.Time
	for _, t := range f.timers {
		if !t.dead && (w.IsZero() || t.at.Before(w)) {
			w = t.at
		}
	}
	return w
}

// Timer implements Node.
func (f *floodNode) Timer(now time.Time, out *Out) {
	var due []*floodTimer
	keep := f.timers[:0]
	for _, t := range f.timers {
		switch {
		case t.dead:
		case !t.at.After(now):
			due = append(due, t)
		default:
			keep = append(keep, t)
		}
	}
	clear(f.timers[len(keep):])
	f.timers = keep
	sort.Slice(due, func(i, j int) bool {
		if !due[i].at.Equal(due[j].at) {
			return due[i].at.Before(due[j].at)
		}
		return due[i].seq < due[j].seq
	})
	for _, t := range due {
		switch t.kind {
		case ftRebroadcast:
			if f.rebro[t.key] == t {
				delete(f.rebro, t.key)
			}
			f.transmit(t.frame, -1, transport.PriorityRelay, t.key, viaRadio, out)
		case ftSendOwn:
			f.transmit(t.frame, -1, transport.PriorityOwn, t.key, viaAll, out)
		case ftRetransmit:
			o := f.own[t.key]
			if o == nil || o.done {
				continue
			}
			if o.left == 0 {
				o.done = true
				out.Event(Event{Kind: EventFailed, MsgID: o.msgID, Flow: t.key, Detail: "no ack after all attempts"})
				continue
			}
			o.left--
			f.transmit(o.frame, -1, transport.PriorityOwn, t.key, viaAll, out)
			o.timer = &floodTimer{at: now.Add(f.retransmitAfter(len(o.frame))), kind: ftRetransmit, key: t.key}
			f.schedule(o.timer)
		}
	}
	f.gcSeen(now)
}

type floodMode uint8

const (
	viaAll   floodMode = iota // every up link
	viaRadio                  // radio links only
	viaIP                     // point-to-point links only
)

// transmit sends a frame on the up links that mode selects, except skip.
func (f *floodNode) transmit(frame []byte, skip LinkID, prio transport.Priority, key uint64, mode floodMode, out *Out) {
	class, flow := ClassData, key
	if p, err := decodeFlood(frame); err == nil && p.port == floodPortRouting {
		class, flow = ClassAck, floodKey(p.to, p.requestID)
	}
	for i, l := range f.links {
		id := LinkID(i)
		if !f.up[i] || id == skip {
			continue
		}
		if (mode == viaRadio && !l.Info.Broadcast) || (mode == viaIP && l.Info.Broadcast) {
			continue
		}
		out.Send(Send{Link: id, To: transport.Broadcast, Priority: prio, Class: class, Flow: flow, Data: frame})
	}
}

// retransmitAfter is the originator's wait for an (implicit) ack:
// twice the airtime, the largest contention window, a responder's window at
// the middle of the range, and 4.5 s of processing (Meshtastic's
// getRetransmissionMsec, at zero channel utilisation).
func (f *floodNode) retransmitAfter(size int) time.Duration {
	slots := time.Duration(1<<floodCWMax + 2*floodCWMax + 1<<((floodCWMax+floodCWMin)/2))
	return 2*f.airtime(size) + slots*f.slot + floodProcessing
}

// rebroadcastDelay: weaker signal, smaller contention window, earlier
// rebroadcast, so the farthest receivers (which extend coverage most) go
// first; clients wait behind routers' window.
func (f *floodNode) rebroadcastDelay(snr float64, hasSNR bool) time.Duration {
	if !hasSNR {
		return time.Duration(f.rng.IntN(1<<floodCWMin)) * f.slot
	}
	cw := floodCWMin + int((snr-floodSNRMin)*(floodCWMax-floodCWMin)/(floodSNRMax-floodSNRMin))
	cw = max(floodCWMin, min(floodCWMax, cw))
	if f.p.Router {
		return time.Duration(f.rng.IntN(2*cw)) * f.slot
	}
	return time.Duration(2*floodCWMax)*f.slot + time.Duration(f.rng.IntN(1<<cw))*f.slot
}

func (f *floodNode) gcSeen(now time.Time) {
	if now.Sub(f.lastGC) < time.Minute {
		return
	}
	f.lastGC = now
	for k, exp := range f.seen {
		if !exp.After(now) {
			delete(f.seen, k)
		}
	}
	for k, t := range f.acked {
		if now.Sub(t) > f.p.SeenFor.D() {
			delete(f.acked, k)
		}
	}
	for k, o := range f.own {
		if o.done && (o.timer == nil || o.timer.dead || now.After(o.timer.at.Add(f.p.SeenFor.D()))) {
			delete(f.own, k)
		}
	}
}

func (f *floodNode) wasSeen(now time.Time, key uint64) bool {
	exp, ok := f.seen[key]
	return ok && exp.After(now)
}

func (f *floodNode) markSeen(now time.Time, key uint64) {
	f.seen[key] = now.Add(f.p.SeenFor.D())
}

// --- inputs ----------------------------------------------------------------

// Start implements Node.
func (f *floodNode) Start(now time.Time, out *Out) { f.lastGC = now }

// LinkUp implements Node.
func (f *floodNode) LinkUp(now time.Time, l LinkID, info transport.Info, out *Out) {
	if int(l) < len(f.up) {
		f.up[l] = true
		f.links[l].Info = info
	}
}

// LinkDown implements Node.
func (f *floodNode) LinkDown(now time.Time, l LinkID, out *Out) {
	if int(l) < len(f.up) {
		f.up[l] = false
	}
}

// Close implements Node.
func (f *floodNode) Close() error { return nil }

// AppSend implements Node.
func (f *floodNode) AppSend(now time.Time, m AppMessage, out *Out) {
	f.nextMsg++
	id := f.rng.Uint32()&^0xff | f.nextMsg&0xff // random, like Meshtastic's ids
	if id == 0 {
		id = 1
	}
	p := floodPkt{to: nodeNum(m.To), from: f.self, id: id, hopLimit: f.p.HopLimit, hopStart: f.p.HopLimit,
		wantAck: true, pki: !f.p.NoPKI, port: floodPortText, payload: m.Payload}
	frame := f.encode(&p)
	key := floodKey(f.self, id)
	f.markSeen(now, key)
	out.Event(Event{Kind: EventAccepted, MsgID: m.ID, Flow: key})
	o := &floodOwn{msgID: m.ID, frame: frame, left: f.p.Attempts - 1}
	f.own[key] = o
	// A short random delay before the first transmission, as a radio queue
	// would add; the retransmission clock starts then.
	d := time.Duration(f.rng.IntN(1<<floodCWMin)) * f.slot
	f.schedule(&floodTimer{at: now.Add(d), kind: ftSendOwn, key: key, frame: frame})
	o.timer = &floodTimer{at: now.Add(d + f.retransmitAfter(len(frame))), kind: ftRetransmit, key: key}
	f.schedule(o.timer)
}

// Receive implements Node.
func (f *floodNode) Receive(now time.Time, l LinkID, data []byte, m transport.Meta, out *Out) {
	p, err := decodeFlood(data)
	if err != nil {
		return
	}
	key := floodKey(p.from, p.id)
	if p.from == f.self {
		// Someone relayed our packet: an implicit ack for the originator.
		if o := f.own[key]; o != nil && !o.done {
			o.done, o.implicit = true, true
			if o.timer != nil {
				o.timer.dead = true
			}
			out.Event(Event{Kind: EventImplicitAck, MsgID: o.msgID, Flow: key})
		}
		return
	}
	if f.wasSeen(now, key) {
		if t := f.rebro[key]; t != nil && !f.p.Router {
			// Cancel-on-overhear: someone else already rebroadcast it
			// (IP copies already went out at once).
			t.dead = true
			delete(f.rebro, key)
		}
		if p.to == f.self && p.port != floodPortRouting && p.wantAck {
			if last, ok := f.acked[key]; !ok || now.Sub(last) >= floodReack {
				f.sendAck(now, &p, out)
			}
		}
		return
	}
	f.markSeen(now, key)
	if p.port == floodPortRouting && p.to != f.self {
		// An ack for a DM that is not ours: stop relaying that DM.
		if t := f.rebro[floodKey(p.to, p.requestID)]; t != nil {
			t.dead = true
			delete(f.rebro, floodKey(p.to, p.requestID))
		}
	}
	if p.to == f.self {
		if p.port == floodPortRouting {
			k := floodKey(f.self, p.requestID)
			if o := f.own[k]; o != nil && !o.acked {
				o.acked, o.done = true, true
				if o.timer != nil {
					o.timer.dead = true
				}
				out.Event(Event{Kind: EventAcked, MsgID: o.msgID, Flow: k})
			}
			return
		}
		out.Deliver(Deliver{From: f.book[p.from], Payload: append([]byte(nil), p.payload...)})
		if p.wantAck {
			f.sendAck(now, &p, out)
		}
		return
	}
	if p.hopLimit == 0 {
		return
	}
	fwd := append([]byte(nil), data...)
	fwd[12] = fwd[12]&^7 | byte(p.hopLimit-1)
	fwd[15] = byte(f.self)
	// IP copies go at once; the radio copy waits its contention window.
	f.transmit(fwd, l, transport.PriorityRelay, key, viaIP, out)
	if f.hasRadio() {
		t := &floodTimer{at: now.Add(f.rebroadcastDelay(float64(m.SNR), m.HasSignal)), kind: ftRebroadcast, key: key, frame: fwd}
		f.rebro[key] = t
		f.schedule(t)
	}
}

func (f *floodNode) hasRadio() bool {
	for i, l := range f.links {
		if l.Info.Broadcast && f.up[i] {
			return true
		}
	}
	return false
}

// sendAck floods an acknowledgement back to the originator, with a hop
// limit of the hops the DM took plus two, within the configured limit.
func (f *floodNode) sendAck(now time.Time, p *floodPkt, out *Out) {
	f.acked[floodKey(p.from, p.id)] = now
	used := p.hopStart - p.hopLimit
	hl := f.p.HopLimit
	switch {
	case used > f.p.HopLimit:
		hl = used
	case used+2 < f.p.HopLimit:
		hl = used + 2
	}
	f.nextMsg++
	id := f.rng.Uint32()&^0xff | f.nextMsg&0xff
	if id == 0 {
		id = 1
	}
	a := floodPkt{to: p.from, from: f.self, id: id, hopLimit: hl, hopStart: hl, port: floodPortRouting, requestID: p.id}
	frame := f.encode(&a)
	key := floodKey(f.self, id)
	f.markSeen(now, key)
	d := time.Duration(f.rng.IntN(1<<floodCWMin)) * f.slot
	f.schedule(&floodTimer{at: now.Add(d), kind: ftSendOwn, key: key, frame: frame})
}
