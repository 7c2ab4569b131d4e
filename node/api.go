package node

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	http "github.com/openmeshd/meshd/node/httpd"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
)

// MaxBody bounds every API request body.
const MaxBody = 64 << 10

// apiServer serves the local API on the unix socket and, optionally, TCP.
type apiServer struct {
	servers []*http.Server
	wg      sync.WaitGroup
	socket  string
	log     *slog.Logger // refused connections, handler panics
}

func (a *apiServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range a.servers {
		_ = s.Shutdown(ctx)
	}
	a.wg.Wait()
	if a.socket != "" {
		_ = os.Remove(a.socket)
	}
}

// startAPI listens on the socket (and TCP address) and serves in the
// background.
func (n *Node) startAPI() (*apiServer, error) {
	a := &apiServer{log: n.log}
	ln, err := listenUnix(n.paths.Socket)
	if err != nil {
		return nil, err
	}
	a.socket = n.paths.Socket
	a.serve(ln, n.handler(""))
	if n.cfg.API.Listen != "" {
		token, err := loadOrCreateToken(n.paths.Token)
		if err != nil {
			a.shutdown()
			return nil, err
		}
		tl, err := net.Listen("tcp", n.cfg.API.Listen)
		if err != nil {
			a.shutdown()
			return nil, fmt.Errorf("api.listen %s: %w", n.cfg.API.Listen, err)
		}
		a.serve(tl, n.handler(token))
		n.log.Info("API on TCP with bearer token", "addr", tl.Addr().String(), "token_file", n.paths.Token)
	}
	if err := n.startWeb(a); err != nil { // web.listen: the web UI (webserver.go)
		a.shutdown()
		return nil, err
	}
	return a, nil
}

func (a *apiServer) serve(ln net.Listener, h http.Handler) {
	// httpd's zero values are limits (1 MiB bodies, 128 connections, a
	// minute per write): enough for the API, whose bodies are at most
	// MaxBody, and for event streams, which write every few seconds.
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10, Logger: a.log}
	a.servers = append(a.servers, s)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		_ = s.Serve(ln)
	}()
}

// listenUnix binds the API socket with mode 0660, replacing a stale socket
// but refusing to steal one a running daemon answers on.
func listenUnix(path string) (net.Listener, error) {
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("API socket %s: %w", path, ErrLocked)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale API socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	return ln, nil
}

func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		t := strings.TrimSpace(string(b))
		if len(t) < 32 {
			return "", fmt.Errorf("API token %s is shorter than 32 characters", path)
		}
		return t, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("API token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	t := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	return t, nil
}

// apiError is the body of every error response.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code string, err error) {
	var e apiError
	e.Error.Code, e.Error.Message = code, err.Error()
	writeJSON(w, status, e)
}

// fail maps an error to a status and code.
func fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrTextTooLong):
		writeError(w, http.StatusBadRequest, "bad_request", err)
	case errors.Is(err, ErrUnknownRecipient):
		writeError(w, http.StatusUnprocessableEntity, "unknown_recipient", err)
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err)
	case errors.Is(err, routing.ErrOutboxFull):
		writeError(w, http.StatusServiceUnavailable, "outbox_full", err)
	case errors.Is(err, routing.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err)
	case errors.Is(err, ErrStopped), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "unavailable", err)
	default:
		writeError(w, http.StatusInternalServerError, "internal", err)
	}
}

// readJSON decodes a bounded body strictly: unknown fields are errors.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: Content-Type must be application/json", ErrBadRequest)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: body larger than %d bytes", ErrBadRequest, MaxBody)
		}
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON body", ErrBadRequest)
	}
	return nil
}

