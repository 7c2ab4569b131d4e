// Package serialport opens serial ports (raw, 8N1, no flow control) and
// lists them with their USB identity, for the RNode LoRa radios.
//
// It replaces go.bug.st/serial, whose Linux code compiles a regular
// expression at package initialisation: that alone linked the regexp
// engine into the router build, 320 KiB of its 8 MB budget on mipsle
// (docs/size.md). What meshd needs is small: open a tty at 115200 baud,
// read and write it, close it from another goroutine, and list ports.
//
// Linux only (the targets are OpenWrt and Linux); elsewhere Open and List
// return ErrUnsupported.
package serialport

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
)

// ErrUnsupported: no serial port support on this OS, or a baud rate the
// termios interface has no constant for.
var ErrUnsupported = errors.New("serialport: unsupported")

// Port describes a serial port found by List.
type Port struct {
	Path    string // /dev/ttyUSB0
	USB     bool   // a USB device (usb-serial adapter or CDC-ACM)
	VID     string // USB vendor id, 4 lower-case hex digits
	PID     string // USB product id
	Serial  string // USB serial number, if the device has one
	Product string // USB product string, if the device has one
}

// namePrefixes are the tty names of real serial ports, each followed by
// one to three digits (as go.bug.st/serial's filter: UARTs, high-speed
// UARTs, USB serial adapters, CDC-ACM, AMBA, Bluetooth RFCOMM, OMAP, i.MX).
var namePrefixes = []string{"ttyS", "ttyHS", "ttyUSB", "ttyACM", "ttyAMA", "rfcomm", "ttyO", "ttymxc"}

// portName reports whether a /dev entry names a serial port.
func portName(name string) bool {
	for _, p := range namePrefixes {
		digits, ok := strings.CutPrefix(name, p)
		if !ok || len(digits) < 1 || len(digits) > 3 {
			continue
		}
		if strings.Trim(digits, "0123456789") == "" {
			return true
		}
	}
	return false
}

// List returns the serial ports, sorted by path.
func List() ([]Port, error) { return list("/dev", "/sys/class/tty", probe) }

// list is List over other directories (tests); probe says whether a
// placeholder-prone port (ttyS, ttyHS) is real.
func list(dev, sysTTY string, probe func(path string) bool) ([]Port, error) {
	entries, err := os.ReadDir(dev)
	if err != nil {
		return nil, err
	}
	var out []Port
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !portName(name) {
			continue
		}
		path := filepath.Join(dev, name)
		if (strings.HasPrefix(name, "ttyS") || strings.HasPrefix(name, "ttyHS")) && !probe(path) {
			continue // a UART the kernel reserves a name for but that is not there
		}
		p := Port{Path: path}
		usbIdentity(filepath.Join(sysTTY, name, "device"), &p)
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// usbIdentity fills p's USB fields from sysfs: the tty's device is a USB
// interface (CDC-ACM: subsystem "usb") whose parent is the USB device, or
// a usb-serial port whose grandparent is.
func usbIdentity(devLink string, p *Port) {
	dev, err := filepath.EvalSymlinks(devLink)
	if err != nil {
		return // not a device-backed tty
	}
	sub, err := filepath.EvalSymlinks(filepath.Join(dev, "subsystem"))
	if err != nil {
		return
	}
	var usbDev string
	switch filepath.Base(sub) {
	case "usb":
		usbDev = filepath.Dir(dev)
	case "usb-serial":
		usbDev = filepath.Dir(filepath.Dir(dev))
	default:
		return
	}
	vid, pid := readLine(filepath.Join(usbDev, "idVendor")), readLine(filepath.Join(usbDev, "idProduct"))
	if vid == "" || pid == "" {
		return
	}
	p.USB, p.VID, p.PID = true, strings.ToLower(vid), strings.ToLower(pid)
	p.Serial = readLine(filepath.Join(usbDev, "serial"))
	p.Product = readLine(filepath.Join(usbDev, "product"))
}

// readLine returns a sysfs attribute's first line, "" if absent; at most
// 256 bytes are read (attributes are short). The serial and product
// strings come from the device itself: anything not printable (escape
// sequences, tabs that would break `meshd radio ports` columns) becomes '?'.
func readLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 256)
	n, _ := f.Read(buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, strings.TrimSpace(line))
}
