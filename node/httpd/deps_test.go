package httpd

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestNoHeavyDependencies keeps the package free of what it exists to
// avoid: net/http and the TLS and certificate stack it drags in.
func TestNoHeavyDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	for _, env := range [][]string{nil, {"GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat"}} {
		cmd := exec.Command(gobin, "list", "-deps", "-tags", "router", ".")
		cmd.Env = append(cmd.Environ(), env...)
		if len(env) == 0 {
			cmd.Env = append(cmd.Env, "GOOS="+runtime.GOOS)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "net/http" || strings.HasPrefix(dep, "net/http/") || strings.HasPrefix(dep, "crypto/tls") ||
				strings.HasPrefix(dep, "crypto/x509") || strings.HasPrefix(dep, "vendor/golang.org/x/net/http") ||
				strings.Contains(dep, "idna") || dep == "encoding/asn1" {
				t.Errorf("%v: httpd depends on %s", env, dep)
			}
		}
	}
}
