package node

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"github.com/openmeshd/meshd/node/web"
)

// startWeb serves the web UI on web.listen (off when empty): the embedded
// assets, the password login and, behind a session, this node's API — the
// same handler the unix socket serves. docs/webui.md has the design.
func (n *Node) startWeb(a *apiServer) error {
	c := n.cfg.Web
	if c.Listen == "" {
		return nil
	}
	pwFile := filepath.Join(n.paths.Data, web.PasswordFile)
	srv, err := web.New(web.Options{API: n.handler(""), PasswordFile: pwFile, TLS: c.TLS, Hosts: c.Hosts,
		Logger: n.log.With("component", "web")})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("web.listen %s: %w", c.Listen, err)
	}
	scheme := "http"
	if c.TLS {
		certFile, keyFile := c.TLSCert, c.TLSKey
		if certFile == "" {
			certFile, keyFile = filepath.Join(n.paths.Data, web.CertFile), filepath.Join(n.paths.Data, web.KeyFile)
		}
		host, _, _ := net.SplitHostPort(c.Listen)
		names := append(append(web.LocalNames(), c.Hosts...), host)
		tl, fp, created, err := web.TLSListener(ln, certFile, keyFile, names)
		if err != nil {
			ln.Close()
			return err
		}
		if created {
			n.log.Info("web UI: generated a self-signed TLS certificate", "file", certFile)
		}
		n.log.Info("web UI: TLS certificate (compare with what the browser shows)", "sha256", fp)
		ln = tl
		scheme = "https"
	}
	a.serve(ln, srv)
	ctx, cancel := context.WithCancel(context.Background())
	a.servers[len(a.servers)-1].RegisterOnShutdown(cancel) // ends the sessions and their event streams
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		srv.Watch(ctx)
	}()
	n.log.Info("web UI", "url", scheme+"://"+ln.Addr().String(), "password_file", pwFile)
	return nil
}
