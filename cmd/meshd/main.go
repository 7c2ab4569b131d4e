// Command meshd is the mesh node: `meshd run` is the daemon, the other verbs
// are its command-line interface.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// stdio is where a command reads and writes; tests substitute buffers.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, io stdio, args []string) error
}

// commands is the verb table. Each verb lives in its own file.
func commands() map[string]command {
	return map[string]command{
		"run":      {"run the node (the daemon)", cmdRun},
		"init":     {"write a commented configuration file", cmdInit},
		"id":       {"create this node's identity on first use; print its address and fingerprint", cmdID},
		"status":   {"show the running node's status", cmdStatus},
		"links":    {"list the links to neighbours", cmdLinks},
		"peers":    {"list known nodes", cmdPeers},
		"routes":   {"list routes", cmdRoutes},
		"contacts": {"list, add, remove and verify contacts (petnames)", cmdContacts},
		"send":     {"send a direct message: meshd send NAME|ADDRESS TEXT", cmdSend},
		"inbox":    {"list received messages (--follow for new ones)", cmdInbox},
		"outbox":   {"list sent messages and their delivery state", cmdOutbox},
		"channel":  {"group channels: create, invite, join, send, history, members, remove (meshd channel -h)", cmdChannel},
		"fapp":     {"free therapy slots: announce (therapist), search and reserve anonymously (patient) (meshd fapp -h)", cmdFAPP},
		"radio":    {"list serial ports and likely LoRa radios; run virtual RNode modems (sim)", cmdRadio},
		"web":      {"web UI: set its login password (meshd web passwd), show its TLS fingerprint", cmdWeb},
		"version":  {"print the version", cmdVersion},
	}
}

// errUsage marks errors that should be followed by usage text.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, stdio{os.Stdin, os.Stdout, os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, s stdio, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(s.out, cmds)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(s.err, "meshd: unknown command %q\n", args[0])
		usage(s.err, cmds)
		return 2
	}
	if err := c.run(ctx, s, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(s.err, "meshd %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: meshd <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nrun 'meshd <command> -h' for a command's flags")
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(s stdio, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("meshd "+name, flag.ContinueOnError)
	fs.SetOutput(s.err)
	return fs
}

// parseFlags parses args and wraps failures as usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}
