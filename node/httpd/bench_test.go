package httpd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// The small JSON answer the throughput benchmark serves (like GET /v1/id).
type benchID struct {
	Address     string `json:"address"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	Name        string `json:"name,omitempty"`
}

var benchValue = benchID{Address: "0123456789abcdef0123456789abcdef", PublicKey: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	Fingerprint: "abcd-ef01-2345-6789", Name: "router"}

func benchServers(b *testing.B) map[string]string {
	mux := NewServeMux()
	mux.HandleFunc("GET /v1/id", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(StatusOK)
		_ = json.NewEncoder(w).Encode(benchValue)
	})
	ours := &Server{Handler: mux}
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go ours.Serve(lo)
	b.Cleanup(func() { ours.Close() })

	smux := http.NewServeMux()
	smux.HandleFunc("GET /v1/id", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(benchValue)
	})
	std := &http.Server{Handler: smux}
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go std.Serve(ls)
	b.Cleanup(func() { std.Close() })
	return map[string]string{"httpd": lo.Addr().String(), "net-http": ls.Addr().String()}
}

// BenchmarkServerJSON: requests/s for GET /v1/id over loopback with
// keep-alive, from parallel clients (one connection each). The raw client
// is the same for both servers; the net/http client is a second opinion.
//
//	go test -run '^$' -bench ServerJSON -cpu 1,2 ./node/httpd
func BenchmarkServerJSON(b *testing.B) {
	addrs := benchServers(b)
	for _, server := range []string{"httpd", "net-http"} {
		addr := addrs[server]
		b.Run("server="+server+"/client=raw", func(b *testing.B) {
			req := []byte("GET /v1/id HTTP/1.1\r\nHost: meshd\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				buf := make([]byte, 512)
				for pb.Next() {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					rh, err := readResponseHead(br, 4096)
					if err != nil || rh.status != 200 {
						b.Errorf("%d %v", rh.status, err)
						return
					}
					fr, _ := bodyFraming(rh.header)
					if _, err := io.CopyBuffer(io.Discard, &lengthReader{r: br, n: fr.length}, buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
		b.Run("server="+server+"/client=net-http", func(b *testing.B) {
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			url := fmt.Sprintf("http://%s/v1/id", addr)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := hc.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkClientGet: our client (a connection per request) and net/http's
// (kept alive) against our server.
func BenchmarkClientGet(b *testing.B) {
	addr := benchServers(b)["httpd"]
	url := "http://" + addr + "/v1/id"
	b.Run("client=httpd", func(b *testing.B) {
		c := &Client{}
		for i := 0; i < b.N; i++ {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("client=net-http", func(b *testing.B) {
		hc := &http.Client{}
		for i := 0; i < b.N; i++ {
			resp, err := hc.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
