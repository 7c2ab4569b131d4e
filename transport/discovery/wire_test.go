package discovery

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openmeshd/meshd/transport/discovery/mdns"
)

// TestNetnsWire checks the responder on the wire, datagram by datagram: a
// node (TestNetnsNode) in one namespace, and in another a probe
// (TestNetnsProbe) that prints every datagram it receives and sends the
// ones it is told to:
//
//	announcements: two, a second apart, IPv4 and IPv6, complete records
//	the node's own queries: QM, from port 5353, its own PTR as a known answer
//	QM query → multicast reply after 20–120 ms
//	QU query (just multicast) → unicast reply to the querier
//	legacy query (source port ≠ 5353), IPv4 and IPv6 → unicast reply, ID and question echoed, TTL ≤ 10 s
//	query listing the answer as known → no reply
//	query from an address off the link → ignored
//	garbage → counted as malformed
//	SIGTERM → goodbyes (TTL 0), IPv4 and IPv6

const probeEnv = "MESHD_NETNS_PROBE"

type probeConfig struct {
	Iface   string `json:"iface"`
	Offlink string `json:"offlink,omitempty"` // a local IPv4 address for the "off" socket
}

// probeCmd is a datagram for the probe to send.
type probeCmd struct {
	From string `json:"from"` // m4, m6 (port 5353), e4, e6 (ephemeral ports), off (Offlink)
	To   string `json:"to"`   // "group", or "address:port"
	Hex  string `json:"hex"`
}

// probeEvent is a line the probe prints.
type probeEvent struct {
	Ev   string `json:"ev"` // ready, pkt
	Sock string `json:"sock,omitempty"`
	Src  string `json:"src,omitempty"`
	Dst  string `json:"dst,omitempty"` // m4, m6 only
	Hex  string `json:"hex,omitempty"`
	At   int64  `json:"at,omitempty"` // when the probe received it, Unix ns

	at  time.Time
	msg *mdns.Message
}

func TestNetnsProbe(t *testing.T) {
	raw := os.Getenv(probeEnv)
	if raw == "" {
		t.Skip("only run by the netns tests inside a network namespace")
	}
	var cfg probeConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	ifi, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		t.Fatal(err)
	}
	socks := map[string]*net.UDPConn{}
	for fam, name := range []string{"m4", "m6"} {
		c, err := listen(fam)
		if err != nil {
			t.Fatal(err)
		}
		if err := membership(c, fam, ifi.Index, true); err != nil {
			t.Fatal(err)
		}
		socks[name] = c
	}
	for name, nw := range map[string]string{"e4": "udp4", "e6": "udp6"} {
		c, err := net.ListenUDP(nw, nil)
		if err != nil {
			t.Fatal(err)
		}
		socks[name] = c
	}
	if cfg.Offlink != "" {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(cfg.Offlink)})
		if err != nil {
			t.Fatal(err)
		}
		socks["off"] = c
	}
	var mu sync.Mutex
	emit := func(ev probeEvent) {
		b, _ := json.Marshal(ev)
		mu.Lock()
		fmt.Println(string(b))
		mu.Unlock()
	}
	for name, c := range socks {
		go func() {
			buf, oob := make([]byte, 9100), make([]byte, 256)
			for {
				n, oobn, _, src, err := c.ReadMsgUDPAddrPort(buf, oob)
				if err != nil {
					return
				}
				ev := probeEvent{Ev: "pkt", Sock: name, Src: src.String(), Hex: hex.EncodeToString(buf[:n]), At: time.Now().UnixNano()}
				fam := v4
				if name == "m6" {
					fam = v6
				}
				if _, dst := arrival(fam, oob[:oobn]); dst.IsValid() {
					ev.Dst = dst.String()
				}
				emit(ev)
			}
		}()
	}
	emit(probeEvent{Ev: "ready"})
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var cmd probeCmd
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			t.Fatal(err)
		}
		b, _ := hex.DecodeString(cmd.Hex)
		c := socks[cmd.From]
		six := strings.HasSuffix(cmd.From, "6")
		var dst netip.AddrPort
		switch {
		case cmd.To == "group" && six:
			dst = netip.AddrPortFrom(mdns.Group6().WithZone(cfg.Iface), mdns.Port)
		case cmd.To == "group":
			dst = netip.AddrPortFrom(mdns.Group4(), mdns.Port)
		default:
			dst = netip.MustParseAddrPort(cmd.To)
		}
		oob := pktinfo(v4, ifi.Index) // out of cfg.Iface, whatever the routes
		switch {
		case six:
			oob = pktinfo(v6, ifi.Index)
		case cmd.From == "off":
			oob = nil // IP_PKTINFO would replace the bound source address
		}
		if _, _, err := c.WriteMsgUDPAddrPort(b, oob, dst); err != nil {
			t.Errorf("send %+v: %v", cmd, err)
		}
	}
}

