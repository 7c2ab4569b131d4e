package rnode_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/openmeshd/meshd/firmware-bridge/kiss"
	"github.com/openmeshd/meshd/firmware-bridge/rnode"
	"github.com/openmeshd/meshd/firmware-bridge/vradio"
	"github.com/openmeshd/meshd/transport/lora/airtime"
)

func TestModulationPreamble(t *testing.T) {
	for _, c := range []struct{ sf, bw, want int }{
		{7, 125000, 24}, {9, 125000, 18}, {11, 250000, 18}, {7, 500000, 94}, {5, 500000, 94}, {7, 250000, 47}, {6, 500000, 47},
	} {
		if got := rnode.Modulation(c.sf, c.bw, 5, airtime.SX126x).PreambleSymbols; got != c.want {
			t.Errorf("SF%d BW%d: preamble %d, want %d", c.sf, c.bw, got, c.want)
		}
	}
}

func openPort(t *testing.T, path string) serial.Port {
	t.Helper()
	p, err := serial.Open(path, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDetectConfigureExchange(t *testing.T) {
	air, err := vradio.New(vradio.Options{N: 2, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go air.Run(ctx)
	got := make(chan []byte, 4)
	var sigs []rnode.Signal
	devs := make([]*rnode.Device, 2)
	for i, path := range air.Paths() {
		i := i
		devs[i] = rnode.New(openPort(t, path), rnode.Options{OnFrame: func(b []byte, s rnode.Signal) {
			if i == 1 {
				sigs = append(sigs, s)
				got <- b
			}
		}})
		go devs[i].Run(ctx)
		info, err := devs[i].Detect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.FirmwareMajor != 1 || info.PlatformName != "esp32" || info.MCUName != "esp32" {
			t.Fatalf("info %+v", info)
		}
		txp, err := devs[i].Configure(ctx, rnode.Config{FrequencyHz: 869525000, BandwidthHz: 250000, TxPowerDBm: 30, SF: 7, CR: 5,
			ShortTermAirtimeLimit: 10, LongTermAirtimeLimit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if txp != 22 {
			t.Fatalf("tx power not clamped: %d", txp)
		}
	}
	msg := []byte{0xC0, 0xDB, 0xDC, 0xDD, 1, 2, 3}
	if err := devs[0].Send(msg); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, msg) {
			t.Fatalf("got %x", b)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("frame not received")
	}
	if !sigs[0].Valid || sigs[0].RSSI != -80 || sigs[0].SNR != 8 {
		t.Fatalf("signal %+v", sigs[0])
	}
	if err := devs[0].Send(make([]byte, 255)); !errors.Is(err, rnode.ErrTooLarge) {
		t.Fatal(err)
	}
	// Unplug: Run returns an error, the device reports closed.
	air.Unplug(0)
	if err := devs[0].Send(msg); err == nil {
		time.Sleep(100 * time.Millisecond)
		if err := devs[0].Send(msg); err == nil {
			t.Fatal("send after unplug succeeded")
		}
	}
}

// silentPort accepts writes and never answers.
type silentPort struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func newSilent() *silentPort {
	r, w := io.Pipe()
	return &silentPort{r, w}
}
func (s *silentPort) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *silentPort) Write(p []byte) (int, error) { return len(p), nil }
func (s *silentPort) Close() error                { s.w.Close(); return s.r.Close() }

func TestNeverAnswersDetect(t *testing.T) {
	p := newSilent()
	d := rnode.New(p, rnode.Options{Timeout: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	if _, err := d.Detect(ctx); !errors.Is(err, rnode.ErrNotRNode) {
		t.Fatal(err)
	}
}

// scripted is a port whose reads return a fixed byte stream.
type scripted struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (s *scripted) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *scripted) Write(p []byte) (int, error) { return s.out.Write(p) }
func (s *scripted) Close() error                { return nil }

func TestReportsAndBadInput(t *testing.T) {
	var in []byte
	in = append(in, 0x01, 0x02, 0x03) // noise
	in = kiss.Append(in, rnode.CmdStatRSSI, []byte{157 - 100})
	in = kiss.Append(in, rnode.CmdStatSNR, []byte{0xF6}) // -10 * 0.25 = -2.5
	in = kiss.Append(in, rnode.CmdData, []byte("hi"))
	in = kiss.Append(in, rnode.CmdStatCHTM, []byte{0, 100, 0, 50, 0x03, 0xE8, 0, 10, 157 - 90, 157 - 120, 0xFF})
	in = kiss.Append(in, rnode.CmdError, []byte{rnode.ErrorQueueFull})
	in = kiss.Append(in, 0x7A, []byte{1, 2})      // unknown command
	in = kiss.Append(in, rnode.CmdFrequency, nil) // truncated
	in = append(in, kiss.FEND, 0)
	in = append(in, bytes.Repeat([]byte{0x55}, 2000)...) // oversized
	in = append(in, kiss.FEND)
	var frames [][]byte
	var sig rnode.Signal
	var cs rnode.ChannelStats
	var errs []byte
	d := rnode.New(&scripted{r: bytes.NewReader(in)}, rnode.Options{
		OnFrame:        func(b []byte, s rnode.Signal) { frames = append(frames, b); sig = s },
		OnChannelStats: func(c rnode.ChannelStats) { cs = c },
		OnError:        func(c byte) { errs = append(errs, c) },
	})
	if err := d.Run(context.Background()); err != io.EOF {
		t.Fatal(err)
	}
	st := d.Stats()
	if len(frames) != 1 || sig.RSSI != -100 || sig.SNR != -2.5 || !sig.Valid {
		t.Fatalf("frames %q sig %+v", frames, sig)
	}
	if cs.AirtimeShort != 1 || cs.AirtimeLong != 0.5 || cs.ChannelLoadShort != 10 || cs.CurrentRSSI != -90 || cs.NoiseFloor != -120 || cs.Interference != 0 {
		t.Fatalf("channel stats %+v", cs)
	}
	if len(errs) != 1 || st.Errors[rnode.ErrorQueueFull] != 1 || st.Unknown != 1 || st.Short != 1 || st.KISS.Oversized != 1 || st.KISS.Noise != 3 {
		t.Fatalf("stats %+v errs %v", st, errs)
	}
}

func FuzzDevice(f *testing.F) {
	f.Add(kiss.Append(kiss.Append(nil, rnode.CmdStatRSSI, []byte{50}), rnode.CmdData, []byte("x")))
	f.Add(kiss.Append(nil, rnode.CmdStatCHTM, []byte{1, 2, 3}))
	f.Add(kiss.Append(nil, rnode.CmdDetect, []byte{rnode.DetectResp}))
	f.Add([]byte{kiss.FEND, kiss.FESC, kiss.FEND, 0x90})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := rnode.New(&scripted{r: bytes.NewReader(in)}, rnode.Options{
			OnFrame: func(b []byte, s rnode.Signal) {
				if len(b) > 512 {
					t.Fatal("oversized frame delivered")
				}
			},
		})
		d.Run(context.Background())
	})
}
