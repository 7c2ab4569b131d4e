package discovery

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/tcp"
)

// The integration test builds three network namespaces joined by veth
// pairs to a bridge in a fourth, runs one meshd node (this test binary,
// re-executed as TestNetnsNode) in each, and watches them discover each
// other by mDNS, link up, exchange frames, lose a link when it is cut and
// get it back when it is restored.

const (
	nodeEnv  = "MESHD_NETNS_NODE"
	nodePort = 4242
)

type nodeConfig struct {
	Index  int    `json:"index"`
	Static string `json:"static,omitempty"` // a static peer endpoint
	V6Only bool   `json:"v6only,omitempty"` // discovery over IPv6 only
}

// nodeEvent is one line a node prints on stdout.
type nodeEvent struct {
	Ev     string `json:"ev"` // self, up, down, recv
	Addr   string `json:"addr,omitempty"`
	Peer   string `json:"peer,omitempty"`
	Link   string `json:"link,omitempty"`
	Remote string `json:"remote,omitempty"`
	Data   string `json:"data,omitempty"`
	Err    string `json:"err,omitempty"`
	// discovery counters, in "stats" events
	OffLink       uint64 `json:"offlink,omitempty"`
	Heard         uint64 `json:"heard,omitempty"`
	Announcements uint64 `json:"announcements,omitempty"`
	Answers       uint64 `json:"answers,omitempty"`
	Suppressed    uint64 `json:"suppressed,omitempty"`
	Goodbyes      uint64 `json:"goodbyes,omitempty"`
	Dials         uint64 `json:"dials,omitempty"`
	Malformed     uint64 `json:"malformed,omitempty"`
	Ignored       uint64 `json:"ignored,omitempty"`
}

