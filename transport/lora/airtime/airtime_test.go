package airtime

import (
	"errors"
	"testing"
	"time"
)

// calc cases: values shown by Semtech's "SX1261 LoRa Calculator" (and, for
// SF5/SF6 on SX127x, the SX1276 datasheet formula 4.1.1.7 worked by hand),
// as tabulated in micropython-lib's lora/tests/test_time_on_air.py. The
// calculator's symbol count excludes 8 constant symbols; wantSym includes
// them. See docs/lora.md.
func TestCalculatorValues(t *testing.T) {
	type tc struct {
		chip          Chip
		sf            int
		bwHz          int
		cr            int
		ldro          bool
		preamble, pl  int
		explicit, crc bool
		wantSym       float64
		wantSymTimeNs int64
		wantMicros    int64 // time on air in µs, as the calculator prints (ms, 3 decimals)
	}
	cases := []tc{
		{SX126x, 12, 500000, 5, false, 8, 1, true, true, 17.25 + 8, 8192000, 206848},
		{SX126x, 12, 500000, 5, false, 12, 64, true, true, 71.25 + 8, 8192000, 649216},
		{SX126x, 12, 500000, 5, false, 8, 1, true, false, 12.25 + 8, 8192000, 165888},
		{SX126x, 12, 500000, 5, false, 8, 192, true, true, 172.25 + 8, 8192000, 1476608},
		{SX126x, 12, 500000, 5, false, 12, 16, false, false, 26.25 + 8, 8192000, 280576},
		{SX126x, 8, 125000, 6, false, 8, 1, true, true, 18.25 + 8, 2048000, 53760},
		{SX126x, 8, 125000, 6, false, 8, 3, true, true, 24.25 + 8, 2048000, 66048},
		{SX126x, 8, 125000, 6, false, 8, 3, true, false, 18.25 + 8, 2048000, 53760},
		{SX126x, 8, 125000, 6, false, 8, 5, true, false, 24.25 + 8, 2048000, 66048},
		{SX126x, 8, 125000, 6, false, 8, 253, true, true, 396.25 + 8, 2048000, 827904},
		{SX126x, 8, 125000, 6, false, 12, 5, false, true, 22.25 + 8, 2048000, 61952},
		{SX126x, 8, 125000, 6, false, 12, 10, false, true, 34.25 + 8, 2048000, 86528},
		{SX126x, 8, 125000, 6, false, 12, 253, false, true, 394.25 + 8, 2048000, 823808},
		{SX127x, 8, 125000, 6, false, 8, 1, true, true, 18.25 + 8, 2048000, 53760},
		{SX127x, 8, 125000, 6, false, 12, 5, false, false, 22.25 + 8, 2048000, 61952},
		{SX126x, 5, 500000, 5, false, 2, 1, true, false, 13.25 + 8, 64000, 1360},
		{SX126x, 5, 500000, 5, false, 2, 1, true, true, 18.25 + 8, 64000, 1680},
		{SX126x, 5, 500000, 5, false, 12, 1, false, false, 18.25 + 8, 64000, 1680},
		{SX126x, 5, 500000, 5, false, 12, 253, false, true, 523.25 + 8, 64000, 34000},
		{SX126x, 5, 125000, 8, false, 12, 253, false, true, 826.25 + 8, 256000, 213568},
		{SX127x, 5, 500000, 5, false, 2, 1, true, false, 19.25, 64000, 1232},
		{SX127x, 5, 500000, 5, false, 2, 1, true, true, 24.25, 64000, 1552},
		{SX127x, 5, 500000, 5, false, 12, 253, false, true, 534.25, 64000, 34192},
		{SX127x, 5, 125000, 8, false, 12, 253, false, true, 840.25, 256000, 215104},
		// Slowest settings: the calculator's 7.81 kHz and 10.42 kHz.
		{SX126x, 12, 7810, 8, true, 128, 253, true, true, 540.25 + 8, 524456000, 287532907},
		{SX126x, 12, 7810, 8, true, 1000, 253, true, true, 1412.25 + 8, 524456000, 744858387},
		{SX126x, 11, 10420, 7, true, 25, 16, true, true, 57.25 + 8, 196545000, 12824568},
		{SX126x, 11, 10420, 7, true, 25, 16, false, false, 50.25 + 8, 196545000, 11448752},
		// LoRaWAN EU868 reference points (TTN airtime calculator, preamble
		// 8, explicit header, CRC, CR 4/5): SF7 13 B = 46.3 ms, SF7 51 B =
		// 102.7 ms, SF12 51 B = 2465.8 ms (LDRO on).
		{SX127x, 7, 125000, 5, false, 8, 13, true, true, 45.25, 1024000, 46336},
		{SX127x, 7, 125000, 5, false, 8, 51, true, true, 100.25, 1024000, 102656},
		{SX127x, 12, 125000, 5, true, 8, 51, true, true, 75.25, 32768000, 2465792},
	}
	for _, c := range cases {
		m := Modulation{SF: c.sf, BandwidthHz: c.bwHz, CodingRate: c.cr, PreambleSymbols: c.preamble,
			ImplicitHeader: !c.explicit, NoCRC: !c.crc, Chip: c.chip}
		if got := m.LowDataRateOn(); got != c.ldro {
			t.Errorf("%v: LDRO auto = %v, want %v", m, got, c.ldro)
		}
		q, err := m.QuarterSymbols(c.pl)
		if err != nil {
			t.Fatal(err)
		}
		if got := float64(q) / 4; got != c.wantSym {
			t.Errorf("%v %v pre=%d pl=%d: symbols %v, want %v", c.chip, m, c.preamble, c.pl, got, c.wantSym)
		}
		st := m.SymbolTime()
		if d := int64(st) - c.wantSymTimeNs; d < -500 || d > 500 { // calculator rounds to 1 µs
			t.Errorf("%v: symbol time %v, want %dns", m, st, c.wantSymTimeNs)
		}
		toa, _ := m.TimeOnAir(c.pl)
		got := toa.Microseconds()
		tol := c.wantMicros / 100000 // calculator prints 3 decimals of rounded symbol time
		if tol < 1 {
			tol = 1
		}
		if d := got - c.wantMicros; d < -tol || d > tol {
			t.Errorf("%v %v pre=%d pl=%d: time on air %dµs, want %dµs", c.chip, m, c.preamble, c.pl, got, c.wantMicros)
		}
	}
}

