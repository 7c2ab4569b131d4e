// Package httpd is meshd's small HTTP/1.1 server, router and client: the
// subset of net/http the local API, its event streams, the web UI and the
// CLI use, without net/http's size (crypto/tls, x509, HTTP/2, proxies,
// cookie jars...). Its API mirrors net/http's, so that code converts mostly
// by changing the import; docs/httpd.md lists the differences, what is
// supported and what deliberately is not, and the security choices.
//
// The server parses hostile input strictly: CRLF line ends only, no
// obsolete line folding, no whitespace before a field's colon, one
// Content-Length of digits or a single "chunked" Transfer-Encoding and
// never both, bounded request line, header and body, timeouts on every
// read and write, a bounded number of connections, and handler panics
// recovered into a 500.
package httpd
