package node

import (
	http "github.com/openmeshd/meshd/node/httpd"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/transport"
)

// app is an application wired into the node (direct messages are built in;
// channels and FAPP plug in here). Every method runs on the node's loop,
// one event at a time, so an app needs no locking for state it only touches
// from these methods. An app talks to the router through the Node it was
// built with, also on the loop.
type app interface {
	// Name is the app's name in logs.
	Name() string
	// Ports are the application ports whose messages the app receives.
	Ports() []uint8
	// Deliver hands over a message on one of the app's ports. The app must
	// make it durable before calling Node.ackDelivery (or the router will
	// deliver it again after a restart).
	Deliver(now time.Time, d *routing.Deliver)
	// Filter decides what happens to a Channel, Flood or Query envelope
	// the router received; claimed=false means it is not this app's.
	Filter(now time.Time, e *envelope.Envelope, link routing.LinkID, from string) (v routing.FloodVerdict, claimed bool)
	// Flood shows a flood envelope the app's Filter kept or relayed.
	Flood(now time.Time, f *routing.FloodReceived)
	// AnonReply offers an anonymous reply; claimed=false if the token is
	// not the app's.
	AnonReply(now time.Time, a *routing.AnonReplyReceived) (claimed bool)
	// Tick runs the app's timers; NextWake says when it wants the next
	// one (zero: none).
	Tick(now time.Time)
	NextWake() time.Time
	// Routes adds the app's API endpoints.
	Routes(mux *http.ServeMux)
	// Close releases what the app holds (after the loop has stopped).
	Close()
}

// registerApp adds an app; it must be called before Run.
func (n *Node) registerApp(a app) {
	n.apps = append(n.apps, a)
	for _, p := range a.Ports() {
		n.appByPort[p] = a
	}
}

// floodFilter is the router's FloodFilter: the first app that claims an
// envelope decides. Unclaimed flood envelopes are relayed (the router's
// budgets bound them) but shown to nobody.
func (n *Node) floodFilter(now time.Time, link routing.LinkID, from transport.Addr, e *envelope.Envelope) routing.FloodVerdict {
	for _, a := range n.apps {
		if v, ok := a.Filter(now, e, link, string(from)); ok {
			return v
		}
	}
	return routing.FloodRelay
}

// appsWake is the earliest wake-up any app asked for.
func (n *Node) appsWake() time.Time {
	var w time.Time
	for _, a := range n.apps {
		if t := a.NextWake(); !t.IsZero() && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	return w
}

// tickApps runs the apps whose timers are due.
func (n *Node) tickApps(now time.Time) {
	for _, a := range n.apps {
		if t := a.NextWake(); !t.IsZero() && !t.After(now) {
			a.Tick(now)
		}
	}
}

// linkWatcher is implemented by apps that act when links come and go
// (channels ask neighbours for missed history when the node comes back
// online). It runs on the loop after the router saw the change; up is how
// many links are up now.
type linkWatcher interface {
	LinksChanged(now time.Time, up int)
}

// linksChanged tells the apps that watch links how many are up.
func (n *Node) linksChanged(now time.Time) {
	for _, a := range n.apps {
		if w, ok := a.(linkWatcher); ok {
			w.LinksChanged(now, len(n.links))
		}
	}
}

// ackDelivery tells the router an app made a delivered message durable.
func (n *Node) ackDelivery(now time.Time, id routing.InboundID) { n.router.AppAck(now, id) }
