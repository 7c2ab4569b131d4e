package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/openmeshd/meshd/transport/lora/airtime"
	"github.com/openmeshd/meshd/transport/lora/dutycycle"
)

// Receiver sensitivity in dBm of the Semtech SX1276/77/78/79 in LoRa mode,
// band 1 (862-1020 MHz), by bandwidth (125, 250, 500 kHz) and spreading
// factor (6..12). Source: SX1276/77/78/79 datasheet rev. 7 (May 2020), table
// "LoRa receiver sensitivity" (RFS_L125_HF ... RFS_L500_HF).
func sx1276Sensitivity(sf int, bwHz int) (float64, bool) {
	table := map[int][7]float64{
		//        SF6   SF7   SF8   SF9   SF10  SF11  SF12
		125000: {-118, -123, -126, -129, -132, -133, -136},
		250000: {-115, -120, -123, -125, -128, -130, -133},
		500000: {-111, -116, -119, -122, -125, -128, -130},
	}
	row, ok := table[bwHz]
	if !ok || sf < 6 || sf > 12 {
		return 0, false
	}
	return row[sf-6], true
}

// demodSNR is the lowest SNR in dB at which a LoRa frame demodulates, by
// spreading factor. Source: SX1276 datasheet rev. 7, section 4.1.1.2, table
// "Range of Spreading Factors" (SF6 -5 dB ... SF12 -20 dB).
func demodSNR(sf int) float64 {
	if sf < 6 {
		sf = 6
	}
	if sf > 12 {
		sf = 12
	}
	return []float64{-5, -7.5, -10, -12.5, -15, -17.5, -20}[sf-6]
}

// radioModel is the LoRa medium's static configuration, resolved from a
// RadioSpec with its defaults.
type radioModel struct {
	mod        airtime.Modulation
	region     string
	band       dutycycle.SubBand
	freqHz     uint32
	txPower    float64 // dBm, antenna gains included (EIRP-ish + rx gain)
	sens       float64 // dBm
	noiseFloor float64 // dBm
	snrMin     float64 // dB

	d0, pl0, exponent float64
	shadowSigma       float64
	fadingSigma       float64
	frameLoss         float64
	captureDB         float64
	captureLin        float64 // 10^(captureDB/10)
	csma              bool
	overhear          bool  // raw links: show overheard frames
	noOverhear        bool  // meshd's link layer: never report overheard messages
	slot              int64 // CSMA slot, ns
	senseDelay        int64 // how long a frame is on air before carrier sense detects it, ns
	cw                int   // CSMA contention window in slots

	header        int
	mtu           int
	txLatency     int64
	maxQueueDelay int64
	maxQueue      int
	idealMargin   float64
	budgetBuckets int
	audit         bool

	interfFloor float64 // dBm: weaker signals are ignored entirely
	airtimes    [airtime.MaxPayload + 1]int64
}

