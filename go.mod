module github.com/openmeshd/meshd

go 1.24.0

require (
	filippo.io/edwards25519 v1.1.0 // indirect
	github.com/cloudflare/circl v1.6.1 // indirect
	github.com/creack/goselect v0.1.2 // indirect
	github.com/flynn/noise v1.1.0 // indirect
	github.com/hashicorp/mdns v1.0.6 // indirect
	github.com/miekg/dns v1.1.55 // indirect
	go.bug.st/serial v1.6.4 // indirect
	go.etcd.io/bbolt v1.4.3 // indirect
	golang.org/x/crypto v0.45.0 // indirect
	golang.org/x/mod v0.17.0 // indirect
	golang.org/x/net v0.47.0 // indirect
	golang.org/x/sync v0.10.0 // indirect
	golang.org/x/sys v0.38.0 // indirect
	golang.org/x/tools v0.21.1-0.20240508182429-e35e4ccd0d2d // indirect
)
