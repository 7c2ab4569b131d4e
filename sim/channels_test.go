package sim

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openmeshd/meshd/broadcast"
	"github.com/openmeshd/meshd/envelope"
)

// The channel scenarios: 50 meshd nodes (router + broadcast core, wired as
// the daemon wires them) at random in 6 × 6 km, EU868 SF7/BW125, 2 % frame
// loss, every node a member of one private channel set up at t = 0.
// docs/channels.md quotes their output ("Measured in meshsim").
func chanScenario(t *testing.T, duration string, events string) *Scenario {
	t.Helper()
	sc, err := ParseScenario([]byte(`{
  "name": "channels-50", "seed": 1, "warmup": "0s", "duration": "` + duration + `", "drain": "0s",
  "radio": {"region": "EU868", "frequency_mhz": 869.525, "sf": 7, "bandwidth_khz": 125, "coding_rate": 5,
            "tx_power_dbm": 14, "frame_loss": 0.02, "audit": true},
  "groups": [{"name": "mesh", "count": 50, "layout": {"kind": "random", "width_m": 6000, "height_m": 6000, "connected": true}}],
  "events": [` + events + `]
}`))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// chanRun builds the simulation with the channel set up at t = 0 (node 0
// the owner, every other node a member).
func chanRun(t *testing.T, sc *Scenario) (*Sim, *chanHarness, broadcast.ChannelID) {
	t.Helper()
	n := sc.NodeCount()
	h := newChanHarness(n, broadcast.Options{})
	s, err := newSim(sc, "channels", h.factory(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cleanup)
	var members []int
	for i := 1; i < n; i++ {
		members = append(members, i)
	}
	id, err := h.setUp(s.timeAt(0), 0, members, "town", 0)
	if err != nil {
		t.Fatal(err)
	}
	return s, h, id
}

func simAirtime(s *Sim) (total int64, byClass [numClasses]int64) {
	for c := range byClass {
		byClass[c] = s.m.air(Class(c))
		total += byClass[c]
	}
	return
}

// TestChannelRemoval50 measures a removal from a 50-member channel: the
// owner removes one member 30 minutes in (routes have formed); converged
// when every remaining member holds the new epoch and the removed member
// its notice. Bytes on air: every envelope the routers transmitted from the
// removal until the end of the run (an hour later; there is no other
// unicast traffic), per kind; airtime from the simulated radio (with
// meshd's LoRa framing and link-layer acknowledgements).
func TestChannelRemoval50(t *testing.T) {
	sc := chanScenario(t, "1h30m", "")
	s, h, id := chanRun(t, sc)
	const owner, victim = 0, 49
	n := sc.NodeCount()
	var start, converged time.Time
	var air0, airConv int64
	var class0 [numClasses]int64
	var epoch uint32
	check := func(now time.Time) {
		if !converged.IsZero() || start.IsZero() || h.removedAt[victim].IsZero() {
			return
		}
		for i := 1; i < n-1; i++ {
			if _, ok := h.epochAt[i][epoch]; !ok {
				return
			}
		}
		converged = now
		airConv, _ = simAirtime(s)
	}
	h.onEvent = func(node int, now time.Time, ev *broadcast.Event) { check(now) }
	s.at(30*time.Minute, func() {
		s.callNode(owner, func(now time.Time) {
			info, _ := h.nodes[owner].core.Info(id)
			epoch = info.Epoch + 1
			start = now
			air0, class0 = simAirtime(s)
			h.measuring = true
			if err := h.nodes[owner].core.Remove(now, id, h.nodes[victim].rn.env.Identity.PublicKey()); err != nil {
				t.Error(err)
			}
			h.nodes[owner].apply(now)
		})
	})
	// After the run has converged, a message of the new epoch: members read
	// it, the removed one does not.
	s.at(80*time.Minute, func() {
		s.callNode(owner, func(now time.Time) {
			if err := h.nodes[owner].core.Send(now, id, []byte("after the removal")); err != nil {
				t.Error(err)
			}
			h.nodes[owner].apply(now)
		})
	})
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	res := s.result()
	if converged.IsZero() {
		var missing []int
		for i := 1; i < n-1; i++ {
			if _, ok := h.epochAt[i][epoch]; !ok {
				missing = append(missing, i)
			}
		}
		t.Fatalf("no convergence: members without epoch %d: %v; removed notified: %v", epoch, missing, !h.removedAt[victim].IsZero())
	}
	airEnd, classEnd := simAirtime(s)
	var lastMember time.Duration
	var times []float64
	for i := 1; i < n-1; i++ {
		d := h.epochAt[i][epoch].Sub(start)
		times = append(times, d.Seconds())
		lastMember = max(lastMember, d)
	}
	sort.Float64s(times)
	kinds := []envelope.Kind{envelope.KindData, envelope.KindAck, envelope.KindPathRequest, envelope.KindPathReply, envelope.KindAnnounce, envelope.KindChannel, envelope.KindQuery, envelope.KindAnonReply}
	var lines []string
	removalBytes, removalFrames := 0, 0
	for _, k := range kinds {
		lines = append(lines, fmt.Sprintf("%s %d frames %d bytes", k, h.framesByKnd[k], h.bytesByKind[k]))
		if k == envelope.KindData || k == envelope.KindAck || k == envelope.KindPathRequest || k == envelope.KindPathReply {
			removalBytes += h.bytesByKind[k]
			removalFrames += h.framesByKnd[k]
		}
	}
	var classLines []string
	for c := Class(0); c < numClasses; c++ {
		classLines = append(classLines, fmt.Sprintf("%s %.1fs", c, float64(classEnd[c]-class0[c])/1e9))
	}
	t.Logf("removal of 1 member from 50 (owner node %d removes node %d at %v):", owner, victim, 30*time.Minute)
	t.Logf("  converged after %.1f s (median member %.1f s, last member %.1f s, removed member notified after %.1f s)",
		converged.Sub(start).Seconds(), times[len(times)/2], lastMember.Seconds(), h.removedAt[victim].Sub(start).Seconds())
	t.Logf("  router envelopes on air, removal to end of run: %s", strings.Join(lines, "; "))
	t.Logf("  removal cost (control, acks, path finding): %d frames, %d bytes of envelopes on air", removalFrames, removalBytes)
	t.Logf("  radio airtime until convergence %.1f s; until the end %.1f s (%s); control sends refused %d",
		float64(airConv-air0)/1e9, float64(airEnd-air0)/1e9, strings.Join(classLines, ", "), h.controlFail)
	t.Logf("  mesh: mean degree %.1f, diameter %d hops; duty-cycle violations %d, audit %d",
		res.Radio.MeanDegree, res.Radio.Diameter, res.DutyCycleViolations, res.Radio.DutyCycleAudit)
	if res.Radio.DutyCycleAudit != 0 {
		t.Errorf("duty-cycle audit violations: %d", res.Radio.DutyCycleAudit)
	}
	got := 0
	for i := 1; i < n-1; i++ {
		got += h.delivered[i]["after the removal"]
	}
	if got < n-3 {
		t.Errorf("%d of %d remaining members read the message after the removal", got, n-2)
	}
	if h.delivered[victim]["after the removal"] != 0 {
		t.Errorf("the removed member read a message of the new epoch")
	}
}

// TestChannelCatchUpAfterHour: one member (node 7) is away for an hour
// (its daemon stopped; it restarts from its store), while members post a
// message a minute and the owner removes another member (node 13), so the
// epoch changes while it is away. Back online, it must get every message
// exactly once, through history catch-up (and the held commit).
func TestChannelCatchUpAfterHour(t *testing.T) {
	const away, removed = 7, 13
	sc := chanScenario(t, "3h", `{"at": "20m", "kind": "offline", "nodes": ["mesh:7"], "for": "1h", "restart": true}`)
	s, h, id := chanRun(t, sc)
	n := sc.NodeCount()
	type sent struct {
		text     string
		from     int
		at       time.Duration
		excluded bool // sent in an epoch without node 13 (13 must not read it)
	}
	var msgs []sent
	var removalEpoch uint32
	k := 0
	for at := 10 * time.Minute; at < 100*time.Minute; at += time.Minute {
		k++
		from := 1 + (k*17)%(n-1)
		if from == away || from == removed {
			from = 0
		}
		m := sent{text: fmt.Sprintf("m-%03d", k), from: from, at: at}
		idx := len(msgs)
		msgs = append(msgs, m)
		s.at(at, func() {
			s.callNode(m.from, func(now time.Time) {
				info, _ := h.nodes[m.from].core.Info(id)
				msgs[idx].excluded = removalEpoch > 0 && info.Epoch >= removalEpoch
				if err := h.nodes[m.from].core.Send(now, id, []byte(m.text)); err != nil {
					t.Errorf("%s from node %d: %v", m.text, m.from, err)
				}
				h.nodes[m.from].apply(now)
			})
		})
	}
	s.at(50*time.Minute+30*time.Second, func() {
		s.callNode(0, func(now time.Time) {
			if err := h.nodes[0].core.Remove(now, id, h.nodes[removed].rn.env.Identity.PublicKey()); err != nil {
				t.Error(err)
			}
			info, _ := h.nodes[0].core.Info(id)
			removalEpoch = info.Epoch
			h.nodes[0].apply(now)
		})
	})
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	res := s.result()
	var whileAway, fromHistory, late int
	var missing, dups, lostLive, awayMissed []string
	for _, m := range msgs {
		miss := 0
		for i := 0; i < n; i++ {
			if i == m.from || (i == removed && m.excluded) {
				continue
			}
			switch c := h.delivered[i][m.text]; {
			case c == 0:
				missing = append(missing, fmt.Sprintf("%s@%d", m.text, i))
				miss++
			case c > 1:
				dups = append(dups, fmt.Sprintf("%s@%d×%d", m.text, i, c))
			}
		}
		if miss > (n-2)/2 {
			lostLive = append(lostLive, fmt.Sprintf("%s (from node %d at %v, %d nodes lack it)", m.text, m.from, m.at, miss))
		} else if m.from != away && h.delivered[away][m.text] == 0 {
			awayMissed = append(awayMissed, m.text)
		}
		if m.at >= 20*time.Minute && m.at < 80*time.Minute {
			whileAway++
		}
		if h.history[away][m.text] > 0 {
			fromHistory++
		}
		if m.excluded && h.delivered[removed][m.text] > 0 {
			late++
		}
	}
	t.Logf("catch-up after 1 hour offline: %d messages, %d of them sent while node %d was away (and a member removed meanwhile); node %d received %d of %d, %d through history catch-up, none twice",
		len(msgs), whileAway, away, away, len(msgs)-countAt(missing, away), len(msgs), fromHistory)
	t.Logf("lost by most of the mesh in the live flood (no neighbour could serve them): %v", lostLive)
	t.Logf("all deliveries missing: %d of %d (node, message) pairs; duplicates: %d", len(missing), len(msgs)*(n-1), len(dups))
	t.Logf("mesh: mean degree %.1f, diameter %d hops; duty-cycle violations %d, audit %d; airtime total %.0f s",
		res.Radio.MeanDegree, res.Radio.Diameter, res.DutyCycleViolations, res.Radio.DutyCycleAudit, res.AirtimeTotal)
	if len(dups) > 0 {
		t.Errorf("messages delivered more than once: %v", dups)
	}
	if len(awayMissed) > 0 {
		t.Errorf("node %d missed messages the rest of the mesh had: %v", away, awayMissed)
	}
	if fromHistory < whileAway/2 {
		t.Errorf("only %d messages came through catch-up", fromHistory)
	}
	if late > 0 {
		t.Errorf("the removed member read %d messages of the new epoch", late)
	}
	if len(missing) > len(msgs)*(n-1)/50 {
		t.Errorf("more than 2%% of deliveries missing: %v", missing)
	}
}

func countAt(list []string, node int) int {
	k := 0
	for _, s := range list {
		if strings.HasSuffix(s, fmt.Sprintf("@%d", node)) {
			k++
		}
	}
	return k
}
