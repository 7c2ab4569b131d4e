#!/bin/sh
# Builds the release matrix into dist/: every target of packaging/targets.sh
# as the full build and the router build (-tags router, no libp2p), named
#   dist/meshd-VERSION-linux-ARCH[-router]
# and writes dist/sizes.tsv, dist/SIZES.md (stripped and xz -9 sizes) and
# dist/SHA256SUMS. Arguments restrict the build to some targets, e.g.
#   packaging/dist.sh linux-mipsle-softfloat-router linux-arm64
# VERSION overrides `git describe`. Run from anywhere; builds the repository
# this script lives in.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"
. "$here/targets.sh"
dist=${DIST:-dist}
ver=$(meshd_version)
mkdir -p "$dist"

want() { # want NAME: is this binary asked for (all when no arguments)?
	[ -z "$wanted" ] && return 0
	for w in $wanted; do [ "$w" = "$1" ] && return 0; done
	return 1
}
wanted="$*"

tsv="$dist/sizes.tsv"
trap 'rm -f "$tsv.tmp"' EXIT
printf 'file\ttarget\tflavour\tstripped_bytes\txz_bytes\n' >"$tsv.tmp"
echo "$MESHD_TARGETS" | while read -r name os arch var; do
	for flavour in full router; do
		suffix=""
		[ "$flavour" = router ] && suffix="-router"
		want "$name$suffix" || continue
		f="meshd-$ver-$name$suffix"
		meshd_build "$dist/$f" "$os" "$arch" "$var" "$flavour" "$ver"
		size=$(wc -c <"$dist/$f")
		xzs=$(xz -9 -T1 -c "$dist/$f" | wc -c)
		printf '%s\t%s\t%s\t%d\t%d\n' "$f" "$name" "$flavour" "$size" "$xzs" >>"$tsv.tmp"
		printf '%-52s %10d bytes, %9d xz\n' "$f" "$size" "$xzs"
	done
done
mv "$tsv.tmp" "$tsv"

files=$(tail -n +2 "$tsv" | cut -f1)
[ -n "$files" ] || { echo "dist: no target matched: $wanted" >&2; exit 1; }
# shellcheck disable=SC2086 # one file name a word (names have no spaces)
(cd "$dist" && sha256sum $files) >"$dist/SHA256SUMS"

{
	echo "# meshd $ver: binary sizes"
	echo
	echo "Built by \`make dist\` (packaging/dist.sh) with $(go env GOVERSION), CGO_ENABLED=0,"
	echo "-trimpath, -ldflags '-s -w -buildid= -X main.version=$ver'. Sizes in bytes;"
	echo "xz is \`xz -9\` of the stripped binary (what a squashfs or a download costs)."
	echo
	echo "| file | target | build | stripped | xz -9 |"
	echo "|---|---|---|---:|---:|"
	tail -n +2 "$tsv" | while IFS="$(printf '\t')" read -r f t fl s x; do
		echo "| $f | $t | $fl | $s | $x |"
	done
} >"$dist/SIZES.md"
echo "dist: $(echo "$files" | wc -l) binaries, sizes in $dist/SIZES.md, checksums in $dist/SHA256SUMS"
