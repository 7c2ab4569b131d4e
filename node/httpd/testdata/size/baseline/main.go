// Command baseline is what the size probes share without HTTP: sockets,
// JSON both ways, fmt, time formatting, URL parsing, contexts, slog; the
// HTTP packages' cost is a probe's size minus this one's.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"time"
)

func main() {
	slog.Info("start") // meshd logs with slog anyway
	ln, err := net.Listen("unix", os.Args[1])
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		u, _ := url.ParseRequestURI(line)
		var v map[string]string
		_ = json.NewDecoder(br).Decode(&v)
		_ = json.NewEncoder(c).Encode(map[string]string{"path": u.Path, "q": u.Query().Get("q"), "v": fmt.Sprint(v),
			"t": time.Now().UTC().Format(time.RFC1123)})
		c.Close()
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", os.Args[1])
	if err != nil {
		panic(err)
	}
	fmt.Fprintln(c, "/v1/x")
	_, _ = io.Copy(os.Stdout, c)
}
