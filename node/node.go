package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/routing/boltstore"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/lora"
	"github.com/openmeshd/meshd/transport/tcp"
)

// Options configure a Node beyond its Config.
type Options struct {
	// Logger receives the node's logs. Nil: discarded.
	Logger *slog.Logger
	// LogLevel, when set, is the Logger's level; Reload changes it.
	LogLevel *slog.LevelVar
	// Version is reported by the API.
	Version string
	// Clock is the node's time source. Nil: the system clock.
	Clock clock.Clock
	// Transports are extra transports to run besides those the Config
	// enables (tests, and transports built outside node).
	Transports []transport.Transport
	// Ready, if set, is called once the API is serving.
	Ready func()
}

// Node is a running meshd: identity, store, router, transports and the
// local API. Build it with New, run it with Run.
type Node struct {
	cfg   Config
	paths Paths
	o     Options
	log   *slog.Logger
	clk   clock.Clock

	id     *envelope.Identity
	db     *bolt.DB
	app    *appStore
	router *routing.Router
	hub    *hub
	tcp    *tcp.Transport
	lora   *lora.Transport
	radio  *loraRadio

	events   chan func(now time.Time) // to the loop; the loop owns router and links
	loopDone chan struct{}            // closed when the loop has ended
	links    map[routing.LinkID]*linkState
	pending  map[routing.MsgID]chan routing.Status // API sends waiting for durability
	started  time.Time

	apps      []app
	appByPort map[uint8]app

	stats nodeStats
}

// nodeStats are the node's own counters (atomic: read by the API).
type nodeStats struct {
	framesIn, framesOut, bytesIn, bytesOut atomic.Uint64
	sendErrors, queueDrops                 atomic.Uint64
	delivered, received                    atomic.Uint64
	linkUps, linkDowns                     atomic.Uint64
}

// ErrLocked: another meshd holds the data directory's store.
var ErrLocked = errors.New("the store is in use by another meshd (is one already running with this data directory?)")

// New opens the node's data directory: identity (created on first start),
// store, router. It does not start any network activity; Run does.
func New(cfg Config, o Options) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	paths, err := cfg.ResolvePaths()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, paths: paths, o: o, log: o.Logger, clk: o.Clock, hub: newHub(),
		events: make(chan func(time.Time), 1024), links: map[routing.LinkID]*linkState{},
		pending: map[routing.MsgID]chan routing.Status{}, loopDone: make(chan struct{}), appByPort: map[uint8]app{}}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.clk == nil {
		n.clk = clock.System{}
	}
	if err := EnsureDataDir(paths.Data); err != nil {
		return nil, err
	}
	id, created, err := envelope.LoadOrCreateIdentity(paths.Identity, rand.Reader)
	if err != nil {
		return nil, err
	}
	n.id = id
	if created {
		n.log.Info("created a new identity", "address", id.Address(), "file", paths.Identity)
	}
	// NoFreelistSync: a small commit then writes 2 pages instead of 3-4, a
	// quarter to a third fewer bytes on a router's flash (docs/footprint.md);
	// the freelist is rebuilt by a scan at open, milliseconds for this store.
	// Durability is unchanged: every commit still ends with its fdatasyncs.
	db, err := bolt.Open(paths.Store, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true})
	if err != nil {
		id.Destroy()
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%s: %w", paths.Store, ErrLocked)
		}
		return nil, fmt.Errorf("store %s: %w", paths.Store, err)
	}
	n.db = db
	fail := func(err error) (*Node, error) {
		db.Close()
		id.Destroy()
		return nil, err
	}
	if n.app, err = openAppStore(db); err != nil {
		return fail(err)
	}
	rs, err := boltstore.Wrap(db)
	if err != nil {
		return fail(fmt.Errorf("routing store: %w", err))
	}
	ro := routing.Options{
		Identity:         id,
		Store:            rs,
		Logger:           n.log.With("component", "routing"),
		AppData:          []byte(cfg.Name),
		AnnounceInterval: cfg.Routing.AnnounceInterval,
		AnnounceShare:    cfg.Routing.AnnounceShare,
		MaxHops:          uint8(cfg.Routing.MaxHops),
		MessageTTL:       cfg.Routing.MessageTTL,
		HeldBytes:        cfg.Routing.HeldBytes,
		CommitDelay:      cfg.Routing.CommitDelay,
		FloodFilter:      n.floodFilter,
	}
	if n.router, err = routing.New(ro, n.clk.Now()); err != nil {
		return fail(fmt.Errorf("router: %w", err))
	}
	n.registerApp(newChannelsApp(n))
	n.registerApp(newFAPPApp(n))
	return n, nil
}

// Identity returns the node's identity.
func (n *Node) Identity() *envelope.Identity { return n.id }

// Paths returns where the node keeps its files.
func (n *Node) Paths() Paths { return n.paths }

