//go:build unix

package web

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// An operator running `sudo meshd web passwd` must leave a file the
// daemon's user can read.
func TestSetPasswordAsRootGivesFileToDirOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 65534, 65534
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, PasswordFile)
	if err := SetPassword(path, []byte("correct horse battery"), Params{MemoryKiB: 1024, Time: 1, Threads: 1}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != uid || sys.Gid != gid || st.Mode().Perm() != 0o600 {
		t.Fatalf("owner %d:%d mode %o, want %d:%d 0600", sys.Uid, sys.Gid, st.Mode().Perm(), uid, gid)
	}
}
