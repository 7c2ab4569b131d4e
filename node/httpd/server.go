package httpd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Server defaults (the zero values of Server's fields).
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultWriteTimeout      = time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxConns          = 128
)

const (
	// bufSize is the per-connection read and write buffer size, and how
	// much of a response is buffered to be sent with a Content-Length.
	bufSize = 4 << 10
	// minEvictIdle is how long a connection must have been idle to be
	// closed to make room for a new one (Server.MaxConns).
	minEvictIdle = 200 * time.Millisecond
	// maxRefusing bounds the connections being answered 503 at once.
	maxRefusing = 16
	// maxDrainBytes is how much of a request body a handler left unread
	// the server reads to keep the connection.
	maxDrainBytes = 256 << 10
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("httpd: Server closed")

// Server serves HTTP/1.1 on listeners. Set its fields before Serve; a
// Server is not copied after first use.
type Server struct {
	// Handler answers the requests. Nil: every request is 404.
	Handler Handler
	// ReadHeaderTimeout bounds reading a request's line and header, from
	// its first byte (from the accept for a new connection). Zero: 10 s;
	// negative: none. An incomplete header is answered 408.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, its body included.
	// Zero: 1 min; negative: none.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write to the connection, not the whole
	// response, so event streams live as long as the client reads them.
	// Zero: 1 min; negative: none.
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection. Zero: 2 min; negative: none.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and header fields together
	// (431 beyond; the line alone is bounded at 8 KiB, 414). Zero: 16 KiB.
	MaxHeaderBytes int
	// MaxBodyBytes bounds request bodies: a larger Content-Length is
	// answered 413 before the handler runs, a longer chunked body fails
	// the handler's read with *MaxBytesError. Zero: 1 MiB; negative: no
	// bound (handlers use MaxBytesReader).
	MaxBodyBytes int64
	// MaxConns bounds the open connections: beyond it the connection idle
	// the longest (waiting for a request for at least 200 ms) is closed to
	// make room, or else the new connection is answered 503 and closed.
	// Zero: 128; negative: no bound.
	MaxConns int
	// Logger receives handler panics and refused connections. Nil:
	// discarded.
	Logger *slog.Logger

	initOnce   sync.Once
	ctx        context.Context // cancelled by Shutdown and Close: ends every request's context
	cancel     context.CancelFunc
	inShutdown atomic.Bool

	mu         sync.Mutex
	listeners  map[*net.Listener]struct{}
	conns      map[*conn]struct{}
	onShutdown []func()
	refusing   chan struct{} // a slot per refusal being answered
	refused    int           // connections refused since the last log
	refusedLog time.Time     // when that was logged

	date atomic.Pointer[dateStamp]
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.refusing = make(chan struct{}, maxRefusing)
	})
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (s *Server) readHeaderTimeout() time.Duration {
	return orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
}
func (s *Server) readTimeout() time.Duration  { return orDefault(s.ReadTimeout, DefaultReadTimeout) }
func (s *Server) writeTimeout() time.Duration { return orDefault(s.WriteTimeout, DefaultWriteTimeout) }
func (s *Server) idleTimeout() time.Duration  { return orDefault(s.IdleTimeout, DefaultIdleTimeout) }
func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes <= 0 {
		return DefaultMaxHeaderBytes
	}
	return s.MaxHeaderBytes
}
func (s *Server) maxBodyBytes() int64 {
	switch {
	case s.MaxBodyBytes == 0:
		return DefaultMaxBodyBytes
	case s.MaxBodyBytes < 0:
		return -1
	}
	return s.MaxBodyBytes
}

// RegisterOnShutdown registers f to be called (in its own goroutine) when
// Shutdown starts.
func (s *Server) RegisterOnShutdown(f func()) {
	s.mu.Lock()
	s.onShutdown = append(s.onShutdown, f)
	s.mu.Unlock()
}

// Serve accepts connections on l and serves each in its own goroutine
// until Shutdown or Close (then it returns ErrServerClosed) or an accept
// error that is not temporary. It closes l.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	defer l.Close()
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[&l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		rw, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("httpd: accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(rw)
		if !s.admit(c) {
			if s.inShutdown.Load() {
				_ = rw.Close()
				return ErrServerClosed
			}
			s.refuse(rw)
			continue
		}
		go c.serve()
	}
}

