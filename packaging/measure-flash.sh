#!/usr/bin/env bash
# Store write volume (flash wear) of two linked nodes on loopback. One
# command:
#
#   packaging/measure-flash.sh            # MINUTES=10 per phase by default
#
# IDLE_MINUTES sets the idle phase apart (default MINUTES). The daemons
# inherit the environment, so configuration can be varied, e.g.
#   MESHD_ROUTING_COMMIT_DELAY=10s packaging/measure-flash.sh
#
# Two router builds for this machine (the store code is the same on every
# CPU), default configuration (routing.commit_delay 2s, announce interval
# 1h), no mDNS, A listening and B dialling it. After both are up and linked:
#   idle     MINUTES with no traffic;
#   traffic  MINUTES with one direct message (160 bytes) a minute each way.
# During each phase strace follows each daemon's writing syscalls (write,
# writev, pwrite64, fdatasync, fsync, ftruncate, with -y for the file behind
# each descriptor; bbolt writes pages with pwrite64 and commits with two
# fdatasync), and /proc/PID/io write_bytes counts what the process sent to the
# block device (needs the data dirs on a disk filesystem, not tmpfs:
# DATA_ROOT, default a directory under /var/tmp). Prints per phase and node:
# bytes written to meshd.db (the bbolt store) and to other files, syncs,
# write_bytes, and those per hour and per day. TSV in $OUT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"
. "$here/targets.sh"
MINUTES=${MINUTES:-10}
IDLE_MINUTES=${IDLE_MINUTES:-$MINUTES}
TRACES=${TRACES:-} # a directory to keep the strace logs in
command -v strace >/dev/null || { echo "measure-flash: needs strace (apt install strace)" >&2; exit 1; }
work=$(mktemp -d "${DATA_ROOT:-/var/tmp}/meshd-flash.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
OUT=${OUT:-$(mktemp -d)/flash.tsv}
fs=$(stat -f -c %T "$work")
[ "$fs" != tmpfs ] || echo "measure-flash: $work is on tmpfs: write_bytes will be 0" >&2
ver=$(meshd_version)
bin="$work/meshd"
meshd_build "$bin" linux "$(go env GOARCH)" - router "$ver"

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
wbytes() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$1/io"; }
# commits DATADIR: the router's store transactions so far (/metrics); the
# node's own records (inbox, outbox states) are committed apart from these.
commits() { curl -sf --unix-socket "$1/meshd.sock" http://meshd/metrics | awk '$1 == "meshd_store_commits_total" { printf "%d", $2 }'; }
waitapi() {
	for _ in $(seq 300); do
		"$bin" status --data "$1" --json >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "measure-flash: $1 did not come up" >&2
	cat "$1.log" >&2
	exit 1
}

pa=$(freeport)
mkdir -p "$work/a" "$work/b"
MESHD_LOG_LEVEL=warn "$bin" run --data "$work/a" --listen "127.0.0.1:$pa" --no-mdns >"$work/a.log" 2>&1 &
ap=$!
pids+=("$ap")
waitapi "$work/a"
MESHD_LOG_LEVEL=warn "$bin" run --data "$work/b" --listen none --no-mdns --peer "127.0.0.1:$pa" >"$work/b.log" 2>&1 &
bp=$!
pids+=("$bp")
waitapi "$work/b"
addr_a=$("$bin" id --data "$work/a" --json | field address)
addr_b=$("$bin" id --data "$work/b" --json | field address)
# Linked and each knows the other's key: one message each way, delivered.
"$bin" send --data "$work/a" --wait 60s "$addr_b" warmup >/dev/null
"$bin" send --data "$work/b" --wait 60s "$addr_a" warmup >/dev/null
# Let the warm-up's last group commits land before measuring (commit_delay).
sleep 15

printf 'phase\tnode\tminutes\tstore_bytes\tstore_syncs\trouter_commits\tother_file_bytes\tother_syncs\tftruncates\twrite_bytes\n' >"$OUT"
text=$(head -c 150 /dev/zero | tr '\0' 'x')
phase() { # phase NAME SENDS(0|1) MINUTES
	local name=$1 send=$2 minutes=$3 s node pid wb0a wb0b
	for node in a b; do
		pid=$ap
		[ $node = b ] && pid=$bp
		strace -f -qq -y -e trace=write,writev,pwrite64,pwritev,fdatasync,fsync,ftruncate -o "$work/$name-$node.strace" -p "$pid" &
		s=$!
		eval "st_$node=$s"
	done
	sleep 1 # strace attached
	wb0a=$(wbytes "$ap") wb0b=$(wbytes "$bp")
	rc0a=$(commits "$work/a") rc0b=$(commits "$work/b")
	for m in $(seq "$minutes"); do
		if [ "$send" = 1 ]; then
			"$bin" send --data "$work/a" "$addr_b" "a$m $text" >/dev/null
			"$bin" send --data "$work/b" "$addr_a" "b$m $text" >/dev/null
		fi
		sleep 60
	done
	for node in a b; do
		pid=$ap wb0=$wb0a rc0=$rc0a
		[ $node = b ] && pid=$bp wb0=$wb0b rc0=$rc0b
		wb=$(($(wbytes "$pid") - wb0))
		rc=$(($(commits "$work/$node") - rc0))
		eval "s=\$st_$node"
		kill -INT "$s"
		wait "$s" 2>/dev/null || true
		f="$work/$name-$node.strace"
		[ -z "$TRACES" ] || { mkdir -p "$TRACES" && cp "$f" "$TRACES/"; }
		# store bytes, other-file bytes, store syncs, other syncs, truncates
		read -r store other ssync osync truncs < <(python3 - "$f" <<'PY'
import re, sys
store = other = ssync = osync = trunc = 0
for line in open(sys.argv[1]):
    m = re.search(r"(\w+)\(\d+<([^>]*)>.*\)\s+=\s+(-?\d+)", line)
    if not m:
        continue
    call, path, ret = m.group(1), m.group(2), int(m.group(3))
    if not path.startswith("/"):
        continue  # sockets, pipes, the terminal
    db = path.endswith("/meshd.db")
    if call in ("write", "writev", "pwrite64", "pwritev") and ret > 0:
        if db:
            store += ret
        else:
            other += ret
    elif call in ("fdatasync", "fsync"):
        if db:
            ssync += 1
        else:
            osync += 1
    elif call == "ftruncate":
        trunc += 1
print(store, other, ssync, osync, trunc)
PY
		)
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$node" "$minutes" "$store" "$ssync" "$rc" "$other" "$osync" "$truncs" "$wb" >>"$OUT"
		awk -v n="$name" -v d="$node" -v m="$minutes" -v b="$store" -v s="$ssync" -v rc="$rc" -v o="$other" -v os="$osync" -v w="$wb" 'BEGIN {
			h = 60 / m
			printf "%-8s node %s %3d min: meshd.db %8d B %4d syncs (%d router commits), other files %6d B %3d syncs, write_bytes %8d | per hour: %5d syncs, %7.1f KiB to meshd.db, %7.1f KiB write_bytes\n",
				n, d, m, b, s, rc, o, os, w, (s + os) * h, b * h / 1024, w * h / 1024 }'
	done
}
phase idle 0 "$IDLE_MINUTES"
phase traffic 1 "$MINUTES"
"$bin" status --data "$work/a" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print("store A:", s["store_bytes"], "bytes")'
echo "measure-flash: TSV in $OUT"
