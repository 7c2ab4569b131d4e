package dutycycle

import (
	"errors"
	"math/rand"
	"testing"
	"time"

	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/transport"
)

func mustBand(t testing.TB, region string, f uint32, bw int) SubBand {
	t.Helper()
	r, err := Lookup(region)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.SubBand(f, bw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegions(t *testing.T) {
	cases := []struct {
		region string
		f      uint32
		bw     int
		band   string
		dc     float64
		dwell  time.Duration
		err    error
	}{
		{"EU868", 868100000, 125000, "g1", 0.01, 0, nil},
		{"eu868", 869525000, 250000, "g3", 0.10, 0, nil},
		{"EU868", 869525000, 500000, "", 0, 0, ErrOutOfBand},
		{"EU868", 868900000, 125000, "g2", 0.001, 0, nil},
		{"EU868", 867500000, 125000, "g", 0.01, 0, nil},
		{"EU868", 864000000, 125000, "h1.3", 0.001, 0, nil},
		{"EU868", 869850000, 125000, "g4", 0.01, 0, nil},
		{"EU868", 868650000, 125000, "", 0, 0, ErrOutOfBand}, // gap 868.6-868.7
		{"EU868", 915000000, 125000, "", 0, 0, ErrOutOfBand},
		{"EU433", 433775000, 125000, "433", 0.10, 0, nil},
		{"US915", 915000000, 125000, "902-928", 0, 400 * time.Millisecond, nil},
		{"AU915", 916800000, 125000, "915-928", 0, 400 * time.Millisecond, nil},
		{"AS923", 923200000, 125000, "915-928", 0.01, 400 * time.Millisecond, nil},
		{"IN865", 865062500, 125000, "865-867", 0, 0, nil},
		{"XX000", 865062500, 125000, "", 0, 0, ErrUnknownRegion},
	}
	for _, c := range cases {
		r, err := Lookup(c.region)
		if err == nil {
			var b SubBand
			b, err = r.SubBand(c.f, c.bw)
			if err == nil && (b.Name != c.band || b.DutyCycle != c.dc || b.MaxDwell != c.dwell) {
				t.Errorf("%s %d: got %+v", c.region, c.f, b)
			}
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%s %d: err %v, want %v", c.region, c.f, err, c.err)
		}
	}
	if len(Regions()) < 6 {
		t.Error("regions missing")
	}
	rs := Regions()
	rs[0].Bands[0].DutyCycle = 0.5 // callers own the copy
	if r, _ := Lookup(rs[0].Name); r.Bands[0].DutyCycle == 0.5 {
		t.Error("table mutated")
	}
}

func TestBudgetBasics(t *testing.T) {
	band := mustBand(t, "EU868", 868100000, 125000) // 1%: 36 s per hour
	b, err := New(Options{Band: band})
	if err != nil {
		t.Fatal(err)
	}
	if b.Limit() != 36*time.Second || b.Cap(transport.PriorityRelay) != 32400*time.Millisecond ||
		b.Cap(transport.PriorityBackground) != 21600*time.Millisecond {
		t.Fatalf("limits %v %v %v", b.Limit(), b.Cap(transport.PriorityRelay), b.Cap(transport.PriorityBackground))
	}
	now := clock.Epoch()
	// Background may fill 60%.
	for i := 0; i < 21; i++ {
		if ok, _, err := b.Take(now, time.Second, transport.PriorityBackground); !ok || err != nil {
			t.Fatalf("bg take %d: %v %v", i, ok, err)
		}
		now = now.Add(time.Second)
	}
	ok, at, err := b.Take(now, 1100*time.Millisecond, transport.PriorityBackground)
	if ok || err != nil || !at.After(now) {
		t.Fatalf("bg over share: %v %v %v", ok, at, err)
	}
	// ... own traffic still goes.
	if ok, _, _ := b.Take(now, 10*time.Second, transport.PriorityOwn); !ok {
		t.Fatal("own refused")
	}
	now = now.Add(10 * time.Second)
	// 31 s used; relay may go to 32.4 s.
	if ok, _, _ := b.Take(now, time.Second, transport.PriorityRelay); !ok {
		t.Fatal("relay refused")
	}
	if ok, _, _ := b.Take(now, time.Second, transport.PriorityRelay); ok {
		t.Fatal("relay over share")
	}
	if got := b.Available(now, transport.PriorityOwn); got != 4*time.Second {
		t.Fatalf("available %v", got)
	}
	// The first slice expires one hour after the slice it ended in.
	at, _ = b.Check(now, 5*time.Second, transport.PriorityOwn)
	if d := at.Sub(clock.Epoch()); d < time.Hour || d > time.Hour+20*time.Second {
		t.Fatalf("wait until +%v", d)
	}
	if ok, _, _ := b.Take(at, 5*time.Second, transport.PriorityOwn); !ok {
		t.Fatal("not free at the promised time")
	}
	// Never-fitting requests.
	if _, err := b.Check(now, 40*time.Second, transport.PriorityOwn); !errors.Is(err, ErrTooLong) {
		t.Fatal(err)
	}
	if _, err := b.Check(now, 30*time.Second, transport.PriorityBackground); !errors.Is(err, ErrTooLong) {
		t.Fatal(err)
	}
	if _, err := b.Check(now, -1, transport.PriorityOwn); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	// After two hours of silence everything is free again.
	later := at.Add(2 * time.Hour)
	if got := b.Used(later); got != 0 {
		t.Fatalf("used %v", got)
	}
	st := b.Stats()
	if st.Granted[transport.PriorityBackground] != 21 || st.Deferred[transport.PriorityBackground] != 1 || st.Total != 37*time.Second {
		t.Fatalf("stats %+v", st)
	}
}

func TestUnlimitedAndDwell(t *testing.T) {
	b, err := New(Options{Band: mustBand(t, "US915", 915000000, 125000)})
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Epoch()
	for i := 0; i < 10000; i++ {
		if ok, _, err := b.Take(now, 390*time.Millisecond, transport.PriorityBackground); !ok || err != nil {
			t.Fatal(ok, err)
		}
		now = now.Add(400 * time.Millisecond)
	}
	if _, _, err := b.Take(now, 401*time.Millisecond, transport.PriorityOwn); !errors.Is(err, ErrDwell) {
		t.Fatal(err)
	}
	if b.Limit() != 0 || b.Available(now, 0) != -1 {
		t.Fatal("limit")
	}
}

func TestBadOptions(t *testing.T) {
	band := mustBand(t, "EU868", 868100000, 125000)
	for _, o := range []Options{
		{Band: band, Buckets: -1}, {Band: band, Buckets: 1 << 20}, {Band: band, Margin: 1.5},
		{Band: band, Margin: -1}, {Band: band, RelayShare: 2}, {Band: band, BackgroundShare: -0.1},
		{Band: SubBand{DutyCycle: 2}}, {Band: SubBand{MaxDwell: -1}},
	} {
		if _, err := New(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

func TestClockBackwards(t *testing.T) {
	b, _ := New(Options{Band: mustBand(t, "EU868", 868100000, 125000)})
	now := clock.Epoch()
	b.Take(now, 30*time.Second, transport.PriorityOwn)
	// The wall clock is set back a day: what was counted stays counted for
	// the rest of its hour, not a day longer.
	back := now.Add(-24 * time.Hour)
	if got := b.Used(back); got != 30*time.Second {
		t.Fatalf("used %v", got)
	}
	at, _ := b.Check(back, 10*time.Second, transport.PriorityOwn)
	if d := at.Sub(back); d < time.Hour || d > time.Hour+time.Minute {
		t.Fatalf("wait %v", d)
	}
	if b.Stats().ClockBackwards != 1 {
		t.Fatal("not counted")
	}
}

// TestSaturationHour drives a budget at saturation for simulated hours with
// random frame sizes and priorities and audits every rolling window exactly.
func TestSaturationHour(t *testing.T) {
	for _, c := range []struct {
		name    string
		region  string
		f       uint32
		buckets int
	}{
		{"g1-1%", "EU868", 868100000, 0},
		{"g3-10%", "EU868", 869525000, 0},
		{"g2-0.1%", "EU868", 868900000, 60},
		{"433-10%-coarse", "EU433", 433775000, 12},
	} {
		t.Run(c.name, func(t *testing.T) {
			band := mustBand(t, c.region, c.f, 125000)
			b, err := New(Options{Band: band, Buckets: c.buckets})
			if err != nil {
				t.Fatal(err)
			}
			audit := NewAudit(band)
			rng := rand.New(rand.NewSource(1))
			now := clock.Epoch()
			end := now.Add(3 * time.Hour)
			var sent time.Duration
			for now.Before(end) {
				maxAir := int(b.Limit() / 40 / time.Millisecond)
				if maxAir > 1500 {
					maxAir = 1500
				}
				air := time.Duration(20+rng.Intn(maxAir)) * time.Millisecond
				p := transport.Priority(rng.Intn(3))
				ok, at, err := b.Take(now, air, p)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					if p == transport.PriorityOwn {
						now = at // wait exactly as told
					} else {
						now = now.Add(time.Duration(rng.Intn(2000)) * time.Millisecond)
					}
					continue
				}
				if audit.Add(now, air) {
					t.Fatalf("violation at %v", now.Sub(clock.Epoch()))
				}
				if now.After(clock.Epoch().Add(2 * time.Hour)) {
					sent += air
				}
				now = now.Add(air)
			}
			st := audit.Flush()
			if st.Violations != 0 {
				t.Fatalf("violations %d", st.Violations)
			}
			// The last hour used at least 95% of the legal budget.
			if float64(sent) < 0.95*float64(b.Limit()) {
				t.Fatalf("used %v of %v in the last hour", sent, b.Limit())
			}
			t.Logf("last hour: %v of %v (%.1f%%), peak window %v", sent, b.Limit(), 100*float64(sent)/float64(b.Limit()), st.Peak)
		})
	}
}

func TestAuditCatchesViolation(t *testing.T) {
	band := mustBand(t, "EU868", 868100000, 125000)
	a := NewAudit(band)
	now := clock.Epoch()
	bad := false
	for i := 0; i < 40; i++ {
		bad = a.Add(now, time.Second) || bad
		now = now.Add(time.Minute)
	}
	if !bad || a.Flush().Violations == 0 {
		t.Fatal("37 s in an hour not flagged")
	}
	a = NewAudit(SubBand{MaxDwell: time.Second})
	if !a.Add(now, 2*time.Second) {
		t.Fatal("dwell not flagged")
	}
}

func BenchmarkTake(b *testing.B) {
	bud, _ := New(Options{Band: SubBand{DutyCycle: 0.01}})
	now := clock.Epoch()
	for i := 0; i < b.N; i++ {
		if ok, at, _ := bud.Take(now, 100*time.Millisecond, 0); !ok {
			now = at
		} else {
			now = now.Add(100 * time.Millisecond)
		}
	}
}