func TestNetns(t *testing.T) {
	if os.Getenv(nodeEnv) != "" {
		t.Skip("running as a node")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs it as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	start := time.Now()
	var sfx [3]byte
	rand.Read(sfx[:])
	tag := "mshd-" + hex.EncodeToString(sfx[:])
	subnet := fmt.Sprintf("198.18.%d", 1+int(sfx[0])%250)
	br := tag + "-br"
	ns := []string{tag + "-n0", tag + "-n1", tag + "-n2"}

	ipcmd := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Cleanup first, so namespaces go even when setup fails half-way.
	t.Cleanup(func() {
		for _, n := range append([]string{br}, ns...) {
			exec.Command("ip", "netns", "del", n).Run()
		}
	})
	ipcmd("netns", "add", br)
	for _, b := range []string{"br0", "br1"} {
		ipcmd("-n", br, "link", "add", b, "type", "bridge")
		ipcmd("-n", br, "link", "set", b, "up")
	}
	for i, n := range ns {
		ipcmd("netns", "add", n)
		for _, k := range []string{"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"} {
			ipcmd("netns", "exec", n, "sysctl", "-qw", k)
		}
		port := fmt.Sprintf("p%d", i)
		ipcmd("-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", br)
		ipcmd("-n", br, "link", "set", port, "master", "br0")
		ipcmd("-n", br, "link", "set", port, "up")
		ipcmd("-n", n, "link", "set", "lo", "up")
		ipcmd("-n", n, "addr", "add", fmt.Sprintf("%s.%d/24", subnet, i+1), "dev", "eth0")
		ipcmd("-n", n, "link", "set", "eth0", "up")
		// No route for 224.0.0.0/4 (hashicorp/mdns's query client needed
		// one): discovery sends out of each interface by index.
	}
	// Node 0 also sits on a second network with no other node: its eth1
	// responder must answer only there (hashicorp/mdns's answered queries
	// heard on eth0 too, with eth1's address), and nobody may dial that
	// address.
	subnet2 := fmt.Sprintf("198.19.%d", 1+int(sfx[1])%250)
	ipcmd("-n", ns[0], "link", "add", "eth1", "type", "veth", "peer", "name", "q0", "netns", br)
	ipcmd("-n", br, "link", "set", "q0", "master", "br1")
	ipcmd("-n", br, "link", "set", "q0", "up")
	ipcmd("-n", ns[0], "addr", "add", subnet2+".1/24", "dev", "eth1")
	ipcmd("-n", ns[0], "link", "set", "eth1", "up")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	events := make(chan struct {
		node int
		ev   nodeEvent
	}, 1024)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(cancel)
	procs := make([]*exec.Cmd, len(ns))
	configs := []nodeConfig{
		{Index: 0, Static: fmt.Sprintf("%s.2:%d", subnet, nodePort)}, // node 1, static and discovered
		{Index: 1},
		{Index: 2, V6Only: true},
	}
	for i, n := range ns {
		cfg, _ := json.Marshal(configs[i])
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n, exe, "-test.run=^TestNetnsNode$", "-test.v")
		cmd.Env = append(os.Environ(), nodeEnv+"="+string(cfg))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var ev nodeEvent
				line := sc.Text()
				if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &ev) != nil {
					continue
				}
				select {
				case events <- struct {
					node int
					ev   nodeEvent
				}{i, ev}:
				case <-ctx.Done():
				}
			}
			cmd.Wait()
			if t.Failed() {
				t.Logf("node %d stderr:\n%s", i, stderr.String())
			}
		}()
	}

	// State: each node's address, its links by peer address, hellos heard.
	self := make([]string, len(ns))
	links := make([]map[string]map[string]string, len(ns)) // peer -> link ID -> remote
	hellos := make([]map[string]int, len(ns))
	stats := make([]nodeEvent, len(ns))
	bye := make([]bool, len(ns))
	for i := range ns {
		links[i], hellos[i] = map[string]map[string]string{}, map[string]int{}
	}
	apply := func(d time.Duration, what string, done func() bool) {
		t.Helper()
		deadline := time.After(d)
		for !done() {
			select {
			case e := <-events:
				switch e.ev.Ev {
				case "self":
					self[e.node] = e.ev.Addr
				case "up":
					if links[e.node][e.ev.Peer] == nil {
						links[e.node][e.ev.Peer] = map[string]string{}
					}
					links[e.node][e.ev.Peer][e.ev.Link] = e.ev.Remote
				case "down":
					delete(links[e.node][e.ev.Peer], e.ev.Link)
					if len(links[e.node][e.ev.Peer]) == 0 {
						delete(links[e.node], e.ev.Peer)
					}
					t.Logf("node %d: link to %s down: %s", e.node, e.ev.Peer[:8], e.ev.Err)
				case "recv":
					hellos[e.node][e.ev.Peer]++
				case "stats":
					stats[e.node] = e.ev
				case "bye":
					bye[e.node] = true
				}
			case <-deadline:
				t.Fatalf("%s: not reached within %v; links %v; frames heard %v; discovery stats %+v", what, d, links, hellos, stats)
			}
		}
		t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
	}
	linked := func(i, j int) bool { _, ok := links[i][self[j]]; return ok && self[j] != "" }
	full := func() bool {
		for i := range ns {
			for j := range ns {
				if i != j && (!linked(i, j) || hellos[i][self[j]] == 0) {
					return false
				}
			}
		}
		return true
	}
	apply(30*time.Second, "all three nodes discovered each other, linked and exchanged frames", full)
	remote := func(i, j int) string {
		var rs []string
		for _, r := range links[i][self[j]] {
			rs = append(rs, r)
		}
		return strings.Join(rs, ",")
	}
	for i := range ns {
		for j := range ns {
			if i != j {
				t.Logf("node %d → node %d over %s", i, j, remote(i, j))
			}
		}
	}
	for j := 1; j < 3; j++ {
		if r := remote(j, 0); strings.Contains(r, subnet2+".") {
			t.Errorf("node %d reached node 0 over %s, an address of a network it is not on", j, r)
		}
	}
	apply(10*time.Second, "every node announced itself twice and left known answers unanswered", func() bool {
		for i := range ns {
			if stats[i].Announcements < 2 || stats[i].Suppressed == 0 {
				return false
			}
		}
		return true
	})
	for i := range ns {
		if stats[i].OffLink != 0 {
			t.Errorf("node %d heard %d answers with no address on its link; every responder answers on its own link only", i, stats[i].OffLink)
		}
	}
	for j := 0; j < 2; j++ {
		if r := remote(j, 2); !strings.Contains(r, "[fe80::") {
			t.Errorf("node %d reaches the IPv6-only node 2 over %q, want a link-local IPv6 address", j, r)
		}
	}

	// Cut node 2's cable: dead-peer detection takes its links down.
	ipcmd("-n", br, "link", "set", "p2", "down")
	apply(15*time.Second, "node 2's links went down after the cut", func() bool {
		return !linked(0, 2) && !linked(1, 2) && !linked(2, 0) && !linked(2, 1)
	})
	if !linked(0, 1) || !linked(1, 0) {
		t.Fatal("the link between nodes 0 and 1 went down too")
	}
	// Forget the frames exchanged with node 2, to see them again.
	delete(hellos[0], self[2])
	delete(hellos[1], self[2])
	clear(hellos[2])
	// Restore it: discovery (and redials) bring the links back.
	ipcmd("-n", br, "link", "set", "p2", "up")
	apply(30*time.Second, "node 2's links recovered after the cable came back", full)

	// Stop node 2: it says goodbye, and the others hear it.
	before := [2]uint64{stats[0].Goodbyes, stats[1].Goodbyes}
	if err := procs[2].Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	apply(10*time.Second, "node 2 stopped and nodes 0 and 1 heard its goodbye", func() bool {
		return bye[2] && stats[0].Goodbyes > before[0] && stats[1].Goodbyes > before[1]
	})
	for i := range ns {
		if stats[i].OffLink != 0 {
			t.Errorf("node %d heard %d answers with no address on its link", i, stats[i].OffLink)
		}
	}
	if el := time.Since(start); el > 60*time.Second {
		t.Errorf("took %v, budget 60 s", el)
	}
}

