package tcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Peer is a node to dial.
type Peer struct {
	// Endpoint is "host:port" (config key tcp.peers, the part before "#").
	// Required.
	Endpoint string
	// Key, when HasKey, is the identity the peer must prove. Zero: any
	// key, subject to Address and to the pin store.
	Key    envelope.PublicKey
	HasKey bool
	// Address, when HasAddress, is the address the peer's key must hash to
	// (config key tcp.peers, "host:port#ADDRESS" with 32 hex digits; mDNS
	// discovery fills it from the TXT record). Zero: any address.
	Address    envelope.Address
	HasAddress bool
}

func (p Peer) wantAddress() (envelope.Address, bool) {
	if p.HasKey {
		return p.Key.Address(), true
	}
	return p.Address, p.HasAddress
}

// Options configure a Transport. Durations and counts left zero take the
// default named in their comment.
type Options struct {
	// Identity is this node's identity key. Required.
	Identity *envelope.Identity
	// ListenAddr is where to accept links, "host:port" (config key
	// tcp.listen, whose default is ":4731"). Zero: do not listen (unless
	// Listener is set).
	ListenAddr string
	// Listener, when set, is used instead of ListenAddr (the caller bound
	// it, e.g. to learn an ephemeral port first). Run closes it.
	Listener net.Listener
	// Peers are static peers: dialed when Run starts and redialed with
	// capped exponential backoff whenever their link is down (config key
	// tcp.peers). A static peer's endpoint is pinned (see PinStore).
	Peers []Peer
	// NetworkKey makes the mesh private: only nodes holding the same 32
	// bytes can complete a handshake (config key tcp.network_key, 64 hex
	// digits, decoded by the node). Zero (nil): an open mesh.
	NetworkKey []byte
	// DisablePQ turns off the ML-KEM-768 hybrid (config key tcp.pq=false).
	// Zero: the hybrid is offered and used whenever the peer has it too.
	DisablePQ bool
	// Pins remembers the identity seen at each static peer's endpoint.
	// Zero (nil): static peers without a configured Key or Address accept
	// any identity.
	Pins PinStore
	// HandshakeTimeout bounds a whole handshake. Zero: 10 s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds connecting to a peer. Zero: 10 s.
	DialTimeout time.Duration
	// MaxHandshakes bounds concurrent inbound handshakes (half-open
	// connections); more are closed at once. Zero: 64.
	MaxHandshakes int
	// MaxLinks bounds established links. Zero: 256.
	MaxLinks int
	// KeepaliveInterval is how long a link may stay silent before it sends
	// a keepalive. Zero: 5 s.
	KeepaliveInterval time.Duration
	// DeadPeerTimeout takes a link down when nothing arrived from the peer
	// for that long, when a record does not complete within it, or when the
	// peer does not take what we send for that long. Zero: three keepalive
	// intervals.
	DeadPeerTimeout time.Duration
	// RedialMin and RedialMax bound the backoff between dials of a static
	// peer. Zero: 1 s and 1 min.
	RedialMin, RedialMax time.Duration
	// SendQueue is how many frames a link queues before Send blocks. Zero:
	// 64.
	SendQueue int
	// Bitrate is what Info reports, in bit/s. Zero: 100 Mbit/s.
	Bitrate int
	// Logger receives the transport's logs. Zero (nil): discarded.
	Logger *slog.Logger
	// LogInterval is how often a repeated condition (refused connections,
	// failed handshakes of one kind) is logged at most. Zero: 1 min.
	LogInterval time.Duration
	// Rand is the source of key material. Zero (nil): crypto/rand.
	Rand io.Reader
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.HandshakeTimeout, 10*time.Second)
	def(&o.DialTimeout, 10*time.Second)
	def(&o.KeepaliveInterval, 5*time.Second)
	def(&o.DeadPeerTimeout, 3*o.KeepaliveInterval)
	def(&o.RedialMin, time.Second)
	def(&o.RedialMax, time.Minute)
	def(&o.LogInterval, time.Minute)
	if o.RedialMax < o.RedialMin {
		o.RedialMax = o.RedialMin
	}
	if o.MaxHandshakes <= 0 {
		o.MaxHandshakes = 64
	}
	if o.MaxLinks <= 0 {
		o.MaxLinks = 256
	}
	if o.SendQueue <= 0 {
		o.SendQueue = 64
	}
	if o.Bitrate <= 0 {
		o.Bitrate = 100_000_000
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Transport is the TCP transport: it accepts and dials connections, runs
// the Noise handshake on each and turns the survivors into Links.
type Transport struct {
	opts     Options
	log      *slog.Logger
	rl       *rateLog
	keys     *localKeys
	self     envelope.PublicKey
	instance string
	nextID   atomic.Uint64
	sem      chan struct{} // inbound half-open handshake slots
	started  chan struct{} // closed when Run first starts
	once     sync.Once
	bufs     sync.Pool

	mu       sync.Mutex
	running  bool
	stopping bool
	h        transport.Handler
	runCtx   context.Context
	wg       sync.WaitGroup
	ln       net.Listener
	links    map[envelope.PublicKey]*Link
	pending  map[net.Conn]struct{}
	dialing  map[envelope.Address]int
	failures map[Reason]uint64
	okCount  uint64
	refused  uint64
	dials    uint64
}

// New checks opts and prepares a transport. It opens no socket.
func New(opts Options) (*Transport, error) {
	opts.setDefaults()
	keys, err := newLocalKeys(opts.Identity, opts.NetworkKey, !opts.DisablePQ, opts.Rand)
	if err != nil {
		return nil, err
	}
	for _, p := range opts.Peers {
		if _, _, err := net.SplitHostPort(p.Endpoint); err != nil {
			return nil, fmt.Errorf("tcp: static peer %q: %w", p.Endpoint, err)
		}
	}
	var inst [6]byte
	if _, err := io.ReadFull(rand.Reader, inst[:]); err != nil {
		return nil, err
	}
	t := &Transport{
		opts:     opts,
		log:      opts.Logger,
		rl:       newRateLog(opts.Logger, opts.LogInterval),
		keys:     keys,
		self:     opts.Identity.PublicKey(),
		instance: hex.EncodeToString(inst[:]),
		sem:      make(chan struct{}, opts.MaxHandshakes),
		started:  make(chan struct{}),
		links:    make(map[envelope.PublicKey]*Link),
		pending:  make(map[net.Conn]struct{}),
		dialing:  make(map[envelope.Address]int),
		failures: make(map[Reason]uint64),
	}
	t.bufs.New = func() any { b := make([]byte, 0, writeBatch+MaxFrameSize+2*maxWireOverhd); return &b }
	return t, nil
}

func (t *Transport) getBuf() *[]byte  { return t.bufs.Get().(*[]byte) }
func (t *Transport) putBuf(b *[]byte) { t.bufs.Put(b) }

// Addr is the address the transport listens on, or nil.
func (t *Transport) Addr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Run implements transport.Transport. It listens (if configured), keeps
// static peers linked, and serves Dial, until ctx is done; then it closes
// every link, waits for every goroutine it started and returns nil.
func (t *Transport) Run(ctx context.Context, h transport.Handler) error {
	ln := t.opts.Listener
	if ln == nil && t.opts.ListenAddr != "" {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", t.opts.ListenAddr); err != nil {
			return fmt.Errorf("tcp: listen: %w", err)
		}
	}
	t.mu.Lock()
	if t.running {
		t.mu.Unlock()
		if ln != nil && ln != t.opts.Listener {
			ln.Close()
		}
		return errors.New("tcp: Run called twice")
	}
	t.running, t.stopping, t.h, t.runCtx, t.ln = true, false, h, ctx, ln
	t.mu.Unlock()
	t.once.Do(func() { close(t.started) })

	if ln != nil {
		t.log.Info("tcp: listening", "addr", ln.Addr().String(), "pq", t.keys.pq, "private", t.keys.netKey)
		t.wg.Add(1)
		go t.acceptLoop(ln)
	}
	for _, p := range t.opts.Peers {
		t.wg.Add(1)
		go t.staticPeerLoop(ctx, p)
	}

	<-ctx.Done()

	t.mu.Lock()
	t.stopping = true
	if ln != nil {
		ln.Close()
	}
	for c := range t.pending {
		c.Close()
	}
	for _, l := range t.links {
		l.shut(nil)
	}
	t.mu.Unlock()
	t.wg.Wait()
	t.mu.Lock()
	t.running, t.h, t.ln = false, nil, nil
	t.mu.Unlock()
	return nil
}

