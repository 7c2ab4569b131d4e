package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// assetFS holds the UI: plain HTML, CSS and JavaScript, no build step.
//
//go:embed assets
var assetFS embed.FS

// MaxAssetBytes is the budget for all assets together, uncompressed; a test
// keeps the UI under it.
const MaxAssetBytes = 300 << 10

// asset is one file, with its gzip form kept when that is smaller.
type asset struct {
	body, gz []byte
	ctype    string
	etag     string
}

// AssetBytes is the assets' total size, uncompressed and gzipped.
func AssetBytes() (raw, gz int, err error) {
	as, err := loadAssets()
	if err != nil {
		return 0, 0, err
	}
	for _, a := range as {
		raw += len(a.body)
		if a.gz != nil {
			gz += len(a.gz)
		} else {
			gz += len(a.body)
		}
	}
	return raw, gz, nil
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
		sum := sha256.Sum256(b)
		a := &asset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: mime.TypeByExtension(path.Ext(p))}
		switch path.Ext(p) {
		case ".js":
			a.ctype = "text/javascript; charset=utf-8"
		case ".webmanifest":
			a.ctype = "application/manifest+json"
		case ".svg":
			a.ctype = "image/svg+xml"
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		_, _ = zw.Write(b)
		_ = zw.Close()
		if gz.Len() < len(b) {
			a.gz = gz.Bytes()
		}
		out["/"+strings.TrimPrefix(p, "assets/")] = a
		return nil
	})
	return out, err
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
	body := a.body
	if a.gz != nil && acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
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
