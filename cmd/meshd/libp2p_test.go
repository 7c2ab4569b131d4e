//go:build !router

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	golibp2p "github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/libp2p"
	"github.com/openmeshd/meshd/transport/tcp"
)

// TestRouterBuildHasNoLibp2p: the router build (-tags router) links no
// go-libp2p package at all; the plain build does.
func TestRouterBuildHasNoLibp2p(t *testing.T) {
	list := func(tags ...string) []string {
		args := append([]string{"list", "-deps"}, tags...)
		out, err := exec.Command("go", append(args, ".")...).Output()
		if err != nil {
			t.Fatalf("go list %v: %v", tags, err)
		}
		return strings.Fields(string(out))
	}
	var bad []string
	for _, p := range list("-tags", "router") {
		if strings.Contains(p, "libp2p") || strings.Contains(p, "multiformats") || strings.Contains(p, "quic-go") {
			bad = append(bad, p)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("the router build depends on %d libp2p packages: %v", len(bad), bad)
	}
	n := 0
	for _, p := range list() {
		if strings.HasPrefix(p, "github.com/libp2p/go-libp2p") {
			n++
		}
		// The DHT is opt-in (-tags dht): 2.9 MB the full build's budget
		// cannot hold (docs/size.md).
		if strings.HasPrefix(p, "github.com/libp2p/go-libp2p-kad-dht") {
			t.Fatalf("the default full build links %s", p)
		}
	}
	if n == 0 {
		t.Fatal("the full build has no go-libp2p: the build tag is inverted")
	}
	t.Logf("full build: %d go-libp2p packages; router build: none", n)
}

// libp2pNode is a daemon with libp2p on.
type libp2pNode struct {
	*daemon
	port int
	key  envelope.PublicKey
	pid  peer.ID
}

func (n *libp2pNode) multiaddr() string {
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", n.port, n.pid)
}

// newLibp2pDaemon prepares a daemon whose config has the given sections;
// its identity is created first so that its peer ID is known.
func newLibp2pDaemon(t *testing.T, name string, libp2pOn bool, bootstrap []string, extraConf string) *libp2pNode {
	t.Helper()
	d := newDaemon(t, name)
	var id struct {
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal([]byte(d.mustCLI("id", "--json")), &id); err != nil {
		t.Fatal(err)
	}
	kb, _ := hexDecode(id.PublicKey)
	key, err := envelope.ParsePublicKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := libp2p.PeerIDFor(key)
	if err != nil {
		t.Fatal(err)
	}
	_, ps, _ := net.SplitHostPort(freePort(t))
	port, _ := strconv.Atoi(ps)
	n := &libp2pNode{daemon: d, port: port, key: key, pid: pid}
	conf := filepath.Join(d.dir, "meshd.conf")
	var b strings.Builder
	b.WriteString(extraConf)
	if libp2pOn {
		fmt.Fprintf(&b, "\n[libp2p]\nenabled = true\nlisten = [\"/ip4/127.0.0.1/tcp/%d\"]\n", port)
		if len(bootstrap) > 0 {
			fmt.Fprintf(&b, "bootstrap = [%q]\n", strings.Join(bootstrap, `", "`))
		}
	}
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	d.extra = []string{"--config", conf}
	return n
}

func hexDecode(s string) ([]byte, error) {
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, err
		}
		b[i] = byte(v)
	}
	return b, nil
}

type linkJSON struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Peer string `json:"peer"`
}

func (d *daemon) links() []linkJSON { return jsonLines[linkJSON](d.t, d.mustCLI("links", "--json")) }

// metrics returns the daemon's Prometheus page.
func (d *daemon) metrics() string {
	conn, err := net.Dial("unix", filepath.Join(d.dir, "meshd.sock"))
	if err != nil {
		d.t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: meshd\r\nConnection: close\r\n\r\n")
	var sb strings.Builder
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		sb.WriteString(sc.Text())
		sb.WriteByte('\n')
	}
	return sb.String()
}

