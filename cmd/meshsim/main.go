// Command meshsim runs a meshsim scenario (sim/scenarios/*.json) with meshd's
// router and the managed-flooding baseline, side by side, and prints the
// metrics: a table, or one JSON object with -json. docs/meshsim.md explains
// the models and every metric.
//
//	go run ./cmd/meshsim -scenario sim/scenarios/lora-100.json -json
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"

	"github.com/openmeshd/meshd/sim"
)

// errUsage marks errors that should be followed by usage text.
var errUsage = errors.New("usage")

// errBounds means a run finished but broke its scenario's expect bounds.
var errBounds = errors.New("bounds violated")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	err := mainErr(args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "meshsim:", err)
		return 2
	case errors.Is(err, errBounds):
		return 3
	}
	fmt.Fprintln(stderr, "meshsim:", err)
	return 1
}

func mainErr(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenario := fs.String("scenario", "", "scenario file (sim/scenarios/*.json)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	seed := fs.Uint64("seed", 0, "override the scenario's seed (0: keep it)")
	protocol := fs.String("protocol", "both", "router, flood, or both (router with the flood baseline beside it)")
	duration := fs.Duration("duration", 0, "override the scenario's traffic window (e.g. 30m)")
	freeAnn := fs.Bool("free-announces", false, "what-if: announces cost no airtime and reach every neighbour in range without loss")
	freeAfter := fs.Duration("free-announces-after", 0, "what-if: like -free-announces, for announces sent from this time of the run on (e.g. 105m: the boot flood costs, repair and refresh do not)")
	interval := fs.Duration("interval", 0, "override the interval of every traffic source (e.g. 30m: the same scenario under another load)")
	bandwidth := fs.Float64("bandwidth", 0, "override the LoRa bandwidth in kHz (125, 250 or 500): the same scenario on a wider or narrower channel, laid out again for its range")
	sf := fs.Int("sf", 0, "override the LoRa spreading factor (7-12), laid out again for its range like -bandwidth")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	memprofile := fs.String("memprofile", "", "write a heap profile to this file at the end")
	tracePath := fs.String("trace", "", "write a line per status event and delivery to this file (one protocol only)")
	parallel := fs.Bool("parallel", true, "run the two protocols concurrently (heap_bytes_per_node is measured only without)")
	from := fs.String("from", "", "print the table of a result saved with -json (no simulation)")
	topo := fs.Bool("topology", false, "only lay the scenario out and print its radio graph (degree, diameter)")
	progress := fs.Bool("progress", false, "report progress on stderr every million events")
	check := fs.Bool("check", false, "exit with status 3 when a result breaks the scenario's expect bounds")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: meshsim -scenario FILE [-json] [-seed N] [-protocol router|flood|both] [-duration D] [-interval D] [-bandwidth KHZ] [-sf N] [-free-announces | -free-announces-after D]\n       meshsim -from RESULT.json\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *from != "" {
		b, err := os.ReadFile(*from)
		if err != nil {
			return err
		}
		var r sim.Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", *from, err)
		}
		rs := []*sim.Result{&r}
		if r.Baseline != nil {
			rs = append(rs, r.Baseline)
		}
		return sim.WriteTable(stdout, rs...)
	}
	if *scenario == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: -scenario FILE is required", errUsage)
	}
	sc, err := sim.LoadScenario(*scenario)
	if err != nil {
		return err
	}
	if *bandwidth < 0 || math.IsNaN(*bandwidth) || math.IsInf(*bandwidth, 0) {
		return fmt.Errorf("%w: -bandwidth %g: want kHz, e.g. 250", errUsage, *bandwidth)
	}
	if *freeAfter < 0 {
		return fmt.Errorf("%w: -free-announces-after %v: want a time of the run, e.g. 105m", errUsage, *freeAfter)
	}
	if *freeAfter > 0 && *freeAnn {
		return fmt.Errorf("%w: -free-announces-after with -free-announces: the latter makes every announce free, pick one", errUsage)
	}
	if *sf < 0 {
		return fmt.Errorf("%w: -sf %d: want a spreading factor, e.g. 8", errUsage, *sf)
	}
	// The scenario's layout rule (e.g. redrawn until connected) then
	// applies with the new modulation's range; newRadioModel refuses a
	// modulation with no datasheet sensitivity or sub-band.
	if *bandwidth > 0 {
		sc.Radio.BandwidthKHz = *bandwidth
	}
	if *sf > 0 {
		sc.Radio.SF = *sf
	}
	if *topo {
		s := sc.Seed
		if *seed != 0 {
			s = *seed
		}
		info, err := sim.DescribeTopology(sc, s)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		return enc.Encode(info)
	}
	protos := sim.Protocols()
	var names []string
	switch *protocol {
	case "both":
		if _, ok := protos["router"]; ok {
			names = []string{"router", "flood"}
		} else {
			fmt.Fprintln(stderr, "meshsim: the router is not wired into this build; running the flood baseline only")
			names = []string{"flood"}
		}
	default:
		if _, ok := protos[*protocol]; !ok {
			known := make([]string, 0, len(protos))
			for k := range protos {
				known = append(known, k)
			}
			sort.Strings(known)
			return fmt.Errorf("%w: unknown protocol %q (have %s)", errUsage, *protocol, strings.Join(known, ", "))
		}
		names = []string{*protocol}
	}
	concurrent := *parallel && len(names) > 1
	opt := sim.RunOptions{Seed: *seed, HasSeed: *seed != 0, Duration: *duration, Interval: *interval, FreeAnnounces: *freeAnn, FreeAnnouncesAfter: *freeAfter, MeasureMemory: !concurrent}
	if *progress {
		opt.Progress = stderr
	}
	if *tracePath != "" {
		if len(names) > 1 {
			return fmt.Errorf("%w: -trace needs one -protocol", errUsage)
		}
		f, err := os.Create(*tracePath)
		if err != nil {
			return err
		}
		defer f.Close()
		opt.Trace = f
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	results := make([]*sim.Result, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		runOne := func() {
			cpu := cpuTime()
			results[i], errs[i] = sim.Run(sc, name, protos[name], opt)
			if used := cpuTime() - cpu; !concurrent && errs[i] == nil && used > 0 {
				results[i].Perf.CPUSeconds = used.Seconds()
				results[i].Perf.SimSecondsPerCPUSecond = results[i].Perf.SimulatedS / used.Seconds()
			}
		}
		if concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runOne()
			}()
		} else {
			runOne()
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s: %w", names[i], err)
		}
	}
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			return err
		}
	}

	top := results[0]
	if len(results) > 1 {
		top.Baseline = results[1]
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(top); err != nil {
			return err
		}
	} else if err := sim.WriteTable(stdout, results...); err != nil {
		return err
	}
	var broken []string
	for _, r := range results {
		broken = append(broken, sc.Check(r)...)
	}
	for _, b := range broken {
		fmt.Fprintln(stderr, "meshsim: expect:", b)
	}
	if *check && len(broken) > 0 {
		return errBounds
	}
	return nil
}