// child is a re-executed test binary in a namespace: its JSON lines
// arrive on lines; everything else it prints is kept for failures.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte
	mu     sync.Mutex
	stderr strings.Builder
}

func (c *child) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.Write(p)
}

func (c *child) Stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// startChild runs test (TestNetnsNode, TestNetnsProbe) in namespace ns with
// env set; the process is killed and waited for at cleanup.
func startChild(t *testing.T, ctx context.Context, wg *sync.WaitGroup, ns, test, env string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{lines: make(chan []byte, 1024)}
	c.cmd = exec.CommandContext(ctx, "ip", "netns", "exec", ns, exe, "-test.run=^"+test+"$", "-test.v")
	c.cmd.Env = append(os.Environ(), env)
	c.cmd.Stderr = c
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if !strings.HasPrefix(sc.Text(), "{") {
				c.Write(append(sc.Bytes(), '\n')) // test output, for failures
				continue
			}
			select {
			case c.lines <- append([]byte(nil), sc.Bytes()...):
			case <-ctx.Done():
			}
		}
		c.cmd.Wait()
		close(c.lines)
	}()
	return c
}

// netnsSetup creates namespaces named tag-<name> for each name, deleted
// at cleanup, and returns a function running ip commands.
func netnsSetup(t *testing.T, names ...string) (tag string, ipcmd func(args ...string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs it as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	var sfx [3]byte
	rand.Read(sfx[:])
	tag = "mshd-" + hex.EncodeToString(sfx[:])
	ipcmd = func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for _, n := range names {
			exec.Command("ip", "netns", "del", tag+"-"+n).Run()
		}
	})
	for _, n := range names {
		ipcmd("netns", "add", tag+"-"+n)
		for _, k := range []string{"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"} {
			ipcmd("netns", "exec", tag+"-"+n, "sysctl", "-qw", k)
		}
		ipcmd("-n", tag+"-"+n, "link", "set", "lo", "up")
	}
	return tag, ipcmd
}

// settle waits until multicast datagrams pass both ways, IPv4 and IPv6,
// between namespaces nsA and nsB (interfaces named iface): right after a
// veth pair comes up, the kernel drops IPv6 multicast for up to a second or
// two, which would make tests that count datagrams flaky. It runs a probe
// on each side and stops them before returning.
func settle(t *testing.T, nsA, nsB, iface string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	cfg, _ := json.Marshal(probeConfig{Iface: iface})
	ps := []*child{
		startChild(t, ctx, &wg, nsA, "TestNetnsProbe", probeEnv+"="+string(cfg)),
		startChild(t, ctx, &wg, nsB, "TestNetnsProbe", probeEnv+"="+string(cfg)),
	}
	for _, p := range ps {
		for ready := false; !ready; {
			select {
			case line, ok := <-p.lines:
				ready = ok && strings.Contains(string(line), `"ready"`)
				if !ok {
					t.Fatalf("settle: a probe exited:\n%s", p.Stderr())
				}
			case <-ctx.Done():
				t.Fatal("settle: probes not ready")
			}
		}
	}
	// heard[i][fam]: probe i heard the other's datagram of that family.
	var heard [2][2]bool
	for round := 0; ; round++ {
		for i, p := range ps {
			for fam, sock := range []string{"m4", "m6"} {
				if heard[1-i][fam] {
					continue
				}
				cmd, _ := json.Marshal(probeCmd{From: sock, To: "group", Hex: hex.EncodeToString([]byte(fmt.Sprintf("settle-%d-%d", i, round)))})
				p.stdin.Write(append(cmd, '\n'))
			}
		}
		tick := time.After(100 * time.Millisecond)
		for wait := true; wait; {
			select {
			case <-tick:
				wait = false
			case <-ctx.Done():
				t.Fatalf("settle: multicast does not pass between %s and %s: %v", nsA, nsB, heard)
			case line := <-ps[0].lines:
				markSettle(line, 1, &heard[0])
			case line := <-ps[1].lines:
				markSettle(line, 0, &heard[1])
			}
		}
		if heard == [2][2]bool{{true, true}, {true, true}} {
			break
		}
	}
	for _, p := range ps {
		p.stdin.Close()
	}
}

