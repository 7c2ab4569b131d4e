package node

import (
	"bufio"
	"fmt"
	http "github.com/openmeshd/meshd/node/httpd"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
)

// promWriter writes the Prometheus text exposition format (version 0.0.4).
type promWriter struct {
	w    *bufio.Writer
	seen map[string]bool
}

func (p *promWriter) metric(name, typ, help string, value float64, labels ...string) {
	if !p.seen[name] {
		p.seen[name] = true
		fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	p.w.WriteString(name)
	if len(labels) > 0 {
		p.w.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				p.w.WriteByte(',')
			}
			fmt.Fprintf(p.w, "%s=%q", labels[i], escapeLabel(labels[i+1]))
		}
		p.w.WriteByte('}')
	}
	fmt.Fprintf(p.w, " %g\n", value)
}

func escapeLabel(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func (n *Node) apiMetrics(w http.ResponseWriter, r *http.Request) {
	var rs routing.Stats
	type lv struct {
		id, kind string
		queued   int
	}
	var links []lv
	err := n.call(r.Context(), func(now time.Time) {
		rs = n.router.Stats()
		for _, ls := range n.links {
			v := lv{id: ls.info.ID, kind: ls.info.Kind, queued: len(ls.q)}
			links = append(links, v)
		}
	})
	if err != nil {
		fail(w, err)
		return
	}
	sort.Slice(links, func(i, j int) bool { return links[i].id < links[j].id })
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	p := &promWriter{w: bufio.NewWriter(w), seen: map[string]bool{}}
	defer p.w.Flush()

	p.metric("meshd_up", "gauge", "1 while the daemon runs.", 1, "version", n.o.Version)
	p.metric("meshd_uptime_seconds", "gauge", "Seconds since start.", time.Since(n.started).Seconds())
	for k := envelope.Kind(0); int(k) < routing.NumKinds; k++ {
		p.metric("meshd_router_frames_in_total", "counter", "Frames received, by envelope kind.", float64(rs.FramesIn[k]), "kind", k.String())
	}
	for k := envelope.Kind(0); int(k) < routing.NumKinds; k++ {
		p.metric("meshd_router_frames_out_total", "counter", "Frames sent, by envelope kind.", float64(rs.FramesOut[k]), "kind", k.String())
	}
	p.metric("meshd_router_bytes_in_total", "counter", "Bytes received by the router.", float64(rs.BytesIn))
	p.metric("meshd_router_bytes_out_total", "counter", "Bytes sent by the router.", float64(rs.BytesOut))
	for d := routing.DropReason(0); int(d) < routing.NumDropReasons; d++ {
		p.metric("meshd_router_drops_total", "counter", "Frames and messages discarded, by reason.", float64(rs.Drops[d]), "reason", d.String())
	}
	p.metric("meshd_router_relayed_total", "counter", "Envelopes forwarded for others.", float64(rs.Relayed))
	p.metric("meshd_announces_sent_total", "counter", "Announces sent (own and relayed).", float64(rs.FramesOut[envelope.KindAnnounce]))
	p.metric("meshd_announces_received_total", "counter", "Announces received.", float64(rs.FramesIn[envelope.KindAnnounce]))
	p.metric("meshd_messages_sent_total", "counter", "Own messages acknowledged end to end.", float64(rs.Acked))
	p.metric("meshd_messages_delivered_total", "counter", "Messages delivered to applications on this node.", float64(rs.Delivered))
	p.metric("meshd_messages_expired_total", "counter", "Own messages that expired unacknowledged.", float64(rs.Expired))
	p.metric("meshd_messages_retries_total", "counter", "Retransmissions of own messages.", float64(rs.Retries))
	p.metric("meshd_outbox_messages", "gauge", "Own messages awaiting acknowledgement.", float64(rs.Outbox))
	p.metric("meshd_held_messages", "gauge", "Messages held for offline destinations.", float64(rs.Held))
	p.metric("meshd_held_bytes", "gauge", "Bytes held for offline destinations.", float64(rs.HeldBytes))
	p.metric("meshd_peers", "gauge", "Known identities.", float64(rs.Peers))
	p.metric("meshd_routes", "gauge", "Destinations with a route.", float64(rs.Routes))
	p.metric("meshd_control_airtime_seconds_total", "counter", "Airtime spent on announces and path finding (estimate).", rs.ControlAirtime.Seconds())
	p.metric("meshd_data_airtime_seconds_total", "counter", "Airtime spent on data (estimate).", rs.DataAirtime.Seconds())
	p.metric("meshd_store_commits_total", "counter", "Store transactions.", float64(rs.StoreCommits))
	p.metric("meshd_store_errors_total", "counter", "Failed store transactions.", float64(rs.StoreErrors))
	p.metric("meshd_store_bytes", "gauge", "Size of the store file.", float64(n.storeSize()))

	p.metric("meshd_link_frames_in_total", "counter", "Frames received from transports.", float64(n.stats.framesIn.Load()))
	p.metric("meshd_link_frames_out_total", "counter", "Frames handed to transports.", float64(n.stats.framesOut.Load()))
	p.metric("meshd_link_bytes_in_total", "counter", "Bytes received from transports.", float64(n.stats.bytesIn.Load()))
	p.metric("meshd_link_bytes_out_total", "counter", "Bytes handed to transports.", float64(n.stats.bytesOut.Load()))
	p.metric("meshd_link_send_errors_total", "counter", "Failed link sends.", float64(n.stats.sendErrors.Load()))
	p.metric("meshd_link_queue_drops_total", "counter", "Frames dropped because a link's queue was full.", float64(n.stats.queueDrops.Load()))
	p.metric("meshd_links_up_total", "counter", "Links that came up.", float64(n.stats.linkUps.Load()))
	p.metric("meshd_links_down_total", "counter", "Links that went down.", float64(n.stats.linkDowns.Load()))
	p.metric("meshd_links", "gauge", "Links up now.", float64(len(links)))
	for _, l := range links {
		p.metric("meshd_link_queue_depth", "gauge", "Frames waiting for a link.", float64(l.queued), "link", l.id, "kind", l.kind)
	}
	for _, m := range n.transportMetrics() {
		p.metric(m.name, m.typ, m.help, m.value, m.labels...)
	}
	p.metric("meshd_api_event_subscribers", "gauge", "Clients on the event stream.", float64(n.hub.subscribers()))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.metric("meshd_go_heap_bytes", "gauge", "Go heap in use.", float64(ms.HeapInuse))
	p.metric("meshd_go_sys_bytes", "gauge", "Memory obtained from the OS by the Go runtime.", float64(ms.Sys))
	p.metric("meshd_go_goroutines", "gauge", "Goroutines.", float64(runtime.NumGoroutine()))
}

// sample is one exported value.
type sample struct {
	name, typ, help string
	value           float64
	labels          []string
}