// TestNetnsNode is one node of TestNetns, run inside a namespace.
func TestNetnsNode(t *testing.T) {
	raw := os.Getenv(nodeEnv)
	if raw == "" {
		t.Skip("only run by TestNetns inside a network namespace")
	}
	var cfg nodeConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	id, err := envelope.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	emit := func(ev nodeEvent) {
		b, _ := json.Marshal(ev)
		mu.Lock()
		fmt.Println(string(b))
		mu.Unlock()
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := tcp.Options{
		Identity: id, ListenAddr: fmt.Sprintf(":%d", nodePort), Logger: logger,
		KeepaliveInterval: 250 * time.Millisecond, DeadPeerTimeout: time.Second,
		HandshakeTimeout: 2 * time.Second, DialTimeout: 2 * time.Second,
		RedialMin: 200 * time.Millisecond, RedialMax: time.Second,
	}
	if cfg.Static != "" {
		opts.Peers = []tcp.Peer{{Endpoint: cfg.Static}}
		opts.Pins = &tcp.MemoryPins{}
	}
	tr, err := tcp.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := New(Options{
		Self: id.Address(), Port: nodePort, Dialer: tr, Logger: logger,
		BrowseInterval: 700 * time.Millisecond, QueryTimeout: 300 * time.Millisecond,
		DialTimeout: 2 * time.Second, DisableIPv4: cfg.V6Only,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Runs until the parent kills the process, or stops it with SIGTERM:
	// then discovery says goodbye and the node prints a "bye" event.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	emit(nodeEvent{Ev: "self", Addr: id.Address().String()})
	h := &nodeHandler{self: id.Address().String(), emit: emit}
	discDone := make(chan struct{})
	go func() {
		disc.Run(ctx)
		close(discDone)
	}()
	go func() {
		for range time.Tick(300 * time.Millisecond) {
			emit(statsEvent(disc.Stats()))
		}
	}()
	tr.Run(ctx, h)
	<-discDone
	emit(statsEvent(disc.Stats()))
	emit(nodeEvent{Ev: "bye"})
}

func statsEvent(st Stats) nodeEvent {
	return nodeEvent{Ev: "stats", OffLink: st.OffLink, Heard: st.Heard, Announcements: st.Announcements,
		Answers: st.Answers, Suppressed: st.Suppressed, Goodbyes: st.Goodbyes, Dials: st.Dials,
		Malformed: st.Malformed, Ignored: st.Ignored}
}

type nodeHandler struct {
	self string
	emit func(nodeEvent)
}

func (h *nodeHandler) LinkUp(l transport.Link) {
	peer := l.Info().Peer.Address().String()
	h.emit(nodeEvent{Ev: "up", Peer: peer, Link: l.Info().ID, Remote: l.(*tcp.Link).Remote()})
	go l.Send(context.Background(), transport.Frame{Data: []byte("hello from " + h.self)})
}

func (h *nodeHandler) Receive(l transport.Link, data []byte, m transport.Meta) {
	h.emit(nodeEvent{Ev: "recv", Peer: l.Info().Peer.Address().String(), Data: string(data)})
}

func (h *nodeHandler) LinkDown(l transport.Link, err error) {
	ev := nodeEvent{Ev: "down", Peer: l.Info().Peer.Address().String(), Link: l.Info().ID}
	if err != nil {
		ev.Err = err.Error()
	}
	h.emit(ev)
}
