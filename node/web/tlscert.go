//go:build !nowebtls && !router

package web

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// HasTLS says this build can serve the web UI over TLS (built without
// -tags nowebtls or router).
const HasTLS = true

// TLSListener wraps ln in TLS with LoadOrCreateCert's certificate (TLS 1.2
// and later). Only http/1.1 is offered in ALPN: the server behind it is
// node/httpd, which speaks no HTTP/2.
func TLSListener(ln net.Listener, certFile, keyFile string, names []string) (tl net.Listener, fingerprint string, created bool, err error) {
	cert, fp, created, err := LoadOrCreateCert(certFile, keyFile, names)
	if err != nil {
		return nil, "", false, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	return tls.NewListener(ln, cfg), fp, created, nil
}

// LoadOrCreateCert loads the certificate and key from certFile and keyFile,
// or, when neither exists, generates a self-signed ECDSA P-256 certificate
// for names (host names and IP addresses; localhost and the loopback
// addresses are always added), valid for ten years, and writes both (the
// key with mode 0600). It returns the certificate's SHA-256 fingerprint,
// which the operator compares with the one the browser shows.
func LoadOrCreateCert(certFile, keyFile string, names []string) (cert tls.Certificate, fingerprint string, created bool, err error) {
	_, errC := os.Stat(certFile)
	_, errK := os.Stat(keyFile)
	if errors.Is(errC, fs.ErrNotExist) && errors.Is(errK, fs.ErrNotExist) {
		if err := createCert(certFile, keyFile, names); err != nil {
			return cert, "", false, fmt.Errorf("web TLS: generating a self-signed certificate: %w", err)
		}
		created = true
	}
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return cert, "", false, fmt.Errorf("web TLS: %w", err)
	}
	return cert, Fingerprint(cert.Certificate[0]), created, nil
}

func createCert(certFile, keyFile string, names []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "meshd web UI", Organization: []string{"meshd (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, n := range append([]string{"localhost", "127.0.0.1", "::1"}, names...) {
		n = strings.Trim(strings.TrimSpace(n), "[]")
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		if ip := net.ParseIP(n); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// LocalNames lists this machine's host name and interface addresses, for
// a self-signed certificate that matches however the router is reached.
func LocalNames() []string {
	var out []string
	if h, err := os.Hostname(); err == nil && h != "" {
		out = append(out, h, h+".lan", h+".local")
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

// CertInfo describes a PEM certificate (as `meshd web cert` prints it):
// the names it is valid for and its expiry.
func CertInfo(pemBytes []byte) (dnsNames []string, ips []net.IP, notAfter time.Time, err error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, time.Time{}, errors.New("no PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	return c.DNSNames, c.IPAddresses, c.NotAfter, nil
}
