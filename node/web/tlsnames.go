package web

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// Default names of the self-signed certificate and its key in the data
// directory.
const (
	CertFile = "web-tls.crt"
	KeyFile  = "web-tls.key"
)

// Fingerprint formats the SHA-256 of a DER certificate as browsers show it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// ErrNoTLS: web.tls is set (or a TLS command run), but this meshd was built
// without TLS for the web UI (HasTLS is false).
var ErrNoTLS = errors.New("web.tls: this meshd is a router build (or built with -tags nowebtls), without TLS for the web UI: set web.tls = false and reach the UI over a trusted link, put a TLS proxy in front, or use a full build")
