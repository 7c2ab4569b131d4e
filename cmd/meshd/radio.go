package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/openmeshd/meshd/transport/serialport"
)

// cmdRadio is `meshd radio list|sim`.
func cmdRadio(ctx context.Context, s stdio, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(s.err, "usage: meshd radio list [-json] | meshd radio sim -n N [-loss P] [-dir DIR] [-seed S]")
		return fmt.Errorf("%w: missing subcommand", errUsage)
	}
	switch args[0] {
	case "list":
		return radioList(s, args[1:])
	case "sim":
		return radioSim(ctx, s, args[1:])
	}
	return fmt.Errorf("%w: unknown radio subcommand %q (list, sim)", errUsage, args[0])
}

// usbChip is a USB VID:PID known to sit on LoRa boards that run RNode
// firmware. Sources in docs/firmware-bridge.md.
type usbChip struct {
	vid, pid string // lower-case hex; pid "" matches any
	name     string
}

func knownChips() []usbChip {
	return []usbChip{
		{"10c4", "ea60", "Silicon Labs CP210x (LilyGO T-Beam/LoRa32, Heltec LoRa32 V2/V3, RAK)"},
		{"1a86", "7523", "WCH CH340 (LilyGO LoRa32, clones)"},
		{"1a86", "55d4", "WCH CH9102 (LilyGO T-Beam v1.1+, T3S3)"},
		{"1a86", "55d3", "WCH CH343"},
		{"303a", "1001", "Espressif ESP32-S3/C3 native USB (LilyGO T-Beam Supreme, T3S3, Heltec V3 variants)"},
		{"303a", "", "Espressif native USB"},
		{"239a", "", "Adafruit nRF52 bootloader/CDC (RAK4631, nRF52840 boards)"},
		{"1915", "", "Nordic Semiconductor nRF52"},
		{"0403", "6001", "FTDI FT232R (generic serial adapter)"},
	}
}

func likelyRadio(vid, pid string) string {
	vid, pid = strings.ToLower(vid), strings.ToLower(pid)
	for _, c := range knownChips() {
		if c.vid == vid && (c.pid == "" || c.pid == pid) {
			return c.name
		}
	}
	return ""
}

type portInfo struct {
	Port        string `json:"port"`
	USB         bool   `json:"usb"`
	VID         string `json:"vid,omitempty"`
	PID         string `json:"pid,omitempty"`
	Serial      string `json:"serial,omitempty"`
	Product     string `json:"product,omitempty"`
	LikelyRadio bool   `json:"likely_radio"`
	Chip        string `json:"chip,omitempty"`
}

func radioList(s stdio, args []string) error {
	fs := newFlags(s, "radio list")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ports, err := serialport.List()
	if err != nil {
		return fmt.Errorf("listing serial ports: %w", err)
	}
	var out []portInfo
	for _, p := range ports {
		pi := portInfo{Port: p.Path, USB: p.USB, VID: p.VID, PID: p.PID, Serial: p.Serial, Product: p.Product}
		if p.USB {
			pi.Chip = likelyRadio(p.VID, p.PID)
			pi.LikelyRadio = pi.Chip != ""
		}
		out = append(out, pi)
	}
	if *asJSON {
		if out == nil {
			out = []portInfo{}
		}
		return json.NewEncoder(s.out).Encode(out)
	}
	if len(out) == 0 {
		fmt.Fprintln(s.out, "no serial ports found")
		return nil
	}
	w := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PORT\tVID:PID\tPRODUCT\tLIKELY RADIO")
	for _, p := range out {
		id := "-"
		if p.USB {
			id = p.VID + ":" + p.PID
		}
		likely := "no"
		if p.LikelyRadio {
			likely = "yes: " + p.Chip
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Port, id, dash(p.Product), likely)
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
