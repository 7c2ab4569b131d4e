//go:build !linux

package discovery

import (
	"errors"
	"net"
	"net/netip"
)

// Discovery needs to know which interface each datagram came in on and to
// choose the one it leaves by; this is written for Linux (every meshd
// target). Elsewhere the package builds, and Run logs that it cannot open
// its sockets.
var errUnsupported = errors.New("mDNS discovery is implemented for Linux only")

func listen(fam int) (*net.UDPConn, error) { return nil, errUnsupported }

func membership(c *net.UDPConn, fam, ifindex int, join bool) error { return errUnsupported }

func pktinfo(fam, ifindex int) []byte { return nil }

func arrival(fam int, oob []byte) (int, netip.Addr) { return 0, netip.Addr{} }

func truncated(flags int) bool { return false }
