//go:build !router

package libp2p

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Transport is the libp2p transport: one host, envelope-stream links to
// meshd peers, and the gossip link. Build it with New, run it with Run.
type Transport struct {
	opts      Options
	log       *slog.Logger
	priv      crypto.PrivKey
	pid       peer.ID
	self      envelope.PublicKey
	bootstrap []peer.AddrInfo
	instance  string
	nextID    atomic.Uint64
	started   chan struct{}
	startOnce sync.Once
	st        counters

	mu       sync.Mutex
	running  bool
	stopping bool
	h        transport.Handler
	runCtx   context.Context
	wg       sync.WaitGroup
	host     *builtHost
	dht      rendezvousDHT // nil unless built with -tags dht
	ps       *pubsub.PubSub
	gossip   *gossipLink
	prov     *providerStore
	mdns     interface{ Close() error }
	links    map[peer.ID]*Link
	opening  map[peer.ID]bool
	logAt    map[string]time.Time
}

// errNoDHT: libp2p.dht_client is set in a build without the DHT.
var errNoDHT = errors.New("libp2p: this build has no DHT (only builds with -tags dht have one): libp2p.dht_client cannot apply; remove it, or build with -tags dht (docs/libp2p.md)")

// errNoMDNS: libp2p.mdns is set in a build without libp2p's mDNS.
var errNoMDNS = errors.New("libp2p: this build has no libp2p mDNS: libp2p.mdns needs a build with -tags libp2pmdns (tcp.mdns finds meshd nodes on a LAN without it; docs/libp2p.md)")

// New checks opts and prepares a transport. It opens no socket.
func New(opts Options) (*Transport, error) {
	if opts.Identity == nil {
		return nil, errors.New("libp2p: Options.Identity is required")
	}
	opts.setDefaults()
	priv, pid, err := hostKey(opts.Identity)
	if err != nil {
		return nil, err
	}
	if opts.PSK != nil && len(opts.PSK) != 32 {
		return nil, fmt.Errorf("libp2p: PSK must be 32 bytes, not %d", len(opts.PSK))
	}
	if opts.QUIC && !quicBuilt {
		_, err := addQUIC(nil, nil, nil)
		return nil, err
	}
	if opts.MDNS && !mdnsBuilt {
		return nil, errNoMDNS
	}
	if opts.DHTClient && !dhtBuilt {
		return nil, errNoDHT
	}
	for _, a := range opts.ListenAddrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return nil, fmt.Errorf("libp2p: listen address %q: %w", a, err)
		}
	}
	var boot []peer.AddrInfo
	for _, s := range opts.BootstrapPeers {
		ai, err := ParseAddrInfo(s)
		if err != nil {
			return nil, err
		}
		if ai.ID != pid {
			boot = append(boot, ai)
		}
	}
	var inst [6]byte
	if _, err := io.ReadFull(rand.Reader, inst[:]); err != nil {
		return nil, err
	}
	return &Transport{
		opts: opts, log: opts.Logger, priv: priv, pid: pid, self: opts.Identity.PublicKey(),
		bootstrap: boot, instance: hex.EncodeToString(inst[:]), started: make(chan struct{}),
		links: map[peer.ID]*Link{}, opening: map[peer.ID]bool{}, logAt: map[string]time.Time{},
	}, nil
}

// ID is the host's libp2p peer ID (derived from the meshd identity).
func (t *Transport) ID() peer.ID { return t.pid }

// logEvery logs msg at most once per LogInterval per key.
func (t *Transport) logEvery(key string, level slog.Level, msg string, args ...any) {
	now := time.Now()
	t.mu.Lock()
	last, ok := t.logAt[key]
	if ok && now.Sub(last) < t.opts.LogInterval {
		t.mu.Unlock()
		return
	}
	if len(t.logAt) > 1024 {
		clear(t.logAt)
	}
	t.logAt[key] = now
	t.mu.Unlock()
	t.log.Log(context.Background(), level, msg, args...)
}

