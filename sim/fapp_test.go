package sim

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var fappOut = flag.String("fapp-out", "", "write each FAPP scenario's result as JSON into this directory (make sim-big)")

// TestFAPPScenarios runs the FAPP scenarios (sim/scenarios/fapp-*.json)
// with their script and asserts their expect bounds: fapp-ci always
// (seconds), the big ones with -long (make sim-big runs them).
func TestFAPPScenarios(t *testing.T) {
	files, err := filepath.Glob("scenarios/fapp-*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no FAPP scenarios: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if name != "fapp-ci" && !*long {
			continue
		}
		t.Run(name, func(t *testing.T) {
			sc, err := LoadScenario(f)
			if err != nil {
				t.Fatal(err)
			}
			r, err := RunFAPP(sc, RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			_ = r.WriteTable(&b)
			t.Log("\n" + b.String())
			for _, bad := range r.Check() {
				t.Error(bad)
			}
			if *fappOut != "" {
				js, _ := json.MarshalIndent(r, "", "  ")
				if err := os.WriteFile(filepath.Join(*fappOut, name+".json"), append(js, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
