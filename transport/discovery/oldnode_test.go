package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/mdns"
)

// TestMixedVersions: nodes still running the discovery built on
// hashicorp/mdns v1.0.6 (before this package had its own mDNS) and nodes
// running this one find each other, as they must during an upgrade. The
// old side is the library configured as the old code configured it
// (TestNetnsOldNode; test-only import: the binary does not link it).
//
//   - our querier hears the old responder, which answers every query by
//     unicast to the querier's address and port 5353 (our socket gets it:
//     it is bound to port 5353 on every address), and dials it;
//   - the old querier, which queries from an ephemeral port, gets our
//     legacy unicast reply and sees our instance, port and TXT record.
func TestMixedVersions(t *testing.T) {
	if os.Getenv(nodeEnv) != "" || os.Getenv(probeEnv) != "" || os.Getenv(oldNodeEnv) != "" {
		t.Skip("running as a child")
	}
	tag, ipcmd := netnsSetup(t, "new", "old")
	nsN, nsO := tag+"-new", tag+"-old"
	subnet := "198.18.250"
	ipcmd("-n", nsN, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsO)
	ipcmd("-n", nsN, "addr", "add", subnet+".1/24", "dev", "eth0")
	ipcmd("-n", nsO, "addr", "add", subnet+".2/24", "dev", "eth0")
	ipcmd("-n", nsN, "link", "set", "eth0", "up")
	ipcmd("-n", nsO, "link", "set", "eth0", "up")
	ipcmd("-n", nsO, "route", "add", "224.0.0.0/4", "dev", "eth0") // the old client needs it
	settle(t, nsN, nsO, "eth0")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(cancel)

	oldAddr := "00112233445566778899aabbccddeeff"
	ocfg, _ := json.Marshal(oldNodeConfig{Iface: "eth0", Addr: oldAddr, Port: 4243})
	old := startChild(t, ctx, &wg, nsO, "TestNetnsOldNode", oldNodeEnv+"="+string(ocfg))
	ncfg, _ := json.Marshal(nodeConfig{Index: 0})
	node := startChild(t, ctx, &wg, nsN, "TestNetnsNode", nodeEnv+"="+string(ncfg))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("old node output:\n%s", old.Stderr())
			t.Logf("node output:\n%s", node.Stderr())
		}
	})
	var self string
	for self == "" {
		select {
		case line := <-node.lines:
			var ev nodeEvent
			if json.Unmarshal(line, &ev) == nil && ev.Ev == "self" {
				self = ev.Addr
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the node did not start")
		}
	}
	go func() { // keep the node's stdout flowing
		for range node.lines {
		}
	}()

	seen := false
	want := "endpoint=" + subnet + ".2:4243"
	for deadline := time.Now().Add(20 * time.Second); !seen || !strings.Contains(node.Stderr(), want); {
		select {
		case line := <-old.lines:
			var e oldNodeEntry
			if json.Unmarshal(line, &e) != nil {
				continue
			}
			if strings.Contains(strings.Join(e.TXT, " "), "addr="+self) {
				if e.Port != nodePort || e.V4 != subnet+".1" || !strings.Contains(strings.Join(e.TXT, " "), "v=1") {
					t.Fatalf("the old node heard %+v", e)
				}
				if !seen {
					t.Logf("the old node heard us: %+v", e)
				}
				seen = true
			}
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: old node heard us %v; we dialed the old node (%s) %v",
				seen, want, strings.Contains(node.Stderr(), want))
		}
	}
}

const oldNodeEnv = "MESHD_NETNS_OLDNODE"

type oldNodeConfig struct {
	Iface string `json:"iface"`
	Addr  string `json:"addr"`
	Port  int    `json:"port"`
}

type oldNodeEntry struct {
	Name string   `json:"name"`
	V4   string   `json:"v4"`
	Port int      `json:"port"`
	TXT  []string `json:"txt"`
}

// TestNetnsOldNode is the old discovery inside a namespace: a
// hashicorp/mdns responder and a query every 700 ms, as the old code did
// them, printing what it hears.
func TestNetnsOldNode(t *testing.T) {
	raw := os.Getenv(oldNodeEnv)
	if raw == "" {
		t.Skip("only run by TestMixedVersions inside a network namespace")
	}
	var cfg oldNodeConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	ifi, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := ifi.Addrs()
	var ips []net.IP
	for _, a := range addrs {
		ips = append(ips, a.(*net.IPNet).IP)
	}
	inst := "meshd-" + cfg.Addr[:16] + "-0ld0-" + fmt.Sprint(ifi.Index)
	quiet := log.New(io.Discard, "", 0)
	svc, err := mdns.NewMDNSService(inst, Service, "local.", inst+".local.", cfg.Port, ips, []string{"v=1", "addr=" + cfg.Addr})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mdns.NewServer(&mdns.Config{Zone: svc, Iface: ifi, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	var mu sync.Mutex
	for {
		entries := make(chan *mdns.ServiceEntry, 64)
		err := mdns.QueryContext(context.Background(), &mdns.QueryParam{
			Service: Service, Domain: "local", Timeout: 700 * time.Millisecond,
			Interface: ifi, Entries: entries, Logger: quiet,
		})
		close(entries)
		if err != nil {
			fmt.Fprintln(os.Stderr, "query:", err)
			time.Sleep(700 * time.Millisecond)
		}
		for e := range entries {
			b, _ := json.Marshal(oldNodeEntry{Name: e.Name, V4: e.AddrV4.String(), Port: e.Port, TXT: e.InfoFields})
			mu.Lock()
			fmt.Println(string(b))
			mu.Unlock()
		}
	}
}
