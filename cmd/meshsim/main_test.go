package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONHasEveryHeadlineField(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"-scenario", "../../sim/scenarios/ci-mixed-islands.json", "-json", "-duration", "5m", "-seed", "2"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var top map[string]any
	if err := json.Unmarshal(out.Bytes(), &top); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	base, ok := top["baseline"].(map[string]any)
	if !ok {
		t.Fatal("no baseline object")
	}
	if top["protocol"] != "router" || base["protocol"] != "flood" || top["seed"] != 2.0 {
		t.Fatalf("protocol %v / %v, seed %v", top["protocol"], base["protocol"], top["seed"])
	}
	for _, k := range []string{"delivery_ratio", "latency_p50_s", "latency_p95_s", "airtime_per_delivered_s",
		"airtime_ratio_to_ideal", "tx_per_delivered", "announce_airtime_share", "duty_cycle_violations", "duplicates_delivered"} {
		if _, ok := top[k].(float64); !ok {
			t.Errorf("top level lacks %s", k)
		}
		if _, ok := base[k].(float64); !ok {
			t.Errorf("baseline lacks %s", k)
		}
	}
}

func TestTableAndErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-scenario", "../../sim/scenarios/ci-mixed-islands.json", "-protocol", "flood", "-duration", "5m"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "delivery_ratio") || !strings.Contains(out.String(), "flood") {
		t.Fatalf("table:\n%s", out.String())
	}
	for _, args := range [][]string{{}, {"-scenario", "nope.json"}, {"-scenario", "../../sim/scenarios/ci-lora-20.json", "-protocol", "carrier-pigeon"}} {
		out.Reset()
		errb.Reset()
		if code := run(args, &out, &errb); code == 0 {
			t.Errorf("%v: exit 0", args)
		}
	}
}

