// Package dutycycle knows the regulatory limits of the LoRa bands (regions
// and their sub-bands) and keeps a transmitter within them: a Budget answers
// "may I put this much airtime on the air now, at this priority, and if not,
// when", accounting over a rolling window (one hour in Europe) in bounded
// memory.
//
// It is sans-IO: no clock reads, timers, goroutines or I/O. Every call takes
// the current time, so the LoRa transport drives it with the wall clock and
// meshsim with virtual time. Sources for every number are in docs/lora.md.
package dutycycle

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// SubBand is a frequency range with one set of rules.
type SubBand struct {
	// Name is the regulation's or LoRaWAN's name for the band ("g1", "h1.5").
	Name string
	// LowHz and HighHz bound the band; a channel must lie entirely inside.
	LowHz, HighHz uint32
	// DutyCycle is the largest fraction of Window a transmitter may be on
	// the air (0.01 = 1%). Zero means no duty-cycle limit.
	DutyCycle float64
	// Window is the observation period of DutyCycle. Zero means one hour.
	Window time.Duration
	// MaxDwell is the longest single transmission allowed. Zero: no limit.
	MaxDwell time.Duration
	// MaxPowerDBm is the radiated power limit in dBm, as PowerRef says.
	MaxPowerDBm float64
	// PowerRef says how MaxPowerDBm is measured: "ERP", "EIRP" or
	// "conducted".
	PowerRef string
}

// Contains reports whether a channel centred on freqHz, bandwidthHz wide,
// lies entirely inside the sub-band.
func (s SubBand) Contains(freqHz uint32, bandwidthHz int) bool {
	half := uint64(bandwidthHz) / 2
	lo, hi := uint64(freqHz)-half, uint64(freqHz)+half
	if uint64(freqHz) < half {
		return false
	}
	return lo >= uint64(s.LowHz) && hi <= uint64(s.HighHz)
}

func (s SubBand) window() time.Duration {
	if s.Window <= 0 {
		return time.Hour
	}
	return s.Window
}

// Region is a regulatory domain and its sub-bands.
type Region struct {
	// Name is the configuration name: "EU868", "US915", ...
	Name string
	// Summary is one line for humans.
	Summary string
	// Bands are the sub-bands, in ascending frequency, not overlapping.
	Bands []SubBand
}

// Errors.
var (
	// ErrUnknownRegion is returned for a region name this package lacks.
	ErrUnknownRegion = errors.New("dutycycle: unknown region")
	// ErrOutOfBand is returned when a channel is in no sub-band of its region.
	ErrOutOfBand = errors.New("dutycycle: channel outside every sub-band of the region")
	// ErrDwell is returned for a single transmission longer than the
	// sub-band's maximum dwell time: it can never be sent.
	ErrDwell = errors.New("dutycycle: transmission longer than the maximum dwell time")
	// ErrTooLong is returned for a single transmission larger than what the
	// priority may ever use in one window: it can never be sent.
	ErrTooLong = errors.New("dutycycle: transmission larger than the whole budget")
	// ErrInvalid is returned for bad options.
	ErrInvalid = errors.New("dutycycle: invalid options")
)

// SubBand returns the sub-band that holds a channel centred on freqHz and
// bandwidthHz wide.
func (r Region) SubBand(freqHz uint32, bandwidthHz int) (SubBand, error) {
	for _, b := range r.Bands {
		if b.Contains(freqHz, bandwidthHz) {
			return b, nil
		}
	}
	return SubBand{}, fmt.Errorf("%w: %s has no sub-band for %.4f MHz with %d kHz bandwidth",
		ErrOutOfBand, r.Name, float64(freqHz)/1e6, bandwidthHz/1000)
}

const (
	mhz = 1000000
	khz = 1000
)

