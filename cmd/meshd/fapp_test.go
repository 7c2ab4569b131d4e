package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/fapp"
	"github.com/openmeshd/meshd/node"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/tcp"
)

// FAPP through real daemons and the real CLI: a therapist T and two
// patients in a chain T – P1 – P2. T and P1 are meshd processes; P2 is the
// same node code (node.New, node.Run, its API socket, the real CLI
// binary) run inside the test process, so that every frame its router
// hands to its link can be captured before the link encrypts it: the
// privacy invariant is checked on exactly what the patient's node sends.

// fappEnv: small proof-of-work difficulties, quick announces.
var fappEnv = []string{
	"MESHD_FAPP_QUERY_BITS=4", "MESHD_FAPP_RESERVE_BITS=4", "MESHD_FAPP_PUBLISH_DELAY=1s",
	"MESHD_ROUTING_ANNOUNCE_INTERVAL=4s",
}

// capture wraps a transport and records every frame sent on its links.
type capture struct {
	inner transport.Transport
	mu    sync.Mutex
	sent  [][]byte
}

func (c *capture) Run(ctx context.Context, h transport.Handler) error {
	return c.inner.Run(ctx, &captureHandler{c: c, h: h, links: map[transport.Link]*captureLink{}})
}

// frames returns a copy of what was sent from index from on.
func (c *capture) frames(from int) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.sent[from:]...)
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sent)
}

type captureHandler struct {
	c     *capture
	h     transport.Handler
	mu    sync.Mutex
	links map[transport.Link]*captureLink
}

func (h *captureHandler) wrap(l transport.Link) *captureLink {
	h.mu.Lock()
	defer h.mu.Unlock()
	cl := h.links[l]
	if cl == nil {
		cl = &captureLink{Link: l, c: h.c}
		h.links[l] = cl
	}
	return cl
}

func (h *captureHandler) LinkUp(l transport.Link) { h.h.LinkUp(h.wrap(l)) }
func (h *captureHandler) Receive(l transport.Link, data []byte, m transport.Meta) {
	h.h.Receive(h.wrap(l), data, m)
}
func (h *captureHandler) LinkDown(l transport.Link, err error) { h.h.LinkDown(h.wrap(l), err) }

type captureLink struct {
	transport.Link
	c *capture
}

func (l *captureLink) Send(ctx context.Context, f transport.Frame) error {
	l.c.mu.Lock()
	l.c.sent = append(l.c.sent, bytes.Clone(f.Data))
	l.c.mu.Unlock()
	return l.Link.Send(ctx, f)
}

// PQSecret passes the TCP link's post-quantum secret through.
func (l *captureLink) PQSecret() []byte {
	if p, ok := l.Link.(transport.PQSecreter); ok {
		return p.PQSecret()
	}
	return nil
}

