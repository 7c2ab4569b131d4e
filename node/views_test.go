package node

import (
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/node/web"
)

// TestViews: /v1/conversations groups the inbox and outbox by peer, and
// /v1/conversations/{peer} takes an address, a key or a contact name;
// /v1/radio says when there is no radio.
func TestViews(t *testing.T) {
	tn := startTestNode(t, t.TempDir(), nil)
	bobID, _, err := envelope.LoadOrCreateIdentity(filepath.Join(t.TempDir(), "bob.key"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bob := bobID.Address()
	carol, _ := envelope.ParseAddress(strings.Repeat("c1", 16))
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	app := tn.n.app
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(app.putContact(&Contact{Name: "Bob", Address: bob.String(), Key: bobID.PublicKey().String(), Verified: true}))
	must(app.putOut(&OutMessage{ID: 7, To: bob.String(), Text: "hi bob", State: "delivered", Created: t0}))
	_, err = app.addIn(&InMessage{From: bob.String(), Text: "hi back", Received: t0.Add(time.Minute), Counter: 1}, bob)
	must(err)
	_, err = app.addIn(&InMessage{From: bob.String(), Text: "and again", Received: t0.Add(2 * time.Minute), Counter: 2}, bob)
	must(err)
	_, err = app.addIn(&InMessage{From: carol.String(), Claimed: "carol's node", Text: "hello", Received: t0.Add(-time.Hour), Counter: 1}, carol)
	must(err)
	must(app.putOut(&OutMessage{ID: 3, To: carol.String(), Text: "who are you?", State: "queued", Created: t0.Add(-30 * time.Minute)}))

	var convs []ConversationView
	if code := tn.api("GET", "/v1/conversations", nil, &convs); code != 200 || len(convs) != 2 {
		t.Fatalf("conversations: %d %+v", code, convs)
	}
	if c := convs[0]; c.Peer != bob.String() || c.Name != "Bob" || !c.Verified || c.Messages != 3 || c.Unread != 2 || c.Last.Text != "and again" || c.Last.Dir != "in" {
		t.Fatalf("bob's conversation: %+v", c)
	}
	if c := convs[1]; c.Peer != carol.String() || c.Claimed != "carol's node" || c.Unread != 1 || c.Last.Dir != "out" || c.Last.State != "queued" {
		t.Fatalf("carol's conversation: %+v", c)
	}
	for _, peer := range []string{"Bob", bob.String(), bobID.PublicKey().String()} {
		var ms []ConvMessage
		if code := tn.api("GET", "/v1/conversations/"+peer, nil, &ms); code != 200 || len(ms) != 3 || ms[0].Text != "hi bob" || ms[0].ID != 7 || ms[2].Seq == 0 {
			t.Fatalf("conversation with %s: %d %+v", peer, code, ms)
		}
	}
	var last []ConvMessage
	if tn.api("GET", "/v1/conversations/Bob?limit=1", nil, &last); len(last) != 1 || last[0].Text != "and again" {
		t.Fatalf("limit: %+v", last)
	}
	if code := tn.api("GET", "/v1/conversations/nobody", nil, nil); code != 404 {
		t.Fatalf("unknown peer: %d", code)
	}
	var radio RadioView
	if code := tn.api("GET", "/v1/radio", nil, &radio); code != 200 || radio.Present {
		t.Fatalf("radio: %d %+v", code, radio)
	}
}

// TestWebWiring: web.listen serves the UI, and the node's API behind its
// login.
func TestWebWiring(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	if err := web.SetPassword(filepath.Join(dir, web.PasswordFile), []byte("correct horse"), web.Params{MemoryKiB: 1024, Time: 1, Threads: 1}); err != nil {
		t.Fatal(err)
	}
	tn := startTestNode(t, dir, func(c *Config) { c.Web.Listen = addr })
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	base := "http://" + addr
	if resp, err := hc.Get(base + "/"); err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %v %v", resp, err)
	}
	if resp, _ := hc.Get(base + "/v1/status"); resp.StatusCode != 401 {
		t.Fatalf("API without a session: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", base+"/web/login", strings.NewReader(`{"password":"correct horse"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base)
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %v %v", resp, err)
	}
	var sess struct{ CSRF string }
	_ = json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	resp, err = hc.Get(base + "/v1/status")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("API with a session: %v %v", resp, err)
	}
	var st StatusView
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Address != tn.n.id.Address().String() {
		t.Fatalf("status through the web UI: %+v", st)
	}
	// A state change through the web address reaches the node.
	req, _ = http.NewRequest("POST", base+"/v1/contacts", strings.NewReader(`{"name":"Dora","address":"`+strings.Repeat("d4", 16)+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base)
	req.Header.Set("X-CSRF-Token", sess.CSRF)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("add contact through the web UI: %v %v", resp, err)
	}
	if c, err := tn.n.app.contact("Dora"); err != nil || c.Address != strings.Repeat("d4", 16) {
		t.Fatalf("contact: %+v %v", c, err)
	}
}
