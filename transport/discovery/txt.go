package discovery

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/openmeshd/meshd/envelope"
)

// TXT record keys. A record is "v=<protocol version>" and "addr=<node
// address, 32 hex digits>"; keys this code does not know are ignored so
// later versions can add some.
const (
	txtVersion = "v"
	txtAddr    = "addr"
	// maxTXTFields bounds how many strings a TXT record may carry.
	maxTXTFields = 16
)

// Errors of ParseTXT.
var (
	ErrTXT        = errors.New("discovery: malformed TXT record")
	ErrTXTVersion = errors.New("discovery: unsupported protocol version in TXT record")
)

// Record is what a meshd responder advertises besides its endpoint.
type Record struct {
	Version int
	Address envelope.Address
}

// TXT encodes r as TXT strings.
func (r Record) TXT() []string {
	return []string{txtVersion + "=" + strconv.Itoa(r.Version), txtAddr + "=" + r.Address.String()}
}

// ParseTXT decodes the TXT strings of a discovered service. It accepts only
// version want, requires exactly one of each known key, and bounds the
// field count.
func ParseTXT(fields []string, want int) (Record, error) {
	var r Record
	if len(fields) > maxTXTFields {
		return r, fmt.Errorf("%w: %d strings", ErrTXT, len(fields))
	}
	var haveV, haveA bool
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue // a boolean attribute (RFC 6763 §6.4): not ours
		}
		switch strings.ToLower(k) {
		case txtVersion:
			if haveV {
				return r, fmt.Errorf("%w: two %q keys", ErrTXT, txtVersion)
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 255 {
				return r, fmt.Errorf("%w: version %q", ErrTXT, v)
			}
			r.Version, haveV = n, true
		case txtAddr:
			if haveA {
				return r, fmt.Errorf("%w: two %q keys", ErrTXT, txtAddr)
			}
			a, err := envelope.ParseAddress(v)
			if err != nil || len(v) != 2*envelope.AddressSize {
				return r, fmt.Errorf("%w: address %q", ErrTXT, v)
			}
			r.Address, haveA = a, true
		}
	}
	if !haveV || !haveA {
		return r, fmt.Errorf("%w: missing %q or %q", ErrTXT, txtVersion, txtAddr)
	}
	if r.Version != want {
		return r, fmt.Errorf("%w: %d, we speak %d", ErrTXTVersion, r.Version, want)
	}
	return r, nil
}