// Run implements transport.Transport: it builds the host, listens, starts
// GossipSub, the DHT, discovery and the gossip link, and serves until ctx
// is done; then it takes every link down, closes the host and waits for
// every goroutine it started.
func (t *Transport) Run(ctx context.Context, h transport.Handler) error {
	t.mu.Lock()
	if t.running {
		t.mu.Unlock()
		return errors.New("libp2p: Run called twice")
	}
	t.mu.Unlock()
	bh, err := buildHost(&t.opts, t.priv, t.pid, rcmgrReporter{&t.st})
	if err != nil {
		return err
	}
	if err := bh.listen(t.opts.ListenAddrs); err != nil {
		bh.Close()
		return err
	}
	ictx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.mu.Lock()
	t.running, t.stopping, t.h, t.runCtx, t.host = true, false, h, ictx, bh
	t.mu.Unlock()

	fail := func(err error) error {
		cancel()
		t.mu.Lock()
		t.stopping = true
		t.mu.Unlock()
		if t.dht != nil {
			t.dht.Close()
		}
		bh.Close()
		t.wg.Wait()
		t.mu.Lock()
		t.running, t.h, t.host, t.dht, t.ps, t.gossip = false, nil, nil, nil, nil, nil
		t.mu.Unlock()
		return err
	}
	// Subscribe before anything connects so that no identification is
	// missed.
	sub, err := bh.EventBus().Subscribe([]any{new(event.EvtPeerIdentificationCompleted), new(event.EvtPeerConnectednessChanged)})
	if err != nil {
		return fail(err)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer sub.Close()
		t.watchPeers(ictx, sub)
	}()
	bh.SetStreamHandler(EnvelopeProtocol, t.handleStream)

	if err := t.startDHT(ictx); err != nil {
		return fail(err)
	}
	g, err := t.startGossip(ictx)
	if err != nil {
		return fail(err)
	}
	t.mu.Lock()
	t.gossip = g
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		g.run(h)
	}()
	t.startOnce.Do(func() { close(t.started) })
	t.log.Info("libp2p: running", "peer_id", t.pid.String(), "addrs", fmt.Sprint(bh.Addrs()), "network", t.opts.NetworkID,
		"bootstrap", len(t.bootstrap), "mdns", t.opts.MDNS, "quic", t.opts.QUIC && quicBuilt)
	t.startDiscovery(ictx)

	<-ctx.Done()

	t.mu.Lock()
	t.stopping = true
	for _, l := range t.links {
		l.shut(nil)
	}
	t.mu.Unlock()
	g.shut(nil)
	cancel()
	bh.RemoveStreamHandler(EnvelopeProtocol)
	t.stopDiscovery()
	if t.dht != nil {
		t.dht.Close()
	}
	bh.Close()
	t.wg.Wait()
	t.mu.Lock()
	t.running, t.h, t.host, t.dht, t.ps, t.gossip = false, nil, nil, nil, nil, nil
	t.mu.Unlock()
	return nil
}

// spawn starts f as a goroutine owned by Run, unless Run is stopping.
func (t *Transport) spawn(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.running || t.stopping {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// watchPeers opens envelope links to meshd peers once identify says they
// speak the protocol.
func (t *Transport) watchPeers(ctx context.Context, sub event.Subscription) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.Out():
			if !ok {
				return
			}
			switch e := ev.(type) {
			case event.EvtPeerIdentificationCompleted:
				for _, p := range e.Protocols {
					if p == EnvelopeProtocol {
						t.maybeOpen(e.Peer, false)
						break
					}
				}
			case event.EvtPeerConnectednessChanged:
				if e.Connectedness == network.Connected {
					t.count(&t.st.connects)
				}
			}
		}
	}
}

// opener says whether this node opens the envelope stream to p: the one
// with the smaller peer ID does, so that both ends agree on one stream.
func (t *Transport) opener(p peer.ID) bool { return t.pid < p }

