package sim

// This file belongs to the channels engineer: it runs meshd's broadcast
// channel core (package broadcast) on top of the router core in the
// simulator, wired the way node/channels.go wires it in the daemon, so that
// the cost of membership changes and of history catch-up can be measured on
// a simulated LoRa mesh. It adds no protocol to Protocols(): a channel run
// needs a script (who creates, who is removed when), which the tests in
// channels_test.go provide.

import (
	"errors"
	"fmt"
	"time"

	"github.com/openmeshd/meshd/broadcast"
	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

// chanCatchUpDelay is the daemon's delay between the first link coming up
// and the history request (node/channels.go).
const chanCatchUpDelay = 2 * time.Second

// chanStore is what a node's store holds for the channels app; it survives
// a restart of the node within the run (the daemon keeps it in bbolt).
type chanStore struct {
	states  map[broadcast.ChannelID][]byte
	history []byte
}

// chanHarness sees every channel node of a run: it sets the channel up out
// of band, records deliveries and events, and counts the frames the routers
// send while a measurement is on.
type chanHarness struct {
	opts  broadcast.Options // template (Identity, Rand are per node)
	nodes []*chanNode       // by index, the live core of each node
	store map[string]*chanStore

	// delivered[node][payload] counts deliveries (persisted with the
	// store, as the daemon's channels/messages bucket is).
	delivered []map[string]int
	history   []map[string]int // of which from history catch-up
	// epochAt[node][epoch] is when the node adopted that epoch;
	// removedAt[node] when it learnt it was removed.
	epochAt   []map[uint32]time.Time
	removedAt []time.Time
	onEvent   func(node int, now time.Time, ev *broadcast.Event)
	onRefused func(node int, now time.Time, err error) // channel messages refused

	// measuring: count the routers' frames by envelope kind.
	measuring   bool
	framesByKnd map[envelope.Kind]int
	bytesByKind map[envelope.Kind]int
	controlFail int
}

func newChanHarness(n int, o broadcast.Options) *chanHarness {
	h := &chanHarness{opts: o, nodes: make([]*chanNode, n), store: map[string]*chanStore{},
		delivered: make([]map[string]int, n), history: make([]map[string]int, n),
		epochAt: make([]map[uint32]time.Time, n), removedAt: make([]time.Time, n),
		framesByKnd: map[envelope.Kind]int{}, bytesByKind: map[envelope.Kind]int{}}
	for i := range n {
		h.delivered[i], h.history[i], h.epochAt[i] = map[string]int{}, map[string]int{}, map[uint32]time.Time{}
	}
	return h
}

// factory builds a router plus a broadcast core per node; a restarted node
// reloads its channels and history cache from its store.
func (h *chanHarness) factory() Factory {
	routers := newRouterFactory(nil, nil)
	return func(env Env) (Node, error) {
		rn, err := routers(env)
		if err != nil {
			return nil, err
		}
		o := h.opts
		o.Identity = env.Identity
		o.Rand = &randReader{r: env.Rand}
		core, err := broadcast.New(o)
		if err != nil {
			return nil, err
		}
		st := h.store[env.DataDir]
		if st == nil {
			st = &chanStore{states: map[broadcast.ChannelID][]byte{}}
			h.store[env.DataDir] = st
		}
		now := env.Clock.Now()
		for _, b := range st.states {
			if _, err := core.Load(now, b); err != nil {
				return nil, fmt.Errorf("channels: node %d: %w", env.Index, err)
			}
		}
		if st.history != nil {
			if err := core.LoadHistory(now, st.history); err != nil {
				return nil, fmt.Errorf("channels: node %d: %w", env.Index, err)
			}
		}
		_ = core.Actions()
		n := &chanNode{h: h, idx: env.Index, rn: rn.(*routerNode), core: core, st: st}
		h.nodes[env.Index] = n
		return n, nil
	}
}

// setUp makes node owner create a private channel and admits members into
// it, exchanging the control messages in memory (out of band, instantly):
// the run starts with an established channel. It returns the channel id.
func (h *chanHarness) setUp(now time.Time, owner int, members []int, name string, policy broadcast.Policy) (broadcast.ChannelID, error) {
	oc := h.nodes[owner].core
	id, err := oc.Create(now, name, policy)
	if err != nil {
		return id, err
	}
	inv, err := oc.Invite(now, id, broadcast.InviteOptions{MaxUses: len(members), Approve: true, TTL: time.Hour})
	if err != nil {
		return id, err
	}
	var keys []envelope.PublicKey
	for _, m := range members {
		if _, err := h.nodes[m].core.Join(now, inv.Code()); err != nil {
			return id, err
		}
		keys = append(keys, h.nodes[m].rn.env.Identity.PublicKey())
	}
	if err := h.exchange(now); err != nil {
		return id, err
	}
	if err := oc.Admit(now, id, keys...); err != nil {
		return id, err
	}
	return id, h.exchange(now)
}

// exchange delivers control messages between the cores in memory until
// none is left; stores and records the rest; network actions other than
// control messages are dropped.
func (h *chanHarness) exchange(now time.Time) error {
	byKey := map[envelope.PublicKey]*chanNode{}
	for _, n := range h.nodes {
		byKey[n.rn.env.Identity.PublicKey()] = n
	}
	for round := 0; round < 1000; round++ {
		type msg struct {
			from envelope.PublicKey
			to   *chanNode
			p    []byte
		}
		var q []msg
		for _, n := range h.nodes {
			for _, a := range n.store(now, n.core.Actions()) {
				if sc, ok := a.(*broadcast.SendControl); ok {
					if to := byKey[sc.To]; to != nil {
						q = append(q, msg{n.rn.env.Identity.PublicKey(), to, sc.Payload})
					}
				}
			}
		}
		if len(q) == 0 {
			return nil
		}
		for _, m := range q {
			if err := m.to.core.HandleControl(now, m.from, m.p); err != nil {
				return fmt.Errorf("channels set-up: %w", err)
			}
		}
	}
	return errors.New("channels set-up does not settle")
}

// chanNode is a router node with the broadcast core on top.
type chanNode struct {
	h         *chanHarness
	idx       int
	rn        *routerNode
	core      *broadcast.Core
	st        *chanStore
	links     int
	catchUpAt time.Time
}

func (n *chanNode) Start(now time.Time, out *Out) { n.flush(now, out) }

func (n *chanNode) LinkUp(now time.Time, l LinkID, info transport.Info, out *Out) {
	if n.links == 0 {
		n.catchUpAt = now.Add(chanCatchUpDelay)
	}
	n.links++
	routerLinkUp(n.rn.r, n.rn.env, n.rn.links, now, l, info)
	n.flush(now, out)
}

func (n *chanNode) LinkDown(now time.Time, l LinkID, out *Out) {
	n.links = max(0, n.links-1)
	n.rn.r.LinkDown(now, linkName(l))
	n.flush(now, out)
}

func (n *chanNode) Receive(now time.Time, l LinkID, data []byte, m transport.Meta, out *Out) {
	n.rn.r.Receive(now, linkName(l), append([]byte(nil), data...), m)
	n.flush(now, out)
}

func (n *chanNode) Timer(now time.Time, out *Out) {
	n.rn.r.Tick(now)
	if !n.catchUpAt.IsZero() && !now.Before(n.catchUpAt) {
		n.catchUpAt = time.Time{}
		n.core.CatchUpAll(now)
	}
	if w := n.core.NextWake(); !w.IsZero() && !now.Before(w) {
		n.core.Tick(now)
	}
	n.flush(now, out)
}

// AppSend is not used: channel traffic is scripted (chanHarness.send).
func (n *chanNode) AppSend(now time.Time, m AppMessage, out *Out) {
	out.Event(Event{Kind: EventFailed, MsgID: m.ID, Detail: "channels: no direct messages"})
}

func (n *chanNode) NextWake() time.Time {
	w := n.rn.r.NextWake()
	for _, t := range []time.Time{n.core.NextWake(), n.catchUpAt} {
		if !t.IsZero() && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	return w
}

func (n *chanNode) Close() error { return n.rn.Close() }

// store carries out the store and application half of a batch (the daemon
// does it in one bbolt transaction) and returns the batch for the network
// half.
func (n *chanNode) store(now time.Time, acts []broadcast.Action) []broadcast.Action {
	h := n.h
	for _, a := range acts {
		switch a := a.(type) {
		case *broadcast.Save:
			n.st.states[a.Channel] = append([]byte(nil), a.State...)
		case *broadcast.Forget:
			delete(n.st.states, a.Channel)
		case *broadcast.SaveHistory:
			n.st.history = append([]byte(nil), a.State...)
		case *broadcast.Deliver:
			h.delivered[n.idx][string(a.Payload)]++
			if a.History {
				h.history[n.idx][string(a.Payload)]++
			}
		case *broadcast.Event:
			switch a.Type {
			case broadcast.EventEpoch, broadcast.EventJoined, broadcast.EventResynced:
				if _, ok := h.epochAt[n.idx][a.Epoch]; !ok {
					h.epochAt[n.idx][a.Epoch] = now
				}
			case broadcast.EventRemoved:
				if h.removedAt[n.idx].IsZero() {
					h.removedAt[n.idx] = now
				}
			}
			if h.onEvent != nil {
				h.onEvent(n.idx, now, a)
			}
		}
	}
	return acts
}

// apply carries out the core's pending actions: store first, then the
// network (the contract of broadcast.Action).
func (n *chanNode) apply(now time.Time) {
	for _, a := range n.store(now, n.core.Actions()) {
		var err error
		switch a := a.(type) {
		case *broadcast.Flood:
			err = n.rn.r.Originate(now, a.Raw)
		case *broadcast.SendControl:
			_, err = n.rn.r.Send(now, routing.ToKey(a.To), broadcast.PortControl, a.Payload)
			if err != nil {
				n.h.controlFail++
			}
		case *broadcast.Reply:
			err = n.rn.r.Reply(now, a.To, broadcast.PortControl, a.Payload)
		}
		if err != nil && n.h.onRefused != nil {
			n.h.onRefused(n.idx, now, fmt.Errorf("network action %T: %w", a, err))
		}
	}
}

// flush carries out the router's actions, feeding the core what is its
// own, until both are quiet.
func (n *chanNode) flush(now time.Time, out *Out) {
	n.apply(now)
	for round := 0; round < 16; round++ {
		acts := n.rn.r.Actions()
		if len(acts) == 0 {
			return
		}
		for _, a := range acts {
			switch a := a.(type) {
			case *routing.SendFrame:
				cl, flow := frameLabel(a.Data)
				if n.h.measuring && len(a.Data) > 0 {
					k := envelope.Kind(a.Data[3])
					if e, err := envelope.Parse(a.Data); err == nil {
						k = e.Kind
					}
					n.h.framesByKnd[k]++
					n.h.bytesByKind[k] += len(a.Data)
				}
				out.Send(Send{Link: n.rn.links[a.Link], To: a.To, Priority: a.Priority, Class: cl, Flow: flow, Data: a.Data})
			case *routing.Deliver:
				if a.Anonymous {
					continue
				}
				if a.Port == broadcast.PortControl {
					_ = n.core.HandleControl(now, a.From, a.Payload)
					n.apply(now)
				}
				n.rn.r.AppAck(now, a.ID)
			case *routing.FloodReceived:
				switch a.Kind {
				case envelope.KindChannel:
					if err := n.core.HandleChannel(now, a.Data); err != nil && n.h.onRefused != nil {
						n.h.onRefused(n.idx, now, err)
					}
				case envelope.KindQuery:
					if e, err := envelope.Parse(a.Data); err == nil && e.Topic == broadcast.TopicHistory {
						_ = n.core.HandleQuery(now, a.Data)
					}
				}
				n.apply(now)
			case *routing.AnonReplyReceived:
				if n.core.OwnsToken(a.Token) {
					_ = n.core.HandleReply(now, a.Token, a.Data)
					n.apply(now)
				}
			}
		}
	}
}

// callNode runs f on node i as one input of the simulation (at the current
// virtual time), then acts on its output.
func (s *Sim) callNode(i int, f func(now time.Time)) {
	n := s.nodes[i]
	if !n.online {
		return
	}
	s.prep()
	now := s.timeAt(s.now)
	f(now)
	if cn, ok := n.node.(*chanNode); ok {
		cn.flush(now, &s.out)
	}
	s.after(n)
}

// at schedules f at virtual time t (from the start of the run).
func (s *Sim) at(t time.Duration, f func()) {
	s.q.push(event{at: int64(t), kind: evFunc, ptr: f})
}