// acceptLoop accepts connections and hands each to a handshake goroutine,
// refusing at once those beyond MaxHandshakes.
func (t *Transport) acceptLoop(ln net.Listener) {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if t.isStopping() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or similar: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.rl.Log("accept", slog.LevelWarn, "tcp: accept failed; backing off", slog.String("err", err.Error()), slog.Duration("delay", delay))
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case t.sem <- struct{}{}:
		default:
			conn.Close()
			t.mu.Lock()
			t.refused++
			t.failures[ReasonLimit]++
			t.mu.Unlock()
			t.rl.Log("limit:handshakes", slog.LevelWarn, "tcp: too many half-open handshakes; refusing inbound connections",
				slog.Int("max_handshakes", t.opts.MaxHandshakes), slog.String("remote", conn.RemoteAddr().String()))
			continue
		}
		if !t.spawn(func() { t.serveInbound(conn) }) {
			<-t.sem
			conn.Close()
			return
		}
	}
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

func (t *Transport) isStopping() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopping || !t.running
}

func (t *Transport) serveInbound(conn net.Conn) {
	released := false
	release := func() {
		if !released {
			released = true
			<-t.sem
		}
	}
	defer release()
	if !t.track(conn) {
		conn.Close()
		return
	}
	sess, err := t.handshake(context.Background(), conn, false, nil)
	t.untrack(conn)
	if err != nil {
		conn.Close()
		t.handshakeFailed(err, conn.RemoteAddr().String(), false, "")
		return
	}
	release()
	l, err := t.register(conn, sess, false)
	if err == nil {
		// Confirm to the initiator that we accepted it: the first record.
		conf, _ := appendRecord(nil, sess.send, recKeepalive, nil)
		conn.SetWriteDeadline(time.Now().Add(t.opts.HandshakeTimeout))
		if _, err = conn.Write(conf); err != nil {
			t.unregister(l)
		}
	}
	if err != nil {
		conn.Close()
		t.handshakeFailed(err, conn.RemoteAddr().String(), false, "")
		return
	}
	t.runLink(l, nil)
}

