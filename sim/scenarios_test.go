package sim

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"
)

var long = flag.Bool("long", false, "also run the big scenarios (lora-100, lora-500, ...): minutes")

// TestScenarios runs every scenario in sim/scenarios with every protocol and
// asserts the bounds in its "expect" section. The small ci-* scenarios run
// always (seconds each); the big ones only with -long (make sim-big runs them
// through cmd/meshsim instead).
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("scenarios/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if !strings.HasPrefix(name, "ci-") && !*long {
			continue
		}
		sc, err := LoadScenario(f)
		if err != nil {
			t.Fatal(err)
		}
		for proto, factory := range Protocols() {
			t.Run(name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				r, err := Run(sc, proto, factory, RunOptions{})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("delivery %.4f (%d/%d) p50 %.2fs p95 %.2fs airtime/delivered %.3fs (x%.2f ideal) tx/delivered %.1f announce share %.3f violations %d dups %d, %.0f sim s per wall s",
					r.DeliveryRatio, r.Delivered, r.Messages, r.LatencyP50, r.LatencyP95, r.AirtimePerDelivered, r.AirtimeRatioToIdeal,
					r.TxPerDelivered, r.AnnounceShare, r.DutyCycleViolations, r.DuplicatesDelivered, r.Perf.SimSecondsPerWallSecond)
				for _, bad := range sc.Check(r) {
					t.Error(bad)
				}
			})
		}
	}
}

// TestScenarioFilesParse keeps every scenario file valid and laid out,
// including the big ones.
func TestScenarioFilesParse(t *testing.T) {
	files, _ := filepath.Glob("scenarios/*.json")
	for _, f := range files {
		sc, err := LoadScenario(f)
		if err != nil {
			t.Error(err)
			continue
		}
		if want := strings.TrimSuffix(filepath.Base(f), ".json"); sc.Name != want {
			t.Errorf("%s: name %q, want %q", f, sc.Name, want)
		}
		if _, err := DescribeTopology(sc, sc.Seed); err != nil {
			t.Error(err)
		}
		known := Protocols()
		for p := range sc.Expect {
			if _, ok := known[p]; !ok {
				t.Errorf("%s: expect names unknown protocol %q", f, p)
			}
		}
	}
}