// admit tracks c, making room by closing an idle connection when at
// MaxConns.
func (s *Server) admit(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return false
	}
	if limit := orDefault(s.MaxConns, DefaultMaxConns); limit > 0 && len(s.conns) >= limit {
		// Close the connection idle the longest, if for at least
		// minEvictIdle: a new connection's request may be on its way.
		var oldest *conn
		cutoff := time.Now().Add(-minEvictIdle).UnixNano()
		for old := range s.conns {
			if t := old.idleSince.Load(); t <= cutoff && old.state.Load() == stateIdle && (oldest == nil || t < oldest.idleSince.Load()) {
				oldest = old
			}
		}
		if oldest == nil || !oldest.closeIfIdle() {
			return false
		}
		delete(s.conns, oldest) // its goroutine's untrack is then a no-op
	}
	s.conns[c] = struct{}{}
	return true
}

// refuse answers a connection beyond MaxConns 503 and closes it, at most
// maxRefusing at a time (beyond, it just closes); refusals are logged at
// most once a minute.
func (s *Server) refuse(rw net.Conn) {
	select {
	case s.refusing <- struct{}{}:
		go func() {
			defer func() { <-s.refusing }()
			_ = rw.SetDeadline(time.Now().Add(500 * time.Millisecond))
			_, _ = io.WriteString(rw, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 26\r\n\r\ntoo many open connections\n")
			// Closing with the request unread would reset the connection
			// and lose the answer: half-close, then read until the client
			// closes (or the deadline).
			if cw, ok := rw.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
				_, _ = io.CopyN(io.Discard, rw, 64<<10)
			}
			_ = rw.Close()
		}()
	default:
		_ = rw.Close()
	}
	s.mu.Lock()
	s.refused++
	now := time.Now()
	if now.Sub(s.refusedLog) >= time.Minute {
		s.logger().Warn("httpd: connections refused: too many open", "count", s.refused, "max_conns", orDefault(s.MaxConns, DefaultMaxConns))
		s.refused, s.refusedLog = 0, now
	}
	s.mu.Unlock()
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops the server gracefully: it closes the listeners and the
// idle connections, cancels every request's context (event streams end),
// calls the RegisterOnShutdown functions, and waits for the active
// connections to finish their request (they are then closed) until ctx
// ends, returning ctx's error then.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.inShutdown.Store(true)
	s.mu.Lock()
	err := s.closeListenersLocked()
	for _, f := range s.onShutdown {
		go f()
	}
	s.mu.Unlock()
	s.cancel()
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		if s.closeIdle() {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			wait = min(2*wait, 100*time.Millisecond)
			t.Reset(wait)
		}
	}
}

// Close stops the server at once: listeners and every connection are
// closed, request contexts cancelled.
func (s *Server) Close() error {
	s.init()
	s.inShutdown.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.closeListenersLocked()
	s.cancel()
	for c := range s.conns {
		c.state.Store(stateClosed)
		_ = c.rwc.Close()
	}
	return err
}

func (s *Server) closeListenersLocked() error {
	var err error
	for l := range s.listeners {
		if e := (*l).Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// closeIdle closes the idle connections and reports whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.closeIfIdle()
	}
	return len(s.conns) == 0
}

// dateStamp caches the Date field for one second.
type dateStamp struct {
	unix  int64
	field []byte // "Date: ...\r\n"
}

func (s *Server) dateField(now time.Time) []byte {
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.unix == sec {
		return d.field
	}
	b := append([]byte("Date: "), now.UTC().AppendFormat(nil, TimeFormat)...)
	b = append(b, "\r\n"...)
	s.date.Store(&dateStamp{unix: sec, field: b})
	return b
}

// Connection states: idle (waiting for a request's first byte), active
// (reading or answering a request), closed.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

type conn struct {
	srv    *Server
	rwc    net.Conn
	remote string
	state  atomic.Int32
	// idleSince is when the connection was accepted or last became idle
	// (Unix nanoseconds).
	idleSince atomic.Int64
	cr        connReader
	br        *bufio.Reader
	bw        *bufio.Writer
	wbuf      []byte // response body buffered before the header is sent
	hbuf      []byte // header being formatted
}

