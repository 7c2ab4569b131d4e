package discovery

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openmeshd/meshd/transport/discovery/mdns"
)

// TestAvahiInterop checks discovery against avahi, the mDNS implementation
// of most Linux systems, on a veth pair between two namespaces: a meshd
// node (TestNetnsNode) in one, avahi-daemon in the other (with a private
// D-Bus, which avahi-browse and avahi-publish talk to).
//
//   - avahi-browse resolves the node's instance: port, TXT, IPv4 and IPv6
//     addresses;
//   - an instance published with avahi-publish is heard and dialed by the
//     node at avahi's address and port;
//   - the node's goodbye removes its instance from avahi's cache.
//
// It needs root and avahi-daemon, avahi-utils and dbus; it skips, saying
// so, without them. MESHD_CAPTURE_AVAHI=1 also records avahi's datagrams
// as test vectors in mdns/testdata/avahi-*.hex.
func TestAvahiInterop(t *testing.T) {
	if os.Getenv(nodeEnv) != "" || os.Getenv(probeEnv) != "" {
		t.Skip("running as a child")
	}
	for _, tool := range []string{"avahi-daemon", "avahi-browse", "avahi-publish", "dbus-daemon"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the avahi interop test needs %s (apt-get install avahi-daemon avahi-utils dbus); skipping", tool)
		}
	}
	tag, ipcmd := netnsSetup(t, "node", "avahi")
	nsN, nsA := tag+"-node", tag+"-avahi"
	var sfx [1]byte
	rand.Read(sfx[:])
	subnet := fmt.Sprintf("198.18.%d", 1+int(sfx[0])%250)
	ipcmd("-n", nsN, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsA)
	ipcmd("-n", nsN, "addr", "add", subnet+".1/24", "dev", "eth0")
	ipcmd("-n", nsA, "addr", "add", subnet+".2/24", "dev", "eth0")
	ipcmd("-n", nsN, "link", "set", "eth0", "up")
	ipcmd("-n", nsA, "link", "set", "eth0", "up")
	settle(t, nsN, nsA, "eth0")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(cancel)

	// A private system bus, and avahi-daemon on it inside the namespace.
	dir := t.TempDir()
	bus := filepath.Join(dir, "bus")
	busEnv := "DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + bus
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	busConf := write("bus.conf", `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=`+bus+`</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>
`)
	avahiConf := write("avahi.conf", "[server]\nhost-name=avahi-"+tag+"\nuse-ipv4=yes\nuse-ipv6=yes\nallow-interfaces=eth0\nenable-dbus=yes\n"+
		"ratelimit-interval-usec=1000000\nratelimit-burst=1000\n[wide-area]\nenable-wide-area=no\n"+
		"[publish]\npublish-hinfo=no\npublish-workstation=no\n[reflector]\nenable-reflector=no\n")
	daemon := func(name string, args ...string) *child {
		c := &child{lines: make(chan []byte, 256)}
		c.cmd = exec.CommandContext(ctx, args[0], args[1:]...)
		c.cmd.Env = append(os.Environ(), busEnv)
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		c.cmd.Stderr = c.cmd.Stdout
		if err := c.cmd.Start(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				c.Write(append(sc.Bytes(), '\n'))
				select {
				case c.lines <- append([]byte(nil), sc.Bytes()...):
				default:
				}
			}
			c.cmd.Wait()
			close(c.lines)
		}()
		t.Cleanup(func() {
			c.cmd.Process.Signal(syscall.SIGTERM)
			if t.Failed() {
				t.Logf("%s output:\n%s", name, c.Stderr())
			}
		})
		return c
	}
	daemon("dbus-daemon", "dbus-daemon", "--nofork", "--config-file="+busConf)
	for i := 0; ; i++ {
		if _, err := os.Stat(bus); err == nil {
			break
		}
		if i > 100 {
			t.Fatal("dbus-daemon did not create its socket")
		}
		time.Sleep(50 * time.Millisecond)
	}
	avahi := daemon("avahi-daemon", "ip", "netns", "exec", nsA, "avahi-daemon", "-f", avahiConf, "--no-chroot", "--no-drop-root", "--no-rlimits")
	for started := false; !started; {
		select {
		case line, ok := <-avahi.lines:
			if !ok {
				t.Skipf("avahi-daemon did not start (another one running on this host?):\n%s", avahi.Stderr())
			}
			started = strings.Contains(string(line), "Server startup complete")
		case <-time.After(10 * time.Second):
			t.Fatalf("avahi-daemon did not complete its startup:\n%s", avahi.Stderr())
		}
	}

	ncfg, _ := json.Marshal(nodeConfig{Index: 0})
	node := startChild(t, ctx, &wg, nsN, "TestNetnsNode", nodeEnv+"="+string(ncfg))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node output:\n%s", node.Stderr())
		}
	})
	var self string
	var stats nodeEvent
	bye := false
	nodeEvent1 := func(d time.Duration) bool {
		select {
		case line, ok := <-node.lines:
			if !ok {
				return false
			}
			var ev nodeEvent
			if json.Unmarshal(line, &ev) == nil {
				switch ev.Ev {
				case "self":
					self = ev.Addr
				case "stats":
					stats = ev
				case "bye":
					bye = true
				}
			}
			return true
		case <-time.After(d):
			return true
		}
	}
	for deadline := time.Now().Add(10 * time.Second); self == ""; {
		if time.Now().After(deadline) || !nodeEvent1(time.Second) {
			t.Fatal("the node did not start")
		}
	}

	// avahi resolves our instance.
	browse := func() []string {
		cmd := exec.CommandContext(ctx, "avahi-browse", "-p", "-r", "-t", "-k", Service)
		cmd.Env = append(os.Environ(), busEnv)
		out, _ := cmd.Output()
		var resolved []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "=;") && strings.Contains(l, "addr="+self) {
				resolved = append(resolved, l)
			}
		}
		return resolved
	}
	var lines []string
	var host string
	for deadline := time.Now().Add(15 * time.Second); ; {
		lines = browse()
		// =;iface;protocol browsed over;name;type;domain;host;address;port;txt
		var v4, v6 bool
		for _, l := range lines {
			f := strings.Split(l, ";")
			if len(f) < 10 || f[8] != fmt.Sprint(nodePort) || !strings.Contains(f[9], `"v=1"`) ||
				(f[7] != subnet+".1" && !strings.HasPrefix(f[7], "fe80::")) {
				t.Fatalf("avahi resolved %q", l)
			}
			host = f[6]
			v4 = v4 || f[2] == "IPv4"
			v6 = v6 || f[2] == "IPv6"
		}
		if v4 && v6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("avahi-browse did not resolve the node over IPv4 and IPv6: %q", lines)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("avahi-browse found the node over IPv4 and IPv6 and resolved it:\n%s", strings.Join(lines, "\n"))
	// And its host name, to each IP version's address.
	for _, v := range []struct{ flag, want string }{{"-4", subnet + ".1"}, {"-6", "fe80::"}} {
		cmd := exec.CommandContext(ctx, "avahi-resolve", v.flag, "-n", host)
		cmd.Env = append(os.Environ(), busEnv)
		out, err := cmd.CombinedOutput()
		if f := strings.Fields(string(out)); err != nil || len(f) != 2 || f[0] != host || !strings.HasPrefix(f[1], v.want) {
			t.Fatalf("avahi-resolve %s -n %s: %v %q, want %s", v.flag, host, err, out, v.want)
		}
		t.Logf("avahi-resolve %s: %s", v.flag, strings.TrimSpace(string(out)))
	}

	// The node hears what avahi publishes and dials it.
	other := "0123456789abcdef0123456789abcdef"
	daemon("avahi-publish", "avahi-publish", "-s", "avahi-published", Service, "4243", "v=1", "addr="+other)
	want := "endpoint=" + subnet + ".2:4243"
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(node.Stderr(), want); {
		if time.Now().After(deadline) || !nodeEvent1(200*time.Millisecond) {
			t.Fatalf("the node did not dial the instance avahi published (%s); stats %+v", want, stats)
		}
	}

	if os.Getenv("MESHD_CAPTURE_AVAHI") == "1" {
		// A running browser makes avahi query (with known answers).
		daemon("avahi-browse", "avahi-browse", "-p", "-r", Service)
		captureAvahi(t, ctx, &wg, nsN, subnet+".2")
	}

	// The node's goodbye removes it from avahi's cache.
	if err := node.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !bye; {
		if time.Now().After(deadline) || !nodeEvent1(time.Second) {
			t.Fatal("the node did not stop")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); len(browse()) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("avahi still lists the node after its goodbye: %q", browse())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// captureAvahi records, from a probe in namespace ns, a response avahi
// sends to a PTR query for the service and a query avahi sends itself (an
// avahi-browse must be running), and writes them to mdns/testdata as hex.
func captureAvahi(t *testing.T, ctx context.Context, wg *sync.WaitGroup, ns, avahiAddr string) {
	cfg, _ := json.Marshal(probeConfig{Iface: "eth0"})
	p := startChild(t, ctx, wg, ns, "TestNetnsProbe", probeEnv+"="+string(cfg))
	defer p.stdin.Close()
	svc, _ := mdns.ServiceName(Service, "local")
	q := &mdns.Message{Questions: []mdns.Question{{Name: svc, Type: mdns.TypePTR, Class: mdns.ClassIN}}}
	b, _ := q.Append(nil)
	got := map[string]string{}
	deadline := time.After(15 * time.Second)
	for tick := time.NewTicker(1500 * time.Millisecond); len(got) < 2; {
		select {
		case <-tick.C:
			cmd, _ := json.Marshal(probeCmd{From: "m4", To: "group", Hex: hex.EncodeToString(b)})
			p.stdin.Write(append(cmd, '\n'))
		case line := <-p.lines:
			var ev probeEvent
			if json.Unmarshal(line, &ev) != nil || ev.Ev != "pkt" || ev.Sock != "m4" || !strings.HasPrefix(ev.Src, avahiAddr+":") {
				continue
			}
			raw, _ := hex.DecodeString(ev.Hex)
			m, err := mdns.Parse(raw)
			if err != nil {
				t.Fatalf("avahi sent a datagram we cannot parse: %v\n%s", err, ev.Hex)
			}
			kind := "query"
			if m.Response() {
				if len(mdns.Instances(m, svc)) == 0 {
					continue
				}
				kind = "response"
			}
			got[kind] = ev.Hex
		case <-deadline:
			t.Fatalf("captured only %v", got)
		}
	}
	if err := os.MkdirAll(filepath.Join("mdns", "testdata"), 0o755); err != nil {
		t.Fatal(err)
	}
	for kind, h := range got {
		p := filepath.Join("mdns", "testdata", "avahi-"+kind+".hex")
		if err := os.WriteFile(p, []byte(h+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", p)
	}
}
