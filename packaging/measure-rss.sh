#!/usr/bin/env bash
# Resident memory of the router build (-tags router), idle and with stored
# messages, under qemu-user for MIPS/ARM and natively on amd64. One command:
#
#   packaging/measure-rss.sh [ARCH...]      # default: mipsle armv7 amd64
#
# ARCH is mipsle, mips, armv7, armv6, arm64 or amd64 (native). For each:
#   baseline  a trivial Go program (blocks on a signal) under the same qemu:
#             qemu's own overhead plus the smallest Go runtime;
#   idle      `meshd run` (no peers, no mDNS) 20 s after its API answers;
#   inbox     after a second node (native amd64) delivered 1,000 direct
#             messages of 160 bytes to it over TCP on loopback: 1,000 messages
#             in its inbox, stored in its bbolt file; 20 s later;
#   outbox    after it queued messages for 4 unreachable addresses until the
#             router refused more (the outbox quota: 256 by default); 20 s
#             later.
# Reported: VmRSS and VmHWM (peak) of the process from /proc/PID/status (for
# qemu-user the qemu process, which holds the guest's memory, its code cache
# and qemu itself); "guest": for a 32-bit guest under qemu, the resident
# pages of the mappings below 4 GiB (+1 MiB) in /proc/PID/smaps, which is the
# guest's address space (its binary, heap, stacks; qemu's own heap and
# translated-code buffer are mapped higher), for a native process VmRSS, and
# of that the anonymous part (not the binary's pages); and
# the daemon's own Go runtime view from /metrics (meshd_go_heap_bytes,
# meshd_go_sys_bytes). Output: a table on stdout and TSV in $OUT (default
# rss.tsv in a temp dir, path printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"
. "$here/targets.sh"
[ $# -gt 0 ] || set -- mipsle armv7 amd64
SETTLE=${SETTLE:-20}
N=${N:-1000}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
OUT=${OUT:-$(mktemp -d)/rss.tsv}
ver=$(meshd_version)

# The native node that drives the API and sends the messages.
meshd_build "$work/meshd-host" linux amd64 - router "$ver"
host="$work/meshd-host"

# A trivial Go program: the Go runtime and nothing else.
mkdir -p "$work/trivial"
cat >"$work/trivial/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, os.Interrupt)
	<-c
}
GO
printf 'module trivial\n\ngo 1.24\n' >"$work/trivial/go.mod"

setup() { # setup ARCH: sets goarch variant qemu
	case "$1" in
	mipsle) goarch=mipsle variant=softfloat qemu=qemu-mipsel-static ;;
	mips) goarch=mips variant=softfloat qemu=qemu-mips-static ;;
	armv7) goarch=arm variant=7 qemu=qemu-arm-static ;;
	armv6) goarch=arm variant=6 qemu="qemu-arm-static -cpu arm1176" ;;
	arm64) goarch=arm64 variant=- qemu=qemu-aarch64-static ;;
	amd64) goarch=amd64 variant=- qemu="" ;;
	*) echo "measure-rss: unknown arch $1" >&2; exit 2 ;;
	esac
}

kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

# guestkb PID QEMU: resident kB of the guest's address space (see above),
# and of it the anonymous memory (heap, stacks: not the binary's pages), TAB
# separated.
guestkb() {
	if [ -z "$2" ]; then
		printf '%s\t%s\n' "$(kb "$1" VmRSS)" "$(kb "$1" RssAnon)"
		return
	fi
	if [ "$goarch" = arm64 ]; then
		printf -- '-\t-\n' # a 64-bit guest's mappings are not confined below 4 GiB
		return
	fi
	python3 - "$1" <<'PY'
import re, sys
total = anon = 0
cur = None
for line in open(f"/proc/{sys.argv[1]}/smaps"):
    m = re.match(r"([0-9a-f]+)-[0-9a-f]+ ", line)
    if m:
        cur = int(m.group(1), 16)
    elif cur is not None and cur < (1 << 32) + (1 << 20):
        if line.startswith("Rss:"):
            total += int(line.split()[1])
        elif line.startswith("Anonymous:"):
            anon += int(line.split()[1])
print(f"{total}\t{anon}")
PY
}

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

metric() { # metric DATADIR NAME
	curl -sf --unix-socket "$1/meshd.sock" http://meshd/metrics | awk -v n="$2" '$1 == n { printf "%d", $2 }'
}

