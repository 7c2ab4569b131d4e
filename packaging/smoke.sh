#!/bin/sh
# qemu-user smoke test of the release binaries: every non-x86 target of the
# release matrix starts under qemu-user and answers `meshd version` with the
# stamped version, then creates an identity (`meshd id`: key generation, file
# modes, the address encoding) in a scratch data directory.
#
#   packaging/smoke.sh [DIR]
#
# DIR holds binaries named meshd-linux-ARCH[-router] (check-sizes.sh KEEP=DIR
# leaves the two budgeted ones there); missing ones are built. By default the
# router build is checked on every target and the full build on arm64 only
# (SMOKE_FULL=1: the full build on every target too; it costs a link of the
# libp2p build per target).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")"
. "$here/targets.sh"
ver=$(meshd_version)
dir=${1:-}
if [ -z "$dir" ]; then
	dir=$(mktemp -d)
	trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"; [ -n "${1:-}" ] || rm -rf "$dir"' EXIT

qemu_for() { # qemu_for GOARCH VARIANT: the qemu-user command line
	case "$1" in
	arm) [ "$2" = 6 ] && echo "qemu-arm-static -cpu arm1176" || echo "qemu-arm-static" ;;
	arm64) echo qemu-aarch64-static ;;
	mips) echo qemu-mips-static ;;
	mipsle) echo qemu-mipsel-static ;;
	mips64) echo qemu-mips64-static ;;
	mips64le) echo qemu-mips64el-static ;;
	*) echo "" ;;
	esac
}

fail=0
n=0
echo "$MESHD_TARGETS" | {
	while read -r name os arch var; do
		q=$(qemu_for "$arch" "$var")
		[ -n "$q" ] || continue
		set -- "$(echo "$q" | cut -d' ' -f1)"
		command -v "$1" >/dev/null 2>&1 || { echo "smoke: $1 missing: run scripts/install-deps.sh" >&2; exit 1; }
		flavours=router
		if [ "$arch" = arm64 ] || [ "${SMOKE_FULL:-}" = 1 ]; then flavours="router full"; fi
		for flavour in $flavours; do
			suffix=""
			[ "$flavour" = router ] && suffix="-router"
			bin="$dir/meshd-$name$suffix"
			[ -x "$bin" ] || meshd_build "$bin" "$os" "$arch" "$var" "$flavour" "$ver"
			got=$($q "$bin" version 2>&1) || got="exit $?: $got"
			case "$got" in
			"meshd $ver "*) ;;
			*)
				echo "smoke: FAIL $name $flavour: meshd version said: $got"
				fail=1
				continue
				;;
			esac
			data="$scratch/$name-$flavour"
			mkdir -p "$data"
			if ! idout=$($q "$bin" id --data "$data" --json 2>&1) || ! echo "$idout" | grep -q '"address"'; then
				echo "smoke: FAIL $name $flavour: meshd id said: $idout"
				fail=1
				continue
			fi
			n=$((n + 1))
			printf 'smoke: ok   %-24s %-6s %s\n' "$name" "$flavour" "$got"
		done
	done
	[ $fail -eq 0 ] || exit 1
	echo "smoke: $n binaries answered under qemu-user"
}
