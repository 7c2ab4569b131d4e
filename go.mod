module github.com/openmeshd/meshd

go 1.24.0

require (
	filippo.io/edwards25519 v1.1.0 // indirect
	golang.org/x/crypto v0.45.0 // indirect
	golang.org/x/sys v0.38.0 // indirect
)
