#!/bin/bash
# Start-up time (process start to the API answering `meshd status`) and idle
# CPU (60 s) of the router build, under qemu-user for MIPS/ARM or natively:
#   scripts/measure-startup.sh [mipsle|mips|arm|amd64]...
# Each run starts from an empty data directory (so it includes creating the
# identity and the store); mDNS off, TCP on a loopback port. qemu-user on an
# x86 host translates faster than a 600 MHz router CPU runs: read the qemu
# numbers as "nothing slow at start-up", not as the router's time.
set -eu
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- mipsle arm amd64
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/cli" ./cmd/meshd
for arch in "$@"; do
	q=""
	case $arch in
	mipsle) export GOARCH=mipsle GOMIPS=softfloat; q=qemu-mipsel-static ;;
	mips) export GOARCH=mips GOMIPS=softfloat; q=qemu-mips-static ;;
	arm) export GOARCH=arm GOARM=7; q=qemu-arm-static ;;
	amd64) export GOARCH=amd64 ;;
	*) echo "unknown arch $arch" >&2; exit 2 ;;
	esac
	GOOS=linux CGO_ENABLED=0 go build -tags router -trimpath -ldflags='-s -w' -o "$out/meshd-$arch" ./cmd/meshd
	unset GOARCH GOMIPS GOARM
	port=$((20000 + RANDOM % 20000))
	for run in 1 2 3; do
		rm -rf "$out/data"
		t0=$(date +%s%N)
		$q "$out/meshd-$arch" run --data "$out/data" --listen "127.0.0.1:$port" --no-mdns >"$out/log" 2>&1 &
		pid=$!
		n=0
		until "$out/cli" status --data "$out/data" >/dev/null 2>&1; do
			sleep 0.02
			n=$((n + 1))
			[ $n -lt 1500 ] || { echo "$arch: no API after 30 s" >&2; cat "$out/log" >&2; kill $pid; exit 1; }
		done
		t1=$(date +%s%N)
		printf '%-7s run %d: start to API %4d ms\n' "$arch" $run $(((t1 - t0) / 1000000))
		if [ $run = 3 ]; then
			sleep 10
			a=$(awk '{print $14+$15}' /proc/$pid/stat)
			sleep 60
			b=$(awk '{print $14+$15}' /proc/$pid/stat)
			printf '%-7s idle CPU over 60 s: %d ticks of 1/%d s\n' "$arch" $((b - a)) "$(getconf CLK_TCK)"
		fi
		kill -TERM $pid
		wait $pid || true
	done
done
