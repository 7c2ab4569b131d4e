package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/fapp"
)

func TestFAPPConfigValidate(t *testing.T) {
	key := strings.Repeat("ab", 32)
	id, err := envelope.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := id.PublicKey().String()
	tests := []struct {
		name string
		f    func(*Config)
		want string // "" = valid
	}{
		{"defaults", func(c *Config) {}, ""},
		{"anchor", func(c *Config) { c.FAPP.Anchors = []string{good + " Psychotherapeutenkammer Bayern"} }, ""},
		{"role", func(c *Config) { c.FAPP.Role = "doctor" }, "fapp.role"},
		{"anchor without name", func(c *Config) { c.FAPP.Anchors = []string{good} }, "fapp.anchors"},
		{"anchor short key", func(c *Config) { c.FAPP.Anchors = []string{"abcd Kammer"} }, "fapp.anchors"},
		{"anchor not hex", func(c *Config) { c.FAPP.Anchors = []string{strings.Repeat("zz", 32) + " Kammer"} }, "fapp.anchors"},
		{"anchor twice", func(c *Config) { c.FAPP.Anchors = []string{good + " A", good + " B"} }, "fapp.anchors"},
		{"anchor not a point", func(c *Config) { c.FAPP.Anchors = []string{key + " Kammer"} }, "fapp.anchors"},
		{"query bits 0", func(c *Config) { c.FAPP.QueryBits = 0 }, "fapp.query_bits"},
		{"reserve bits 29", func(c *Config) { c.FAPP.ReserveBits = 29 }, "fapp.reserve_bits"},
		{"cache entries", func(c *Config) { c.FAPP.CacheEntries = 0 }, "fapp.cache_entries"},
		{"cache bytes", func(c *Config) { c.FAPP.CacheBytes = 100 }, "fapp.cache_bytes"},
		{"query ttl", func(c *Config) { c.FAPP.QueryTTL = 33 }, "fapp.query_ttl"},
		{"budget small", func(c *Config) { c.FAPP.AnnounceBudget = 142 }, "fapp.announce_budget"},
		{"budget large", func(c *Config) { c.FAPP.AnnounceBudget = 255 }, "fapp.announce_budget"},
		{"lifetime", func(c *Config) { c.FAPP.AnnounceLifetime = 8 * 24 * time.Hour }, "fapp.announce_lifetime"},
		{"publish delay", func(c *Config) { c.FAPP.PublishDelay = 0 }, "fapp.publish_delay"},
		{"answer spread", func(c *Config) { c.FAPP.AnswerSpread = -time.Second }, "fapp.answer_spread"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			tc.f(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate = %v, want ok", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error about %s", err, tc.want)
			}
		})
	}
	as, err := parseAnchors([]string{"  " + good + "   Kammer Bayern  "})
	if err != nil || len(as) != 1 || as[0].Name != "Kammer Bayern" || as[0].Key != id.PublicKey() {
		t.Fatalf("parseAnchors: %+v %v", as, err)
	}
	// Environment: a list is comma-separated.
	c, err := LoadConfig("", true, func(k string) (string, bool) {
		v, ok := map[string]string{"MESHD_FAPP_ROLE": "patient", "MESHD_FAPP_QUERY_BITS": "4"}[k]
		return v, ok
	})
	if err != nil || c.FAPP.Role != FAPPRolePatient || c.FAPP.QueryBits != 4 {
		t.Fatalf("env: %+v %v", c.FAPP, err)
	}
}

// testNode runs a node without transports in this process; its API is
// served on the socket in dir.
type testNode struct {
	t    *testing.T
	n    *Node
	dir  string
	hc   *http.Client
	stop func()
}

func startTestNode(t *testing.T, dir string, edit func(*Config)) *testNode {
	t.Helper()
	cfg := Defaults()
	cfg.DataDir = dir
	cfg.TCP.Listen, cfg.TCP.MDNS = "", false
	cfg.Routing.CommitDelay = 10 * time.Millisecond
	cfg.FAPP.QueryBits, cfg.FAPP.ReserveBits, cfg.FAPP.PublishDelay = 2, 2, time.Second
	if edit != nil {
		edit(&cfg)
	}
	n, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	n.o.Ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("node stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("node did not start")
	}
	sock := filepath.Join(dir, SocketFile)
	tn := &testNode{t: t, n: n, dir: dir, hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}}
	stopped := false
	tn.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	}
	t.Cleanup(tn.stop)
	return tn
}

