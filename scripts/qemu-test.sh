#!/bin/sh
# Runs the tests of the given package patterns on big-endian MIPS and on ARMv7
# under qemu-user. Patterns that match nothing yet are skipped.
set -eu
pkgs=""
for p in "$@"; do
	found=$(go list "$p" 2>/dev/null || true)
	pkgs="$pkgs $found"
done
if [ -z "$(echo $pkgs)" ]; then
	echo "qemu: no core packages"
	exit 0
fi
for q in qemu-mips-static qemu-arm-static; do
	command -v $q >/dev/null 2>&1 || { echo "$q missing: run scripts/install-deps.sh" >&2; exit 1; }
done
echo "== mips (big-endian, softfloat) under qemu"
CGO_ENABLED=0 GOARCH=mips GOMIPS=softfloat go test -count=1 -timeout 20m -exec qemu-mips-static $pkgs
echo "== arm (v7) under qemu"
CGO_ENABLED=0 GOARCH=arm GOARM=7 go test -count=1 -timeout 20m -exec qemu-arm-static $pkgs
