package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/openmeshd/meshd/node"
)

func TestSystemSocket(t *testing.T) {
	t.Setenv(node.DataDirEnv, "")
	touch := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name            string
		user, sys, root bool
		want            string // "user" or "sys"
	}{
		{name: "own daemon wins", user: true, sys: true, want: "user"},
		{name: "system service when no own socket", sys: true, want: "sys"},
		{name: "neither: the per-user path, for the not-running error", want: "user"},
		{name: "root keeps its default", sys: true, root: true, want: "user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			userSock := filepath.Join(d, "home", node.SocketFile)
			sysDir := filepath.Join(d, "var")
			if tt.user {
				touch(userSock)
			}
			if tt.sys {
				touch(filepath.Join(sysDir, node.SocketFile))
			}
			euid := 1000
			if tt.root {
				euid = 0
			}
			got, err := systemSocket(userSock, sysDir, euid)
			if err != nil {
				t.Fatal(err)
			}
			want := userSock
			if tt.want == "sys" {
				want = filepath.Join(sysDir, node.SocketFile)
			}
			if got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		})
	}
	t.Run("MESHD_DATA set", func(t *testing.T) {
		d := t.TempDir()
		touch(filepath.Join(d, "var", node.SocketFile))
		t.Setenv(node.DataDirEnv, filepath.Join(d, "mine"))
		if got, _ := systemSocket("u", filepath.Join(d, "var"), 1000); got != "u" {
			t.Fatalf("got %s", got)
		}
	})
}