// api sends a request and decodes the answer into out; it returns the
// status.
func (tn *testNode) api(method, path string, body any, out any) int {
	tn.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://meshd"+path, rd)
	resp, err := tn.hc.Do(req)
	if err != nil {
		tn.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			tn.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 300 && out == nil {
		tn.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

func (tn *testNode) fapp() *fappApp {
	for _, a := range tn.n.apps {
		if f, ok := a.(*fappApp); ok {
			return f
		}
	}
	tn.t.Fatal("no fapp app")
	return nil
}

var testProfileBody = map[string]any{
	"verfahren": "VT", "altersgruppen": "erwachsene", "settings": "einzel", "kostentraeger": "gkv",
	"modalitaeten": "praxis,video", "plz": "80331", "languages": []string{"de"},
	"document": "Approbation, Regierung von Oberbayern, 2019, Nr. 1",
}

// TestFAPPPersistence: the therapist's profile, slots and commitment
// survive a restart (the state is written before the announce goes out);
// a state that no longer loads is kept aside and the node starts afresh.
func TestFAPPPersistence(t *testing.T) {
	dir := t.TempDir()
	tn := startTestNode(t, dir, nil)
	var p FAPPProfileView
	if code := tn.api("PUT", "/v1/fapp/profile", testProfileBody, &p); code != 200 {
		t.Fatalf("profile: %d", code)
	}
	start := time.Now().UTC().Truncate(time.Hour).Add(24 * time.Hour)
	var s FAPPOwnSlotView
	if code := tn.api("POST", "/v1/fapp/slots", map[string]any{"type": "probatorik", "start": start, "duration_minutes": 50}, &s); code != 201 || s.ID != 1 {
		t.Fatalf("slot: %d %+v", code, s)
	}
	var pub FAPPProfileView
	if code := tn.api("POST", "/v1/fapp/publish", nil, &pub); code != 202 || pub.FreeSlots != 1 {
		t.Fatalf("publish: %d %+v", code, pub)
	}
	// The node finds its own slot locally (its announces go into its cache).
	var sv FAPPSearchView
	if code := tn.api("POST", "/v1/fapp/search", map[string]any{"plz": "80331"}, &sv); code != 200 || len(sv.Results) != 1 {
		t.Fatalf("local search: %d %+v", code, sv)
	}
	// The same document again keeps the commitment; a new one changes it.
	var p2 FAPPProfileView
	tn.api("PUT", "/v1/fapp/profile", testProfileBody, &p2)
	if p2.Commitment != p.Commitment {
		t.Fatal("the same document made a new commitment")
	}
	tn.stop()

	tn = startTestNode(t, dir, nil)
	var again FAPPProfileView
	if code := tn.api("GET", "/v1/fapp/profile", nil, &again); code != 200 || again.Commitment != p.Commitment || again.Slots != 1 {
		t.Fatalf("after restart: %d %+v", code, again)
	}
	tn.stop()

	// Corrupt the stored state: kept aside, FAPP starts afresh.
	db, err := bolt.Open(filepath.Join(dir, "meshd.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketFAPP).Put(keyFAPPState, []byte("FAPPST garbage")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	tn = startTestNode(t, dir, nil)
	if code := tn.api("GET", "/v1/fapp/profile", nil, nil); code != http.StatusConflict {
		t.Fatalf("profile after a corrupt state: %d, want 409 (none)", code)
	}
	aside := 0
	_ = tn.n.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFAPP).ForEach(func(k, v []byte) error {
			if strings.HasPrefix(string(k), "corrupt-") && string(v) == "FAPPST garbage" {
				aside++
			}
			return nil
		})
	})
	if aside != 1 {
		t.Fatalf("the corrupt state was not kept aside (%d)", aside)
	}
}

// TestFAPPRoles: a patient-role node refuses therapist operations and
// cannot sign at all; a relay-role node refuses patient operations too.
func TestFAPPRoles(t *testing.T) {
	tn := startTestNode(t, t.TempDir(), func(c *Config) { c.FAPP.Role = FAPPRolePatient })
	if code := tn.api("PUT", "/v1/fapp/profile", testProfileBody, nil); code != http.StatusForbidden {
		t.Fatalf("patient role, profile set: %d", code)
	}
	if tn.fapp().options().Identity != nil {
		t.Fatal("a patient-role core holds the identity")
	}
	if code := tn.api("POST", "/v1/fapp/search", map[string]any{"plz": "803", "network": true}, nil); code != 200 {
		t.Fatalf("patient role, network search: %d", code)
	}
	tn.stop()
	tn = startTestNode(t, t.TempDir(), func(c *Config) { c.FAPP.Role = FAPPRoleRelay })
	if code := tn.api("POST", "/v1/fapp/search", map[string]any{"plz": "803", "network": true}, nil); code != http.StatusForbidden {
		t.Fatalf("relay role, network search: %d", code)
	}
	if code := tn.api("POST", "/v1/fapp/search", map[string]any{"plz": "80331"}, nil); code != 200 {
		t.Fatalf("relay role, local search: %d", code)
	}
}

// TestFAPPReservationWaitsForRoute: a reservation for a therapist this
// node has no route to is not handed to the router (which would hold it
// and send a path request naming this node next to the therapist's
// address); it waits for a route instead.
func TestFAPPReservationWaitsForRoute(t *testing.T) {
	tn := startTestNode(t, t.TempDir(), nil)
	a := tn.fapp()
	// A therapist elsewhere whose announce reached this node's cache.
	tid, _ := envelope.GenerateIdentity(rand.Reader)
	tc, err := fapp.New(fapp.Options{Identity: tid, QueryBits: 2, ReserveBits: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	att, _ := fapp.NewAttestation(rand.Reader, []byte("Approbation"))
	if err := tc.SetProfile(now, fapp.Profile{Verfahren: fapp.Verhaltenstherapie, Altersgruppen: fapp.Erwachsene, Settings: fapp.Einzel,
		Kostentraeger: fapp.GKV, Modalitaeten: fapp.Praxis, PLZ: "80331", Languages: []string{"de"}}, fapp.Credentials{Attestation: att}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.AddSlot(now, fapp.Slot{Type: fapp.Probatorik, Start: now.UTC().Truncate(time.Hour).Add(48 * time.Hour), Duration: 50 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := tc.Publish(now); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for _, act := range tc.Actions() {
		if o, ok := act.(*fapp.Originate); ok {
			raw = o.Raw
		}
	}
	if err := tn.n.call(context.Background(), func(now time.Time) {
		if v, err := a.core.OnFlood(now, "test", raw); v != fapp.Relay {
			t.Errorf("announce: %v %v", v, err)
		}
		_ = a.flush(now)
	}); err != nil {
		t.Fatal(err)
	}
	var res FAPPReservationView
	ref := fmt.Sprintf("%s/1", tid.PublicKey())
	if code := tn.api("POST", "/v1/fapp/reservations", map[string]any{"slot": ref, "contact": "Erika, 0151 2345678"}, &res); code != 202 || res.Outcome != "pending" {
		t.Fatalf("reserve: %d %+v", code, res)
	}
	var waiting, held int
	var pathReqs uint64
	_ = tn.n.call(context.Background(), func(now time.Time) {
		waiting = len(a.waiting)
		held, _ = tn.n.router.HeldLen()
		pathReqs = tn.n.router.Stats().PathRequests
	})
	if waiting != 1 || held != 0 || pathReqs != 0 {
		t.Fatalf("waiting %d, held by the router %d, path requests %d; want 1, 0, 0", waiting, held, pathReqs)
	}
	// A second reservation of the same slot while one is pending: refused.
	if code := tn.api("POST", "/v1/fapp/reservations", map[string]any{"slot": ref, "contact": "Erika"}, nil); code != http.StatusConflict {
		t.Fatalf("second reservation: %d", code)
	}
	// The reservation and its one-time key are on disk (a restart resends).
	var list []FAPPReservationView
	tn.api("GET", "/v1/fapp/reservations", nil, &list)
	if len(list) != 1 || list[0].ID != res.ID {
		t.Fatalf("reservations: %+v", list)
	}
}

// TestFAPPWaitBounds: wait_seconds is bounded as a float, so NaN and values
// beyond a time.Duration are refused on every architecture.
func TestFAPPWaitBounds(t *testing.T) {
	for _, f := range []float64{0, 0.5, 300} {
		if d, err := fappWait(f); err != nil || d != time.Duration(f*float64(time.Second)) {
			t.Errorf("fappWait(%v) = %v, %v", f, d, err)
		}
	}
	for _, f := range []float64{-1, 300.5, 1e300, math.Inf(1), math.NaN()} {
		if d, err := fappWait(f); !errors.Is(err, fapp.ErrInvalid) {
			t.Errorf("fappWait(%v) = %v, %v; want ErrInvalid", f, d, err)
		}
	}
	tn := startTestNode(t, t.TempDir(), nil)
	if code := tn.api("POST", "/v1/fapp/search", map[string]any{"plz": "803", "wait_seconds": 1e300}, nil); code != http.StatusBadRequest {
		t.Fatalf("search with wait_seconds 1e300: %d, want 400", code)
	}
}

// TestFAPPProfileBodyStrict: the profile body embeds fapp.Profile; its
// fields stand at the top level and an unknown field is still refused.
func TestFAPPProfileBodyStrict(t *testing.T) {
	tn := startTestNode(t, t.TempDir(), nil)
	var p FAPPProfileView
	if code := tn.api("PUT", "/v1/fapp/profile", testProfileBody, &p); code != 200 {
		t.Fatalf("profile: %d", code)
	}
	bad := map[string]any{"plz": "80331", "bogus": 1}
	if code := tn.api("PUT", "/v1/fapp/profile", bad, nil); code != http.StatusBadRequest {
		t.Fatalf("unknown field: %d, want 400", code)
	}
}
