package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRouterBuildDeps: the router build (mipsle, -tags router) links none
// of the packages that made it miss its size budget (docs/size.md): net/http
// (node/httpd replaces it), crypto/tls and x509 (no web UI TLS in the router
// build), the virtual radio (a development tool), regexp (transport/serialport
// replaces go.bug.st/serial).
func TestRouterBuildDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("go list of the whole binary")
	}
	cmd := exec.Command("go", "list", "-deps", "-tags", "router", ".")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{"net/http", "crypto/tls", "crypto/x509", "encoding/asn1", "vendor/golang.org/x/net/idna",
		"github.com/openmeshd/meshd/firmware-bridge/vradio",
		"regexp", "go.bug.st/serial"} // 320 KiB: go.bug.st/serial compiled a regexp at init
	deps := strings.Fields(string(out))
	for _, p := range deps {
		for _, f := range forbidden {
			if p == f || strings.HasPrefix(p, f+"/") {
				t.Errorf("the router build links %s", p)
			}
		}
	}
	found := false
	for _, p := range deps {
		found = found || p == "github.com/openmeshd/meshd/node/httpd"
	}
	if !found {
		t.Fatal("the router build has no node/httpd: what serves the API?")
	}
}
