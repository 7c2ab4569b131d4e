package node

import (
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/discovery"
	"github.com/openmeshd/meshd/transport/lora"
	"github.com/openmeshd/meshd/transport/tcp"
)

// buildTransports makes the transports the config enables, plus the extra
// ones from Options.
func (n *Node) buildTransports() ([]transport.Transport, error) {
	var out []transport.Transport
	t, err := n.buildTCP()
	if err != nil {
		return nil, err
	}
	if t != nil {
		n.tcp = t
		out = append(out, t)
	}
	radio, err := n.resolveLoRa()
	if err != nil {
		return nil, err
	}
	if radio != nil {
		lt, err := lora.New(radio.opts)
		if err != nil {
			return nil, fmt.Errorf("%w: lora: %w", ErrConfig, err)
		}
		n.lora, n.radio = lt, radio
		out = append(out, lt)
		n.log.Info("LoRa radio", "device", radio.opts.Port, "region", radio.opts.Region, "frequency", radio.opts.FrequencyHz,
			"bandwidth", radio.opts.BandwidthHz, "sf", radio.opts.SF, "duty_cycle", radio.dutyCycle)
	}
	if err := n.addLibp2p(); err != nil {
		return nil, err
	}
	return append(out, n.o.Transports...), nil
}

func (n *Node) buildTCP() (*tcp.Transport, error) {
	if n.cfg.TCP.Listen == "" && len(n.cfg.TCP.Peers) == 0 && !n.cfg.TCP.MDNS {
		return nil, nil
	}
	key, err := n.cfg.NetworkKeyBytes()
	if err != nil {
		return nil, err
	}
	var peers []tcp.Peer
	for _, s := range n.cfg.TCP.Peers {
		endpoint, addr, err := ParsePeer(s)
		if err != nil {
			return nil, err
		}
		p := tcp.Peer{Endpoint: endpoint}
		if addr != "" {
			a, err := envelope.ParseAddress(addr)
			if err != nil {
				return nil, err
			}
			p.Address, p.HasAddress = a, true
		}
		peers = append(peers, p)
	}
	t, err := tcp.New(tcp.Options{
		Identity:   n.id,
		ListenAddr: n.cfg.TCP.Listen,
		Peers:      peers,
		NetworkKey: key,
		DisablePQ:  !n.cfg.TCP.PQ,
		Pins:       &boltPins{db: n.db},
		Logger:     n.log.With("component", "tcp"),
	})
	if err != nil {
		return nil, fmt.Errorf("tcp: %w", err)
	}
	return t, nil
}

// buildDiscovery makes the mDNS responder and browser when tcp.mdns is on:
// it advertises the TCP listener and dials the nodes it finds.
func (n *Node) buildDiscovery() (*discovery.Discovery, error) {
	if !n.cfg.TCP.MDNS || n.tcp == nil {
		return nil, nil
	}
	port := 0
	if n.cfg.TCP.Listen != "" {
		_, ps, err := net.SplitHostPort(n.cfg.TCP.Listen)
		if err == nil {
			port, _ = strconv.Atoi(ps)
		}
	}
	return discovery.New(discovery.Options{Self: n.id.Address(), Port: port, Dialer: n.tcp, Logger: n.log.With("component", "mdns")})
}

func (n *Node) transportMetrics() []sample {
	var out []sample
	if n.lora != nil {
		st := n.lora.Stats()
		out = append(out,
			sample{"meshd_radio_airtime_used_seconds", "gauge", "Airtime counted in the rolling duty-cycle window.", st.Budget.Used.Seconds(), nil},
			sample{"meshd_radio_airtime_limit_seconds", "gauge", "Airtime the duty-cycle budget allows per window.", st.Budget.Limit.Seconds(), nil},
			sample{"meshd_radio_airtime_total_seconds", "counter", "All airtime this node transmitted.", st.Budget.Total.Seconds(), nil},
			sample{"meshd_radio_connected", "gauge", "1 while the radio is detected and configured.", b2f(st.Connected), nil},
			sample{"meshd_radio_disconnects_total", "counter", "Times the radio went away (unplugged).", float64(st.Disconnects), nil})
	}
	out = append(out, n.libp2pMetrics()...)
	if n.tcp == nil {
		return out
	}
	st := n.tcp.Stats()
	out = append(out, sample{"meshd_tcp_handshakes_total", "counter", "TCP handshakes completed.", float64(st.HandshakesOK), nil})
	reasons := make([]string, 0, len(st.HandshakeFailures))
	for r := range st.HandshakeFailures {
		reasons = append(reasons, string(r))
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		out = append(out, sample{"meshd_tcp_handshake_failures_total", "counter", "TCP handshakes that failed, by reason.",
			float64(st.HandshakeFailures[tcp.Reason(r)]), []string{"reason", r}})
	}
	out = append(out, sample{"meshd_tcp_inbound_refused_total", "counter", "Connections refused: too many handshakes in progress.", float64(st.InboundRefused), nil})
	for _, l := range st.Links {
		lbl := []string{"link", l.ID, "peer", l.Peer}
		out = append(out,
			sample{"meshd_tcp_link_bytes_in_total", "counter", "Payload bytes received on a TCP link.", float64(l.BytesIn), lbl},
			sample{"meshd_tcp_link_bytes_out_total", "counter", "Payload bytes sent on a TCP link.", float64(l.BytesOut), lbl},
			sample{"meshd_tcp_link_frames_in_total", "counter", "Frames received on a TCP link.", float64(l.FramesIn), lbl},
			sample{"meshd_tcp_link_frames_out_total", "counter", "Frames sent on a TCP link.", float64(l.FramesOut), lbl})
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
