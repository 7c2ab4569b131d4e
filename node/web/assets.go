package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	http "github.com/openmeshd/meshd/node/httpd"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// assetFS holds the UI, gzipped: the sources are the plain HTML, CSS and
// JavaScript files in assets/ (no build step: what is written is what the
// browser runs); each is embedded as its .gz twin, which
// TestAssetsCompressed keeps equal to the source (go test ./node/web -run
// AssetsCompressed -update rewrites them). Embedding only the compressed
// form keeps the router binary small and needs no gzip writer at run time.
//
//go:embed assets/*.gz
var assetFS embed.FS

// MaxAssetBytes is the budget for all assets together, uncompressed; a test
// keeps the UI under it.
const MaxAssetBytes = 300 << 10

// asset is one file, gzipped.
type asset struct {
	gz    []byte
	size  int // uncompressed
	ctype string
	etag  string
}

// AssetBytes is the assets' total size, uncompressed and gzipped.
func AssetBytes() (raw, gz int, err error) {
	as, err := loadAssets()
	if err != nil {
		return 0, 0, err
	}
	for _, a := range as {
		raw += a.size
		gz += len(a.gz)
	}
	return raw, gz, nil
}

// contentType is the type of an asset by its extension.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".webmanifest":
		return "application/manifest+json"
	}
	return "application/octet-stream"
}

func loadAssets() (map[string]*asset, error) {
	out := map[string]*asset{}
	err := fs.WalkDir(assetFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assetFS.ReadFile(p)
		if err != nil {
			return err
		}
		raw, err := gunzip(b)
		if err != nil {
			return fmt.Errorf("web asset %s: %w", p, err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(p, "assets/"), ".gz")
		sum := sha256.Sum256(raw)
		out["/"+name] = &asset{gz: b, size: len(raw), etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: contentType(name)}
		return nil
	})
	return out, err
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(zr, MaxAssetBytes+1))
}

// serveAsset answers GET and HEAD for the embedded files ("/" is
// index.html), revalidated by ETag and gzipped when the browser accepts it.
func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/" {
		p = "/index.html"
	}
	a := s.assets[p]
	if a == nil || p == "/index.html" && r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("Vary", "Accept-Encoding")
	h.Set("Content-Type", a.ctype)
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if !acceptsGzip(r) {
		// Every browser takes gzip; this is for curl and the like.
		raw, err := gunzip(a.gz)
		if err != nil {
			http.Error(w, "corrupt asset", http.StatusInternalServerError)
			return
		}
		h.Set("Content-Length", strconv.Itoa(len(raw)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(raw)
		}
		return
	}
	h.Set("Content-Encoding", "gzip")
	h.Set("Content-Length", strconv.Itoa(len(a.gz)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(a.gz)
	}
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(name) == "gzip" && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
