// Package node wires meshd together: identity, configuration, the data
// directory, transports, the router and the applications, and the local API.
// Only cmd/meshd imports it.
package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// IdentityFile is the key file's name inside the data directory.
const IdentityFile = "identity.key"

// DataDirEnv overrides the default data directory.
const DataDirEnv = "MESHD_DATA"

// DefaultDataDir picks the data directory when none is given: $MESHD_DATA,
// else /var/lib/meshd for root (a system service), else
// $XDG_DATA_HOME/meshd, else ~/.local/share/meshd.
func DefaultDataDir() (string, error) {
	if d := os.Getenv(DataDirEnv); d != "" {
		return d, nil
	}
	if os.Geteuid() == 0 {
		return "/var/lib/meshd", nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "meshd"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no data directory: set --data or %s: %w", DataDirEnv, err)
	}
	return filepath.Join(home, ".local", "share", "meshd"), nil
}

// EnsureDataDir creates dir (mode 0750) if needed and refuses one that other
// users may write to, since the node's keys and store live there.
func EnsureDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data directory %s: %w", dir, errors.New("not a directory"))
	}
	if st.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("data directory %s is writable by every user (mode %04o): run chmod o-w %s", dir, st.Mode().Perm(), dir)
	}
	return nil
}
