package serialport

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPortName(t *testing.T) {
	for name, want := range map[string]bool{
		"ttyUSB0": true, "ttyACM12": true, "ttyS3": true, "ttyAMA0": true, "rfcomm1": true, "ttymxc2": true, "ttyO1": true, "ttyHS0": true,
		"ttyUSB": false, "ttyUSB1234": false, "ttyUSBa": false, "tty0": false, "tty": false, "ttyp0": false, "console": false,
		"ttyACM1x": false, "xttyUSB0": false, "ttyS-1": false,
	} {
		if got := portName(name); got != want {
			t.Errorf("portName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestList builds a /dev and a sysfs tree as Linux lays them out for a
// CDC-ACM radio, a usb-serial adapter (CP210x), a platform UART, a
// placeholder UART and a non-serial tty.
func TestList(t *testing.T) {
	root := t.TempDir()
	dev, sys := filepath.Join(root, "dev"), filepath.Join(root, "sys")
	mk := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	mk(dev)
	for _, n := range []string{"ttyACM0", "ttyUSB0", "ttyS0", "ttyS1", "tty0", "null"} {
		write(filepath.Join(dev, n), "")
	}
	bus := filepath.Join(sys, "bus")
	mk(filepath.Join(bus, "usb"))
	mk(filepath.Join(bus, "usb-serial"))
	mk(filepath.Join(bus, "platform"))
	// CDC-ACM: tty → interface 1-1:1.0 (subsystem usb), device 1-1.
	usb1 := filepath.Join(sys, "devices", "usb1", "1-1")
	mk(filepath.Join(usb1, "1-1:1.0"))
	write(filepath.Join(usb1, "idVendor"), "303A\n")
	write(filepath.Join(usb1, "idProduct"), "1001\n")
	write(filepath.Join(usb1, "serial"), "F4:12:FA:00:11:22\n")
	write(filepath.Join(usb1, "product"), "T-Beam Supreme\n")
	link(filepath.Join(bus, "usb"), filepath.Join(usb1, "1-1:1.0", "subsystem"))
	// usb-serial: tty → ttyUSB0 port (subsystem usb-serial) → interface → device 1-2.
	usb2 := filepath.Join(sys, "devices", "usb1", "1-2")
	port := filepath.Join(usb2, "1-2:1.0", "ttyUSB0")
	mk(port)
	write(filepath.Join(usb2, "idVendor"), "10c4\n")
	write(filepath.Join(usb2, "idProduct"), "ea60\n")
	link(filepath.Join(bus, "usb-serial"), filepath.Join(port, "subsystem"))
	// Platform UART.
	uart := filepath.Join(sys, "devices", "platform", "serial8250")
	mk(uart)
	link(filepath.Join(bus, "platform"), filepath.Join(uart, "subsystem"))

	tty := filepath.Join(sys, "class", "tty")
	for n, target := range map[string]string{"ttyACM0": filepath.Join(usb1, "1-1:1.0"), "ttyUSB0": port, "ttyS0": uart, "ttyS1": uart} {
		mk(filepath.Join(tty, n))
		link(target, filepath.Join(tty, n, "device"))
	}
	probe := func(p string) bool { return filepath.Base(p) != "ttyS1" } // ttyS1 is a placeholder

	got, err := list(dev, tty, probe)
	if err != nil {
		t.Fatal(err)
	}
	want := []Port{
		{Path: filepath.Join(dev, "ttyACM0"), USB: true, VID: "303a", PID: "1001", Serial: "F4:12:FA:00:11:22", Product: "T-Beam Supreme"},
		{Path: filepath.Join(dev, "ttyS0")},
		{Path: filepath.Join(dev, "ttyUSB0"), USB: true, VID: "10c4", PID: "ea60"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("list:\n got %+v\nwant %+v", got, want)
	}
	if _, err := list(filepath.Join(root, "absent"), tty, probe); err == nil {
		t.Error("a missing /dev is not an error")
	}
}

func TestListHost(t *testing.T) {
	// Whatever this machine has: no error, and every path is a serial name.
	ports, err := List()
	if err != nil {
		t.Skip("no /dev:", err)
	}
	for _, p := range ports {
		if !portName(filepath.Base(p.Path)) {
			t.Errorf("listed %s", p.Path)
		}
	}
}

func TestReadLineUntrusted(t *testing.T) {
	// A device's product string with an escape sequence, a tab and a
	// second line, and one longer than the 256 bytes read.
	dir := t.TempDir()
	p := filepath.Join(dir, "product")
	if err := os.WriteFile(p, []byte("Evil\x1b[2J\tRadio\nsecond line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := readLine(p), "Evil?[2J?Radio"; got != want {
		t.Errorf("readLine = %q, want %q", got, want)
	}
	if err := os.WriteFile(p, []byte(strings.Repeat("x", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readLine(p); len(got) != 256 {
		t.Errorf("readLine of a long attribute: %d bytes, want 256", len(got))
	}
	if got := readLine(filepath.Join(dir, "absent")); got != "" {
		t.Errorf("readLine of a missing attribute = %q", got)
	}
}
