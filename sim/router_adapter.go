package sim

// This file belongs to the routing engineer: it plugs meshd's router core
// (package routing) into the simulator as the protocol "meshd".

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/routing/boltstore"
	"github.com/openmeshd/meshd/transport"
)

// RouterParams are the "meshd" protocol's parameters in a scenario file
// ("protocols": {"meshd": {...}}). Zero fields keep the router's defaults.
type RouterParams struct {
	AnnounceInterval Duration `json:"announce_interval,omitempty"`
	AnnounceDelay    Duration `json:"announce_delay,omitempty"`
	AnnounceShare    float64  `json:"announce_share,omitempty"`
	RouteLifetime    Duration `json:"route_lifetime,omitempty"`
	MessageTTL       Duration `json:"message_ttl,omitempty"`
	RetryMin         Duration `json:"retry_min,omitempty"`
	RetryMax         Duration `json:"retry_max,omitempty"`
	MaxHops          uint8    `json:"max_hops,omitempty"`
	SuppressAfter    int      `json:"suppress_after,omitempty"`
	SNRMargin        float64  `json:"snr_margin,omitempty"`
	PathRequestEvery Duration `json:"path_request_every,omitempty"`
	// Store is "mem" (default: a MemStore kept across restarts of the node
	// within the run) or "bolt" (a bbolt file in the node's DataDir, group
	// commits every CommitDelay).
	Store       string   `json:"store,omitempty"`
	CommitDelay Duration `json:"commit_delay,omitempty"`
	// RawRadio puts the router's frames on the air without meshd's LoRa
	// link layer (no fragmentation, no link-level SACKs), relying on the
	// router's passive hop acknowledgements instead (set radio.overhear).
	// An experiment: the daemon always runs the link layer.
	RawRadio bool `json:"raw_radio,omitempty"`
}

// NewRouterFactory returns the Factory of the "meshd" protocol. Each call
// gives a factory with its own memory stores, so a node that churn restarts
// finds its state again; use one factory per run.
func NewRouterFactory() Factory { return newRouterFactory(nil, nil) }

// routerFactory registers the router as the protocol "router" (Protocols).
func routerFactory() Factory { return NewRouterFactory() }

// newRouterFactory lets tests see every node built and log.
func newRouterFactory(built func(*routerNode), logger *slog.Logger) Factory {
	stores := map[string]*routing.MemStore{}
	return func(env Env) (Node, error) {
		var p RouterParams
		if len(env.Params) > 0 {
			if err := json.Unmarshal(env.Params, &p); err != nil {
				return nil, fmt.Errorf("meshd params: %w", err)
			}
		}
		lg := logger
		if lg != nil {
			lg = lg.With("node", env.Index)
		}
		o := routing.Options{
			Identity:         env.Identity,
			Rand:             env.Rand,
			Entropy:          &randReader{r: env.Rand},
			AnnounceInterval: time.Duration(p.AnnounceInterval),
			AnnounceDelay:    time.Duration(p.AnnounceDelay),
			AnnounceShare:    p.AnnounceShare,
			RouteLifetime:    time.Duration(p.RouteLifetime),
			MessageTTL:       time.Duration(p.MessageTTL),
			RetryMin:         time.Duration(p.RetryMin),
			RetryMax:         time.Duration(p.RetryMax),
			MaxHops:          p.MaxHops,
			SuppressAfter:    p.SuppressAfter,
			SNRMargin:        p.SNRMargin,
			PathRequestEvery: time.Duration(p.PathRequestEvery),
			CommitDelay:      time.Duration(p.CommitDelay),
			Logger:           lg,
		}
		n := &routerNode{env: env, links: map[routing.LinkID]LinkID{}, msgs: map[routing.MsgID]uint64{}, raw: p.RawRadio}
		switch p.Store {
		case "", "mem":
			key := env.DataDir
			if key == "" {
				key = strconv.Itoa(env.Index)
			}
			ms := stores[key]
			if ms == nil {
				ms = routing.NewMemStore()
				stores[key] = ms
			}
			ms.Reopen()
			o.Store = ms
		case "bolt":
			bs, err := boltstore.Open(filepath.Join(env.DataDir, "routing.db"), time.Second)
			if err != nil {
				return nil, err
			}
			o.Store = bs
		default:
			return nil, fmt.Errorf("meshd params: unknown store %q", p.Store)
		}
		n.store = o.Store
		r, err := routing.New(o, env.Clock.Now())
		if err != nil {
			return nil, err
		}
		n.r = r
		n.hint = env.Identity.Address().Hint()
		if built != nil {
			built(n)
		}
		return n, nil
	}
}

// randReader turns the node's seeded PRNG into the router's entropy source,
// so a run is reproducible. Only for simulation: real nodes use crypto/rand.
type randReader struct {
	r interface{ Uint64() uint64 }
}

func (r *randReader) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], r.r.Uint64())
		copy(p[i:], b[:])
	}
	return len(p), nil
}

// routerNode adapts a *routing.Router to Node.
type routerNode struct {
	env   Env
	r     *routing.Router
	store routing.Store
	hint  envelope.Hint
	links map[routing.LinkID]LinkID
	msgs  map[routing.MsgID]uint64
	raw   bool
}

// RawRadio implements RawRadio (the raw_radio parameter).
func (n *routerNode) RawRadio() bool { return n.raw }