// startCaptured runs a node in this process, linked to peer over TCP,
// with every frame it sends captured. The returned daemon works with cli.
func startCaptured(t *testing.T, name, peer string) (*daemon, *capture, *envelope.Identity) {
	t.Helper()
	d := newDaemon(t, name)
	d.log = &syncBuffer{}
	cfg := node.Defaults()
	cfg.DataDir = d.dir
	cfg.TCP.Listen, cfg.TCP.MDNS = "", false
	cfg.Routing.CommitDelay = 200 * time.Millisecond
	cfg.Routing.AnnounceInterval = 4 * time.Second
	cfg.FAPP.QueryBits, cfg.FAPP.ReserveBits, cfg.FAPP.PublishDelay = 4, 4, time.Second
	cfg.Log.Level = "debug"
	id, _, err := envelope.LoadOrCreateIdentity(filepath.Join(d.dir, node.IdentityFile), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tt, err := tcp.New(tcp.Options{Identity: id, Peers: []tcp.Peer{{Endpoint: peer}}})
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{inner: tt}
	log := slog.New(slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := node.New(cfg, node.Options{Logger: log, Transports: []transport.Transport{c}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	eventually(t, 15*time.Second, name+" serves its API", func() error {
		_, _, err := d.cli("status", "--json")
		return err
	})
	return d, c, id
}

type fappResult struct {
	Slot      string    `json:"slot"`
	Therapist string    `json:"therapist"`
	Verified  bool      `json:"verified"`
	Start     time.Time `json:"start"`
	Type      string    `json:"type"`
	ID        int       `json:"id"`
}

type fappRequest struct {
	ID      string `json:"id"`
	Slot    int    `json:"slot"`
	Contact string `json:"contact"`
	Outcome string `json:"outcome"`
}

type fappReservation struct {
	ID      string `json:"id"`
	Slot    string `json:"slot"`
	Outcome string `json:"outcome"`
	Message string `json:"message"`
}

// localSlots is d's local search (its cache), as slot references.
func localSlots(t *testing.T, d *daemon, filters ...string) []string {
	t.Helper()
	var out []string
	for _, r := range jsonLines[fappResult](t, d.mustCLI(append([]string{"fapp", "search", "--json"}, filters...)...)) {
		out = append(out, r.Slot)
	}
	sort.Strings(out)
	return out
}

func fappStats(t *testing.T, d *daemon) node.FAPPStatsView {
	t.Helper()
	var v node.FAPPStatsView
	d.getAPI("/v1/fapp/stats", &v)
	return v
}

func TestFAPP(t *testing.T) {
	th := newDaemon(t, "T")
	th.env = fappEnv
	th.start()
	p1 := newDaemon(t, "P1", th.listen)
	p1.env = fappEnv
	p1.start()

	// The therapist: profile and three slots, announced at once.
	th.mustCLI("fapp", "profile", "set", "--verfahren", "VT,TP", "--alter", "erwachsene", "--setting", "einzel",
		"--kosten", "gkv,pkv", "--modalitaet", "praxis,video", "--plz", "80331", "--lang", "de,en",
		"--document", "Approbation als Psychologische Psychotherapeutin, Regierung von Oberbayern, 2019, Nr. 4711")
	base := time.Now().UTC().Truncate(time.Hour).Add(48 * time.Hour)
	for i, typ := range []string{"probatorik", "sprechstunde", "therapieplatz"} {
		th.mustCLI("fapp", "slot", "add", "--type", typ, "--start", base.Add(time.Duration(i)*24*time.Hour).Format(time.RFC3339), "--duration", "50m")
	}
	th.mustCLI("fapp", "publish")
	thKey := strings.TrimSpace(jsonField(t, th.mustCLI("id", "--json"), "public_key"))
	all := []string{thKey + "/1", thKey + "/2", thKey + "/3"}

	// P1 finds them by local search once the announce has spread: no
	// query leaves P1 for that.
	eventually(t, 30*time.Second, "the announce reaches P1", func() error {
		if got := localSlots(t, p1); fmt.Sprint(got) != fmt.Sprint(all) {
			return fmt.Errorf("P1 finds %v", got)
		}
		return nil
	})
	if got := localSlots(t, p1, "--plz", "80331", "--verfahren", "TP", "--kosten", "gkv", "--type", "probatorik"); fmt.Sprint(got) != fmt.Sprint(all[:1]) {
		t.Fatalf("P1's filtered local search: %v", got)
	}
	if got := localSlots(t, p1, "--plz", "10"); len(got) != 0 {
		t.Fatalf("P1 finds %v in 10xxx", got)
	}
	if s := fappStats(t, p1); s.NetworkSearches != 0 {
		t.Fatalf("P1 made network searches: %+v", s)
	}

	// P2 joins after the announce went round: its cache is empty, and it
	// finds the slots by a network search.
	p2, capt, p2id := startCaptured(t, "P2", p1.listen)
	if got := localSlots(t, p2); len(got) != 0 {
		t.Fatalf("P2's cache holds %v before any search", got)
	}
	searchFrom := capt.count()
	// Bad input first: a network search with the full PLZ is refused, and
	// nothing leaves the node.
	cliFails(t, p2, "at most 3 digits", "fapp", "search", "--network", "--plz", "80331")
	if s := fappStats(t, p2); s.NetworkSearches != 0 {
		t.Fatalf("a refused search counts: %+v", s)
	}
	for _, f := range capt.frames(searchFrom) {
		if e, err := envelope.Parse(f); err == nil && e.Kind == envelope.KindQuery {
			t.Fatalf("a refused search sent a query")
		}
	}
	p2.mustCLI("fapp", "search", "--network", "--plz", "803", "--verfahren", "VT", "--wait", "2s", "--json")
	eventually(t, 30*time.Second, "P2's network search finds the slots", func() error {
		if got := localSlots(t, p2); fmt.Sprint(got) != fmt.Sprint(all) {
			return fmt.Errorf("P2 holds %v", got)
		}
		return nil
	})
	if s := fappStats(t, p2); s.NetworkSearches != 1 || s.ResultsReceived == 0 {
		t.Fatalf("P2's stats after the network search: %+v", s)
	}
	if s := fappStats(t, p1); s.QueriesAnswered == 0 {
		t.Fatalf("P1 did not answer P2's search from its cache: %+v", s)
	}

	// Both race for slot 1; the therapist confirms one: exactly one is
	// confirmed, the other is told it is taken.
	const contact1 = "Max Muster, 0171 9876543"
	const contact2 = "Erika Mustermann, 0151 2345678, erika@example.org"
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i, p := range []*daemon{p1, p2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, errs, err := p.cli("fapp", "reserve", all[0], "--contact", []string{contact1, contact2}[i])
			if err != nil {
				t.Errorf("%s reserve: %v %s", p.name, err, errs)
				return
			}
			ids[i] = strings.TrimSpace(out)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var reqs []fappRequest
	eventually(t, 60*time.Second, "both reservations reach the therapist", func() error {
		reqs = jsonLines[fappRequest](t, th.mustCLI("fapp", "requests", "--json"))
		if len(reqs) != 2 {
			return fmt.Errorf("T has %d requests", len(reqs))
		}
		return nil
	})
	for _, r := range reqs {
		if r.Slot != 1 || r.Outcome != "pending" || (r.Contact != contact1 && r.Contact != contact2) {
			t.Fatalf("request %+v", r)
		}
	}
	th.mustCLI("fapp", "confirm", reqs[0].ID, "--message", "Praxis Dr. T., Sendlinger Str. 1, 80331 München. Bitte Versichertenkarte mitbringen.")
	cliFails(t, th, "already", "fapp", "confirm", reqs[1].ID)
	outcomes := map[string]string{}
	for i, p := range []*daemon{p1, p2} {
		var v fappReservation
		if err := json.Unmarshal([]byte(p.mustCLI("fapp", "status", ids[i], "--wait", "60s", "--json")), &v); err != nil {
			t.Fatal(err)
		}
		outcomes[p.name] = v.Outcome
		if v.Outcome == "confirmed" && !strings.Contains(v.Message, "Sendlinger") {
			t.Fatalf("%s: confirmation without the message: %+v", p.name, v)
		}
	}
	if vals := []string{outcomes["P1"], outcomes["P2"]}; !(vals[0] == "confirmed" && vals[1] == "taken" || vals[0] == "taken" && vals[1] == "confirmed") {
		t.Fatalf("race outcome %v, want one confirmed and one taken", outcomes)
	}
	// The therapist keeps the contact of the confirmed request only.
	for _, r := range jsonLines[fappRequest](t, th.mustCLI("fapp", "requests", "--json")) {
		switch {
		case r.ID == reqs[0].ID && (r.Outcome != "confirmed" || r.Contact == ""):
			t.Fatalf("confirmed request %+v", r)
		case r.ID != reqs[0].ID && (r.Outcome != "taken" || r.Contact != ""):
			t.Fatalf("the other request %+v", r)
		}
	}
	// The slot leaves the next announce: the patients' caches drop it.
	for _, p := range []*daemon{p1, p2} {
		eventually(t, 30*time.Second, p.name+" sees slot 1 gone", func() error {
			if got := localSlots(t, p); fmt.Sprint(got) != fmt.Sprint(all[1:]) {
				return fmt.Errorf("%s finds %v", p.name, got)
			}
			return nil
		})
	}

	// Privacy: nothing P2 sent from its first search to the answer names
	// it, its PLZ beyond 3 digits, or its contact details. Its router's own
	// announces carry its key by design (that is how a mesh node is
	// reachable at all; they say nothing about FAPP) and are checked for
	// the rest.
	assertPatientFramesClean(t, capt.frames(searchFrom), p2id, "80331", contact2)

	// Bad input through the CLI and the API: clear errors, nothing changes.
	statusP2 := p2.mustCLI("fapp", "status", "--json")
	slotsT := th.mustCLI("fapp", "slot", "list", "--json")
	for _, tc := range []struct {
		d    *daemon
		want string
		args []string
	}{
		{p2, "unknown Verfahren", []string{"fapp", "search", "--verfahren", "XX"}},
		{p2, "not digits", []string{"fapp", "search", "--plz", "8o3"}},
		{p2, "longer than 5", []string{"fapp", "search", "--plz", "803310"}},
		{p2, "neither a date", []string{"fapp", "search", "--from", "2026-13-01"}},
		{p2, "empty date range", []string{"fapp", "search", "--from", "2027-02-01", "--to", "2027-01-01"}},
		{p2, "at most 3 digits", []string{"fapp", "search", "--network", "--plz", "8033"}},
		{p2, "unknown slot", []string{"fapp", "reserve", strings.Repeat("ab", 32) + "/7", "--contact", "x"}},
		{p2, "want <64 hex digits>/<id>", []string{"fapp", "reserve", "not-a-slot", "--contact", "x"}},
		{p2, "at most 160", []string{"fapp", "reserve", all[1], "--contact", strings.Repeat("x", 161)}},
		{p2, "unknown request", []string{"fapp", "status", "0123456789abcdef"}},
		{th, "unknown slot", []string{"fapp", "slot", "rm", "999"}},
		{th, "unknown request", []string{"fapp", "confirm", "0123456789abcdef"}},
		{th, "unknown slot type", []string{"fapp", "slot", "add", "--type", "massage", "--start", base.Format(time.RFC3339)}},
		{th, "5-minute grid", []string{"fapp", "slot", "add", "--type", "probatorik", "--start", base.Add(time.Minute).Format(time.RFC3339)}},
		{th, "not 5 digits", []string{"fapp", "profile", "set", "--plz", "8033"}},
		{th, "usage", []string{"fapp", "reserve"}},
	} {
		cliFails(t, tc.d, tc.want, tc.args...)
	}
	if got := p2.mustCLI("fapp", "status", "--json"); got != statusP2 {
		t.Fatalf("refused operations changed P2's reservations:\n%s\nwas\n%s", got, statusP2)
	}
	if got := th.mustCLI("fapp", "slot", "list", "--json"); got != slotsT {
		t.Fatalf("refused operations changed T's slots:\n%s\nwas\n%s", got, slotsT)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/fapp/search", `{"verfahren": 5}`},
		{"POST", "/v1/fapp/search", `{"plz": "803", "evil": 1}`},
		{"POST", "/v1/fapp/search", `{"network": true, "plz": "80331"}`},
		{"POST", "/v1/fapp/search", `{"wait_seconds": 1e9}`},
		{"POST", "/v1/fapp/reservations", `{"slot": "` + all[1] + `", "contact": ""}`},
		{"GET", "/v1/fapp/searches/x", ``},
	} {
		if code := rawAPI(t, p2, tc.method, tc.path, tc.body); code != 400 {
			t.Errorf("%s %s %s: %d, want 400", tc.method, tc.path, tc.body, code)
		}
	}
	if code := rawAPI(t, p2, "GET", "/v1/fapp/searches/99", ""); code != 404 {
		t.Errorf("unknown search: %d, want 404", code)
	}
	if got := p2.mustCLI("fapp", "status", "--json"); got != statusP2 {
		t.Fatalf("refused API calls changed P2's reservations")
	}
	th.stop()
}

// assertPatientFramesClean checks the privacy invariant on frames a
// patient's node sent.
func assertPatientFramesClean(t *testing.T, frames [][]byte, id *envelope.Identity, plz, contact string) {
	t.Helper()
	key, addr := id.PublicKey(), id.Address()
	hint := addr.Hint()
	x := id.X25519Public()
	var plzN uint32
	fmt.Sscan(plz, &plzN)
	identity := map[string][]byte{
		"identity key": key[:],
		"X25519 key":   x[:],
		"address":      addr[:],
		"address hint": hint[:],
	}
	content := map[string][]byte{
		"PLZ (5 digits)": []byte(plz),
		"PLZ (4 digits)": []byte(plz[:4]),
		"PLZ 24-bit":     {byte(plzN >> 16), byte(plzN >> 8), byte(plzN)},
		"PLZ 32-bit BE":  binary.BigEndian.AppendUint32(nil, plzN),
		"PLZ 32-bit LE":  binary.LittleEndian.AppendUint32(nil, plzN),
		"contact":        []byte(contact),
		"name":           []byte("Erika"),
		"phone":          []byte("2345678"),
	}
	kinds := map[envelope.Kind]int{}
	for i, f := range frames {
		e, err := envelope.Parse(f)
		if err != nil {
			t.Errorf("frame %d does not parse: %v", i, err)
			continue
		}
		kinds[e.Kind]++
		check := content
		if e.Kind != envelope.KindAnnounce {
			check = map[string][]byte{}
			for k, v := range content {
				check[k] = v
			}
			for k, v := range identity {
				check[k] = v
			}
		}
		for what, n := range check {
			if bytes.Contains(f, n) {
				t.Errorf("frame %d (%s, %d bytes) contains the patient's %s", i, e.Kind, len(f), what)
			}
		}
		switch e.Kind {
		case envelope.KindQuery:
			if q, err := fapp.ParseQuery(f); err != nil || len(q.Filter.PLZPrefix) > fapp.MaxQueryPLZDigits {
				t.Errorf("frame %d: query with PLZ %q (%v)", i, q.Filter.PLZPrefix, err)
			}
		case envelope.KindAnon:
			if e.Flags&envelope.FlagFull != 0 {
				t.Errorf("frame %d: anon envelope with full addresses", i)
			}
		case envelope.KindPathRequest:
			t.Errorf("frame %d: a path request (it names this node)", i)
		}
	}
	if kinds[envelope.KindQuery] == 0 || kinds[envelope.KindAnon] == 0 {
		t.Fatalf("captured no query or no reservation: %v", kinds)
	}
	t.Logf("patient's frames checked: %v", kinds)
}

func jsonField(t *testing.T, s, field string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	v, _ := m[field].(string)
	return v
}

// rawAPI sends one request on d's API socket and returns the status.
func rawAPI(t *testing.T, d *daemon, method, path, body string) int {
	t.Helper()
	conn, err := net.Dial("unix", filepath.Join(d.dir, "meshd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: meshd\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", method, path, len(body), body)
	b := make([]byte, 4096)
	k, _ := conn.Read(b)
	var code int
	fmt.Sscanf(string(b[:k]), "HTTP/1.1 %d", &code)
	return code
}