func (s *Server) newConn(rw net.Conn) *conn {
	c := &conn{srv: s, rwc: rw}
	c.idleSince.Store(time.Now().UnixNano())
	if a := rw.RemoteAddr(); a != nil {
		c.remote = a.String()
	}
	c.cr.conn = rw
	c.cr.cond.L = &c.cr.mu
	return c
}

// closeIfIdle closes c if it is waiting for a request.
func (c *conn) closeIfIdle() bool {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		_ = c.rwc.Close()
		return true
	}
	return false
}

func (c *conn) setReadDeadline(d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = c.rwc.SetReadDeadline(t)
}

func (c *conn) serve() {
	s := c.srv
	defer func() {
		c.state.Store(stateClosed)
		_ = c.rwc.Close()
		s.untrack(c)
	}()
	c.br = bufio.NewReaderSize(&c.cr, bufSize)
	c.bw = bufio.NewWriterSize(deadlineWriter{c}, bufSize)
	c.wbuf = make([]byte, 0, bufSize)
	c.setReadDeadline(s.readHeaderTimeout()) // a new connection: first byte and header
	for first := true; ; first = false {
		if !first {
			c.setReadDeadline(s.idleTimeout())
		}
		if c.br.Buffered() == 0 {
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // closed while idle
		}
		start := time.Now()
		if !first {
			c.setReadDeadline(s.readHeaderTimeout())
		}
		req, fr, err := readRequest(c.br, requestLimits{maxHeaderBytes: s.maxHeaderBytes()})
		if err != nil {
			c.replyError(err)
			return
		}
		if rt := s.readTimeout(); rt > 0 {
			_ = c.rwc.SetReadDeadline(start.Add(rt))
		} else {
			_ = c.rwc.SetReadDeadline(time.Time{})
		}
		if !c.serveRequest(req, fr) || s.inShutdown.Load() {
			return
		}
		c.idleSince.Store(time.Now().UnixNano())
		c.state.Store(stateIdle)
		if s.inShutdown.Load() { // Shutdown may have looked before we were idle
			return
		}
	}
}

// replyError answers a request the server could not read, then the
// connection is closed.
func (c *conn) replyError(err error) {
	status := 0
	var pe *protoError
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		status = pe.status
	case errors.As(err, &ne) && ne.Timeout():
		status = StatusRequestTimeout
	case errors.Is(err, io.ErrUnexpectedEOF):
		return
	default:
		return
	}
	msg := strconv.Itoa(status) + " " + StatusText(status)
	b := append(c.hbuf[:0], "HTTP/1.1 "...)
	b = append(b, msg...)
	if pe != nil {
		msg += ": " + pe.msg
	}
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(msg)+1), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, msg...)
	b = append(b, '\n')
	c.hbuf = b
	_, _ = c.bw.Write(b)
	_ = c.bw.Flush()
}

// deadlineWriter sets the write deadline before each write to the
// connection.
type deadlineWriter struct{ c *conn }

func (d deadlineWriter) Write(p []byte) (int, error) {
	if t := d.c.srv.writeTimeout(); t > 0 {
		_ = d.c.rwc.SetWriteDeadline(time.Now().Add(t))
	}
	return d.c.rwc.Write(p)
}

