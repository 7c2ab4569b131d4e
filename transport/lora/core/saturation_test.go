package core

import (
	"fmt"
	"testing"
	"time"

	"github.com/openmeshd/meshd/transport"
	"github.com/openmeshd/meshd/transport/lora/airtime"
)

// TestSaturationGoodput keeps a sender saturated for three simulated hours
// on EU868 g1 (1 %, 868.3 MHz) and measures the last hour: the duty cycle is
// never exceeded (exact audit of every rolling window) and goodput reaches
// at least 90 % of the legal budget, where the legal budget in bytes is
// what the allowed airtime would carry as maximum-size frames of pure
// payload (limit / ToA(255 B) × 254 B), and goodput is the new message
// bytes the receiver accepted in that hour. Preambles are those RNode firmware
// programs (24 symbols at SF7/125, 18 otherwise).
func TestSaturationGoodput(t *testing.T) {
	for _, c := range []struct {
		name     string
		mod      airtime.Modulation
		unicast  bool
		msgBytes int
	}{
		{"SF7/BW125", airtime.Modulation{SF: 7, BandwidthHz: 125000, PreambleSymbols: 24}, false, 4096},
		{"SF9/BW125", airtime.Modulation{SF: 9, BandwidthHz: 125000, PreambleSymbols: 18}, false, 4096},
		{"SF11/BW250", airtime.Modulation{SF: 11, BandwidthHz: 250000, PreambleSymbols: 18}, false, 4096},
		{"SF7/BW125 unicast", airtime.Modulation{SF: 7, BandwidthHz: 125000, PreambleSymbols: 24}, true, 4096},
		{"SF9/BW125 unicast", airtime.Modulation{SF: 9, BandwidthHz: 125000, PreambleSymbols: 18}, true, 4096},
		{"SF11/BW250 unicast", airtime.Modulation{SF: 11, BandwidthHz: 250000, PreambleSymbols: 18}, true, 4096},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := saturate(t, c.mod, c.unicast, c.msgBytes)
			if r.ratio < 0.90 {
				t.Errorf("goodput %.1f%% of the legal budget", 100*r.ratio)
			}
			t.Log(r)
		})
	}
}

type satResult struct {
	name                  string
	overhead              int
	airtime, limit        time.Duration
	goodputBytes          int
	budgetBytes           float64
	ratio, util, bps      float64
	frames, retransmitted uint64
}

func (r satResult) String() string {
	return fmt.Sprintf("%s: overhead %d B/frame (+1 RNode), airtime %v of %v (%.1f%%), goodput %d B/h = %.1f bit/s = %.1f%% of legal budget (%.0f B/h), frames %d, retransmissions %d",
		r.name, r.overhead, r.airtime, r.limit, 100*r.util, r.goodputBytes, r.bps, 100*r.ratio, r.budgetBytes, r.frames, r.retransmitted)
}

func saturate(t *testing.T, mod airtime.Modulation, unicast bool, msgBytes int) satResult {
	a := newAir(t, 2, 0, Options{Modulation: mod, AirHeader: 1, Budget: budget(t, "EU868", 868300000, mod.BandwidthHz)})
	a.collide = false
	to := transport.Broadcast
	if unicast {
		to = addr(1)
	}
	msg := make([]byte, msgBytes)
	start := a.now
	measureFrom := start.Add(2 * time.Hour)
	end := start.Add(3 * time.Hour)
	var airAtMeasure time.Duration
	var gotAtMeasure int
	measured := false
	delivered := func() int { return int(a.engines[1].Stats().PayloadBytesReceived) }
	a.run(end, func(now time.Time) {
		if !measured && !now.Before(measureFrom) {
			measured = true
			airAtMeasure = a.engines[0].Stats().Airtime
			gotAtMeasure = delivered()
		}
		for a.engines[0].QueueFree() >= msgBytes {
			if err := a.engines[0].Enqueue(now, to, transport.PriorityOwn, msg); err != nil {
				t.Fatal(err)
			}
		}
	})
	if st := a.audits[0].Flush(); st.Violations != 0 {
		t.Fatalf("violations: %d", st.Violations)
	}
	s := a.engines[0].Stats()
	limit := a.engines[0].Budget().Limit()
	full, _ := mod.TimeOnAir(255)
	r := satResult{name: mod.String(), limit: limit, frames: s.FramesSent, retransmitted: s.Retransmissions}
	r.overhead = Overhead(KindBroadcast, Key{})
	if unicast {
		r.overhead = Overhead(KindUnicast, Key{})
		r.name += " unicast+SACK"
	}
	r.airtime = s.Airtime - airAtMeasure
	r.goodputBytes = delivered() - gotAtMeasure
	r.budgetBytes = float64(limit) / float64(full) * 254
	r.ratio = float64(r.goodputBytes) / r.budgetBytes
	r.util = float64(r.airtime) / float64(limit)
	r.bps = float64(r.goodputBytes*8) / 3600
	return r
}
