#!/bin/sh
# Runs the tests of the given package patterns on big-endian MIPS and on ARMv7
# under qemu-user. Patterns that match nothing yet are skipped.
#
# QEMU_ARCHS picks other targets (space-separated: mips mipsle mips64 arm
# armv6 arm64; default "mips arm") and QEMU_TAGS adds build tags, e.g.
#   QEMU_ARCHS=mipsle QEMU_TAGS=router scripts/qemu-test.sh ./routing/...
# runs the router build's tests on little-endian MIPS (make dist-smoke).
set -eu
archs=${QEMU_ARCHS:-mips arm}
tags=${QEMU_TAGS:-}
pkgs=""
for p in "$@"; do
	found=$(go list ${tags:+-tags "$tags"} "$p" 2>/dev/null || true)
	pkgs="$pkgs $found"
done
if [ -z "$(echo $pkgs)" ]; then
	echo "qemu: no core packages"
	exit 0
fi
for a in $archs; do
	case "$a" in
	mips) q=qemu-mips-static env="GOARCH=mips GOMIPS=softfloat" what="mips (big-endian, softfloat)" ;;
	mipsle) q=qemu-mipsel-static env="GOARCH=mipsle GOMIPS=softfloat" what="mipsle (softfloat)" ;;
	mips64) q=qemu-mips64-static env="GOARCH=mips64 GOMIPS64=softfloat" what="mips64 (big-endian, softfloat)" ;;
	arm) q=qemu-arm-static env="GOARCH=arm GOARM=7" what="arm (v7)" ;;
	armv6) q=qemu-arm-static env="GOARCH=arm GOARM=6" what="arm (v6)" ;;
	arm64) q=qemu-aarch64-static env="GOARCH=arm64" what="arm64" ;;
	*) echo "qemu: unknown arch $a" >&2; exit 2 ;;
	esac
	command -v $q >/dev/null 2>&1 || { echo "$q missing: run scripts/install-deps.sh" >&2; exit 1; }
	echo "== $what under qemu${tags:+ (-tags $tags)}"
	# shellcheck disable=SC2086 # $env is several words, $pkgs a list
	env CGO_ENABLED=0 $env go test ${tags:+-tags "$tags"} -count=1 -timeout 20m -exec $q $pkgs
done
