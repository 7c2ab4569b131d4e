package sim

import (
	"testing"
	"time"
)

// BenchmarkEngine measures the simulator's own speed on the flood baseline
// (whose per-frame work is small): simulated seconds per wall second and
// events per second on ci-lora-20. `go test -bench Engine ./sim`.
func BenchmarkEngine(b *testing.B) {
	sc, err := LoadScenario("scenarios/ci-lora-20.json")
	if err != nil {
		b.Fatal(err)
	}
	var simulated, events float64
	start := time.Now()
	for b.Loop() {
		r, err := Run(sc, "flood", NewFlood, RunOptions{})
		if err != nil {
			b.Fatal(err)
		}
		simulated += r.Perf.SimulatedS
		events += float64(r.Perf.Events)
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(simulated/el, "sim-s/s")
	b.ReportMetric(events/el, "events/s")
}
