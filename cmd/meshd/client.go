package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	http "github.com/openmeshd/meshd/node/httpd"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openmeshd/meshd/node"
)

// client talks to a running daemon's local API.
type client struct {
	hc    *http.Client
	base  string
	token string
	where string // for error messages
}

// clientFlags locate the daemon: its data directory (socket) or an API URL.
type clientFlags struct {
	commonFlags
	api, tokenFile string
}

func (cf *clientFlags) register(fl *flag.FlagSet) {
	dataDirFlag(fl, &cf.data)
	fl.StringVar(&cf.config, "config", "", "config file, to find the API socket (default: as meshd run reads it)")
	fl.StringVar(&cf.api, "api", "", "API over TCP, http://host:port (default: the unix socket in the data directory)")
	fl.StringVar(&cf.tokenFile, "token-file", "", "bearer token file for --api (default: api.token in the data directory)")
}

func newClient(cf clientFlags) (*client, error) {
	if cf.api != "" {
		path := cf.tokenFile
		if path == "" {
			cfg, err := loadConfig(cf.commonFlags)
			if err != nil {
				return nil, err
			}
			p, err := cfg.ResolvePaths()
			if err != nil {
				return nil, err
			}
			path = p.Token
		}
		tok, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("API token: %w", err)
		}
		return &client{hc: &http.Client{}, base: strings.TrimRight(cf.api, "/"), token: strings.TrimSpace(string(tok)), where: cf.api}, nil
	}
	cfg, err := loadConfig(cf.commonFlags)
	if err != nil {
		return nil, err
	}
	p, err := cfg.ResolvePaths()
	if err != nil {
		return nil, err
	}
	sock := p.Socket
	if cf.data == "" && cfg.DataDir == "" && cfg.API.Socket == "" {
		sock, err = systemSocket(sock, systemDataDir, os.Geteuid())
		if err != nil {
			return nil, err
		}
	}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	return &client{hc: &http.Client{Transport: dial}, base: "http://meshd", where: sock}, nil
}

// systemDataDir is where a system service (the .deb's unit, OpenWrt's init
// script) keeps its data; node.DefaultDataDir picks it for root only.
const systemDataDir = "/var/lib/meshd"

// systemSocket lets a user who runs no daemon of their own reach the system
// service's socket without flags: with no --data, MESHD_DATA or data_dir and
// no socket at the per-user default, the service's socket is used when it
// exists. A socket the user may not reach gets an error that says which group
// grants access, rather than "not running".
func systemSocket(userSock, sysDir string, euid int) (string, error) {
	if os.Getenv(node.DataDirEnv) != "" || euid == 0 {
		return userSock, nil
	}
	if _, err := os.Stat(userSock); err == nil || !errors.Is(err, os.ErrNotExist) {
		return userSock, nil
	}
	sys := filepath.Join(sysDir, node.SocketFile)
	_, err := os.Stat(sys)
	switch {
	case err == nil:
		return sys, nil
	case errors.Is(err, os.ErrPermission):
		return "", fmt.Errorf("%s: %w: the system service's API is for members of its group (sudo adduser $USER meshd, then log in again), or pass --data for a daemon of your own", sys, err)
	}
	return userSock, nil
}

// errNotRunning says the daemon could not be reached.
var errNotRunning = errors.New("meshd is not running here (start it with: meshd run)")

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return fmt.Errorf("%w: %v", errNotRunning, c.where)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return errors.New(e.Error.Message)
		}
		return fmt.Errorf("API %s %s: %s", method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// stream reads server-sent events from path and calls fn with each
// event's data until ctx ends or fn returns false.
func (c *client) stream(ctx context.Context, path string, fn func(ev node.Event) bool) error {
	return c.streamConnected(ctx, path, nil, fn)
}

// streamConnected is stream that closes connected once the daemon has
// accepted the subscription.
func (c *client) streamConnected(ctx context.Context, path string, connected chan<- struct{}, fn func(ev node.Event) bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w: %v", errNotRunning, c.where)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("event stream: %s", resp.Status)
	}
	if connected != nil {
		close(connected)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev node.Event
		var raw struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			continue
		}
		_ = json.Unmarshal([]byte(data), &raw)
		ev.Data = raw.Data
		if !fn(ev) {
			return nil
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the daemon closed the event stream")
}

// printJSONLines writes each item as one JSON object per line.
func printJSONLines[T any](w io.Writer, items []T) error {
	enc := json.NewEncoder(w)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			return err
		}
	}
	return nil
}

func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}
