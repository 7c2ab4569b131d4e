package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"runtime/debug"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/node"
)

// dataDirFlag registers --data with the platform default.
func dataDirFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "data", "", "data directory (default: $MESHD_DATA, /var/lib/meshd as root, else ~/.local/share/meshd)")
}

func resolveDataDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	return node.DefaultDataDir()
}

func cmdID(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "id")
	var dir string
	var asJSON bool
	dataDirFlag(fs, &dir)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := resolveDataDir(dir)
	if err != nil {
		return err
	}
	if err := node.EnsureDataDir(dir); err != nil {
		return err
	}
	path := filepath.Join(dir, node.IdentityFile)
	id, created, err := envelope.LoadOrCreateIdentity(path, rand.Reader)
	if err != nil {
		return err
	}
	defer id.Destroy()
	pub := id.PublicKey()
	if asJSON {
		return json.NewEncoder(s.out).Encode(map[string]any{
			"address": id.Address().String(), "public_key": pub.String(),
			"fingerprint": pub.Fingerprint(), "key_file": path, "created": created,
		})
	}
	if created {
		fmt.Fprintf(s.err, "created a new identity in %s\n", path)
	}
	fmt.Fprintf(s.out, "address:     %s\n", id.Address())
	fmt.Fprintf(s.out, "public key:  %s\n", pub)
	fmt.Fprintf(s.out, "fingerprint: %s\n", pub.Fingerprint())
	return nil
}

func cmdVersion(ctx context.Context, s stdio, args []string) error {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, st := range bi.Settings {
			if st.Key == "vcs.revision" && v == "dev" {
				v += "+" + st.Value
			}
		}
		fmt.Fprintf(s.out, "meshd %s (%s)\n", v, bi.GoVersion)
		return nil
	}
	fmt.Fprintf(s.out, "meshd %s\n", v)
	return nil
}