// track records a connection in handshake so that Run's shutdown closes it.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.running || t.stopping {
		return false
	}
	t.pending[c] = struct{}{}
	return true
}

func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.pending, c)
	t.mu.Unlock()
}

// handshake runs the handshake over conn (see docs/transports.md): the
// preambles, three Noise messages, and a confirmation record from the
// responder so that the initiator knows it was accepted.
func (t *Transport) handshake(ctx context.Context, conn net.Conn, initiator bool, accept func(envelope.PublicKey) error) (*session, error) {
	conn.SetDeadline(time.Now().Add(t.opts.HandshakeTimeout))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	sess, err := t.handshakeIO(conn, initiator, accept)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w after %v: %v", ErrHandshakeTimeout, t.opts.HandshakeTimeout, err)
		}
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return sess, nil
}

func (t *Transport) handshakeIO(conn net.Conn, initiator bool, accept func(envelope.PublicKey) error) (*session, error) {
	hs, err := newHandshake(t.keys, initiator, accept)
	if err != nil {
		return nil, err
	}
	var pre [preambleSize]byte
	readPre := func() error {
		if _, err := io.ReadFull(conn, pre[:]); err != nil {
			if initiator && isEOF(err) {
				return fmt.Errorf("peer closed the connection before its preamble: %w", err)
			}
			return err
		}
		return checkPreamble(pre[:])
	}
	readMsg := func(which string) ([]byte, error) {
		var hdr [2]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			if isEOF(err) {
				return nil, fmt.Errorf("peer closed the connection instead of sending %s; it refused the handshake (see its log: network key, pin, limit or duplicate): %w", which, err)
			}
			return nil, err
		}
		n, err := handshakeLen(hdr[:])
		if err != nil {
			return nil, err
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(conn, msg); err != nil {
			return nil, err
		}
		return msg, nil
	}
	frame := func(dst, msg []byte) []byte {
		dst = append(dst, byte(len(msg)>>8), byte(len(msg)))
		return append(dst, msg...)
	}

	if initiator {
		msg1, _, err := hs.Step(nil)
		if err != nil {
			return nil, err
		}
		if _, err := conn.Write(frame(appendPreamble(nil), msg1)); err != nil {
			return nil, err
		}
		if err := readPre(); err != nil {
			return nil, err
		}
		msg2, err := readMsg("message 2")
		if err != nil {
			return nil, err
		}
		msg3, _, err := hs.Step(msg2)
		if err != nil {
			return nil, err
		}
		if _, err := conn.Write(frame(nil, msg3)); err != nil {
			return nil, err
		}
		sess := hs.Session()
		// The responder confirms with one keepalive record.
		var hdr [recordHeader]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			if isEOF(err) {
				return nil, fmt.Errorf("peer closed the connection after our identity; it refused us (see its log: pin, limit or duplicate): %w", err)
			}
			return nil, err
		}
		n, err := recordLen(hdr[:])
		if err != nil {
			return nil, fmt.Errorf("%w: confirmation: %v", ErrMalformed, err)
		}
		ct := make([]byte, n)
		if _, err := io.ReadFull(conn, ct); err != nil {
			return nil, err
		}
		d := decoder{open: sess.recv}
		if _, ka, err := d.record(ct); err != nil || !ka {
			return nil, fmt.Errorf("%w: bad confirmation record", ErrMalformed)
		}
		return sess, nil
	}

	if err := readPre(); err != nil {
		return nil, err
	}
	if _, err := conn.Write(appendPreamble(nil)); err != nil {
		return nil, err
	}
	msg1, err := readMsg("message 1")
	if err != nil {
		return nil, err
	}
	msg2, _, err := hs.Step(msg1)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(frame(nil, msg2)); err != nil {
		return nil, err
	}
	msg3, err := readMsg("message 3")
	if err != nil {
		return nil, err
	}
	if _, _, err := hs.Step(msg3); err != nil {
		return nil, err
	}
	return hs.Session(), nil
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// handshakeFailed counts and logs a failed handshake: a refused pin
// loudly, everything else once per reason per LogInterval.
func (t *Transport) handshakeFailed(err error, remote string, outbound bool, endpoint string) {
	r := reasonOf(err)
	t.mu.Lock()
	t.failures[r]++
	t.mu.Unlock()
	attrs := []slog.Attr{slog.String("reason", string(r)), slog.String("remote", remote), slog.Bool("outbound", outbound), slog.String("err", err.Error())}
	switch r {
	case ReasonPin:
		t.rl.Log("pin:"+endpoint+remote, slog.LevelError, "tcp: REFUSED peer: its identity does not match the pinned one (possible impersonation, or its key changed)", attrs...)
	case ReasonSelf, ReasonDuplicate:
		t.rl.Log("hs:"+string(r), slog.LevelDebug, "tcp: handshake dropped", attrs...)
	case ReasonNetworkKey:
		t.rl.Log("hs:"+string(r), slog.LevelWarn, "tcp: refused handshake: network key mismatch", attrs...)
	default:
		t.rl.Log("hs:"+string(r), slog.LevelWarn, "tcp: handshake failed", attrs...)
	}
}

