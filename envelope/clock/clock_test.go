package clock

import (
	"sync"
	"testing"
	"time"
)

func TestManual(t *testing.T) {
	tests := []struct {
		name  string
		start time.Time
		steps []time.Duration
		want  time.Time
	}{
		{"zero start is Epoch()", time.Time{}, nil, Epoch()},
		{"forward", Epoch(), []time.Duration{time.Second, time.Minute}, Epoch().Add(61 * time.Second)},
		{"backwards", Epoch(), []time.Duration{time.Hour, -2 * time.Hour}, Epoch().Add(-time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewManual(tc.start)
			for _, d := range tc.steps {
				c.Advance(d)
			}
			if got := c.Now(); !got.Equal(tc.want) {
				t.Fatalf("Now() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestManualSetAndConcurrency(t *testing.T) {
	c := NewManual(Epoch())
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				c.Advance(time.Millisecond)
				_ = c.Now()
			}
		}()
	}
	wg.Wait()
	if got, want := c.Now(), Epoch().Add(8*time.Second); !got.Equal(want) {
		t.Fatalf("after concurrent advances Now() = %v, want %v", got, want)
	}
	at := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	c.Set(at)
	if !c.Now().Equal(at) {
		t.Fatalf("Set did not take")
	}
}

func TestSystemMoves(t *testing.T) {
	var c Clock = System{}
	a := c.Now()
	time.Sleep(time.Millisecond)
	if !c.Now().After(a) {
		t.Fatal("system clock did not advance")
	}
}