// handler builds the API. A non-empty token requires "Authorization:
// Bearer <token>" on every request (TCP); the unix socket is protected by
// its file mode.
func (n *Node) handler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/id", n.apiID)
	mux.HandleFunc("GET /v1/status", n.apiStatus)
	mux.HandleFunc("GET /v1/links", n.apiLinks)
	mux.HandleFunc("GET /v1/peers", n.apiPeers)
	mux.HandleFunc("GET /v1/routes", n.apiRoutes)
	mux.HandleFunc("GET /v1/contacts", n.apiContacts)
	mux.HandleFunc("POST /v1/contacts", n.apiAddContact)
	mux.HandleFunc("GET /v1/contacts/{name}", n.apiContact)
	mux.HandleFunc("POST /v1/contacts/{name}/verify", n.apiVerifyContact)
	mux.HandleFunc("DELETE /v1/contacts/{name}", n.apiDeleteContact)
	mux.HandleFunc("POST /v1/messages", n.apiSend)
	mux.HandleFunc("GET /v1/outbox", n.apiOutbox)
	mux.HandleFunc("GET /v1/outbox/{id}", n.apiOutMessage)
	mux.HandleFunc("GET /v1/inbox", n.apiInbox)
	mux.HandleFunc("POST /v1/inbox/{seq}/read", n.apiRead)
	mux.HandleFunc("GET /v1/events", n.apiEvents)
	mux.HandleFunc("GET /metrics", n.apiMetrics)
	n.viewRoutes(mux) // read-only views for the web UI (views.go)
	for _, a := range n.apps {
		a.Routes(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The catch-all hides the mux's own 405: find the methods the path
		// does have.
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Errorf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		writeError(w, http.StatusNotFound, "not_found", fmt.Errorf("no API endpoint %s %s (see docs/api.md)", r.Method, r.URL.Path))
	})
	if token == "" {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshd"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", errors.New("missing or wrong bearer token"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// IDView is this node's identity.
type IDView struct {
	Address     string `json:"address"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	Name        string `json:"name,omitempty"`
}

func (n *Node) idView() IDView {
	pub := n.id.PublicKey()
	return IDView{Address: n.id.Address().String(), PublicKey: pub.String(), Fingerprint: pub.Fingerprint(), Name: n.cfg.Name}
}

func (n *Node) apiID(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, n.idView()) }

// StatusView summarises the node.
type StatusView struct {
	IDView
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Links         int     `json:"links"`
	Peers         int     `json:"peers"`
	Routes        int     `json:"routes"`
	Outbox        int     `json:"outbox"`
	HeldMessages  int     `json:"held_messages"`
	HeldBytes     int     `json:"held_bytes"`
	StoreBytes    int64   `json:"store_bytes"`
	Unread        int     `json:"unread"`
}

func (n *Node) apiStatus(w http.ResponseWriter, r *http.Request) {
	var v StatusView
	err := n.call(r.Context(), func(now time.Time) {
		v = StatusView{IDView: n.idView(), Version: n.o.Version, UptimeSeconds: now.Sub(n.started).Seconds(),
			Links: len(n.links), Peers: len(n.router.Peers(now)), Routes: len(n.router.Routes(now)), Outbox: n.router.OutboxLen()}
		v.HeldMessages, v.HeldBytes = n.router.HeldLen()
	})
	if err != nil {
		fail(w, err)
		return
	}
	v.StoreBytes = n.storeSize()
	_, _, v.Unread, _ = n.app.counts()
	writeJSON(w, http.StatusOK, v)
}

func (n *Node) storeSize() int64 {
	st, err := os.Stat(n.paths.Store)
	if err != nil {
		return 0
	}
	return st.Size()
}

func (n *Node) apiLinks(w http.ResponseWriter, r *http.Request) {
	var out []LinkView
	err := n.call(r.Context(), func(now time.Time) {
		out = make([]LinkView, 0, len(n.links))
		for _, ls := range n.links {
			v := linkView(ls.info, ls.up, now)
			v.Queued = len(ls.q)
			out = append(out, v)
		}
	})
	if err != nil {
		fail(w, err)
		return
	}
	sortBy(out, func(v LinkView) string { return v.ID })
	writeJSON(w, http.StatusOK, out)
}

// PeerView is a known identity.
type PeerView struct {
	Address     string `json:"address"`
	PublicKey   string `json:"public_key,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Name        string `json:"name,omitempty"`         // local petname
	Claimed     string `json:"claimed_name,omitempty"` // self-chosen, unverified
	Reachable   bool   `json:"reachable"`
	Neighbour   bool   `json:"neighbour"`
}

func (n *Node) apiPeers(w http.ResponseWriter, r *http.Request) {
	var peers []routing.PeerInfo
	neigh := map[envelope.Address]bool{}
	err := n.call(r.Context(), func(now time.Time) {
		peers = n.router.Peers(now)
		for _, nb := range n.router.Neighbours() {
			if nb.HasPeer {
				neigh[nb.Peer.Address()] = true
			}
		}
	})
	if err != nil {
		fail(w, err)
		return
	}
	out := make([]PeerView, 0, len(peers))
	for _, p := range peers {
		v := PeerView{Address: p.Address.String(), Name: n.app.contactByAddress(p.Address.String()),
			Claimed: sanitizeName(string(p.AppData)), Reachable: p.Reachable, Neighbour: neigh[p.Address]}
		if p.HasKey {
			v.PublicKey, v.Fingerprint = p.Key.String(), p.Key.Fingerprint()
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

// RouteView is a selected route.
type RouteView struct {
	Destination string  `json:"destination"`
	Name        string  `json:"name,omitempty"`
	Link        string  `json:"link"`
	LinkKind    string  `json:"link_kind"`
	Via         string  `json:"via,omitempty"`
	Hops        int     `json:"hops"`
	Metric      uint32  `json:"metric"`
	ExpiresIn   float64 `json:"expires_in_seconds"`
}

func (n *Node) apiRoutes(w http.ResponseWriter, r *http.Request) {
	var routes []routing.RouteInfo
	var now time.Time
	err := n.call(r.Context(), func(t time.Time) { now, routes = t, n.router.Routes(t) })
	if err != nil {
		fail(w, err)
		return
	}
	out := make([]RouteView, 0, len(routes))
	for _, rt := range routes {
		out = append(out, RouteView{Destination: rt.Dest.String(), Name: n.app.contactByAddress(rt.Dest.String()),
			Link: string(rt.Link), LinkKind: rt.LinkKind, Via: hex.EncodeToString([]byte(rt.Via)), Hops: int(rt.Hops) + 1,
			Metric: rt.Metric, ExpiresIn: rt.Expires.Sub(now).Seconds()})
	}
	writeJSON(w, http.StatusOK, out)
}

// ContactView is a contact with what the router knows of it.
type ContactView struct {
	Contact
	Fingerprint  string `json:"fingerprint,omitempty"`
	SafetyNumber string `json:"safety_number,omitempty"`
	Claimed      string `json:"claimed_name,omitempty"`
	Reachable    bool   `json:"reachable"`
}

func (n *Node) contactView(ctx context.Context, c Contact) ContactView {
	v := ContactView{Contact: c}
	if a, err := envelope.ParseAddress(c.Address); err == nil {
		_ = n.call(ctx, func(now time.Time) {
			if p, ok := n.router.Peer(a); ok {
				if p.HasKey && v.Key == "" {
					v.Key = p.Key.String()
				}
				v.Claimed, v.Reachable = sanitizeName(string(p.AppData)), p.Reachable
			}
		})
	}
	if k, err := parseKeyHex(v.Key); err == nil {
		v.Fingerprint = k.Fingerprint()
		v.SafetyNumber = envelope.SafetyNumber(n.id.PublicKey(), k)
	}
	return v
}

func (n *Node) apiContacts(w http.ResponseWriter, r *http.Request) {
	cs, err := n.app.contacts()
	if err != nil {
		fail(w, err)
		return
	}
	out := make([]ContactView, 0, len(cs))
	for _, c := range cs {
		out = append(out, n.contactView(r.Context(), c))
	}
	writeJSON(w, http.StatusOK, out)
}

func validContactName(s string) error {
	if s == "" || len(s) > 64 || !utfPrintable(s) || strings.ContainsAny(s, "/") {
		return fmt.Errorf("%w: a contact name is 1-64 printable characters without '/'", ErrBadRequest)
	}
	if len(s) == 2*envelope.AddressSize || len(s) == 2*envelope.PublicKeySize {
		if _, err := hex.DecodeString(s); err == nil {
			return fmt.Errorf("%w: a contact name must not look like an address or key", ErrBadRequest)
		}
	}
	return nil
}

func utfPrintable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

func (n *Node) apiAddContact(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name    string `json:"name"`
		Address string `json:"address"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	if err := validContactName(req.Name); err != nil {
		fail(w, err)
		return
	}
	c := Contact{Name: req.Name, Added: n.clk.Now().UTC()}
	switch len(strings.TrimSpace(req.Address)) {
	case 2 * envelope.PublicKeySize:
		k, err := parseKeyHex(strings.TrimSpace(req.Address))
		if err != nil {
			fail(w, fmt.Errorf("%w: %v", ErrBadRequest, err))
			return
		}
		c.Key, c.Address = k.String(), k.Address().String()
	default:
		a, err := envelope.ParseAddress(req.Address)
		if err != nil {
			fail(w, fmt.Errorf("%w: %v", ErrBadRequest, err))
			return
		}
		c.Address = a.String()
	}
	if c.Address == n.id.Address().String() {
		fail(w, fmt.Errorf("%w: that is this node's own address", ErrBadRequest))
		return
	}
	if old, err := n.app.contact(c.Name); err == nil && old.Address != c.Address {
		writeError(w, http.StatusConflict, "exists", fmt.Errorf("contact %q already names %s; remove it first", c.Name, old.Address))
		return
	}
	if err := n.app.putContact(&c); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, n.contactView(r.Context(), c))
}

func (n *Node) apiContact(w http.ResponseWriter, r *http.Request) {
	c, err := n.app.contact(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.contactView(r.Context(), *c))
}

// apiVerifyContact marks a contact verified after the person compared the
// safety number; it needs the key to be known.
func (n *Node) apiVerifyContact(w http.ResponseWriter, r *http.Request) {
	c, err := n.app.contact(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	v := n.contactView(r.Context(), *c)
	if v.Key == "" {
		writeError(w, http.StatusConflict, "key_unknown", errors.New("the contact's key is not known yet: wait for its announce, or add it by key"))
		return
	}
	c.Key, c.Verified = v.Key, true
	if err := n.app.putContact(c); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.contactView(r.Context(), *c))
}

func (n *Node) apiDeleteContact(w http.ResponseWriter, r *http.Request) {
	if err := n.app.deleteContact(r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) apiSend(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To   string `json:"to"`
		Text string `json:"text"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, err := n.SendText(ctx, req.To, req.Text)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}

func queryInt(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s must be a non-negative integer", ErrBadRequest, name)
	}
	return v, nil
}

func (n *Node) apiOutbox(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit", 100)
	if err != nil {
		fail(w, err)
		return
	}
	out, err := n.app.listOut(int(min(limit, 10000)))
	if err != nil {
		fail(w, err)
		return
	}
	if out == nil {
		out = []OutMessage{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) apiOutMessage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		fail(w, fmt.Errorf("%w: message id must be a number", ErrBadRequest))
		return
	}
	m, err := n.app.getOut(id)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (n *Node) apiInbox(w http.ResponseWriter, r *http.Request) {
	after, err := queryInt(r, "after", 0)
	if err != nil {
		fail(w, err)
		return
	}
	limit, err := queryInt(r, "limit", 1000)
	if err != nil {
		fail(w, err)
		return
	}
	unread := r.URL.Query().Get("unread") == "1" || r.URL.Query().Get("unread") == "true"
	out, err := n.app.listIn(after, unread, int(min(limit, 10000)))
	if err != nil {
		fail(w, err)
		return
	}
	if out == nil {
		out = []InMessage{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) apiRead(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		fail(w, fmt.Errorf("%w: message seq must be a number", ErrBadRequest))
		return
	}
	if err := n.app.markRead(seq); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiEvents streams events as server-sent events until the client goes.
func (n *Node) apiEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "internal", errors.New("streaming unsupported"))
		return
	}
	types := map[string]bool{}
	for _, t := range strings.Split(r.URL.Query().Get("types"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			types[t] = true
		}
	}
	events, cancel := n.hub.subscribe(256)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, ": meshd events\n\n")
	fl.Flush()
	keepalive := time.NewTicker(20 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case ev, ok := <-events:
			if !ok {
				return
			}
			if len(types) > 0 && !types[ev.Type] {
				continue
			}
			b, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, b); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

func sortBy[T any](s []T, key func(T) string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && key(s[j]) < key(s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
