package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/term"

	"github.com/openmeshd/meshd/node"
	"github.com/openmeshd/meshd/node/web"
)

const webUsage = `usage: meshd web <subcommand> [flags]

  passwd     set the web UI's login password (asked twice on a terminal,
             else the first line of standard input); --remove deletes it,
             which refuses every login. Changing it ends every session.
  cert       print the SHA-256 fingerprint of the web UI's TLS certificate,
             to compare with what a browser shows

The web UI is served by meshd run when web.listen is set (docs/webui.md).`

func cmdWeb(ctx context.Context, s stdio, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(s.out, webUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "passwd":
		return cmdWebPasswd(s, args[1:])
	case "cert":
		return cmdWebCert(s, args[1:])
	}
	return fmt.Errorf("%w: unknown subcommand %q (meshd web -h)", errUsage, args[0])
}

func cmdWebPasswd(s stdio, args []string) error {
	fl := newFlags(s, "web passwd")
	var cf commonFlags
	dataDirFlag(fl, &cf.data)
	fl.StringVar(&cf.config, "config", "", "config file, to find the data directory (default: as meshd run reads it)")
	remove := fl.Bool("remove", false, "delete the password: the web UI refuses every login")
	memory := fl.Uint("memory", uint(web.DefaultParams.MemoryKiB), "argon2id memory in KiB (lower it only on routers short of RAM)")
	passes := fl.Uint("time", uint(web.DefaultParams.Time), "argon2id passes")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fl.Arg(0))
	}
	cfg, err := loadConfig(cf)
	if err != nil {
		return err
	}
	p, err := cfg.ResolvePaths()
	if err != nil {
		return err
	}
	if err := node.EnsureDataDir(p.Data); err != nil {
		return err
	}
	path := filepath.Join(p.Data, web.PasswordFile)
	if *remove {
		if err := web.RemovePassword(path); err != nil {
			return err
		}
		fmt.Fprintf(s.err, "removed %s: the web UI refuses every login\n", path)
		return nil
	}
	pw, err := readPassword(s)
	if err != nil {
		return err
	}
	defer clear(pw)
	params := web.Params{MemoryKiB: uint32(*memory), Time: uint32(*passes), Threads: 1}
	if err := web.SetPassword(path, pw, params); err != nil {
		return err
	}
	fmt.Fprintf(s.err, "web UI password set (%s, argon2id %d KiB, %d passes); open sessions end\n", path, params.MemoryKiB, params.Time)
	if cfg.Web.Listen == "" {
		fmt.Fprintln(s.err, "note: web.listen is not set, so meshd run does not serve the web UI yet (docs/webui.md)")
	}
	return nil
}

// readPassword asks twice on a terminal (without echo), else reads the
// first line of standard input.
func readPassword(s stdio) ([]byte, error) {
	if f, ok := s.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(s.err, "new web UI password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(s.err)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(s.err, "again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(s.err)
		if err != nil {
			return nil, err
		}
		defer clear(b)
		if !bytes.Equal(a, b) {
			clear(a)
			return nil, errors.New("the passwords differ")
		}
		return checkPassword(a)
	}
	line, err := bufio.NewReader(io.LimitReader(s.in, web.MaxPassword+2)).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return checkPassword(bytes.TrimRight(line, "\r\n"))
}

func checkPassword(pw []byte) ([]byte, error) {
	if len(pw) < web.MinPassword || len(pw) > web.MaxPassword {
		return nil, web.ErrWeakPassword
	}
	return pw, nil
}

func cmdWebCert(s stdio, args []string) error {
	fl := newFlags(s, "web cert")
	var cf commonFlags
	dataDirFlag(fl, &cf.data)
	fl.StringVar(&cf.config, "config", "", "config file (default: as meshd run reads it)")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	cfg, err := loadConfig(cf)
	if err != nil {
		return err
	}
	p, err := cfg.ResolvePaths()
	if err != nil {
		return err
	}
	if !web.HasTLS {
		return web.ErrNoTLS
	}
	path := cfg.Web.TLSCert
	if path == "" {
		path = filepath.Join(p.Data, web.CertFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w (meshd run creates it on first start with web.tls = true)", err)
	}
	names, ips, until, err := web.CertInfo(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	blk, _ := pem.Decode(b) // CertInfo found it
	fmt.Fprintf(s.out, "%s\nSHA-256 %s\nnames %v %v\nvalid until %s\n", path, web.Fingerprint(blk.Bytes), names, ips, until.Format("2006-01-02"))
	return nil
}