func newRadioModel(r RadioSpec) (*radioModel, error) {
	m := &radioModel{}
	if r.Region == "" {
		r.Region = "EU868"
	}
	if r.FrequencyMHz == 0 {
		r.FrequencyMHz = 869.525
	}
	if r.SF == 0 {
		r.SF = 7
	}
	if r.BandwidthKHz == 0 {
		r.BandwidthKHz = 125
	}
	if r.TxPowerDBm == 0 {
		r.TxPowerDBm = 14
	}
	if r.NoiseFigureDB == 0 {
		r.NoiseFigureDB = 6
	}
	pl := r.PathLoss
	if pl.D0M == 0 {
		pl.D0M = 1000
	}
	if pl.PL0DB == 0 {
		pl.PL0DB = 128.95
	}
	if pl.Exponent == 0 {
		pl.Exponent = 2.32
	}
	if pl.ShadowDB == 0 && !pl.NoShadow {
		pl.ShadowDB = 3.57
	}
	if pl.FadingDB == 0 && !pl.NoFading {
		pl.FadingDB = 1
	}
	if pl.NoShadow {
		pl.ShadowDB = 0
	}
	if pl.NoFading {
		pl.FadingDB = 0
	}
	if r.CaptureDB == 0 {
		r.CaptureDB = 6
	}
	m.mod = airtime.Modulation{
		SF:              r.SF,
		BandwidthHz:     int(math.Round(r.BandwidthKHz * 1000)),
		CodingRate:      r.CodingRate,
		PreambleSymbols: r.Preamble,
	}
	if err := m.mod.Validate(); err != nil {
		return nil, fmt.Errorf("%w: radio: %v", ErrScenario, err)
	}
	region, err := dutycycle.Lookup(r.Region)
	if err != nil {
		return nil, fmt.Errorf("%w: radio: %v", ErrScenario, err)
	}
	m.region = region.Name
	m.freqHz = uint32(math.Round(r.FrequencyMHz * 1e6))
	m.band, err = region.SubBand(m.freqHz, m.mod.BandwidthHz)
	if err != nil {
		return nil, fmt.Errorf("%w: radio: %v", ErrScenario, err)
	}
	if r.DutyCycle > 0 {
		m.band.DutyCycle = r.DutyCycle
	}
	m.txPower = r.TxPowerDBm + 2*r.AntennaGainDB
	if r.SensitivityDBm != 0 {
		m.sens = r.SensitivityDBm
	} else if s, ok := sx1276Sensitivity(m.mod.SF, m.mod.BandwidthHz); ok {
		m.sens = s
	} else {
		return nil, fmt.Errorf("%w: radio: no datasheet sensitivity for SF%d/%d Hz: set sensitivity_dbm", ErrScenario, m.mod.SF, m.mod.BandwidthHz)
	}
	// Thermal noise -174 dBm/Hz over the bandwidth plus the receiver's
	// noise figure (SX1276 datasheet 4.1.1.2 uses the same expression).
	m.noiseFloor = -174 + 10*math.Log10(float64(m.mod.BandwidthHz)) + r.NoiseFigureDB
	m.snrMin = demodSNR(m.mod.SF)
	m.d0, m.pl0, m.exponent = pl.D0M, pl.PL0DB, pl.Exponent
	m.shadowSigma, m.fadingSigma = pl.ShadowDB, pl.FadingDB
	m.frameLoss = r.FrameLoss
	m.captureDB = r.CaptureDB
	m.captureLin = math.Pow(10, m.captureDB/10)
	m.csma = !r.NoCSMA
	m.overhear = r.Overhear
	m.noOverhear = r.NoOverhear
	// CSMA: a channel-activity check takes about two symbols on the SX127x
	// (datasheet 4.1.6); a slot of four symbols leaves room for the RX-to-TX
	// turnaround. The window of 16 slots spreads contenders.
	m.slot = int64(4 * m.mod.SymbolTime())
	// Channel activity detection on the SX127x samples about two symbols of
	// preamble (datasheet 4.1.6): a frame younger than that goes unnoticed.
	m.senseDelay = int64(2 * m.mod.SymbolTime())
	m.cw = 16
	// RNode firmware adds one header byte on air (firmware-bridge/rnode
	// HeaderLen); meshd's LoRa link-layer header is part of the frame.
	m.header = 1
	if r.HeaderBytes != nil {
		m.header = *r.HeaderBytes
	}
	if m.header < 0 || m.header > 64 {
		return nil, fmt.Errorf("%w: radio.header_bytes %d", ErrScenario, m.header)
	}
	m.mtu = airtime.MaxPayload - m.header
	if r.MTU != 0 {
		if r.MTU < 1 || r.MTU > airtime.MaxPayload-m.header {
			return nil, fmt.Errorf("%w: radio.mtu %d not in 1..%d", ErrScenario, r.MTU, airtime.MaxPayload-m.header)
		}
		m.mtu = r.MTU
	}
	m.txLatency = int64(10 * time.Millisecond)
	if r.TxLatency != nil {
		m.txLatency = int64(*r.TxLatency)
	}
	m.maxQueueDelay = int64(2 * time.Minute)
	if r.MaxQueueDelay > 0 {
		m.maxQueueDelay = int64(r.MaxQueueDelay)
	}
	m.maxQueue = 64
	if r.MaxQueue > 0 {
		m.maxQueue = r.MaxQueue
	}
	m.idealMargin = 3
	if r.IdealMarginDB != nil {
		m.idealMargin = *r.IdealMarginDB
	}
	m.budgetBuckets = 60
	if r.BudgetBuckets > 0 {
		m.budgetBuckets = r.BudgetBuckets
	}
	m.audit = r.Audit
	// A signal this far below sensitivity cannot destroy a decodable frame
	// by itself (capture), even with fading on both: ignore it.
	m.interfFloor = m.sens - m.captureDB - 3*m.fadingSigma
	for n := range m.airtimes {
		d, err := m.mod.TimeOnAir(n)
		if err != nil {
			return nil, fmt.Errorf("%w: radio: %v", ErrScenario, err)
		}
		m.airtimes[n] = int64(d)
	}
	return m, nil
}

// airtime of a frame whose transport payload is n bytes (header added).
func (m *radioModel) airtime(n int) int64 {
	n += m.header
	if n > airtime.MaxPayload {
		n = airtime.MaxPayload
	}
	return m.airtimes[n]
}

// pathLoss in dB at distance d metres, without shadowing: the log-distance
// model PL(d) = PL(d0) + 10 n log10(d/d0). Defaults from Petäjäjärvi et al.,
// "On the coverage of LPWANs: range evaluation and channel attenuation model
// for LoRa technology", ITST 2015 (868 MHz, Oulu): PL(1 km) = 128.95 dB,
// n = 2.32, shadowing sigma 7.8 dB.
func (m *radioModel) pathLoss(d float64) float64 {
	if d < 1 {
		d = 1
	}
	return m.pl0 + 10*m.exponent*math.Log10(d/m.d0)
}

// rangeM is the distance at which the mean received power equals the
// sensitivity plus margin (no shadowing).
func (m *radioModel) rangeM(margin float64) float64 {
	maxPL := m.txPower - m.sens - margin
	return m.d0 * math.Pow(10, (maxPL-m.pl0)/(10*m.exponent))
}

// decodable reports whether a frame received at rssi dBm can be demodulated
// on its own (no interference).
func (m *radioModel) decodable(rssi float64) bool {
	return rssi >= m.sens && rssi-m.noiseFloor >= m.snrMin
}

// ideal reports whether a link with mean received power rssi is an edge of
// the ideal graph.
func (m *radioModel) ideal(rssi float64) bool {
	return m.decodable(rssi - m.idealMargin)
}

func dBmToMW(dbm float64) float64 { return math.Pow(10, dbm/10) }
