#!/bin/sh
# Size budgets (issue 11): fails when a stripped release binary is larger than
# its budget. Builds the two budgeted binaries itself with the release flags
# (packaging/targets.sh), so the check never reads a stale dist/:
#   router build, linux/mipsle softfloat   <=  8,000,000 bytes
#   full build,   linux/arm64              <= 20,000,000 bytes
# KEEP=DIR keeps the binaries there (make dist-smoke reuses them).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")"
. "$here/targets.sh"
ROUTER_MIPSLE_MAX=${ROUTER_MIPSLE_MAX:-8000000}
FULL_ARM64_MAX=${FULL_ARM64_MAX:-20000000}
ver=$(meshd_version)
if [ -n "${KEEP:-}" ]; then
	out=$KEEP
	mkdir -p "$out"
else
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
fail=0
check() { # check FILE BUDGET LABEL
	size=$(wc -c <"$1")
	if [ "$size" -gt "$2" ]; then
		printf 'size-check: FAIL %-34s %10d bytes > budget %10d (over by %d)\n' "$3" "$size" "$2" $((size - $2))
		fail=1
	else
		printf 'size-check: ok   %-34s %10d bytes <= budget %10d (%d to spare)\n' "$3" "$size" "$2" $(($2 - size))
	fi
}
meshd_build "$out/meshd-linux-mipsle-softfloat-router" linux mipsle softfloat router "$ver"
check "$out/meshd-linux-mipsle-softfloat-router" "$ROUTER_MIPSLE_MAX" "linux/mipsle softfloat, router"
meshd_build "$out/meshd-linux-arm64" linux arm64 - full "$ver"
check "$out/meshd-linux-arm64" "$FULL_ARM64_MAX" "linux/arm64, full"
exit $fail