// TestIntervalOverride: -interval runs the same scenario under another
// load: every traffic source sends at the given interval.
func TestIntervalOverride(t *testing.T) {
	messages := func(extra ...string) float64 {
		args := append([]string{"-scenario", "../../sim/scenarios/ci-mixed-islands.json", "-json", "-protocol", "router", "-duration", "20m"}, extra...)
		top, code, stderr := runJSON(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		n, _ := top["messages"].(float64)
		return n
	}
	base, half := messages(), messages("-interval", "10m")
	if base == 0 || half != base/2 {
		t.Fatalf("messages: %v with the scenario's 5m interval, %v with -interval 10m; want half", base, half)
	}
}

// TestFreeAnnounces: -free-announces takes announces off the air (no
// airtime) but still delivers them, so routes form and messages arrive;
// and each message's per-sent-hour delivery is reported.
func TestFreeAnnounces(t *testing.T) {
	announce := func(top map[string]any) float64 {
		a, _ := top["airtime_by_class_s"].(map[string]any)
		v, _ := a["announce"].(float64)
		return v
	}
	base, free := runRouterCI(t, "30m"), runRouterCI(t, "30m", "-free-announces")
	if announce(base) <= 0 || announce(free) != 0 {
		t.Errorf("announce airtime %v, with -free-announces %v: want > 0 and 0", announce(base), announce(free))
	}
	if d, _ := free["delivery_ratio"].(float64); d < 0.9 {
		t.Errorf("delivery with free announces %v: routes did not form", d)
	}
	hours, _ := free["delivery_by_sent_hour"].([]any)
	if len(hours) == 0 {
		t.Fatalf("no delivery_by_sent_hour in %v", free)
	}
	if h, _ := hours[0].(map[string]any); h["messages"].(float64) <= 0 {
		t.Errorf("first hour: %v", h)
	}
}

// TestFreeAnnouncesAfter: -free-announces-after D keeps the announces
// sent before D on the air and takes the later ones off it: the hour
// before D carries the announce airtime of a run without the flag, the
// hours after it none (where a run without the flag has some); a
// negative time, or the flag beside -free-announces, is a usage error.
func TestFreeAnnouncesAfter(t *testing.T) {
	announceByHour := func(top map[string]any) []float64 {
		hours, _ := top["airtime_by_hour_s"].([]any)
		var out []float64
		for _, h := range hours {
			m, _ := h.(map[string]any)
			v, _ := m["announce"].(float64)
			out = append(out, v)
		}
		return out
	}
	sum := func(v []float64) (t float64) {
		for _, x := range v {
			t += x
		}
		return t
	}
	base, after := announceByHour(runRouterCI(t, "2h")), announceByHour(runRouterCI(t, "2h", "-free-announces-after", "1h"))
	if len(after) < 2 || len(base) != len(after) {
		t.Fatalf("hourly announce airtime: %v without, %v with -free-announces-after 1h", base, after)
	}
	if after[0] != base[0] || after[0] <= 0 {
		t.Errorf("first hour's announce airtime %v, want the run's own %v (> 0)", after[0], base[0])
	}
	if later := sum(after[1:]); later != 0 || sum(base[1:]) <= 0 {
		t.Errorf("announce airtime after 1h: %v with the flag (want 0), %v without (want > 0)", later, sum(base[1:]))
	}
	for _, bad := range [][]string{{"-free-announces-after", "-5m"}, {"-free-announces-after", "1h", "-free-announces"}} {
		var out, errb bytes.Buffer
		code := run(append([]string{"-scenario", "../../sim/scenarios/ci-lora-20.json", "-json"}, bad...), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "-free-announces-after") || out.Len() != 0 {
			t.Errorf("%v: exit %d, %q, %d bytes out: want a usage error (2) naming the flag, nothing run", bad, code, errb.String(), out.Len())
		}
	}
}

// TestModulationOverride: -bandwidth and -sf lay the same scenario out for
// another modulation (a wider channel hears less far; SF8 on 250 kHz as far
// as SF7 on 125 kHz, -123 dBm in the SX1276 datasheet), and a modulation
// the radio or region cannot use is refused with a clear error.
func TestModulationOverride(t *testing.T) {
	rangeM := func(extra ...string) float64 {
		args := append([]string{"-scenario", "../../sim/scenarios/ci-lora-20.json", "-topology"}, extra...)
		top, code, stderr := runJSON(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		r, _ := top["range_m"].(float64)
		return r
	}
	narrow, wide, wideSF8 := rangeM(), rangeM("-bandwidth", "250"), rangeM("-bandwidth", "250", "-sf", "8")
	if narrow == 0 || wide >= narrow || wideSF8 != narrow {
		t.Fatalf("range %v m at SF7/125 kHz, %v m at SF7/250 kHz (want shorter), %v m at SF8/250 kHz (want the same)", narrow, wide, wideSF8)
	}
	for _, c := range []struct{ flag, val, want string }{
		{"-bandwidth", "300", "bandwidth"}, {"-bandwidth", "-125", "bandwidth"}, {"-bandwidth", "NaN", "bandwidth"}, {"-bandwidth", "+Inf", "bandwidth"},
		{"-sf", "13", "spreading factor"}, {"-sf", "-1", "spreading factor"},
	} {
		var out, errb bytes.Buffer
		if code := run([]string{"-scenario", "../../sim/scenarios/ci-lora-20.json", "-topology", c.flag, c.val}, &out, &errb); code == 0 {
			t.Errorf("%s %s: exit 0", c.flag, c.val)
		} else if !strings.Contains(errb.String(), c.want) {
			t.Errorf("%s %s: error does not say %q: %s", c.flag, c.val, c.want, errb.String())
		}
	}
}

// runJSON runs meshsim with args and decodes the JSON object it prints;
// the caller judges the exit status and standard error.
// runRouterCI runs the router alone on the 20-node LoRa CI scenario with
// traffic for duration and extra flags, and returns its JSON result; a run
// that breaks only the scenario's expect bounds still returns it.
func runRouterCI(t *testing.T, duration string, extra ...string) map[string]any {
	t.Helper()
	args := append([]string{"-scenario", "../../sim/scenarios/ci-lora-20.json", "-json", "-protocol", "router", "-duration", duration}, extra...)
	top, code, stderr := runJSON(t, args...)
	if code != 0 && !strings.Contains(stderr, "expect") {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	return top
}

func runJSON(t *testing.T, args ...string) (top map[string]any, code int, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	if err := json.Unmarshal(out.Bytes(), &top); err != nil {
		t.Fatalf("%v: exit %d: %s\n%v\n%s", args, code, errb.String(), err, out.String())
	}
	return top, code, errb.String()
}
