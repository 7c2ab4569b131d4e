package web

import (
	"crypto/sha256"
	"encoding/hex"
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