// register turns a completed handshake into a Link, or refuses it.
// Duplicate links to one peer (both sides dialed at once, or a peer that
// restarted) are settled the same way on both ends: between links dialed
// in the same direction the newer wins; between opposite directions the
// one dialed by the smaller key wins.
func (t *Transport) register(conn net.Conn, sess *session, outbound bool) (*Link, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.running || t.stopping {
		return nil, ErrNotRunning
	}
	old := t.links[sess.peer]
	if old != nil && old.outbound != outbound {
		dialerNew, dialerOld := sess.peer, t.self
		if outbound {
			dialerNew, dialerOld = t.self, sess.peer
		}
		if !lessKey(dialerNew, dialerOld) {
			return nil, fmt.Errorf("%w: keeping the existing link %s", ErrDuplicate, old.info.ID)
		}
	}
	if old == nil && len(t.links) >= t.opts.MaxLinks {
		return nil, fmt.Errorf("%w: %d links", ErrLimit, t.opts.MaxLinks)
	}
	id := fmt.Sprintf("tcp-%s-%d", t.instance, t.nextID.Add(1))
	l := &Link{
		t: t, conn: conn, sess: sess, outbound: outbound, addr: sess.peer.Address(),
		remote: conn.RemoteAddr().String(), up: time.Now(),
		info: transport.Info{
			ID: id, Kind: "tcp", MTU: MaxFrameSize, Bitrate: t.opts.Bitrate, Cost: 1,
			Ordered: true, Peer: sess.peer, HasPeer: true,
		},
		q:          make(chan []byte, t.opts.SendQueue),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	if old != nil {
		old.shut(fmt.Errorf("%w: replaced by %s", ErrDuplicate, id))
	}
	t.links[sess.peer] = l
	t.okCount++
	return l, nil
}

// unregister forgets l and closes its connection.
func (t *Transport) unregister(l *Link) {
	l.shut(nil)
	t.mu.Lock()
	if t.links[l.info.Peer] == l {
		delete(t.links, l.info.Peer)
	}
	t.mu.Unlock()
}

func lessKey(a, b envelope.PublicKey) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// runLink drives a registered link until it goes down: LinkUp, the write
// loop in its own goroutine, the read loop in this one, then LinkDown.
// up, when set, is closed once LinkUp has returned.
func (t *Transport) runLink(l *Link, up chan<- struct{}) {
	h := t.h
	t.log.Debug("tcp: link up", "link", l.info.ID, "peer", l.info.Peer.Address().String(), "remote", l.remote, "outbound", l.outbound, "pq", l.sess.pq)
	h.LinkUp(l)
	if up != nil {
		close(up)
	}
	t.wg.Add(1) // safe: this goroutine is itself counted
	go func() {
		defer t.wg.Done()
		l.writeLoop()
	}()
	err := l.readLoop(h)
	l.shut(err)
	<-l.writerDone
	t.unregister(l)
	if l.err != nil {
		t.log.Info("tcp: link down", "link", l.info.ID, "peer", l.info.Peer.Address().String(), "err", l.err.Error())
	}
	h.LinkDown(l, l.err)
}

// Linked reports whether a link to the node with address a is up or a dial
// to it is under way.
func (t *Transport) Linked(a envelope.Address) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dialing[a] > 0 {
		return true
	}
	for _, l := range t.links {
		if l.addr == a {
			return true
		}
	}
	return false
}