func TestLDROAutoThreshold(t *testing.T) {
	for _, c := range []struct {
		sf, bw int
		want   bool
	}{
		{10, 125000, false}, // 8.192 ms
		{11, 125000, true},  // 16.384 ms
		{12, 125000, true},
		{11, 250000, false},
		{12, 250000, true},
		{10, 62500, true},
		{12, 500000, false},
		{11, 128000, true}, // exactly 16 ms: on
	} {
		m := Modulation{SF: c.sf, BandwidthHz: c.bw}
		if got := m.LowDataRateOn(); got != c.want {
			t.Errorf("SF%d BW%d: %v, want %v", c.sf, c.bw, got, c.want)
		}
	}
	m := Modulation{SF: 12, BandwidthHz: 125000, LowDataRate: LDROOff}
	if m.LowDataRateOn() {
		t.Error("forced off")
	}
	m = Modulation{SF: 7, BandwidthHz: 125000, LowDataRate: LDROOn}
	if !m.LowDataRateOn() {
		t.Error("forced on")
	}
}

func TestInvalid(t *testing.T) {
	good := Modulation{SF: 7, BandwidthHz: 125000}
	for _, m := range []Modulation{
		{}, {SF: 4, BandwidthHz: 125000}, {SF: 13, BandwidthHz: 125000}, {SF: 7, BandwidthHz: 100},
		{SF: 7, BandwidthHz: 125000, CodingRate: 9}, {SF: 7, BandwidthHz: 125000, CodingRate: 4},
		{SF: 7, BandwidthHz: 125000, PreambleSymbols: -1}, {SF: 7, BandwidthHz: 125000, Chip: 9},
		{SF: 7, BandwidthHz: 125000, LowDataRate: 7},
	} {
		if _, err := m.TimeOnAir(10); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v", m, err)
		}
	}
	for _, n := range []int{-1, 256, 1 << 30} {
		if _, err := good.TimeOnAir(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("len %d: err %v", n, err)
		}
	}
	if good.Bitrate() != 5468 {
		t.Errorf("bitrate %d", good.Bitrate())
	}
}

func TestMonotonicAndMaxPayload(t *testing.T) {
	for sf := MinSF; sf <= MaxSF; sf++ {
		for _, bw := range []int{62500, 125000, 250000, 500000} {
			m := Modulation{SF: sf, BandwidthHz: bw, Chip: SX126x}
			prev := time.Duration(0)
			for n := 0; n <= MaxPayload; n++ {
				d, err := m.TimeOnAir(n)
				if err != nil {
					t.Fatal(err)
				}
				if d < prev {
					t.Fatalf("%v: not monotonic at %d", m, n)
				}
				prev = d
			}
			d, _ := m.TimeOnAir(100)
			if n, _ := m.MaxPayloadWithin(d); n < 100 {
				t.Fatalf("%v: MaxPayloadWithin %d", m, n)
			}
			if n, _ := m.MaxPayloadWithin(0); n != -1 {
				t.Fatalf("%v: MaxPayloadWithin(0) = %d", m, n)
			}
		}
	}
}

func BenchmarkTimeOnAir(b *testing.B) {
	m := Modulation{SF: 9, BandwidthHz: 125000}
	for i := 0; i < b.N; i++ {
		_, _ = m.TimeOnAir(i & 255)
	}
}
