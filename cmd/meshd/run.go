package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/openmeshd/meshd/node"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// commonFlags are the flags every daemon-related verb shares.
type commonFlags struct {
	data, config string
}

// defaultConfigPath: /etc/meshd/meshd.conf for a system service (root),
// else the data directory's meshd.conf.
func defaultConfigPath(dataDir string) string {
	if os.Geteuid() == 0 && dataDir == "" {
		return "/etc/meshd/" + node.ConfigFile
	}
	if dataDir == "" {
		d, err := node.DefaultDataDir()
		if err != nil {
			return ""
		}
		dataDir = d
	}
	return filepath.Join(dataDir, node.ConfigFile)
}

// loadConfig reads the config the way `meshd run` does: file (optional
// unless named explicitly), then environment, then --data.
func loadConfig(cf commonFlags) (node.Config, error) {
	path, optional := cf.config, false
	if path == "" {
		path, optional = defaultConfigPath(cf.data), true
	}
	cfg, err := node.LoadConfig(path, optional, os.LookupEnv)
	if err != nil {
		return cfg, err
	}
	if cf.data != "" {
		cfg.DataDir = cf.data
	}
	return cfg, cfg.Validate()
}

func newLogger(cfg node.Config, w *os.File, lvl *slog.LevelVar) *slog.Logger {
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	o := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func cmdRun(ctx context.Context, s stdio, args []string) error {
	fl := newFlags(s, "run")
	var cf commonFlags
	var listen string
	var peers stringList
	var noMDNS bool
	dataDirFlag(fl, &cf.data)
	fl.StringVar(&cf.config, "config", "", "config file (default: /etc/meshd/meshd.conf as root, else meshd.conf in the data directory; optional)")
	fl.StringVar(&listen, "listen", "", "TCP address for mesh links (overrides tcp.listen; \"none\" disables)")
	fl.Var(&peers, "peer", "static peer host:port[#address] (repeatable; adds to tcp.peers)")
	fl.BoolVar(&noMDNS, "no-mdns", false, "disable mDNS discovery")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	cfg, err := loadConfig(cf)
	if err != nil {
		return err
	}
	switch listen {
	case "":
	case "none":
		cfg.TCP.Listen = ""
	default:
		cfg.TCP.Listen = listen
	}
	cfg.TCP.Peers = append(cfg.TCP.Peers, peers...)
	if noMDNS {
		cfg.TCP.MDNS = false
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	lvl := new(slog.LevelVar)
	log := newLogger(cfg, os.Stderr, lvl)
	n, err := node.New(cfg, node.Options{Logger: log, LogLevel: lvl, Version: version})
	if err != nil {
		return err
	}
	// SIGTERM and SIGINT end ctx (main); SIGHUP reloads what can be.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading the configuration")
			c, err := loadConfig(cf)
			if err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			n.Reload(c)
		}
	}()
	return n.Run(ctx)
}

func cmdInit(ctx context.Context, s stdio, args []string) error {
	fl := newFlags(s, "init")
	var cf commonFlags
	var force, stdout bool
	dataDirFlag(fl, &cf.data)
	fl.StringVar(&cf.config, "config", "", "where to write the config file (default: as meshd run reads it)")
	fl.BoolVar(&force, "force", false, "overwrite an existing config file")
	fl.BoolVar(&stdout, "stdout", false, "print the config instead of writing it")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	cfg := node.Defaults()
	cfg.DataDir = cf.data
	b, err := node.Template(cfg)
	if err != nil {
		return err
	}
	if stdout {
		_, err := s.out.Write(b)
		return err
	}
	path := cf.config
	if path == "" {
		path = defaultConfigPath(cf.data)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o640)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; use --force to overwrite", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(s.err, "wrote %s\n", path)
	return nil
}