status() { # status DATADIR FIELD
	curl -sf --unix-socket "$1/meshd.sock" http://meshd/v1/status | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}

waitapi() { # waitapi DATADIR PID
	for _ in $(seq 600); do
		curl -sf --unix-socket "$1/meshd.sock" http://meshd/v1/status >/dev/null 2>&1 && return 0
		kill -0 "$2" 2>/dev/null || { echo "measure-rss: daemon exited" >&2; cat "$1.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "measure-rss: API of $1 did not answer" >&2
	exit 1
}

# post_batch DATADIR TO FIRST COUNT TEXT posts COUNT messages at once (a POST
# returns once its message is committed: concurrent ones share a commit) and
# prints the HTTP status of each.
post_batch() {
	local j
	for j in $(seq "$3" $(($3 + $4 - 1))); do
		curl -s -o /dev/null -w '%{http_code}\n' --unix-socket "$1/meshd.sock" \
			-H 'Content-Type: application/json' -d "{\"to\":\"$2\",\"text\":\"$j $5\"}" http://meshd/v1/messages &
	done
	wait
}

row() { # row ARCH STATE PID DATADIR
	local rss hwm heap sys guest anon
	rss=$(kb "$3" VmRSS) hwm=$(kb "$3" VmHWM)
	IFS=$'\t' read -r guest anon < <(guestkb "$3" "$qemu")
	heap=- sys=-
	if [ -n "$4" ]; then
		heap=$(metric "$4" meshd_go_heap_bytes) sys=$(metric "$4" meshd_go_sys_bytes)
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$rss" "$hwm" "$guest" "$anon" "$heap" "$sys" >>"$OUT"
	printf '%-7s %-9s VmRSS %6s kB  VmHWM %6s kB  guest %6s kB (anon %6s)  go heap %10s  go sys %10s\n' "$1" "$2" "$rss" "$hwm" "$guest" "$anon" "$heap" "$sys"
}

printf 'arch\tstate\tvmrss_kb\tvmhwm_kb\tguest_rss_kb\tguest_anon_kb\tgo_heap_bytes\tgo_sys_bytes\n' >"$OUT"
for arch in "$@"; do
	setup "$arch"
	if [ -n "$qemu" ]; then command -v "${qemu%% *}" >/dev/null || { echo "${qemu%% *} missing: scripts/install-deps.sh" >&2; exit 1; }; fi
	bin="$work/meshd-$arch"
	meshd_build "$bin" linux "$goarch" "$variant" router "$ver"
	env_arch="GOARCH=$goarch"
	case "$goarch" in arm) env_arch="$env_arch GOARM=$variant" ;; mips*) env_arch="$env_arch GOMIPS=$variant" ;; esac
	# shellcheck disable=SC2086 # $env_arch is one or two assignments
	(cd "$work/trivial" && env GOFLAGS= CGO_ENABLED=0 GOOS=linux $env_arch go build -trimpath -ldflags='-s -w' -o "$work/trivial-$arch" .)

	# baseline
	$qemu "$work/trivial-$arch" &
	tp=$!
	pids+=("$tp")
	sleep "$SETTLE"
	row "$arch" baseline "$tp" ""
	kill "$tp"
	wait "$tp" 2>/dev/null || true

	# idle
	da="$work/$arch-a"
	mkdir -p "$da"
	pa=$(freeport)
	MESHD_LOG_LEVEL=warn $qemu "$bin" run --data "$da" --listen "127.0.0.1:$pa" --no-mdns >"$da.log" 2>&1 &
	ap=$!
	pids+=("$ap")
	waitapi "$da" "$ap"
	sleep "$SETTLE"
	row "$arch" idle "$ap" "$da"

	# inbox: a native node linked to it delivers N messages.
	addr=$("$host" id --data "$da" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')
	db="$work/$arch-b"
	mkdir -p "$db"
	MESHD_LOG_LEVEL=warn MESHD_ROUTING_COMMIT_DELAY=200ms "$host" run --data "$db" --listen none --no-mdns --peer "127.0.0.1:$pa" >"$db.log" 2>&1 &
	bp=$!
	pids+=("$bp")
	waitapi "$db" "$bp"
	text=$(head -c 160 /dev/zero | tr '\0' 'x')
	start=$(date +%s)
	i=0
	while [ "$i" -lt "$N" ]; do
		n=$((N - i < 32 ? N - i : 32))
		codes=$(post_batch "$db" "$addr" "$i" "$n" "$text")
		ok=$(echo "$codes" | grep -c '^202$' || true)
		bad=$(echo "$codes" | grep -v '^202$' | grep -v '^503$' || true)
		[ -z "$bad" ] || { echo "measure-rss: send answered $bad" >&2; exit 1; }
		i=$((i + ok))
		[ "$ok" -eq "$n" ] || sleep 0.5 # outbox quota: wait for acknowledgements
	done
	for _ in $(seq 1800); do
		[ "$(status "$da" unread)" -ge "$N" ] && break
		sleep 1
	done
	got=$(status "$da" unread)
	[ "$got" -ge "$N" ] || { echo "measure-rss: only $got of $N messages arrived" >&2; exit 1; }
	echo "        ($N messages delivered in $(($(date +%s) - start)) s; store $(status "$da" store_bytes) bytes)"
	kill "$bp"
	wait "$bp" 2>/dev/null || true
	sleep "$SETTLE"
	row "$arch" inbox "$ap" "$da"

	# outbox: messages for unreachable nodes until the quota refuses more.
	q=0
	for k in 1 2 3 4; do
		dx="$work/$arch-x$k"
		mkdir -p "$dx"
		to=$("$host" id --data "$dx" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')
		while :; do
			codes=$(post_batch "$da" "$to" "$q" 32 "$text")
			ok=$(echo "$codes" | grep -c '^202$' || true)
			bad=$(echo "$codes" | grep -v '^202$' | grep -v '^503$' || true)
			[ -z "$bad" ] || { echo "measure-rss: queueing answered $bad" >&2; exit 1; }
			q=$((q + ok))
			[ "$ok" -eq 32 ] || break # the quota refused the rest
		done
	done
	echo "        ($q messages queued for 4 unreachable nodes; outbox $(status "$da" outbox))"
	sleep "$SETTLE"
	row "$arch" outbox "$ap" "$da"
	kill "$ap"
	wait "$ap" 2>/dev/null || true
done
echo "measure-rss: TSV in $OUT"
