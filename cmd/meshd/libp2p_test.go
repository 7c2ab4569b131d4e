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
// other through the DHT, link pairwise, deliver a direct message, and a
// channel flood injected at one reaches all.
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
	// A channel flood injected at P2 by an in-process libp2p node.
	inj := injector(t, nodes[2].key, nodes[2].multiaddr())
	flood := channelEnvelope(t, "channel flood over libp2p")
	if err := inj.Send(context.Background(), transport.Frame{Data: flood}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the channel flood reached every daemon", func() error {
		for _, n := range nodes {
			if v := n.metric(`meshd_router_frames_in_total{kind="channel"}`); v < 1 {
				return fmt.Errorf("%s received no channel envelope", n.name)
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

var (
	_ = golibp2p.New
	_ = pubsub.NewGossipSub
	_ crypto.PrivKey
	_ = tcp.New
)