// regions returns the built-in table. Sources: docs/lora.md, section
// "Regions". It is a function, not a package variable, so nobody can mutate
// it.
func regions() []Region {
	return []Region{
		{
			Name:    "EU868",
			Summary: "Europe 863-870 MHz SRD (ETSI EN 300 220-2, ERC/REC 70-03 Annex 1), duty cycle per sub-band over one hour",
			Bands: []SubBand{
				{Name: "h1.3", LowHz: 863 * mhz, HighHz: 865 * mhz, DutyCycle: 0.001, MaxPowerDBm: 14, PowerRef: "ERP"},
				{Name: "g", LowHz: 865 * mhz, HighHz: 868 * mhz, DutyCycle: 0.01, MaxPowerDBm: 14, PowerRef: "ERP"},
				{Name: "g1", LowHz: 868 * mhz, HighHz: 868*mhz + 600*khz, DutyCycle: 0.01, MaxPowerDBm: 14, PowerRef: "ERP"},
				{Name: "g2", LowHz: 868*mhz + 700*khz, HighHz: 869*mhz + 200*khz, DutyCycle: 0.001, MaxPowerDBm: 14, PowerRef: "ERP"},
				{Name: "g3", LowHz: 869*mhz + 400*khz, HighHz: 869*mhz + 650*khz, DutyCycle: 0.10, MaxPowerDBm: 27, PowerRef: "ERP"},
				{Name: "g4", LowHz: 869*mhz + 700*khz, HighHz: 870 * mhz, DutyCycle: 0.01, MaxPowerDBm: 14, PowerRef: "ERP"},
			},
		},
		{
			Name:    "EU433",
			Summary: "Europe 433.05-434.79 MHz SRD (ERC/REC 70-03 Annex 1), 10% duty cycle over one hour at 10 mW ERP",
			Bands: []SubBand{
				{Name: "433", LowHz: 433*mhz + 50*khz, HighHz: 434*mhz + 790*khz, DutyCycle: 0.10, MaxPowerDBm: 10, PowerRef: "ERP"},
			},
		},
		{
			Name:    "US915",
			Summary: "USA 902-928 MHz ISM (FCC 47 CFR 15.247): no duty cycle, 400 ms dwell time per transmission",
			Bands: []SubBand{
				{Name: "902-928", LowHz: 902 * mhz, HighHz: 928 * mhz, MaxDwell: 400 * time.Millisecond, MaxPowerDBm: 30, PowerRef: "conducted"},
			},
		},
		{
			Name:    "AU915",
			Summary: "Australia 915-928 MHz (ACMA LIPD Class Licence 2015): no duty cycle, 400 ms dwell time per transmission",
			Bands: []SubBand{
				{Name: "915-928", LowHz: 915 * mhz, HighHz: 928 * mhz, MaxDwell: 400 * time.Millisecond, MaxPowerDBm: 30, PowerRef: "EIRP"},
			},
		},
		{
			Name:    "AS923",
			Summary: "Asia 915-928 MHz (LoRaWAN AS923 plans; national rules vary): 400 ms dwell time, 1% duty cycle over one hour (conservative)",
			Bands: []SubBand{
				{Name: "915-928", LowHz: 915 * mhz, HighHz: 928 * mhz, DutyCycle: 0.01, MaxDwell: 400 * time.Millisecond, MaxPowerDBm: 16, PowerRef: "EIRP"},
			},
		},
		{
			Name:    "IN865",
			Summary: "India 865-867 MHz (licence-exempt since 2005, amended by G.S.R. 36(E) of 2007): no duty cycle, 4 W EIRP",
			Bands: []SubBand{
				{Name: "865-867", LowHz: 865 * mhz, HighHz: 867 * mhz, MaxPowerDBm: 36, PowerRef: "EIRP"},
			},
		},
	}
}

// Regions returns the built-in regions sorted by name. The caller owns the
// result.
func Regions() []Region {
	rs := regions()
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	return rs
}

// Lookup returns the built-in region with that name (case-insensitive).
func Lookup(name string) (Region, error) {
	for _, r := range regions() {
		if strings.EqualFold(r.Name, name) {
			return r, nil
		}
	}
	names := make([]string, 0, 8)
	for _, r := range Regions() {
		names = append(names, r.Name)
	}
	return Region{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownRegion, name, strings.Join(names, ", "))
}
