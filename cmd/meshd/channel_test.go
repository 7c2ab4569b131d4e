package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Broadcast channels through real daemons and the real CLI.

type chanView struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Role      string `json:"role"`
	Epoch     uint32 `json:"epoch"`
	EpochHash string `json:"epoch_hash"`
	Members   int    `json:"members"`
}

type chanMsg struct {
	Seq     uint64 `json:"seq"`
	Text    string `json:"text"`
	From    string `json:"from"`
	Own     bool   `json:"own"`
	History bool   `json:"history"`
}

// getAPI reads a JSON answer from the daemon's API socket (the polling
// loops use it instead of the CLI: a race-detector binary is slow to start).
func (d *daemon) getAPI(path string, out any) {
	d.t.Helper()
	sock := filepath.Join(d.dir, "meshd.sock")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://meshd" + path)
	if err != nil {
		d.t.Fatalf("%s: GET %s: %v", d.name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		d.t.Fatalf("%s: GET %s: %s", d.name, path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		d.t.Fatalf("%s: GET %s: %v", d.name, path, err)
	}
}

func (d *daemon) chInfo(ch string) chanView {
	d.t.Helper()
	var v chanView
	d.getAPI("/v1/channels/"+url.PathEscape(ch), &v)
	return v
}

func (d *daemon) chTexts(ch string) map[string]int {
	d.t.Helper()
	var ms []chanMsg
	d.getAPI("/v1/channels/"+url.PathEscape(ch)+"/messages", &ms)
	out := map[string]int{}
	for _, m := range ms {
		out[m.Text]++
	}
	return out
}

// waitTexts waits until d's history of ch holds every text in want.
func waitTexts(t *testing.T, d *daemon, ch string, want ...string) {
	t.Helper()
	eventually(t, 30*time.Second, d.name+" receives "+strings.Join(want, ", "), func() error {
		got := d.chTexts(ch)
		for _, w := range want {
			if got[w] == 0 {
				return fmt.Errorf("%s lacks %q (has %v)", d.name, w, got)
			}
		}
		return nil
	})
}

// sameEpoch waits until every daemon is active in ch at one epoch with n
// members.
func sameEpoch(t *testing.T, ch string, n int, ds ...*daemon) chanView {
	t.Helper()
	var v chanView
	eventually(t, 30*time.Second, "members agree on the epoch", func() error {
		first := ds[0].chInfo(ch)
		for _, d := range ds {
			got := d.chInfo(ch)
			if got.Status != "active" || got.EpochHash != first.EpochHash || got.Members != n {
				return fmt.Errorf("%s: %+v; %s: %+v", ds[0].name, first, d.name, got)
			}
		}
		v = first
		return nil
	})
	return v
}

func cliFails(t *testing.T, d *daemon, want string, args ...string) {
	t.Helper()
	out, errs, err := d.cli(args...)
	if err == nil || !strings.Contains(errs, want) {
		t.Fatalf("%s: meshd %s: err=%v stdout=%q stderr=%q, want an error with %q", d.name, strings.Join(args, " "), err, out, errs, want)
	}
	if out != "" {
		t.Fatalf("%s: meshd %s failed but printed data: %q", d.name, strings.Join(args, " "), out)
	}
}

func TestChannels(t *testing.T) {
	t.Setenv("MESHD_ROUTING_COMMIT_DELAY", "50ms")
	a, b, c := chain(t)
	d := newDaemon(t, "D", a.listen)

	// A creates a channel and invites B and C by code.
	id := strings.TrimSpace(a.mustCLI("channel", "create", "town"))
	for _, j := range []*daemon{b, c} {
		code := strings.TrimSpace(a.mustCLI("channel", "invite", "town"))
		if !strings.HasPrefix(code, "MESHD:JOIN:") {
			t.Fatalf("invite code %q", code)
		}
		if got := strings.TrimSpace(j.mustCLI("channel", "join", "--wait", "30s", code)); got != id {
			t.Fatalf("%s joined %q, want %q", j.name, got, id)
		}
	}
	sameEpoch(t, id, 3, a, b, c)

	// Everyone talks; everyone reads everyone.
	for _, x := range []*daemon{a, b, c} {
		x.mustCLI("channel", "send", id, "hello from "+x.name)
	}
	for _, x := range []*daemon{a, b, c} {
		waitTexts(t, x, id, "hello from A", "hello from B", "hello from C")
	}

	// C goes away; A and B keep talking; C comes back and catches up on what
	// it missed, each message once.
	c.stop()
	a.mustCLI("channel", "send", id, "while C was away 1")
	b.mustCLI("channel", "send", id, "while C was away 2")
	waitTexts(t, b, id, "while C was away 1")
	waitTexts(t, a, id, "while C was away 2")
	c.start()
	waitTexts(t, c, id, "while C was away 1", "while C was away 2")
	time.Sleep(time.Second) // duplicates from a second responder would arrive now
	for text, k := range c.chTexts(id) {
		if k != 1 {
			t.Errorf("C holds %q %d times", text, k)
		}
	}
	var caught int
	for _, m := range jsonLines[chanMsg](t, c.mustCLI("channel", "history", id, "--json")) {
		if m.History {
			caught++
		}
	}
	if caught != 2 {
		t.Errorf("C marks %d messages as caught up, want 2", caught)
	}

	// A removes C: B keeps reading, C reads nothing new.
	a.mustCLI("channel", "remove", id, c.address())
	sameEpoch(t, id, 2, a, b)
	eventually(t, 30*time.Second, "C learns it was removed", func() error {
		if v := c.chInfo(id); v.Status != "removed" {
			return fmt.Errorf("C: %+v", v)
		}
		return nil
	})
	before := c.chTexts(id)
	a.mustCLI("channel", "send", id, "after the removal, from A")
	b.mustCLI("channel", "send", id, "after the removal, from B")
	waitTexts(t, b, id, "after the removal, from A")
	waitTexts(t, a, id, "after the removal, from B")
	time.Sleep(time.Second)
	if got := c.chTexts(id); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("the removed member read something new: before %v, after %v", before, got)
	}
	// Sending to a channel C was removed from: refused, nothing stored or sent.
	cliFails(t, c, "removed", "channel", "send", id, "let me in")
	if got := c.chTexts(id); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("a refused send changed C's history: %v", got)
	}

	// A late joiner reads what comes after it joined, nothing before.
	d.start()
	code := strings.TrimSpace(a.mustCLI("channel", "invite", id))
	d.mustCLI("channel", "join", "--wait", "30s", code)
	sameEpoch(t, id, 3, a, b, d)
	d.mustCLI("channel", "catchup", id)
	a.mustCLI("channel", "send", id, "welcome D")
	waitTexts(t, d, id, "welcome D")
	time.Sleep(time.Second)
	if got := d.chTexts(id); len(got) != 1 {
		t.Fatalf("the late joiner holds messages from before it joined: %v", got)
	}
	if got := c.chTexts(id); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("the removed member read something new: %v", got)
	}

	// Bad input: clear errors, nothing changes.
	listD := d.mustCLI("channel", "list", "--json")
	altered := []byte(strings.TrimSpace(a.mustCLI("channel", "invite", id)))
	if altered[40] == 'A' {
		altered[40] = 'B'
	} else {
		altered[40] = 'A'
	}
	cliFails(t, d, "checksum", "channel", "join", string(altered))
	cliFails(t, d, "already", "channel", "join", code) // D is a member already
	second := strings.TrimSpace(a.mustCLI("channel", "create", "second"))
	once := strings.TrimSpace(a.mustCLI("channel", "invite", second))
	b.mustCLI("channel", "join", "--wait", "30s", once)
	cliFails(t, d, "already used", "channel", "join", "--wait", "30s", once)
	if got := d.mustCLI("channel", "list", "--json"); got != listD {
		t.Fatalf("refused joins changed D's channels:\n%s\nwas\n%s", got, listD)
	}
	if v := a.chInfo(second); v.Members != 2 {
		t.Fatalf("a reused code changed the inviter's channel: %+v", v)
	}
	cliFails(t, b, "unknown channel", "channel", "send", strings.Repeat("ab", 16), "hi")
	cliFails(t, b, "unknown channel", "channel", "history", "no-such-channel")
	cliFails(t, b, "not allowed", "channel", "remove", id, a.address())
	cliFails(t, b, "usage", "channel", "send", id)
	if v := b.chInfo(id); v.Members != 3 || v.Status != "active" {
		t.Fatalf("refused operations changed B's channel: %+v", v)
	}
	a.stop()
}
