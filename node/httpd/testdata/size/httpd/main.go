// Command httpd is the size probe for docs/httpd.md: a local API server
// (mux, JSON, an event stream, graceful shutdown) and a client for it, on
// node/httpd.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/openmeshd/meshd/node/httpd"
)

func main() {
	slog.Info("start") // meshd logs with slog anyway
	sock := os.Args[1]
	mux := httpd.NewServeMux()
	mux.HandleFunc("GET /v1/contacts/{name}", func(w httpd.ResponseWriter, r *httpd.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"name": r.PathValue("name")})
	})
	mux.HandleFunc("POST /v1/messages", func(w httpd.ResponseWriter, r *httpd.Request) {
		var v map[string]string
		if err := json.NewDecoder(httpd.MaxBytesReader(w, r.Body, 64<<10)).Decode(&v); err != nil {
			httpd.Error(w, err.Error(), httpd.StatusBadRequest)
			return
		}
		c, _ := r.Cookie("s")
		httpd.SetCookie(w, &httpd.Cookie{Name: "s", Value: fmt.Sprint(c), HttpOnly: true, SameSite: httpd.SameSiteStrictMode})
		w.WriteHeader(httpd.StatusAccepted)
	})
	mux.HandleFunc("GET /v1/events", func(w httpd.ResponseWriter, r *httpd.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, ": hi\n\n")
		w.(httpd.Flusher).Flush()
		<-r.Context().Done()
	})
	ln, err := net.Listen("unix", sock)
	if err != nil {
		panic(err)
	}
	s := &httpd.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.Serve(ln)
	c := &httpd.Client{Transport: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	req, _ := httpd.NewRequestWithContext(context.Background(), httpd.MethodGet, "http://meshd/v1/contacts/x", nil)
	resp, err := c.Do(req)
	if err == nil {
		_, _ = io.Copy(os.Stdout, resp.Body)
		resp.Body.Close()
	}
	_ = s.Shutdown(context.Background())
}
