#!/bin/sh
# Builds ./cmd/meshd for each os/arch[/variant] given, e.g. linux/mips/softfloat,
# twice: the full build (with libp2p) and the router build (-tags router,
# without libp2p). Prints both stripped sizes.
set -eu
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for t in "$@"; do
	os=$(echo "$t" | cut -d/ -f1)
	arch=$(echo "$t" | cut -d/ -f2)
	variant=$(echo "$t" | cut -d/ -f3)
	env=""
	case "$arch" in
	arm) env="GOARM=${variant:-7}" ;;
	mips|mipsle) env="GOMIPS=${variant:-softfloat}" ;;
	mips64|mips64le) env="GOMIPS64=${variant:-softfloat}" ;;
	esac
	printf '%-28s' "$t"
	env CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" $env go build -trimpath -ldflags='-s -w' -o "$out/meshd" ./cmd/meshd
	env CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" $env go build -tags router -trimpath -ldflags='-s -w' -o "$out/meshd-router" ./cmd/meshd
	full=$(wc -c <"$out/meshd")
	router=$(wc -c <"$out/meshd-router")
	printf '%10d bytes full, %10d bytes router (-tags router)\n' "$full" "$router"
done
