//go:build router

package main

import (
	"context"
	"errors"
)

// errNoRadioSim: the router build leaves the virtual radio out.
var errNoRadioSim = errors.New("meshd radio sim is not in the router build (-tags router): it is a development tool (use a full build)")

func radioSim(ctx context.Context, s stdio, args []string) error { return errNoRadioSim }