// DialAddress dials endpoint expecting the node with address a there (the
// discovery package calls it).
func (t *Transport) DialAddress(ctx context.Context, endpoint string, a envelope.Address) error {
	_, err := t.Dial(ctx, Peer{Endpoint: endpoint, Address: a, HasAddress: true})
	return err
}

// Dial connects to p and brings a link up. Called before Run first starts,
// it waits for Run (or ctx); after Run has returned it fails with
// ErrNotRunning. It returns
// once the Handler's LinkUp for the new link has returned, or the existing
// link when one to the expected peer is already up.
func (t *Transport) Dial(ctx context.Context, p Peer) (*Link, error) {
	return t.dial(ctx, p, false)
}

func (t *Transport) dial(ctx context.Context, p Peer, static bool) (*Link, error) {
	want, hasWant := p.wantAddress()
	if static && !hasWant && t.opts.Pins != nil {
		// A pinned static peer is known by its key: no need to dial it while
		// a link to it (dialed by either side) is up.
		if k, ok, err := t.opts.Pins.Pinned(p.Endpoint); err == nil && ok {
			want, hasWant = k.Address(), true
		}
	}
	select {
	case <-t.started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	t.mu.Lock()
	if !t.running || t.stopping {
		t.mu.Unlock()
		return nil, ErrNotRunning
	}
	if hasWant {
		if want == t.self.Address() {
			t.mu.Unlock()
			return nil, ErrSelf
		}
		for _, l := range t.links {
			if l.addr == want {
				t.mu.Unlock()
				return l, nil
			}
		}
		t.dialing[want]++
		defer func() {
			t.mu.Lock()
			if t.dialing[want]--; t.dialing[want] <= 0 {
				delete(t.dialing, want)
			}
			t.mu.Unlock()
		}()
	}
	t.dials++
	runCtx := t.runCtx
	t.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(runCtx, cancel)()
	d := net.Dialer{Timeout: t.opts.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", p.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("tcp: dial %s: %w", p.Endpoint, err)
	}
	if !t.track(conn) {
		conn.Close()
		return nil, ErrNotRunning
	}
	var pinNew bool
	var existing *Link
	accept := func(k envelope.PublicKey) error {
		if p.HasKey && !k.Equal(p.Key) {
			return fmt.Errorf("%w: %s proved key %s (fingerprint %s), configured %s (fingerprint %s)",
				ErrPinMismatch, p.Endpoint, k, k.Fingerprint(), p.Key, p.Key.Fingerprint())
		}
		if p.HasAddress && k.Address() != p.Address {
			return fmt.Errorf("%w: %s proved address %s, expected %s", ErrPinMismatch, p.Endpoint, k.Address(), p.Address)
		}
		if static && t.opts.Pins != nil && !p.HasKey {
			pinned, ok, err := t.opts.Pins.Pinned(p.Endpoint)
			if err != nil {
				return fmt.Errorf("tcp: pin store: %w", err)
			}
			if ok && !pinned.Equal(k) {
				return fmt.Errorf("%w: %s proved key %s (fingerprint %s), pinned %s (fingerprint %s)",
					ErrPinMismatch, p.Endpoint, k, k.Fingerprint(), pinned, pinned.Fingerprint())
			}
			pinNew = !ok
		}
		// Already linked over a connection the peer dialed, and the
		// tie-break (see register) would make the peer refuse this one:
		// stop before revealing our identity and use the existing link.
		t.mu.Lock()
		ex := t.links[k]
		t.mu.Unlock()
		if ex != nil && !ex.outbound && !lessKey(t.self, k) {
			existing = ex
			return fmt.Errorf("%w: keeping the existing link %s", ErrDuplicate, ex.info.ID)
		}
		return nil
	}
	sess, err := t.handshake(ctx, conn, true, accept)
	t.untrack(conn)
	if err != nil && existing != nil && errors.Is(err, ErrDuplicate) {
		conn.Close()
		return existing, nil
	}
	if err != nil {
		conn.Close()
		if ctx.Err() == nil {
			t.handshakeFailed(err, p.Endpoint, true, p.Endpoint)
		}
		return nil, &HandshakeError{Reason: reasonOf(err), Remote: p.Endpoint, Outbound: true, Err: err}
	}
	if pinNew {
		if err := t.opts.Pins.Pin(p.Endpoint, sess.peer); err != nil {
			t.log.Warn("tcp: could not pin peer", "endpoint", p.Endpoint, "err", err.Error())
		} else {
			t.log.Info("tcp: pinned peer identity on first contact", "endpoint", p.Endpoint, "address", sess.peer.Address().String(), "fingerprint", sess.peer.Fingerprint())
		}
	}
	l, err := t.register(conn, sess, true)
	if err != nil {
		conn.Close()
		if errors.Is(err, ErrDuplicate) {
			// Linked already, over a connection the peer dialed: that is
			// what the caller wanted.
			t.mu.Lock()
			existing := t.links[sess.peer]
			t.mu.Unlock()
			if existing != nil {
				return existing, nil
			}
		}
		t.handshakeFailed(err, p.Endpoint, true, p.Endpoint)
		return nil, &HandshakeError{Reason: reasonOf(err), Remote: p.Endpoint, Outbound: true, Err: err}
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

// staticPeerLoop keeps one static peer linked: dial, wait for the link to
// go down, back off, dial again. The backoff restarts once a link has
// stayed up longer than RedialMax.
func (t *Transport) staticPeerLoop(ctx context.Context, p Peer) {
	defer t.wg.Done()
	var seed [32]byte
	io.ReadFull(rand.Reader, seed[:])
	r := mrand.New(mrand.NewChaCha8(seed))
	attempt := 0
	for {
		l, err := t.dial(ctx, p, true)
		if err == nil {
			select {
			case <-l.done:
			case <-ctx.Done():
				return
			}
			if time.Since(l.up) > t.opts.RedialMax {
				attempt = 0
			}
		} else if errors.Is(err, ErrNotRunning) || ctx.Err() != nil {
			return
		} else {
			t.rl.Log("dial:"+p.Endpoint, slog.LevelInfo, "tcp: static peer unreachable; will retry", slog.String("endpoint", p.Endpoint), slog.String("err", err.Error()))
		}
		attempt++
		wait := time.NewTimer(backoffDelay(attempt, t.opts.RedialMin, t.opts.RedialMax, r))
		select {
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return
		}
	}
}

// Stats is a snapshot of the transport's counters.
type Stats struct {
	Links             []LinkStats
	HandshakesOK      uint64
	HandshakeFailures map[Reason]uint64
	// InboundRefused counts connections closed at accept because
	// MaxHandshakes handshakes were already in progress.
	InboundRefused uint64
	Dials          uint64
}

// Stats returns a snapshot of the transport's counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{HandshakesOK: t.okCount, InboundRefused: t.refused, Dials: t.dials, HandshakeFailures: make(map[Reason]uint64, len(t.failures))}
	for r, n := range t.failures {
		s.HandshakeFailures[r] = n
	}
	for _, l := range t.links {
		s.Links = append(s.Links, l.Stats())
	}
	return s
}
