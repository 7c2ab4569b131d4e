package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests start real meshd processes on loopback and drive them with the
// real CLI, the way a user does.

var meshdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	meshdBin = filepath.Join(dir, "meshd")
	build := exec.Command("go", "build", "-race", "-o", meshdBin, ".")
	if os.Getenv("MESHD_TEST_NORACE") != "" {
		build = exec.Command("go", "build", "-o", meshdBin, ".")
	}
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		// Fall back to a build without the race detector (qemu, no cgo).
		build = exec.Command("go", "build", "-o", meshdBin, ".")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building meshd:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one meshd process with its own data directory.
type daemon struct {
	t      *testing.T
	name   string
	dir    string
	listen string
	peers  []string
	extra  []string
	env    []string
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan struct{}
}

// syncBuffer is a bytes.Buffer the daemon's output goroutine and the test
// may use at the same time.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newDaemon(t *testing.T, name string, peers ...string) *daemon {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	return &daemon{t: t, name: name, dir: dir, listen: freePort(t), peers: peers}
}

func (d *daemon) start() {
	d.t.Helper()
	args := []string{"run", "--data", d.dir, "--listen", d.listen, "--no-mdns"}
	for _, p := range d.peers {
		args = append(args, "--peer", p)
	}
	args = append(args, d.extra...)
	d.cmd = exec.Command(meshdBin, args...)
	d.log = &syncBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// A short group commit keeps the tests quick; the crash test waits for
	// it explicitly.
	d.cmd.Env = append(os.Environ(), "MESHD_LOG_LEVEL=debug", "MESHD_ROUTING_COMMIT_DELAY=200ms")
	d.cmd.Env = append(d.cmd.Env, d.env...)
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.done = make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	d.t.Cleanup(func() { d.kill(syscall.SIGKILL) })
	// Ready when the API answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, _, err := d.cli("status", "--json"); err == nil {
			return
		}
		select {
		case <-d.done:
			d.t.Fatalf("%s exited at start:\n%s", d.name, d.log)
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s did not come up:\n%s", d.name, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	d.t.Helper()
	d.kill(syscall.SIGTERM)
	select {
	case <-d.done:
		if code := d.cmd.ProcessState.ExitCode(); code != 0 {
			d.t.Fatalf("%s exited with %d after SIGTERM:\n%s", d.name, code, d.log)
		}
	case <-time.After(15 * time.Second):
		d.t.Fatalf("%s did not stop within 15s of SIGTERM:\n%s", d.name, d.log)
	}
}

func (d *daemon) kill(sig syscall.Signal) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-d.done
	}
}

// cli runs a meshd verb against this daemon.
func (d *daemon) cli(args ...string) (string, string, error) {
	full := append([]string{args[0], "--data", d.dir}, args[1:]...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshdBin, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (d *daemon) mustCLI(args ...string) string {
	d.t.Helper()
	out, errs, err := d.cli(args...)
	if err != nil {
		d.t.Fatalf("%s: meshd %s: %v\n%s\n--- daemon log ---\n%s", d.name, strings.Join(args, " "), err, errs, d.log)
	}
	return out
}

func (d *daemon) address() string {
	d.t.Helper()
	var v struct{ Address string }
	if err := json.Unmarshal([]byte(d.mustCLI("id", "--json")), &v); err != nil {
		d.t.Fatal(err)
	}
	return v.Address
}

// jsonLines decodes the output of a --json listing.
func jsonLines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	dec := json.NewDecoder(strings.NewReader(s))
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("decoding %q: %v", s, err)
		}
		out = append(out, v)
	}
	return out
}

type inMsg struct {
	Seq  uint64
	From string
	Text string
}

