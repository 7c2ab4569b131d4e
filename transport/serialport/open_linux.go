//go:build linux

package serialport

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// bauds maps the rates meshd may use to their termios constants.
var bauds = map[int]uint32{
	9600: unix.B9600, 19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600,
	115200: unix.B115200, 230400: unix.B230400, 460800: unix.B460800, 921600: unix.B921600,
}

// Open opens the tty at path for exclusive use, raw, 8 data bits, no
// parity, one stop bit, no flow control, at baud. The file is in the
// runtime's poller: Close from another goroutine ends a blocked Read
// (with os.ErrClosed), and an unplugged device ends it with an error
// (EIO) or io.EOF.
func Open(path string, baud int) (*os.File, error) {
	speed, ok := bauds[baud]
	if !ok {
		return nil, fmt.Errorf("%w: %d baud", ErrUnsupported, baud)
	}
	// O_NONBLOCK: open does not wait for carrier, and os.NewFile then
	// registers the descriptor with the poller.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := configure(fd, speed); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "configure", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func configure(fd int, speed uint32) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	makeRaw(t, speed)
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return err
	}
	// Exclusive: a second opener (another meshd, a terminal program) gets
	// EBUSY instead of stealing bytes. Best effort, as go.bug.st/serial.
	_ = unix.IoctlSetInt(fd, unix.TIOCEXCL, 0)
	return nil
}

// makeRaw is cfmakeraw plus 8N1, no RTS/CTS, receiver on, modem lines
// ignored, the speed, and reads returning as soon as a byte is there.
func makeRaw(t *unix.Termios, speed uint32) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY | unix.INPCK
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CSTOPB | unix.CRTSCTS | unix.CBAUD | unix.CBAUDEX
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | speed
	t.Ispeed, t.Ospeed = speed, speed
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
}

// probe opens a port briefly to see whether it is real: placeholder UARTs
// (ttyS31 on a board with two) fail the open or the termios query.
func probe(path string) bool {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	_, err = unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
