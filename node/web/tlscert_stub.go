//go:build nowebtls || router

package web

import (
	"net"
	"time"
)

// HasTLS says this build can serve the web UI over TLS: built with -tags
// nowebtls or router it cannot (the TLS server and certificate code cost
// 2.3 MB on mipsle once nothing else links crypto/tls: docs/size.md).
const HasTLS = false

// TLSListener refuses: see ErrNoTLS.
func TLSListener(ln net.Listener, certFile, keyFile string, names []string) (net.Listener, string, bool, error) {
	return nil, "", false, ErrNoTLS
}

// LocalNames lists nothing in this build.
func LocalNames() []string { return nil }

// CertInfo refuses: see ErrNoTLS.
func CertInfo(pemBytes []byte) (dnsNames []string, ips []net.IP, notAfter time.Time, err error) {
	return nil, nil, time.Time{}, ErrNoTLS
}