type outMsg struct {
	ID    uint64
	To    string
	State string
	Text  string
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// chain starts A–B–C with static peers (B dials A, C dials B).
func chain(t *testing.T) (a, b, c *daemon) {
	a = newDaemon(t, "A")
	b = newDaemon(t, "B", a.listen)
	c = newDaemon(t, "C", b.listen)
	a.start()
	b.start()
	c.start()
	return a, b, c
}

func TestChainDelivery(t *testing.T) {
	a, _, c := chain(t)
	addrC := c.address()
	out := a.mustCLI("send", "--wait", "30s", "--json", addrC, "hello C, from A")
	var res struct {
		ID    uint64
		State string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.State != "delivered" {
		t.Fatalf("send: %q %v", out, err)
	}
	in := jsonLines[inMsg](t, c.mustCLI("inbox", "--json"))
	if len(in) != 1 || in[0].Text != "hello C, from A" || in[0].From != a.address() {
		t.Fatalf("C's inbox: %+v", in)
	}
	outbox := jsonLines[outMsg](t, a.mustCLI("outbox", "--json"))
	if len(outbox) != 1 || outbox[0].State != "delivered" || outbox[0].To != addrC {
		t.Fatalf("A's outbox: %+v", outbox)
	}
	// Contacts and stdin.
	a.mustCLI("contacts", "add", "carol", addrC)
	send := exec.Command(meshdBin, "send", "--data", a.dir, "--wait", "30s", "carol", "-")
	send.Stdin = strings.NewReader("second message\nfrom stdin\n")
	if b, err := send.CombinedOutput(); err != nil {
		t.Fatalf("send from stdin: %v\n%s", err, b)
	}
	in = jsonLines[inMsg](t, c.mustCLI("inbox", "--json"))
	if len(in) != 2 || in[1].Text != "second message\nfrom stdin" {
		t.Fatalf("C's inbox: %+v", in)
	}
	a.stop()
}

func TestOfflineRecipientExactlyOnce(t *testing.T) {
	a, b, c := chain(t)
	addrC := c.address()
	a.mustCLI("send", "--wait", "30s", addrC, "warm-up")
	c.stop()
	const n = 5
	for i := 0; i < n; i++ {
		a.mustCLI("send", addrC, fmt.Sprintf("while you were away %d", i))
	}
	time.Sleep(2 * time.Second)
	c.start()
	eventually(t, 60*time.Second, "all messages delivered after C came back", func() error {
		outbox := jsonLines[outMsg](t, a.mustCLI("outbox", "--json"))
		for _, m := range outbox {
			if m.State != "delivered" {
				return fmt.Errorf("message %d is %s", m.ID, m.State)
			}
		}
		return nil
	})
	assertExactlyOnce(t, c, n+1)
	_ = b
}

func assertExactlyOnce(t *testing.T, c *daemon, want int) {
	t.Helper()
	in := jsonLines[inMsg](t, c.mustCLI("inbox", "--json"))
	seen := map[string]int{}
	for _, m := range in {
		seen[m.Text]++
	}
	for text, k := range seen {
		if k != 1 {
			t.Errorf("%q delivered %d times", text, k)
		}
	}
	if len(in) != want {
		t.Fatalf("C has %d messages, want %d: %+v", len(in), want, in)
	}
}

func TestRelayCrashKeepsHeldMessages(t *testing.T) {
	a, b, c := chain(t)
	addrC := c.address()
	a.mustCLI("send", "--wait", "30s", addrC, "warm-up")
	c.stop()
	const n = 3
	for i := 0; i < n; i++ {
		a.mustCLI("send", addrC, fmt.Sprintf("held %d", i))
	}
	// B holds them for C (no route now).
	eventually(t, 30*time.Second, "B holds the messages", func() error {
		var st struct {
			HeldMessages int `json:"held_messages"`
		}
		_ = json.Unmarshal([]byte(b.mustCLI("status", "--json")), &st)
		if st.HeldMessages < n {
			return fmt.Errorf("B holds %d", st.HeldMessages)
		}
		return nil
	})
	// B told A (held notice): A's outbox shows the messages held.
	eventually(t, 30*time.Second, "A sees its messages held", func() error {
		for _, m := range jsonLines[outMsg](t, a.mustCLI("outbox", "--json")) {
			if m.State != "held" && m.State != "delivered" {
				return fmt.Errorf("message %d is %s", m.ID, m.State)
			}
		}
		return nil
	})
	// Wait past B's group-commit delay (200 ms here) so the held messages
	// are durable, then crash B and take A away: only B's store can deliver
	// now.
	time.Sleep(time.Second)
	b.kill(syscall.SIGKILL)
	a.stop()
	b.start()
	c.start()
	eventually(t, 60*time.Second, "C receives what B held", func() error {
		in := jsonLines[inMsg](t, c.mustCLI("inbox", "--json"))
		if len(in) < n+1 {
			return fmt.Errorf("C has %d of %d", len(in), n+1)
		}
		return nil
	})
	// A comes back and retries what was never acknowledged to it: C must
	// not deliver anything twice.
	a.start()
	eventually(t, 60*time.Second, "A learns every message was delivered", func() error {
		for _, m := range jsonLines[outMsg](t, a.mustCLI("outbox", "--json")) {
			if m.State != "delivered" {
				return fmt.Errorf("message %d is %s", m.ID, m.State)
			}
		}
		return nil
	})
	assertExactlyOnce(t, c, n+1)
}

func TestBadInput(t *testing.T) {
	a := newDaemon(t, "A")
	a.start()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown recipient", []string{"send", "nobody", "hi"}, "not a contact name"},
		{"own address", []string{"send", a.address(), "hi"}, "this node"},
		{"text too long", []string{"send", strings.Repeat("a", 32), strings.Repeat("x", 5000)}, "limit"},
		{"bad contact address", []string{"contacts", "add", "bob", "xyz"}, "not an address"},
		{"contact name like an address", []string{"contacts", "add", strings.Repeat("ab", 16), strings.Repeat("cd", 16)}, "must not look like"},
		{"verify unknown", []string{"contacts", "verify", "nobody"}, "not found"},
		{"unknown flag", []string{"send", "--nope", "a", "b"}, "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, err := a.cli(tc.args...)
			if err == nil || !strings.Contains(errs, tc.wantErr) {
				t.Fatalf("meshd %v: err=%v stderr=%q, want %q", tc.args, err, errs, tc.wantErr)
			}
		})
	}
	// Nothing of the refused requests was stored.
	if out := a.mustCLI("outbox", "--json"); out != "" {
		t.Fatalf("refused sends left records: %q", out)
	}
	// Raw API abuse: malformed and oversized bodies.
	sock := filepath.Join(a.dir, "meshd.sock")
	raw := func(method, path, body string) (int, string) {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: meshd\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", method, path, len(body), body)
		b := make([]byte, 4096)
		k, _ := conn.Read(b)
		var code int
		fmt.Sscanf(string(b[:k]), "HTTP/1.1 %d", &code)
		return code, string(b[:k])
	}
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
	}{
		{"not json", "POST", "/v1/messages", "{", 400},
		{"unknown field", "POST", "/v1/messages", `{"to":"x","text":"y","evil":1}`, 400},
		{"oversized", "POST", "/v1/messages", `{"to":"` + strings.Repeat("a", 70000) + `"}`, 400},
		{"trailing data", "POST", "/v1/messages", `{"to":"x","text":"y"}{}`, 400},
		{"unknown path", "GET", "/v1/nope", "", 404},
		{"bad id", "GET", "/v1/outbox/abc", "", 400},
		{"missing message", "GET", "/v1/outbox/999", "", 404},
		{"wrong method", "DELETE", "/v1/status", "", 405},
	} {
		t.Run("api "+tc.name, func(t *testing.T) {
			code, resp := raw(tc.method, tc.path, tc.body)
			if code != tc.code {
				t.Fatalf("%s %s: %d, want %d\n%s", tc.method, tc.path, code, tc.code, resp)
			}
		})
	}
	// Still serving.
	a.mustCLI("status")

	// A full store: messages for a node nobody has heard of are queued
	// until the per-destination quota (a quarter of the 256-message outbox);
	// the next one is refused with a clear code and leaves nothing behind,
	// and other destinations are still accepted.
	post := func(to string) (int, string) {
		return raw("POST", "/v1/messages", `{"to":"`+to+`","text":"queued for nobody"}`)
	}
	stranger, other := strings.Repeat("cd", 16), strings.Repeat("ef", 16)
	for i := 0; i < 64; i++ {
		if code, resp := post(stranger); code != 202 {
			t.Fatalf("message %d: %d, want 202\n%s", i, code, resp)
		}
	}
	if code, resp := post(stranger); code != 503 || !strings.Contains(resp, "outbox_full") {
		t.Fatalf("over the quota: %d, want 503 outbox_full\n%s", code, resp)
	}
	if n := len(jsonLines[map[string]any](t, a.mustCLI("outbox", "--json"))); n != 64 {
		t.Fatalf("outbox holds %d messages after the refusal, want 64", n)
	}
	if code, resp := post(other); code != 202 {
		t.Fatalf("another destination: %d, want 202\n%s", code, resp)
	}
	a.mustCLI("status")
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("[tcp]\nlisten = 4731\n"), 0o600)
	unreadable := filepath.Join(dir, "unreadable.conf")
	os.WriteFile(unreadable, []byte("name = \"x\"\n"), 0o000)
	typo := filepath.Join(dir, "typo.conf")
	os.WriteFile(typo, []byte("[tcp]\nmnds = false\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing explicit config", []string{"--config", filepath.Join(dir, "nope.conf")}, "no such file"},
		{"wrong type", []string{"--config", bad}, "line 2"},
		{"typo", []string{"--config", typo}, `did you mean "tcp.mdns"`},
		{"bad flag value", []string{"--listen", "not-an-address"}, "tcp.listen"},
	}
	if os.Geteuid() != 0 {
		tests = append(tests, struct {
			name string
			args []string
			want string
		}{"unreadable", []string{"--config", unreadable}, "permission denied"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "d")
			cmd := exec.Command(meshdBin, append([]string{"run", "--data", data}, tc.args...)...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("meshd run %v: %v\n%s\nwant %q", tc.args, err, out, tc.want)
			}
			// Refused before touching the data directory.
			if _, err := os.Stat(filepath.Join(data, "meshd.db")); err == nil {
				t.Fatal("a refused config still created a store")
			}
		})
	}
}

func TestInitWritesCommentedConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meshd.conf")
	cmd := exec.Command(meshdBin, "init", "--data", dir, "--config", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{"[tcp]", "#listen = \":4731\"", "[lora]", "# Regulatory region"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("config lacks %q:\n%s", want, b)
		}
	}
	// A second init refuses to overwrite.
	if out, err := exec.Command(meshdBin, "init", "--data", dir, "--config", path).CombinedOutput(); err == nil || !strings.Contains(string(out), "exists") {
		t.Fatalf("second init: %v %s", err, out)
	}
	// The written file is accepted as is.
	d := newDaemon(t, "fromconf")
	d.extra = []string{"--config", path}
	d.start()
	d.stop()
}

// TestVirtualRadioPair runs two daemons whose only link is LoRa through
// `meshd radio sim`, with a configured region.
func TestVirtualRadioPair(t *testing.T) {
	simDir := filepath.Join(t.TempDir(), "air")
	sim := exec.Command(meshdBin, "radio", "sim", "-n", "2", "-dir", simDir)
	var simOut bytes.Buffer
	sim.Stdout, sim.Stderr = &simOut, &simOut
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Process.Kill(); _ = sim.Wait() })
	eventually(t, 10*time.Second, "virtual modems ready", func() error {
		for i := 0; i < 2; i++ {
			if _, err := os.Stat(filepath.Join(simDir, fmt.Sprintf("rnode%d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	var ds [2]*daemon
	for i := range ds {
		d := newDaemon(t, fmt.Sprintf("R%d", i))
		conf := filepath.Join(d.dir, "meshd.conf")
		content := fmt.Sprintf("[tcp]\nlisten = \"\"\nmdns = false\n\n[lora]\ndevice = %q\nregion = \"EU868\"\nspreading_factor = 7\nbandwidth = 250000\n", filepath.Join(simDir, fmt.Sprintf("rnode%d", i)))
		if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		d.extra = []string{"--config", conf, "--listen", "none"}
		ds[i] = d
	}
	// --listen is given twice (the helper adds one); the last wins.
	for _, d := range ds {
		d.start()
	}
	eventually(t, 30*time.Second, "LoRa links up", func() error {
		for _, d := range ds {
			if out := d.mustCLI("links", "--json"); !strings.Contains(out, `"kind":"lora"`) {
				return fmt.Errorf("%s has no lora link: %s", d.name, out)
			}
		}
		return nil
	})
	out := ds[0].mustCLI("send", "--wait", "90s", "--json", ds[1].address(), "over the air")
	if !strings.Contains(out, `"state":"delivered"`) {
		t.Fatalf("send over LoRa: %s\n%s\n%s", out, ds[0].log, simOut.String())
	}
	in := jsonLines[inMsg](t, ds[1].mustCLI("inbox", "--json"))
	if len(in) != 1 || in[0].Text != "over the air" {
		t.Fatalf("R1 inbox: %+v", in)
	}
	metrics := func() string {
		conn, err := net.Dial("unix", filepath.Join(ds[0].dir, "meshd.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: meshd\r\nConnection: close\r\n\r\n")
		var b bytes.Buffer
		_, _ = b.ReadFrom(conn)
		return b.String()
	}()
	for _, want := range []string{"meshd_radio_airtime_total_seconds", "meshd_radio_connected 1", "meshd_router_frames_out_total{kind=\"data\"}"} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %q:\n%s", want, metrics)
		}
	}
}