// serveRequest runs the handler for req and finishes the response; it
// reports whether the connection can carry another request.
func (c *conn) serveRequest(req *Request, fr framing) bool {
	s := c.srv
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	req.ctx = ctx
	req.RemoteAddr = c.remote
	w := &response{c: c, req: req, header: Header{}, declared: -1, cancel: cancel}
	w.closeAfter = req.ProtoMinor == 0 || req.Header.has("Connection", "close")

	hasBody := fr.chunked || fr.length > 0
	if exp := req.Header.Values("Expect"); len(exp) > 0 && req.ProtoMinor == 1 {
		if len(exp) != 1 || !equalFoldASCII(exp[0], "100-continue") {
			w.closeAfter = true
			Error(w, "unsupported Expect", StatusExpectationFailed)
			w.finish()
			return false
		}
		w.expectContinue = hasBody
	}
	if max := s.maxBodyBytes(); max >= 0 && fr.length > max {
		w.closeAfter = true
		Error(w, "request body too large", StatusRequestEntityTooLarge)
		w.finish()
		return false
	}
	c.cr.setCancel(cancel)
	if hasBody {
		b := &body{w: w, max: s.maxBodyBytes(), remaining: fr.length}
		if fr.chunked {
			b.chunked = newChunkedReader(c.br)
			b.chunked.limitOverhead = true
		}
		w.body = b
		req.Body = b
	} else {
		req.Body = NoBody
		c.bodyEOF()
	}

	h := s.Handler
	if h == nil {
		h = NotFoundHandler()
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				path := ""
				if req.URL != nil {
					path = req.URL.Path
				}
				s.logger().Error("httpd: handler panic", "method", req.Method, "path", path, "panic", p, "stack", string(debug.Stack()))
				w.recovered()
			}
		}()
		h.ServeHTTP(w, req)
	}()
	w.finish()
	c.cr.abortPendingRead()
	if w.closeAfter || c.cr.broken() {
		return false
	}
	if w.body != nil && !w.body.sawEOF {
		return w.body.drain() // the response is out; the header could not say close
	}
	return true
}

// bodyEOF is called once the request body is read: from then on a read
// from the connection that fails means the client has gone, and cancels
// the request's context.
func (c *conn) bodyEOF() {
	if c.br.Buffered() == 0 {
		c.cr.startBackgroundRead()
	}
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// aLongTimeAgo is a deadline in the past, to interrupt a read.
var aLongTimeAgo = time.Unix(1, 0)

// connReader reads the connection for the bufio.Reader and, while a
// handler runs after the request body was read, keeps one read pending in
// the background to notice the client closing the connection.
type connReader struct {
	conn    net.Conn
	mu      sync.Mutex
	cond    sync.Cond
	inRead  bool
	aborted bool
	hasByte bool
	b       [1]byte
	err     error // a background read's error: the connection is gone
	cancel  context.CancelFunc
}

func (cr *connReader) setCancel(f context.CancelFunc) {
	cr.mu.Lock()
	cr.cancel = f
	cr.mu.Unlock()
}

func (cr *connReader) Read(p []byte) (int, error) {
	cr.mu.Lock()
	if cr.inRead {
		cr.mu.Unlock()
		return 0, errors.New("httpd: concurrent read of the connection")
	}
	if cr.hasByte && len(p) > 0 {
		p[0] = cr.b[0]
		cr.hasByte = false
		cr.mu.Unlock()
		return 1, nil
	}
	if err := cr.err; err != nil {
		cr.mu.Unlock()
		return 0, err
	}
	cr.mu.Unlock()
	return cr.conn.Read(p)
}

func (cr *connReader) startBackgroundRead() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.inRead || cr.err != nil || cr.hasByte {
		return
	}
	cr.inRead = true
	_ = cr.conn.SetReadDeadline(time.Time{})
	go cr.backgroundRead()
}

func (cr *connReader) backgroundRead() {
	n, err := cr.conn.Read(cr.b[:])
	cr.mu.Lock()
	if n == 1 {
		cr.hasByte = true // the next request, pipelined
	}
	if err != nil {
		var ne net.Error
		if !(cr.aborted && errors.As(err, &ne) && ne.Timeout()) {
			cr.err = err
			if cr.cancel != nil {
				cr.cancel()
			}
		}
	}
	cr.aborted = false
	cr.inRead = false
	cr.mu.Unlock()
	cr.cond.Broadcast()
}

// abortPendingRead stops a background read and waits for it.
func (cr *connReader) abortPendingRead() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.cancel = nil
	if !cr.inRead {
		return
	}
	cr.aborted = true
	_ = cr.conn.SetReadDeadline(aLongTimeAgo)
	for cr.inRead {
		cr.cond.Wait()
	}
	_ = cr.conn.SetReadDeadline(time.Time{})
}

func (cr *connReader) broken() bool {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.err != nil
}
