package node

import (
	"fmt"
	"strings"
	"time"

	"github.com/openmeshd/meshd/transport/lora"
	"github.com/openmeshd/meshd/transport/lora/airtime"
	"github.com/openmeshd/meshd/transport/lora/dutycycle"
)

// defaultChannels is the mesh channel meshd uses in a region when
// lora.frequency is not set: a channel inside the sub-band with the most
// generous duty cycle, so that nodes configured with only a region meet.
var defaultChannels = map[string]uint32{
	"EU868": 869_525_000, // g3/h1.6: 869.4–869.65 MHz, 10 %
	"EU433": 433_775_000, // 433.05–434.79 MHz, 10 %
	"US915": 906_875_000, // no duty cycle, 400 ms dwell
	"AU915": 916_800_000,
}

// loraRadio is the LoRa configuration resolved against the region.
type loraRadio struct {
	opts      lora.Options
	mod       airtime.Modulation
	dutyCycle float64
}

func (n *Node) resolveLoRa() (*loraRadio, error) {
	c := n.cfg.LoRa
	if c.Device == "" {
		return nil, nil
	}
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: lora: %s", ErrConfig, fmt.Sprintf(f, a...)) }
	r := &loraRadio{}
	r.opts = lora.Options{Port: c.Device, Self: n.id.Address().Hint(), Region: strings.ToUpper(c.Region),
		BandwidthHz: uint32(c.Bandwidth), SF: c.SF, CR: c.CR, TxPowerDBm: c.TxPower, FrequencyHz: uint32(c.Frequency),
		Logger: n.log.With("component", "lora")}
	if r.opts.BandwidthHz == 0 {
		r.opts.BandwidthHz = 125_000
	}
	if r.opts.SF == 0 {
		r.opts.SF = 9
	}
	if r.opts.CR == 0 {
		r.opts.CR = 5
	}
	if key, err := n.cfg.NetworkKeyBytes(); err == nil && key != nil {
		r.opts.NetworkKey = key
	}
	r.mod = airtime.Modulation{SF: r.opts.SF, BandwidthHz: int(r.opts.BandwidthHz), CodingRate: r.opts.CR}
	if err := r.mod.Validate(); err != nil {
		return nil, bad("%v", err)
	}
	if r.opts.Region == "" {
		// Listen only: the transport refuses to transmit and says why.
		n.log.Warn("lora.region is not set: the radio will listen but never transmit (set it to your regulatory region, e.g. EU868)")
		if r.opts.FrequencyHz == 0 {
			return nil, bad("lora.frequency is required when lora.region is not set")
		}
		return r, nil
	}
	region, err := dutycycle.Lookup(r.opts.Region)
	if err != nil {
		return nil, bad("%v", err)
	}
	if r.opts.FrequencyHz == 0 {
		f, ok := defaultChannels[region.Name]
		if !ok {
			return nil, bad("lora.frequency is required in region %s (no default mesh channel)", region.Name)
		}
		r.opts.FrequencyHz = f
	}
	band, err := region.SubBand(r.opts.FrequencyHz, int(r.opts.BandwidthHz))
	if err != nil {
		return nil, bad("%v", err)
	}
	r.dutyCycle = band.DutyCycle
	if c.DutyCycle > 0 && (band.DutyCycle == 0 || c.DutyCycle < band.DutyCycle) {
		r.dutyCycle = c.DutyCycle
	}
	return r, nil
}

// Airtime is the time on air of an n-byte frame, for the router's pacing.
func (r *loraRadio) Airtime(n int) time.Duration {
	d, err := r.mod.TimeOnAir(n)
	if err != nil {
		return time.Second
	}
	return d
}
