package httpd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sseMux serves an event stream like the API's /v1/events, a page that
// reads it with EventSource, and /report where the page posts what it got.
func sseMux(reports chan<- string, ended chan<- error) *ServeMux {
	mux := NewServeMux()
	mux.HandleFunc("GET /{$}", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!doctype html><title>sse</title><script>
const es = new EventSource('/v1/events?types=tick');
const got = [];
es.addEventListener('tick', e => {
  got.push(e.lastEventId + ':' + e.data);
  if (got.length === 3) {
    es.close();
    fetch('/report', {method: 'POST', headers: {'Content-Type': 'text/plain'}, body: got.join(',')});
  }
});
es.onerror = () => fetch('/report', {method: 'POST', body: 'error ' + es.readyState});
</script>`)
	})
	mux.HandleFunc("POST /report", func(w ResponseWriter, r *Request) {
		b, _ := io.ReadAll(MaxBytesReader(w, r.Body, 4096))
		w.WriteHeader(StatusNoContent)
		select {
		case reports <- string(b):
		default:
		}
	})
	mux.HandleFunc("GET /v1/events", func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(StatusOK)
		_, _ = io.WriteString(w, ": meshd events\n\n")
		w.Flush()
		for i := 1; ; i++ {
			select {
			case <-r.Context().Done():
				ended <- r.Context().Err()
				return
			case <-time.After(20 * time.Millisecond):
			}
			fmt.Fprintf(w, "id: %d\nevent: tick\ndata: {\"n\":%d}\n\n", i, i)
			w.Flush()
		}
	})
	return mux
}

// TestSSECurl: curl -N reads the stream as it comes; killing curl ends
// the handler.
func TestSSECurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil || testing.Short() {
		t.Skip("needs curl (and not -short)")
	}
	ended := make(chan error, 1)
	ts := startServer(t, sseMux(make(chan string, 1), ended), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sN", "http://"+ts.addr+"/v1/events")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var data []string
	for sc.Scan() && len(data) < 3 {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if strings.Join(data, ",") != `{"n":1},{"n":2},{"n":3}` {
		t.Fatalf("curl read %q", data)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still streaming after curl exited")
	}
}

// TestSSEBrowser: a headless Chromium's EventSource reads the stream.
func TestSSEBrowser(t *testing.T) {
	var browser string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" || testing.Short() || runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("needs chromium on the host (and not -short, not under qemu)")
	}
	reports := make(chan string, 1)
	ts := startServer(t, sseMux(reports, make(chan error, 4)), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Chromium's helper processes outlive a killed main process for a
	// moment and keep writing its profile: the browser runs in a process
	// group of its own, killed whole, and the profile is removed only after
	// that (t.TempDir's cleanup failed the test with "directory not empty").
	profile, err := os.MkdirTemp("", "sse-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+profile, "http://"+ts.addr+"/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(profile)
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		removeEventually(t, profile)
	}()
	select {
	case got := <-reports:
		if got != `1:{"n":1},2:{"n":2},3:{"n":3}` {
			t.Fatalf("the page reported %q", got)
		}
	case <-ctx.Done():
		t.Fatal("no report from the browser")
	}
}

// removeEventually removes dir, retrying for a few seconds while processes
// that were just killed finish exiting; what is left is logged, not failed.
func removeEventually(t *testing.T, dir string) {
	var err error
	for range 50 {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("could not remove the browser profile %s: %v", dir, err)
}