// maybeOpen opens a link to p in the background unless one is up or being
// opened. Unless force, only the node with the smaller peer ID opens.
func (t *Transport) maybeOpen(p peer.ID, force bool) {
	if p == t.pid || (!force && !t.opener(p)) {
		return
	}
	if _, err := MeshKey(p); err != nil {
		return
	}
	t.spawn(func() {
		if _, err := t.ensureLink(p); err != nil {
			t.logEvery("open:"+err.Error(), slog.LevelDebug, "libp2p: could not open an envelope stream", "peer", p.String(), "err", err.Error())
		}
	})
}

// ensureLink returns the link to p, opening it unless one is up; when an
// open is already under way it waits for that one.
func (t *Transport) ensureLink(p peer.ID) (*Link, error) {
	for {
		t.mu.Lock()
		if !t.running || t.stopping {
			t.mu.Unlock()
			return nil, ErrNotRunning
		}
		if l := t.links[p]; l != nil {
			t.mu.Unlock()
			return l, nil
		}
		if !t.opening[p] {
			t.opening[p] = true
			t.mu.Unlock()
			l, err := t.open(p)
			t.mu.Lock()
			delete(t.opening, p)
			t.mu.Unlock()
			return l, err
		}
		ctx := t.runCtx
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ErrNotRunning
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// open opens an envelope stream to p (connected or known to the
// peerstore) and runs its link; it returns once LinkUp has returned.
func (t *Transport) open(p peer.ID) (*Link, error) {
	t.mu.Lock()
	bh, ctx := t.host, t.runCtx
	t.mu.Unlock()
	if bh == nil {
		return nil, ErrNotRunning
	}
	t.addRecordAddrs(bh, p)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := bh.NewStream(ctx, p, EnvelopeProtocol)
	if err != nil {
		t.count(&t.st.openFailures)
		return nil, fmt.Errorf("libp2p: open stream to %s: %w", p, err)
	}
	l, err := t.register(s, true)
	if err != nil {
		s.Reset()
		if errors.Is(err, errKeepExisting) {
			t.mu.Lock()
			ex := t.links[p]
			t.mu.Unlock()
			if ex != nil {
				return ex, nil
			}
		}
		return nil, err
	}
	up := make(chan struct{})
	if !t.spawn(func() { t.runLink(l, up) }) {
		t.unregister(l)
		return nil, ErrNotRunning
	}
	select {
	case <-up:
	case <-l.done:
	}
	return l, nil
}

// handleStream serves an inbound envelope stream.
func (t *Transport) handleStream(s network.Stream) {
	l, err := t.register(s, false)
	if err != nil {
		s.Reset()
		if !errors.Is(err, errKeepExisting) {
			t.logEvery("inbound:"+err.Error(), slog.LevelDebug, "libp2p: refused an envelope stream", "peer", s.Conn().RemotePeer().String(), "err", err.Error())
		}
		return
	}
	if !t.spawn(func() { t.runLink(l, nil) }) {
		t.unregister(l)
	}
}

var errKeepExisting = errors.New("libp2p: keeping the existing link")

// register turns a stream into a Link, or refuses it. Between two links to
// one peer opened in opposite directions, the one the smaller peer ID
// opened wins; in the same direction, the newer wins.
func (t *Transport) register(s network.Stream, outbound bool) (*Link, error) {
	p := s.Conn().RemotePeer()
	key, err := MeshKey(p)
	if err != nil {
		t.count(&t.st.refused)
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.running || t.stopping {
		return nil, ErrNotRunning
	}
	old := t.links[p]
	if old != nil && old.outbound != outbound {
		openerNew := p
		if outbound {
			openerNew = t.pid
		}
		openerOld := t.pid
		if outbound {
			openerOld = p
		}
		if !(openerNew < openerOld) {
			return nil, errKeepExisting
		}
	}
	if old == nil && len(t.links) >= t.opts.MaxLinks {
		t.st.refused.Add(1)
		return nil, fmt.Errorf("libp2p: %d links already", t.opts.MaxLinks)
	}
	id := fmt.Sprintf("libp2p-%s-%d", t.instance, t.nextID.Add(1))
	l := &Link{
		t: t, peer: p, s: s, outbound: outbound, up: time.Now(),
		info: transport.Info{ID: id, Kind: "libp2p", MTU: MaxFrameSize, Bitrate: t.opts.Bitrate, Cost: t.opts.Cost,
			Ordered: true, Peer: key, HasPeer: true},
		q: make(chan []byte, t.opts.SendQueue), done: make(chan struct{}), writerDone: make(chan struct{}),
	}
	if old != nil {
		old.shut(ErrReplaced)
	}
	t.links[p] = l
	t.st.linksOpened.Add(1)
	if t.host != nil {
		t.host.ConnManager().Protect(p, "meshd-link")
	}
	return l, nil
}

func (t *Transport) unregister(l *Link) {
	l.shut(nil)
	t.mu.Lock()
	if t.links[l.peer] == l {
		delete(t.links, l.peer)
		if t.host != nil {
			t.host.ConnManager().Unprotect(l.peer, "meshd-link")
		}
	}
	t.mu.Unlock()
}

// runLink drives a registered link: LinkUp, the write loop, the read loop
// here, then LinkDown.
func (t *Transport) runLink(l *Link, up chan<- struct{}) {
	t.mu.Lock()
	h := t.h
	t.mu.Unlock()
	t.log.Debug("libp2p: link up", "link", l.info.ID, "peer", l.info.Peer.Address().String(), "peer_id", l.peer.String(), "outbound", l.outbound)
	h.LinkUp(l)
	if up != nil {
		close(up)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		l.writeLoop()
	}()
	err := l.readLoop(h)
	l.shut(err)
	<-l.writerDone
	t.unregister(l)
	if l.err != nil {
		t.log.Debug("libp2p: link down", "link", l.info.ID, "peer", l.info.Peer.Address().String(), "err", l.err.Error())
	}
	h.LinkDown(l, l.err)
}

// waitStarted waits until Run has built the host.
func (t *Transport) waitStarted(ctx context.Context) error {
	select {
	case <-t.started:
	case <-ctx.Done():
		return ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.running || t.stopping {
		return ErrNotRunning
	}
	return nil
}

// AddrInfo returns the host's peer ID and listen addresses once Run has
// started (or ctx is done).
func (t *Transport) AddrInfo(ctx context.Context) (peer.AddrInfo, error) {
	if err := t.waitStarted(ctx); err != nil {
		return peer.AddrInfo{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return peer.AddrInfo{ID: t.pid, Addrs: t.host.Addrs()}, nil
}

// Connect connects to a peer and returns its envelope link once up (the
// peer must be a meshd node).
func (t *Transport) Connect(ctx context.Context, ai peer.AddrInfo) (*Link, error) {
	if err := t.waitStarted(ctx); err != nil {
		return nil, err
	}
	t.mu.Lock()
	bh := t.host
	t.mu.Unlock()
	if err := bh.Connect(ctx, ai); err != nil {
		return nil, fmt.Errorf("libp2p: connect %s: %w", ai.ID, err)
	}
	for {
		t.mu.Lock()
		l := t.links[ai.ID]
		t.mu.Unlock()
		if l != nil {
			return l, nil
		}
		if t.opener(ai.ID) {
			return t.ensureLink(ai.ID)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// linkTo returns the link to the node with key k, if up.
func (t *Transport) linkTo(p peer.ID) *Link {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.links[p]
}

// Linked reports whether an envelope link to the node with key k is up.
func (t *Transport) Linked(k envelope.PublicKey) bool {
	p, err := PeerIDFor(k)
	return err == nil && t.linkTo(p) != nil
}

func (t *Transport) count(c *atomic.Uint64) { c.Add(1) }

func lessKey(a, b []byte) bool { return bytes.Compare(a, b) < 0 }
