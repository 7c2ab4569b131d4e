package discovery

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"github.com/openmeshd/meshd/transport/discovery/mdns"
)

// One socket per IP version, bound to the wildcard address and port 5353
// (SO_REUSEADDR, so avahi, umdns or another meshd on the host can bind it
// too), joined to the mDNS group on each interface discovery runs on.
// Which interface a datagram came in on is read from IP_PKTINFO /
// IPV6_PKTINFO, and which one a datagram goes out of is set the same way,
// per datagram. The standard library has no per-interface scope for a
// receiving socket (net.ListenMulticastUDP joins one interface but still
// receives every interface's datagrams), so this file uses the syscall
// package directly; golang.org/x/net/ipv4 and ipv6 would cost more than
// this file does.

// IP_MULTICAST_ALL (Linux 2.6.31) and IPV6_MULTICAST_ALL (4.20): the
// frozen syscall package lacks them on some architectures. The values are
// the same on all of them.
const (
	ipMulticastAll   = 49
	ipv6MulticastAll = 29
)

func listen(fam int) (*net.UDPConn, error) {
	network, addr := "udp4", "0.0.0.0:"+strconv.Itoa(mdns.Port)
	if fam == v6 {
		network, addr = "udp6", "[::]:"+strconv.Itoa(mdns.Port)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			set := func(level, opt, v int) {
				if serr == nil {
					serr = syscall.SetsockoptInt(s, level, opt, v)
				}
			}
			set(syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			if fam == v4 {
				set(syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1)
				set(syscall.IPPROTO_IP, syscall.IP_MULTICAST_TTL, 255) // RFC 6762 §11
				set(syscall.IPPROTO_IP, syscall.IP_TTL, 255)
				set(syscall.IPPROTO_IP, syscall.IP_MULTICAST_LOOP, 1) // others on this host
				// Only the groups this socket joined, on the interfaces it
				// joined them on (IP_PKTINFO filters anyway).
				set(syscall.IPPROTO_IP, ipMulticastAll, 0)
			} else {
				set(syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, 1)
				set(syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_HOPS, 255)
				set(syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS, 255)
				set(syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_LOOP, 1)
				// Older kernels lack it; IPV6_PKTINFO filters anyway.
				_ = syscall.SetsockoptInt(s, syscall.IPPROTO_IPV6, ipv6MulticastAll, 0)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// membership joins (or leaves) the mDNS group of fam on interface ifindex.
func membership(c *net.UDPConn, fam, ifindex int, join bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if fam == v4 {
			opt := syscall.IP_ADD_MEMBERSHIP
			if !join {
				opt = syscall.IP_DROP_MEMBERSHIP
			}
			serr = syscall.SetsockoptIPMreqn(int(fd), syscall.IPPROTO_IP, opt,
				&syscall.IPMreqn{Multiaddr: mdns.Group4().As4(), Ifindex: int32(ifindex)})
			return
		}
		opt := syscall.IPV6_JOIN_GROUP
		if !join {
			opt = syscall.IPV6_LEAVE_GROUP
		}
		serr = syscall.SetsockoptIPv6Mreq(int(fd), syscall.IPPROTO_IPV6, opt,
			&syscall.IPv6Mreq{Multiaddr: mdns.Group6().As16(), Interface: uint32(ifindex)})
	})
	if err != nil {
		return err
	}
	return serr
}

// pktinfo returns the control message that sends a datagram out of
// interface ifindex, the kernel choosing the source address.
func pktinfo(fam, ifindex int) []byte {
	level, typ, size := syscall.IPPROTO_IP, syscall.IP_PKTINFO, syscall.SizeofInet4Pktinfo
	if fam == v6 {
		level, typ, size = syscall.IPPROTO_IPV6, syscall.IPV6_PKTINFO, syscall.SizeofInet6Pktinfo
	}
	b := make([]byte, syscall.CmsgSpace(size))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(syscall.CmsgLen(size))
	data := b[syscall.CmsgLen(0):]
	if fam == v4 {
		binary.NativeEndian.PutUint32(data[0:], uint32(ifindex)) // ipi_ifindex
	} else {
		binary.NativeEndian.PutUint32(data[16:], uint32(ifindex)) // ipi6_ifindex
	}
	return b
}

// arrival returns the interface a datagram came in on and the address it
// was sent to, from its control messages; 0 and the zero Addr when they do
// not say.
func arrival(fam int, oob []byte) (int, netip.Addr) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, netip.Addr{}
	}
	for _, m := range msgs {
		switch {
		case fam == v4 && m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_PKTINFO && len(m.Data) >= 12:
			// struct in_pktinfo: ifindex, local address, header destination
			return int(binary.NativeEndian.Uint32(m.Data[0:])), netip.AddrFrom4([4]byte(m.Data[8:12]))
		case fam == v6 && m.Header.Level == syscall.IPPROTO_IPV6 && m.Header.Type == syscall.IPV6_PKTINFO && len(m.Data) >= 20:
			// struct in6_pktinfo: destination address, ifindex
			return int(binary.NativeEndian.Uint32(m.Data[16:])), netip.AddrFrom16([16]byte(m.Data[0:16]))
		}
	}
	return 0, netip.Addr{}
}

// truncated reports whether recvmsg's flags say the datagram was cut.
func truncated(flags int) bool { return flags&syscall.MSG_TRUNC != 0 }