// markSettle notes a settle datagram from probe `from`.
func markSettle(line []byte, from int, heard *[2]bool) {
	var ev probeEvent
	if json.Unmarshal(line, &ev) != nil || ev.Ev != "pkt" {
		return
	}
	b, _ := hex.DecodeString(ev.Hex)
	if !strings.HasPrefix(string(b), fmt.Sprintf("settle-%d-", from)) {
		return
	}
	switch ev.Sock {
	case "m4":
		heard[v4] = true
	case "m6":
		heard[v6] = true
	}
}

func TestNetnsWire(t *testing.T) {
	if os.Getenv(nodeEnv) != "" || os.Getenv(probeEnv) != "" {
		t.Skip("running as a child")
	}
	tag, ipcmd := netnsSetup(t, "node", "probe")
	nsN, nsP := tag+"-node", tag+"-probe"
	var sfx [1]byte
	rand.Read(sfx[:])
	subnet := fmt.Sprintf("198.18.%d", 1+int(sfx[0])%250)
	ipcmd("-n", nsN, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsP)
	ipcmd("-n", nsN, "addr", "add", subnet+".1/24", "dev", "eth0")
	ipcmd("-n", nsP, "addr", "add", subnet+".2/24", "dev", "eth0")
	ipcmd("-n", nsP, "addr", "add", "203.0.113.2/24", "dev", "eth0") // TEST-NET-3: off the node's link
	ipcmd("-n", nsN, "link", "set", "eth0", "up")
	ipcmd("-n", nsP, "link", "set", "eth0", "up")
	// A route to the off-link network, so the kernel's reverse-path check
	// lets its datagrams reach the node, which must ignore them itself.
	ipcmd("-n", nsN, "route", "add", "203.0.113.0/24", "dev", "eth0")
	settle(t, nsN, nsP, "eth0")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(cancel)

	pcfg, _ := json.Marshal(probeConfig{Iface: "eth0", Offlink: "203.0.113.2"})
	probe := startChild(t, ctx, &wg, nsP, "TestNetnsProbe", probeEnv+"="+string(pcfg))
	ncfg, _ := json.Marshal(nodeConfig{Index: 0})
	var node *child
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("probe output:\n%s", probe.Stderr())
			if node != nil {
				t.Logf("node output:\n%s", node.Stderr())
			}
		}
	})

	// Events are kept until a next call consumes them, so that what
	// arrives in an unexpected order (IPv4 and IPv6 interleave) is not lost.
	var backlog []*probeEvent
	receive := func(deadline <-chan time.Time, what string) *probeEvent {
		t.Helper()
		select {
		case line, ok := <-probe.lines:
			if !ok {
				t.Fatalf("%s: the probe exited", what)
			}
			ev := &probeEvent{}
			if err := json.Unmarshal(line, ev); err != nil {
				t.Fatal(err)
			}
			ev.at = time.Unix(0, ev.At)
			if ev.Hex != "" {
				b, _ := hex.DecodeString(ev.Hex)
				ev.msg, _ = mdns.Parse(b)
			}
			return ev
		case <-deadline:
			return nil
		}
	}
	next := func(d time.Duration, what string, match func(ev *probeEvent) bool) *probeEvent {
		t.Helper()
		for i, ev := range backlog {
			if match(ev) {
				backlog = append(backlog[:i], backlog[i+1:]...)
				return ev
			}
		}
		deadline := time.After(d)
		for {
			ev := receive(deadline, what)
			if ev == nil {
				for _, ev := range backlog {
					kind := "?"
					if ev.msg != nil {
						kind = fmt.Sprintf("response=%v answers=%d questions=%d", ev.msg.Response(), len(ev.msg.Answers), len(ev.msg.Questions))
					}
					t.Logf("unmatched: %s %s → %s at %s: %s", ev.Sock, ev.Src, ev.Dst, ev.at.Format("15:04:05.000"), kind)
				}
				t.Fatalf("%s: nothing within %v", what, d)
			}
			if match(ev) {
				return ev
			}
			if len(backlog) < 1000 {
				backlog = append(backlog, ev)
			}
		}
	}
	none := func(d time.Duration, what string, match func(ev *probeEvent) bool) {
		t.Helper()
		deadline := time.After(d)
		for {
			ev := receive(deadline, what)
			if ev == nil {
				return
			}
			if match(ev) {
				t.Fatalf("%s: got %+v", what, ev)
			}
		}
	}
	send := func(from, to string, m *mdns.Message) {
		t.Helper()
		b, err := m.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		cmd, _ := json.Marshal(probeCmd{From: from, To: to, Hex: hex.EncodeToString(b)})
		if _, err := probe.stdin.Write(append(cmd, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	next(10*time.Second, "probe ready", func(ev *probeEvent) bool { return ev.Ev == "ready" })

	node = startChild(t, ctx, &wg, nsN, "TestNetnsNode", nodeEnv+"="+string(ncfg))
	var self string
	var stats nodeEvent
	nodeEvents := make(chan nodeEvent, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(nodeEvents)
		for line := range node.lines {
			var ev nodeEvent
			if json.Unmarshal(line, &ev) == nil {
				select {
				case nodeEvents <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	waitNode := func(d time.Duration, what string, done func() bool) {
		t.Helper()
		deadline := time.After(d)
		for !done() {
			select {
			case ev, ok := <-nodeEvents:
				if !ok {
					t.Fatalf("%s: the node exited", what)
				}
				switch ev.Ev {
				case "self":
					self = ev.Addr
				case "stats", "bye":
					if ev.Ev == "bye" {
						stats.Ev = "bye"
					} else {
						ev.Ev = stats.Ev
						stats = ev
					}
				}
			case <-deadline:
				t.Fatalf("%s: not within %v (stats %+v)", what, d, stats)
			}
		}
	}
	waitNode(10*time.Second, "node started", func() bool { return self != "" })

	svc, _ := mdns.ServiceName(Service, "local")
	ours := func(m *mdns.Message) *mdns.Instance {
		if m == nil {
			return nil
		}
		for _, in := range mdns.Instances(m, svc) {
			if rec, err := ParseTXT(in.Text, Version); (err == nil && rec.Address.String() == self) || (in.TTL == 0 && strings.Contains(in.Name.String(), self[:16])) {
				return &in
			}
		}
		return nil
	}
	fromNode := func(ev *probeEvent) bool {
		return strings.HasPrefix(ev.Src, subnet+".1:") || strings.HasPrefix(ev.Src, "[fe80::")
	}
	announcement := func(sock, dst string) func(ev *probeEvent) bool {
		return func(ev *probeEvent) bool {
			in := ours(ev.msg)
			return ev.Sock == sock && ev.Dst == dst && fromNode(ev) && strings.HasSuffix(ev.Src, ":5353") &&
				in != nil && in.TTL > 0 && len(ev.msg.Questions) == 0 && len(ev.msg.Answers) >= 6
		}
	}
	a1 := next(5*time.Second, "first IPv4 announcement", announcement("m4", "224.0.0.251"))
	in := ours(a1.msg)
	if in.Port != nodePort || !in.HaveTXT || len(in.Addrs) < 2 || in.Addrs[0].String() != subnet+".1" || !in.Addrs[1].IsLinkLocalUnicast() {
		t.Fatalf("announced instance %+v", in)
	}
	a2 := next(5*time.Second, "second IPv4 announcement", announcement("m4", "224.0.0.251"))
	if gap := a2.at.Sub(a1.at); gap < 900*time.Millisecond || gap > 2*time.Second {
		t.Errorf("announcements %v apart, want 1 s", gap)
	}
	b1 := next(3*time.Second, "first IPv6 announcement", announcement("m6", "ff02::fb"))
	b2 := next(3*time.Second, "second IPv6 announcement", announcement("m6", "ff02::fb"))
	if gap := b2.at.Sub(b1.at); gap < 900*time.Millisecond || gap > 2*time.Second {
		t.Errorf("IPv6 announcements %v apart, want 1 s", gap)
	}
	q := next(5*time.Second, "the node's query", func(ev *probeEvent) bool {
		return ev.Sock == "m4" && fromNode(ev) && ev.msg != nil && !ev.msg.Response()
	})
	if !strings.HasSuffix(q.Src, ":5353") || len(q.msg.Questions) != 1 || q.msg.Questions[0].Unicast() ||
		!q.msg.Questions[0].Name.Equal(svc) || q.msg.Questions[0].Type != mdns.TypePTR {
		t.Fatalf("node's query from %s: %+v", q.Src, q.msg)
	}
	if len(q.msg.Answers) != 1 || q.msg.Answers[0].Target.String() != in.Name.String() {
		t.Fatalf("node's query lists %+v as known answers, want its own instance", q.msg.Answers)
	}
	time.Sleep(time.Until(a2.at.Add(1100 * time.Millisecond))) // past the once-a-second limit

	ptrQ := func(class uint16) *mdns.Message {
		return &mdns.Message{Questions: []mdns.Question{{Name: svc, Type: mdns.TypePTR, Class: class}}}
	}
	isReply := func(sock string) func(ev *probeEvent) bool {
		return func(ev *probeEvent) bool { return ev.Sock == sock && fromNode(ev) && ours(ev.msg) != nil }
	}
	sent := time.Now()
	send("m4", "group", ptrQ(mdns.ClassIN))
	r := next(2*time.Second, "multicast reply to a QM query", isReply("m4"))
	if r.Dst != "224.0.0.251" || !strings.HasSuffix(r.Src, ":5353") || len(r.msg.Answers) != 1 || len(r.msg.Additionals) < 5 {
		t.Fatalf("reply to %s from %s: %+v", r.Dst, r.Src, r.msg)
	}
	if d := r.at.Sub(sent); d < 20*time.Millisecond {
		t.Errorf("shared record answered after %v, want a 20–120 ms delay", d)
	}
	mcastAt := r.at

	send("m4", "group", ptrQ(mdns.ClassIN|mdns.ClassTop))
	r = next(2*time.Second, "unicast reply to a QU query", isReply("m4"))
	if r.Dst != subnet+".2" {
		t.Fatalf("QU reply sent to %s, want %s.2 (unicast)", r.Dst, subnet)
	}

	legacy := ptrQ(mdns.ClassIN)
	legacy.ID = 0x4d53
	for _, fam := range []string{"e4", "e6"} {
		send(fam, "group", legacy)
		r = next(2*time.Second, "legacy unicast reply on "+fam, isReply(fam))
		if r.msg.ID != 0x4d53 || len(r.msg.Questions) != 1 || !r.msg.Questions[0].Name.Equal(svc) {
			t.Fatalf("legacy reply ID %#x questions %+v", r.msg.ID, r.msg.Questions)
		}
		for _, rr := range append(r.msg.Answers, r.msg.Additionals...) {
			if rr.TTL > mdns.LegacyTTL || rr.CacheFlush() {
				t.Fatalf("legacy reply record %s TTL %d cache-flush %v", rr.Type, rr.TTL, rr.CacheFlush())
			}
		}
	}

	time.Sleep(time.Until(mcastAt.Add(1100 * time.Millisecond)))
	known := ptrQ(mdns.ClassIN)
	known.Answers = []mdns.Record{{Name: svc, Type: mdns.TypePTR, Class: mdns.ClassIN, TTL: 4500, Target: in.Name}}
	send("m4", "group", known)
	none(600*time.Millisecond, "reply to a query listing the answer as known", isReply("m4"))

	send("off", "group", legacy)
	none(500*time.Millisecond, "reply to a query from off the link", isReply("off"))
	send("m4", "group", &mdns.Message{ID: 1}) // no questions: valid, unanswered
	cmd, _ := json.Marshal(probeCmd{From: "m4", To: "group", Hex: "deadbeef"})
	probe.stdin.Write(append(cmd, '\n'))
	waitNode(5*time.Second, "node counted the suppressed, off-link and malformed datagrams", func() bool {
		return stats.Suppressed > 0 && stats.Ignored > 0 && stats.Malformed > 0
	})

	if err := node.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	bye := func(sock string) func(ev *probeEvent) bool {
		return func(ev *probeEvent) bool {
			in := ours(ev.msg)
			return ev.Sock == sock && fromNode(ev) && in != nil && in.TTL == 0
		}
	}
	g := next(5*time.Second, "IPv4 goodbye", bye("m4"))
	for _, rr := range g.msg.Answers {
		if rr.TTL != 0 {
			t.Errorf("goodbye record %s with TTL %d", rr.Type, rr.TTL)
		}
	}
	next(5*time.Second, "IPv6 goodbye", bye("m6"))
	waitNode(5*time.Second, "node stopped", func() bool { return stats.Ev == "bye" })
}
