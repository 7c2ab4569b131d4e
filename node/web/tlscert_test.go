//go:build !nowebtls && !router

package web

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openmeshd/meshd/node/httpd"
)

// TestTLSSelfSigned: a self-signed certificate is made once (key 0600),
// reused after, and the server behind it sets Secure __Host- cookies.
func TestTLSSelfSigned(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	_, fp1, created, err := LoadOrCreateCert(cf, kf, []string{"router.lan", "192.168.1.1"})
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if st, _ := os.Stat(kf); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode())
	}
	cert, fp2, created, err := LoadOrCreateCert(cf, kf, nil)
	if err != nil || created || fp1 != fp2 || len(fp1) != 95 {
		t.Fatalf("reload: %v %v %q %q", created, err, fp1, fp2)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	if !strings.Contains(strings.Join(leaf.DNSNames, ","), "router.lan") || len(leaf.IPAddresses) < 2 {
		t.Fatalf("names %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	// Only one of the two files: refused rather than overwritten.
	os.Remove(kf)
	if _, _, _, err := LoadOrCreateCert(cf, kf, nil); err == nil {
		t.Fatal("a missing key was not reported")
	}

	dir = t.TempDir()
	s, _, _ := newTestServer(t, Options{TLS: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, _, _, err := TLSListener(ln, filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := &httpd.Server{Handler: s}
	go hs.Serve(tl)
	defer hs.Close()
	// A browser offers h2 first; node/httpd speaks only HTTP/1.1, so ALPN
	// must settle on http/1.1.
	tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("ALPN negotiated %q, want http/1.1", p)
	}
	tc.Close()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	url := "https://" + ln.Addr().String()
	req, _ := http.NewRequest("POST", url+"/web/login", strings.NewReader(`{"password":"correct horse"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", url)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	set := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != 200 || !strings.HasPrefix(set, "__Host-meshd_session=") || !strings.Contains(set, "Secure") {
		t.Fatalf("%s %q", resp.Status, set)
	}
	if resp.Proto != "HTTP/1.1" {
		t.Errorf("protocol %s, want HTTP/1.1", resp.Proto)
	}
}