func linkName(l LinkID) routing.LinkID { return routing.LinkID("l" + strconv.Itoa(int(l))) }

// routerLinkUp tells a router about a simulated link coming up, with the
// medium's duty cycle, airtime model and overhearing; links maps the
// router's link names back to the simulator's. Every harness that wraps a
// router (this adapter, channels, FAPP) brings links up through it.
func routerLinkUp(r *routing.Router, env Env, links map[routing.LinkID]LinkID, now time.Time, l LinkID, info transport.Info) {
	li := routing.LinkInfo{Info: info}
	li.ID = string(linkName(l))
	for _, el := range env.Links {
		if el.ID == l {
			li.DutyCycle, li.Airtime, li.Overhears = el.DutyCycle, el.Airtime, el.Overhears
		}
	}
	links[linkName(l)] = l
	r.LinkUp(now, li)
}

func (n *routerNode) Start(now time.Time, out *Out) { n.flush(now, out) }

func (n *routerNode) LinkUp(now time.Time, l LinkID, info transport.Info, out *Out) {
	routerLinkUp(n.r, n.env, n.links, now, l, info)
	n.flush(now, out)
}

func (n *routerNode) LinkDown(now time.Time, l LinkID, out *Out) {
	n.r.LinkDown(now, linkName(l))
	n.flush(now, out)
}

func (n *routerNode) Receive(now time.Time, l LinkID, data []byte, m transport.Meta, out *Out) {
	n.r.Receive(now, linkName(l), append([]byte(nil), data...), m)
	n.flush(now, out)
}

// Overhear implements Overhearer: frames addressed to other neighbours are
// the router's passive hop acknowledgements.
func (n *routerNode) Overhear(now time.Time, l LinkID, to transport.Addr, data []byte, m transport.Meta, out *Out) {
	n.r.Overhear(now, linkName(l), data, m)
	n.flush(now, out)
}

func (n *routerNode) Timer(now time.Time, out *Out) {
	n.r.Tick(now)
	n.flush(now, out)
}

func (n *routerNode) AppSend(now time.Time, m AppMessage, out *Out) {
	id, err := n.r.Send(now, routing.ToKey(m.ToKey), 0, m.Payload)
	if err != nil {
		out.Event(Event{Kind: EventFailed, MsgID: m.ID, Detail: err.Error()})
		n.flush(now, out)
		return
	}
	n.msgs[id] = m.ID
	var flow uint64
	if c, ok := n.r.Counter(id); ok {
		flow = routerFlow(n.hint, m.To.Hint(), c)
	}
	out.Event(Event{Kind: EventAccepted, MsgID: m.ID, Flow: flow})
	n.flush(now, out)
}

func (n *routerNode) NextWake() time.Time { return n.r.NextWake() }

func (n *routerNode) Close() error { return n.store.Close() }

// routerFlow is the flow of a Data envelope from src to dst with counter c
// (and of its Ack, which names the same two hints the other way round).
func routerFlow(src, dst envelope.Hint, c uint32) uint64 {
	v := uint64(binary.BigEndian.Uint32(src[:]))<<32 | uint64(binary.BigEndian.Uint32(dst[:]))
	v ^= uint64(c) * 0x9e3779b97f4a7c15
	v ^= v >> 29
	v *= 0xbf58476d1ce4e5b9
	v ^= v >> 32
	if v == 0 {
		v = 1
	}
	return v
}

func frameLabel(data []byte) (Class, uint64) {
	e, err := envelope.Parse(data)
	if err != nil {
		return ClassOther, 0
	}
	switch e.Kind {
	case envelope.KindAnnounce:
		return ClassAnnounce, 0
	case envelope.KindPathRequest, envelope.KindPathReply:
		return ClassPath, 0
	case envelope.KindData:
		return ClassData, routerFlow(e.Src.Hint(), e.Dst.Hint(), e.Counter)
	case envelope.KindAck, envelope.KindHeld:
		// A held notice is part of what carrying the message costs.
		return ClassAck, routerFlow(e.Dst.Hint(), e.Src.Hint(), e.Counter)
	}
	return ClassOther, 0
}

func (n *routerNode) flush(now time.Time, out *Out) {
	for _, a := range n.r.Actions() {
		switch a := a.(type) {
		case *routing.SendFrame:
			cl, flow := frameLabel(a.Data)
			out.Send(Send{Link: n.links[a.Link], To: a.To, Priority: a.Priority, Class: cl, Flow: flow, Data: a.Data, NoAck: a.NoAck, MaxRounds: a.MaxRounds})
		case *routing.Deliver:
			if !a.Anonymous {
				out.Deliver(Deliver{From: a.ID.From, Payload: a.Payload})
				n.r.AppAck(now, a.ID)
			}
		case *routing.Status:
			mid, ok := n.msgs[a.ID]
			if !ok {
				continue
			}
			switch a.State {
			case routing.StateDelivered:
				out.Event(Event{Kind: EventAcked, MsgID: mid})
				delete(n.msgs, a.ID)
			case routing.StateExpired, routing.StateFailed:
				out.Event(Event{Kind: EventFailed, MsgID: mid, Detail: fmt.Sprint(a.Err)})
				delete(n.msgs, a.ID)
			case routing.StateHeld:
				out.Event(Event{Kind: EventHeld, MsgID: mid})
			}
		}
	}
}