// Run operates the node until ctx is done: the router's event loop, the
// transports and the API. On return the store has been committed and
// closed.
func (n *Node) Run(ctx context.Context) error {
	n.started = n.clk.Now()
	// The loop outlives the transports and the API, so that their last
	// events (links going down) still reach the router; it stops last.
	loopCtx, stopLoop := context.WithCancel(context.Background())
	go func() {
		defer close(n.loopDone)
		n.loop(loopCtx)
	}()
	stop := func() {
		stopLoop()
		<-n.loopDone
		for _, a := range n.apps {
			a.Close()
		}
		n.close()
	}

	api, err := n.startAPI()
	if err != nil {
		stop()
		return err
	}
	transports, err := n.buildTransports()
	if err != nil {
		api.shutdown()
		stop()
		return err
	}
	tctx, stopTransports := context.WithCancel(ctx)
	defer stopTransports()
	var wg sync.WaitGroup
	errc := make(chan error, len(transports))
	for _, t := range transports {
		wg.Add(1)
		go func(t transport.Transport) {
			defer wg.Done()
			if err := t.Run(tctx, n); err != nil && !errors.Is(err, context.Canceled) {
				errc <- err
			}
		}(t)
	}
	if d, err := n.buildDiscovery(); err != nil {
		n.log.Warn("mDNS discovery disabled", "err", err)
	} else if d != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Run(tctx); err != nil && !errors.Is(err, context.Canceled) {
				n.log.Warn("mDNS discovery stopped", "err", err)
			}
		}()
	}
	n.log.Info("meshd running", "address", n.id.Address(), "fingerprint", n.id.PublicKey().Fingerprint(),
		"listen", n.cfg.TCP.Listen, "peers", len(n.cfg.TCP.Peers), "mdns", n.cfg.TCP.MDNS, "api", n.paths.Socket)
	if n.o.Ready != nil {
		n.o.Ready()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		n.log.Error("transport failed", "err", runErr)
	}
	n.log.Info("shutting down")
	api.shutdown()
	stopTransports()
	wg.Wait()
	stop()
	n.log.Info("stopped")
	return runErr
}

// close flushes and closes the store and forgets the key.
func (n *Node) close() {
	if err := n.db.Close(); err != nil {
		n.log.Error("closing store", "err", err)
	}
	n.id.Destroy()
}

// loop owns the router: every event runs here, one at a time.
func (n *Node) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	n.router.Announce(n.clk.Now())
	n.afterEvent(timer)
	for {
		select {
		case ev := <-n.events:
			ev(n.clk.Now())
		case <-timer.C:
			now := n.clk.Now()
			n.router.Tick(now)
			n.tickApps(now)
		case <-ctx.Done():
			n.drain()
			return
		}
		n.afterEvent(timer)
	}
}

// drain runs the events already queued, then commits the router's pending
// writes (a Tick far enough in the future to pass CommitDelay would also
// fire timers, so the router is asked directly).
func (n *Node) drain() {
	for {
		select {
		case ev := <-n.events:
			ev(n.clk.Now())
			n.dispatch(n.router.Actions())
		default:
			n.router.Flush(n.clk.Now())
			n.dispatch(n.router.Actions())
			for _, ls := range n.links {
				ls.stop()
			}
			return
		}
	}
}

// afterEvent carries out the router's actions and re-arms the timer.
func (n *Node) afterEvent(timer *time.Timer) {
	n.dispatch(n.router.Actions())
	if !timer.Stop() {
		select {
		case <-timer.C:
		default:
		}
	}
	d := time.Hour
	w := n.router.NextWake()
	if a := n.appsWake(); !a.IsZero() && (w.IsZero() || a.Before(w)) {
		w = a
	}
	if !w.IsZero() {
		d = max(0, w.Sub(n.clk.Now()))
	}
	timer.Reset(d)
}

// post runs f on the loop. It blocks while the loop's queue is full
// (backpressure on transports) until ctx is done.
func (n *Node) post(ctx context.Context, f func(now time.Time)) error {
	select {
	case n.events <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.loopDone:
		return ErrStopped
	}
}

// ErrStopped: the node is shutting down.
var ErrStopped = errors.New("meshd is stopping")

// call runs f on the loop and waits for it.
func (n *Node) call(ctx context.Context, f func(now time.Time)) error {
	done := make(chan struct{})
	if err := n.post(ctx, func(now time.Time) { f(now); close(done) }); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.loopDone:
		return ErrStopped
	}
}

// dispatch carries out router actions, and those that handling them
// produces (an app answering a delivery). It runs on the loop and never
// blocks on a link: frames go to per-link queues.
func (n *Node) dispatch(actions []routing.Action) {
	for round := 0; len(actions) > 0 && round < 16; round++ {
		n.dispatchOnce(actions)
		actions = n.router.Actions()
	}
}

func (n *Node) dispatchOnce(actions []routing.Action) {
	now := n.clk.Now()
	for _, a := range actions {
		switch a := a.(type) {
		case *routing.SendFrame:
			ls := n.links[a.Link]
			if ls == nil {
				continue
			}
			ls.enqueue(transport.Frame{To: a.To, Priority: a.Priority, Data: a.Data, NoAck: a.NoAck, MaxRounds: a.MaxRounds}, &n.stats)
		case *routing.Deliver:
			n.deliver(now, a)
		case *routing.Status:
			n.status(now, a)
		case *routing.FloodReceived:
			for _, ap := range n.apps {
				ap.Flood(now, a)
			}
		case *routing.AnonReplyReceived:
			for _, ap := range n.apps {
				if ap.AnonReply(now, a) {
					break
				}
			}
		}
	}
}

// Reload applies what can change without a restart (log.level) and says
// which changed keys need one.
func (n *Node) Reload(c Config) {
	if err := c.Validate(); err != nil {
		n.log.Error("reload: invalid configuration; keeping the running one", "err", err)
		return
	}
	if n.o.LogLevel != nil {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(c.Log.Level)); err == nil && lvl != n.o.LogLevel.Level() {
			n.o.LogLevel.Set(lvl)
			n.log.Info("reload: log level changed", "level", lvl)
		}
	}
	old, cur := n.cfg, c
	old.Log.Level, cur.Log.Level = "", ""
	old.DataDir, cur.DataDir = "", ""
	if fmt.Sprint(old) != fmt.Sprint(cur) {
		n.log.Warn("reload: other settings changed; they take effect after a restart")
	}
}