// metric returns the value of the sample whose name and labels are given
// as it appears on the page (e.g. `meshd_router_frames_in_total{kind="channel"}`).
func (d *daemon) metric(sample string) float64 {
	for _, line := range strings.Split(d.metrics(), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

// channelEnvelope builds a Channel envelope (the daemon has no channel
// API yet: the test plays the channel application).
func channelEnvelope(t *testing.T, body string) []byte {
	t.Helper()
	var ch envelope.Address
	copy(ch[:], "bridged-channel!")
	e := envelope.Envelope{Kind: envelope.KindChannel, TTL: 12, Flags: envelope.FlagFull, Dst: envelope.FullAddr(ch), Body: []byte(body)}
	b, err := e.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordingHandler keeps the links of an in-process transport.
type recordingHandler struct{ up chan transport.Link }

func (h recordingHandler) LinkUp(l transport.Link) {
	select {
	case h.up <- l:
	default:
	}
}
func (recordingHandler) Receive(transport.Link, []byte, transport.Meta) {}
func (recordingHandler) LinkDown(transport.Link, error)                 {}

// TestLibp2pFiveDaemons: five meshd processes with libp2p only (no TCP,
// no mDNS); four know only the first as bootstrap peer. They find each
// other through the signed peer records they publish on GossipSub (and
// the DHT too in a build with -tags dht), link pairwise, deliver a direct message, talk in
// a channel of all five, and a raw channel flood injected at one reaches
// all.
func TestLibp2pFiveDaemons(t *testing.T) {
	noTCP := "[tcp]\nlisten = \"\"\nmdns = false\n"
	boot := newLibp2pDaemon(t, "P0", true, nil, noTCP)
	nodes := []*libp2pNode{boot}
	for i := 1; i < 5; i++ {
		nodes = append(nodes, newLibp2pDaemon(t, fmt.Sprintf("P%d", i), true, []string{boot.multiaddr()}, noTCP))
	}
	start := time.Now()
	for _, n := range nodes {
		n.extra = append(n.extra, "--listen", "none")
		n.start()
	}
	eventually(t, 60*time.Second, "every daemon linked to the four others over libp2p", func() error {
		for _, n := range nodes {
			peers := map[string]bool{}
			for _, l := range n.links() {
				if l.Kind == "libp2p" {
					peers[l.Peer] = true
				}
			}
			if len(peers) < 4 {
				return fmt.Errorf("%s has %d libp2p links", n.name, len(peers))
			}
		}
		return nil
	})
	t.Logf("5 daemons pairwise linked %v after start", time.Since(start).Round(time.Millisecond))
	eventually(t, 60*time.Second, "rendezvous found the others", func() error {
		for _, n := range nodes {
			if v := n.metric("meshd_libp2p_peer_records"); v < 4 {
				return fmt.Errorf("%s holds %v peer records", n.name, v)
			}
			if v := n.metric("meshd_libp2p_rendezvous_found"); v < 4 {
				return fmt.Errorf("%s: rendezvous found %v", n.name, v)
			}
		}
		return nil
	})
	out := nodes[1].mustCLI("send", "--wait", "60s", "--json", nodes[4].address(), "hello over libp2p")
	if !strings.Contains(out, `"state":"delivered"`) {
		t.Fatalf("send P1 -> P4: %s", out)
	}
	// A channel of all five: P0 creates it and invites the others; each
	// posts and everyone reads everyone (channel floods over gossip and the
	// envelope links).
	ch := strings.TrimSpace(nodes[0].mustCLI("channel", "create", "internet"))
	for _, n := range nodes[1:] {
		code := strings.TrimSpace(nodes[0].mustCLI("channel", "invite", "internet"))
		if got := strings.TrimSpace(n.mustCLI("channel", "join", "--wait", "60s", code)); got != ch {
			t.Fatalf("%s joined %q, want %q", n.name, got, ch)
		}
	}
	var texts []string
	for _, n := range nodes {
		text := "hello from " + n.name
		texts = append(texts, text)
		n.mustCLI("channel", "send", ch, text)
	}
	for _, n := range nodes {
		waitTexts(t, n.daemon, ch, texts...)
	}
	// A raw channel-kind flood injected at P2 by an in-process libp2p
	// node reaches every router.
	before := make([]float64, len(nodes))
	for i, n := range nodes {
		before[i] = n.metric(`meshd_router_frames_in_total{kind="channel"}`)
	}
	inj := injector(t, nodes[2].key, nodes[2].multiaddr())
	if err := inj.Send(context.Background(), transport.Frame{Data: channelEnvelope(t, "channel flood over libp2p")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the channel flood reached every daemon", func() error {
		for i, n := range nodes {
			if v := n.metric(`meshd_router_frames_in_total{kind="channel"}`); v <= before[i] {
				return fmt.Errorf("%s received no new channel envelope", n.name)
			}
		}
		return nil
	})
	for _, n := range nodes {
		n.stop()
	}
}

// injector runs an in-process libp2p transport linked to the daemon with
// the given key and returns its link.
func injector(t *testing.T, to envelope.PublicKey, addr string) transport.Link {
	t.Helper()
	id, err := envelope.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := libp2p.New(libp2p.Options{Identity: id, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx, recordingHandler{up: make(chan transport.Link, 16)}) }()
	t.Cleanup(func() { cancel(); <-done })
	ai, err := libp2p.ParseAddrInfo(addr)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	l, err := tr.Connect(cctx, ai)
	if err != nil {
		t.Fatal(err)
	}
	if l.Info().Peer != to {
		t.Fatalf("linked to %s, want %s", l.Info().Peer, to)
	}
	return l
}

// tcpInjector links an in-process TCP node to the daemon listening at
// endpoint and returns the link: a member of the TCP island played by the
// test.
func tcpInjector(t *testing.T, endpoint string) transport.Link {
	t.Helper()
	id, err := envelope.GenerateIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tcp.New(tcp.Options{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx, recordingHandler{up: make(chan transport.Link, 16)}) }()
	t.Cleanup(func() { cancel(); <-done })
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	l, err := tr.Dial(cctx, tcp.Peer{Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// announceFlood publishes n signed announces of fresh identities from each
// of hosts stock go-libp2p hosts (stock GossipSub) connected to the daemon
// at addr, on the open network's announce topic, as fast as they go.
func announceFlood(t *testing.T, addr string, hosts, n int) {
	t.Helper()
	ai, err := libp2p.ParseAddrInfo(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	topic := libp2p.TopicName(libp2p.NetworkIDFor(nil), 0)
	var tops []*pubsub.Topic
	for i := 0; i < hosts; i++ {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		h, err := golibp2p.New(golibp2p.Identity(k), golibp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), golibp2p.DisableRelay())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		if err := h.Connect(ctx, ai); err != nil {
			t.Fatal(err)
		}
		ps, err := pubsub.NewGossipSub(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		tp, err := ps.Join(topic)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "attacker sees the gateway on the topic", func() error {
			if len(ps.ListPeers(topic)) == 0 {
				return fmt.Errorf("no topic peer")
			}
			return nil
		})
		tops = append(tops, tp)
	}
	for j := 0; j < n; j++ {
		for _, tp := range tops {
			id, err := envelope.GenerateIdentity(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := envelope.SignAnnounce(id, envelope.AnnounceOptions{Seq: 1, TTL: 16, AppData: []byte("flood")})
			if err != nil {
				t.Fatal(err)
			}
			if err := tp.Publish(ctx, raw); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestIslandBridging: a LoRa island (L, on the virtual radio) and a TCP
// island (T) joined over the internet by two gateways: G1 (LoRa + libp2p)
// and G2 (libp2p + TCP).
//
//	L ~~LoRa~~ G1 ==libp2p== G2 --TCP-- T
//
// A direct message crosses from T to L, a channel flood from the TCP
// island reaches L, and a flood of announces published on the internet
// side is rate-limited before the radio: G1's airtime stays within the
// router's control budget.
func TestIslandBridging(t *testing.T) {
	simDir := filepath.Join(t.TempDir(), "air")
	sim := exec.Command(meshdBin, "radio", "sim", "-n", "2", "-dir", simDir)
	var simOut strings.Builder
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
	radio := func(i int) string {
		return fmt.Sprintf("[lora]\ndevice = %q\nregion = \"EU868\"\nspreading_factor = 7\nbandwidth = 250000\n", filepath.Join(simDir, fmt.Sprintf("rnode%d", i)))
	}
	noTCP := "[tcp]\nlisten = \"\"\nmdns = false\n"
	l := newLibp2pDaemon(t, "L", false, nil, noTCP+radio(1))
	g1 := newLibp2pDaemon(t, "G1", true, nil, noTCP+radio(0))
	g2 := newLibp2pDaemon(t, "G2", true, []string{g1.multiaddr()}, "[tcp]\nmdns = false\n")
	tn := newDaemon(t, "T", g2.listen)
	l.extra = append(l.extra, "--listen", "none")
	g1.extra = append(g1.extra, "--listen", "none")
	for _, d := range []*daemon{l.daemon, g1.daemon, g2.daemon, tn} {
		d.start()
	}
	kinds := func(d *daemon) map[string]int {
		m := map[string]int{}
		for _, x := range d.links() {
			m[x.Kind]++
		}
		return m
	}
	eventually(t, 60*time.Second, "links up", func() error {
		if k := kinds(l.daemon); k["lora"] != 1 {
			return fmt.Errorf("L: %v", k)
		}
		if k := kinds(g1.daemon); k["lora"] != 1 || k["libp2p"] != 1 || k["libp2p-gossip"] != 1 {
			return fmt.Errorf("G1: %v", k)
		}
		if k := kinds(g2.daemon); k["tcp"] != 1 || k["libp2p"] != 1 || k["libp2p-gossip"] != 1 {
			return fmt.Errorf("G2: %v", k)
		}
		if k := kinds(tn); k["tcp"] != 1 {
			return fmt.Errorf("T: %v", k)
		}
		return nil
	})
	// A direct message from the TCP island to the LoRa island.
	out := tn.mustCLI("send", "--wait", "120s", "--json", l.address(), "from the TCP island to the radio")
	if !strings.Contains(out, `"state":"delivered"`) {
		t.Fatalf("send T -> L: %s\n--- G1 ---\n%s", out, g1.log)
	}
	in := jsonLines[inMsg](t, l.mustCLI("inbox", "--json"))
	if len(in) != 1 || in[0].Text != "from the TCP island to the radio" {
		t.Fatalf("L inbox: %+v", in)
	}
	t.Logf("direct message T -> G2 -> G1 -> L delivered")
	// A channel between the islands: T creates it and invites L (the
	// invitation and the key distribution cross as unicast), then messages
	// flood both ways over radio, gossip and TCP.
	ch := strings.TrimSpace(tn.mustCLI("channel", "create", "bridge"))
	code := strings.TrimSpace(tn.mustCLI("channel", "invite", "bridge"))
	if got := strings.TrimSpace(l.mustCLI("channel", "join", "--wait", "120s", code)); got != ch {
		t.Fatalf("L joined %q, want %q", got, ch)
	}
	tn.mustCLI("channel", "send", ch, "channel message from the TCP island")
	waitTexts(t, l.daemon, ch, "channel message from the TCP island")
	l.mustCLI("channel", "send", ch, "channel message from the radio island")
	waitTexts(t, tn, ch, "channel message from the radio island")
	t.Logf("channel messages T <-> L delivered both ways")
	// A raw channel-kind flood from a TCP-island member the test plays
	// reaches L's router too.
	inj := tcpInjector(t, tn.listen)
	if err := inj.Send(context.Background(), transport.Frame{Data: channelEnvelope(t, "channel flood across the internet")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the channel flood reaches L over the radio", func() error {
		if v := l.metric(`meshd_router_frames_in_total{kind="channel"}`); v < 3 {
			return fmt.Errorf("L received %v channel envelopes", v)
		}
		return nil
	})

	// The internet-side announce flood.
	airBefore := g1.metric("meshd_radio_airtime_total_seconds")
	annBefore := l.metric(`meshd_router_frames_in_total{kind="announce"}`)
	const hosts, per = 6, 80
	floodStart := time.Now()
	announceFlood(t, g2.multiaddr(), hosts, per)
	time.Sleep(20 * time.Second)
	window := time.Since(floodStart).Seconds()
	airAfter := g1.metric("meshd_radio_airtime_total_seconds")
	annAfter := l.metric(`meshd_router_frames_in_total{kind="announce"}`)
	g1Gossip := g1.metric("meshd_libp2p_gossip_received_total")
	g2Ignored := g2.metric(`meshd_libp2p_gossip_ignored_total{reason="rate"}`) + g2.metric(`meshd_libp2p_gossip_ignored_total{reason="global"}`)
	g1Announces := g1.metric(`meshd_router_frames_in_total{kind="announce"}`)
	uptime := g1.metric("meshd_uptime_seconds")
	used, limit := g1.metric("meshd_radio_airtime_used_seconds"), g1.metric("meshd_radio_airtime_limit_seconds")
	// The router's control budget on a radio link: a quarter of ten
	// minutes' worth at start, then announce_share (2%) of the time.
	budget := 0.02*600/4 + 0.02*uptime
	spent := airAfter - airBefore
	t.Logf("flood: %d announces published by %d stock peers; G2 ignored %v (rate limits); G1 took %v gossip messages and %v announces in all; "+
		"L heard %v announces over the radio during the flood; G1 airtime during the %.0fs window %.2fs (control budget over G1's %.0fs uptime %.2fs); duty-cycle window used %.1fs of %.0fs",
		hosts*per, hosts, g2Ignored, g1Gossip, g1Announces, annAfter-annBefore, window, spent, uptime, budget, used, limit)
	if g2Ignored == 0 {
		t.Errorf("G2's validators let the whole flood through")
	}
	if airAfter > budget+2 {
		t.Errorf("G1's radio transmitted %.2fs in all, above the control budget %.2fs (+2s for data)", airAfter, budget)
	}
	if annAfter-annBefore > float64(hosts*per)/4 {
		t.Errorf("L heard %v of %d flooded announces", annAfter-annBefore, hosts*per)
	}
	if used > limit {
		t.Errorf("duty cycle exceeded: %v of %v", used, limit)
	}
}

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			v, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return v
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestLibp2pRSS measures the resident memory of a daemon without libp2p,
// with libp2p idle, and with 50 libp2p peers linked (each an in-process
// meshd libp2p node: envelope link, GossipSub; the DHT too with -tags
// dht). It is a measurement,
// not a check: run it with
//
//	MESHD_RSS=1 MESHD_TEST_NORACE=1 go test -run Libp2pRSS -v ./cmd/meshd
func TestLibp2pRSS(t *testing.T) {
	if os.Getenv("MESHD_RSS") == "" {
		t.Skip("a measurement: set MESHD_RSS=1 (and MESHD_TEST_NORACE=1 for release-like numbers)")
	}
	settle := 20 * time.Second
	noTCP := "[tcp]\nlisten = \"\"\nmdns = false\n"
	base := newLibp2pDaemon(t, "base", false, nil, noTCP)
	base.extra = append(base.extra, "--listen", "none")
	base.start()
	p := newLibp2pDaemon(t, "p2p", true, nil, noTCP)
	p.extra = append(p.extra, "--listen", "none")
	p.start()
	time.Sleep(settle)
	baseRSS, idleRSS := rssKiB(t, base.cmd.Process.Pid), rssKiB(t, p.cmd.Process.Pid)
	t.Logf("RSS after %v: without libp2p %d KiB, libp2p idle %d KiB", settle, baseRSS, idleRSS)
	ai, err := libp2p.ParseAddrInfo(p.multiaddr())
	if err != nil {
		t.Fatal(err)
	}
	const peers = 50
	for i := 0; i < peers; i++ {
		id, _ := envelope.GenerateIdentity(rand.Reader)
		tr, err := libp2p.New(libp2p.Options{Identity: id, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); tr.Run(ctx, recordingHandler{up: make(chan transport.Link, 4)}) }()
		t.Cleanup(func() { cancel(); <-done })
		// Past the daemon's link limit (32) a peer stays connected
		// (GossipSub, the DHT with -tags dht) without an envelope link.
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		tr.Connect(cctx, ai)
		ccancel()
	}
	eventually(t, 60*time.Second, "50 links", func() error {
		n := 0
		for _, l := range p.links() {
			if l.Kind == "libp2p" {
				n++
			}
		}
		if n < 32 {
			return fmt.Errorf("%d libp2p links", n)
		}
		return nil
	})
	time.Sleep(settle)
	t.Logf("RSS with %d libp2p peers: %d KiB (peers %v, links %v, conns %v, streams %v, rcmgr memory %v B)", peers, rssKiB(t, p.cmd.Process.Pid),
		p.metric("meshd_libp2p_peers"), p.metric("meshd_libp2p_links"), p.metric("meshd_libp2p_conns"), p.metric("meshd_libp2p_streams"), p.metric("meshd_libp2p_memory_bytes"))
}
