#!/bin/sh
# Reproducibility check: builds release binaries twice and compares their
# SHA-256. Both builds use a snapshot of the working tree (others may be
# editing it meanwhile); the second runs in a copy at another path with an
# empty build cache, so neither the checkout's location nor cached objects can
# leak into the bytes.
#
#   packaging/repro-check.sh [TARGET...]   # default: linux-mipsle-softfloat-router
#
# TARGET is a name from packaging/targets.sh, with -router for the router
# build. Same Go version, same sources, same VERSION => same bytes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"
. "$here/targets.sh"
[ $# -gt 0 ] || set -- linux-mipsle-softfloat-router
ver=$(meshd_version)
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# The snapshot: the working tree as it is (tracked and untracked files),
# without .git and build outputs; then a copy of it at a longer path.
mkdir -p "$work/src" "$work/elsewhere/deeper/src"
tar -C "$root" --exclude=./.git --exclude=./dist --exclude=./bin -cf - . | tar -C "$work/src" -xf -
tar -C "$work/src" -cf - . | tar -C "$work/elsewhere/deeper/src" -xf -
fail=0
for t in "$@"; do
	flavour=full name=$t
	case "$t" in *-router) flavour=router name=${t%-router} ;; esac
	line=$(echo "$MESHD_TARGETS" | awk -v n="$name" '$1 == n')
	[ -n "$line" ] || { echo "repro: unknown target $t" >&2; exit 2; }
	# shellcheck disable=SC2086 # NAME GOOS GOARCH VARIANT
	set -- $line
	(cd "$work/src" && meshd_build "$work/a" "$2" "$3" "$4" "$flavour" "$ver")
	(cd "$work/elsewhere/deeper/src" && GOCACHE="$work/cache" meshd_build "$work/b" "$2" "$3" "$4" "$flavour" "$ver")
	a=$(sha256sum <"$work/a" | cut -d' ' -f1)
	b=$(sha256sum <"$work/b" | cut -d' ' -f1)
	if [ "$a" = "$b" ]; then
		echo "repro: ok   $t $a"
	else
		echo "repro: FAIL $t: $a (here) != $b (copy, fresh cache)"
		fail=1
	fi
done
exit $fail
