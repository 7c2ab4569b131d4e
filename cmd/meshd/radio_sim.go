//go:build !router

package main

import (
	"context"
	"fmt"

	"github.com/openmeshd/meshd/firmware-bridge/vradio"
)

// radioSim is `meshd radio sim`: virtual RNode modems on one simulated air,
// a development and test tool, so only in the full build (the router build
// saves its 64 KiB: docs/size.md).
func radioSim(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "radio sim")
	n := fs.Int("n", 3, "number of virtual RNode modems")
	loss := fs.Float64("loss", 0, "frame loss probability on every link (0..1)")
	dir := fs.String("dir", "", "directory for the stable symlinks rnode0..N-1 (default: a new temporary directory)")
	seed := fs.Int64("seed", 1, "random seed for loss and CSMA jitter")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *loss < 0 || *loss > 1 {
		return fmt.Errorf("%w: -loss %v not in 0..1", errUsage, *loss)
	}
	air, err := vradio.New(vradio.Options{N: *n, Dir: *dir, Loss: *loss, Seed: *seed})
	if err != nil {
		return err
	}
	for i, p := range air.Paths() {
		fmt.Fprintf(s.out, "%s -> %s\n", p, air.PTY(i))
	}
	fmt.Fprintln(s.err, "virtual RNode modems running; stop with Ctrl-C")
	err = air.Run(ctx)
	st := air.Stats()
	fmt.Fprintf(s.err, "air: %d transmissions, %d delivered, %d lost, %d collisions, %d half-duplex misses, %d dropped\n",
		st.Transmissions, st.Delivered, st.Lost, st.Collisions, st.HalfDuplex, st.Dropped)
	return err
}
