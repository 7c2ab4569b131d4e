//go:build nowebtls

package web

import (
	"errors"
	"net"
)

// HasTLS says this build can serve the web UI over TLS: built with -tags
// nowebtls it cannot (the TLS server and certificate code cost about
// 450 KB on a router).
const HasTLS = false

// ErrNoTLS: web.tls is set, but this meshd was built without TLS for the
// web UI.
var ErrNoTLS = errors.New("web.tls: this meshd was built with -tags nowebtls, without TLS for the web UI (use a full build, or a TLS proxy in front)")

// TLSListener refuses: see ErrNoTLS.
func TLSListener(ln net.Listener, certFile, keyFile string, names []string) (net.Listener, string, bool, error) {
	return nil, "", false, ErrNoTLS
}

// LocalNames lists nothing in this build.
func LocalNames() []string { return nil }
