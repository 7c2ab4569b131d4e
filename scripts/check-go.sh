#!/bin/sh
# Fails with instructions when no suitable Go toolchain is on PATH.
set -eu
need=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$(dirname "$0")/../go.mod")
if ! command -v go >/dev/null 2>&1; then
	for d in /usr/local/go/bin /usr/lib/go/bin; do
		[ -x "$d/go" ] && { echo "Go is installed in $d but not on PATH: export PATH=\$PATH:$d" >&2; exit 1; }
	done
	echo "Go $need or newer is needed: see https://go.dev/doc/install (Debian's golang-go package is too old before trixie)" >&2
	exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
lowest=$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)
if [ "$lowest" != "$need" ]; then
	echo "Go $need or newer is needed, found $have" >&2
	exit 1
fi
