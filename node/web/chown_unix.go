//go:build unix

package web

import (
	"fmt"
	"os"
	"syscall"
)

// chownLikeDir gives f the owner of dir when we run as root: an operator
// who sets the password with sudo must not leave a root-owned 0600 file the
// daemon (user meshd in the packages) cannot read.
func chownLikeDir(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || (sys.Uid == 0 && sys.Gid == 0) {
		return nil
	}
	if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil {
		return fmt.Errorf("give %s to the data directory's owner: %w", f.Name(), err)
	}
	return nil
}
