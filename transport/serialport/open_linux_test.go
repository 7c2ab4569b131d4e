//go:build linux

package serialport

import (
	"errors"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and the path of its slave.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skip("no /dev/ptmx:", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(mfd)
		t.Fatal(err)
	}
	m := os.NewFile(uintptr(mfd), "ptmx")
	t.Cleanup(func() { m.Close() })
	return m, "/dev/pts/" + strconv.Itoa(n)
}

func TestOpenPTY(t *testing.T) {
	m, slave := openPTY(t)
	p, err := Open(slave, 115200)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// Raw 8N1 at 115200, no flow control, byte-at-a-time reads.
	tio, err := unix.IoctlGetTermios(int(p.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) != 0 || tio.Oflag&unix.OPOST != 0 || tio.Iflag&(unix.ICRNL|unix.IXON) != 0 {
		t.Errorf("not raw: iflag %#x oflag %#x lflag %#x", tio.Iflag, tio.Oflag, tio.Lflag)
	}
	if tio.Cflag&unix.CSIZE != unix.CS8 || tio.Cflag&(unix.PARENB|unix.CSTOPB|unix.CRTSCTS) != 0 || tio.Cflag&unix.CBAUD != unix.B115200 {
		t.Errorf("cflag %#x: want CS8, no parity, one stop bit, no RTS/CTS, B115200", tio.Cflag)
	}
	if tio.Cc[unix.VMIN] != 1 || tio.Cc[unix.VTIME] != 0 {
		t.Errorf("VMIN %d VTIME %d", tio.Cc[unix.VMIN], tio.Cc[unix.VTIME])
	}

	// Bytes both ways, unchanged (KISS frames carry CR, LF, 0x03, 0x11...).
	frame := []byte{0xc0, 0x00, '\r', '\n', 0x03, 0x11, 0x13, 0x7f, 0xc0}
	if _, err := m.Write(frame); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(p, got); err != nil || string(got) != string(frame) {
		t.Fatalf("port read %x, %v; want %x", got, err, frame)
	}
	if _, err := p.Write(frame); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(m, got); err != nil || string(got) != string(frame) {
		t.Fatalf("master read %x, %v; want %x", got, err, frame)
	}

	// A second opener is refused while the port is open (TIOCEXCL; root
	// may override it, so only checked for other users).
	if os.Geteuid() != 0 {
		if q, err := Open(slave, 115200); err == nil {
			q.Close()
			t.Error("second open succeeded")
		}
	}

	// Close from another goroutine ends a blocked Read.
	done := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 16))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	p.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("read after close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Read")
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("/dev/null", 12345); !errors.Is(err, ErrUnsupported) {
		t.Errorf("odd baud: %v", err)
	}
	if _, err := Open("/nonexistent/tty", 115200); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := Open("/dev/null", 115200); err == nil {
		t.Error("/dev/null opened as a serial port")
	}
}

func TestHangupEndsRead(t *testing.T) {
	// The radio unplugged: the master side goes away; a blocked Read must
	// end with an error (EIO) or EOF, not hang.
	m, slave := openPTY(t)
	p, err := Open(slave, 115200)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 16))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	m.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("read returned no error after hangup")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hangup did not end a blocked Read")
	}
}
