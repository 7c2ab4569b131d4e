#!/bin/sh
# Size report (docs/size.md): the two budgeted builds, the full build's
# build-tag variants, and the largest packages of both budgeted builds
# (symbol bytes of an unstripped build, grouped by package; the stripped
# binary is larger by its function tables, roughly in proportion).
#
#   scripts/size-report.sh          # top 25 packages
#   scripts/size-report.sh 60
#
# Budgets (issue 11): router build, linux/mipsle softfloat, <= 8,000,000 B;
# full build, linux/arm64, <= 20,000,000 B; stripped, -trimpath -ldflags='-s -w'.
set -eu
top=${1:-25}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$(dirname "$0")/.."

mipsle() { env CGO_ENABLED=0 GOOS=linux GOARCH=mipsle GOMIPS=softfloat go build -trimpath "$@" ./cmd/meshd; }
arm64() { env CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath "$@" ./cmd/meshd; }
size() { wc -c <"$1" | tr -d ' '; }
verdict() { if [ "$1" -le "$2" ]; then echo "ok, $(($2 - $1)) B left"; else echo "OVER by $(($1 - $2)) B"; fi; }

mipsle -tags router -ldflags='-s -w' -o "$out/router"
arm64 -ldflags='-s -w' -o "$out/full"
r=$(size "$out/router")
f=$(size "$out/full")
printf '%-48s %11s B  (budget 8,000,000: %s)\n' "router build, linux/mipsle (-tags router)" "$r" "$(verdict "$r" 8000000)"
printf '%-48s %11s B  (budget 20,000,000: %s)\n' "full build, linux/arm64" "$f" "$(verdict "$f" 20000000)"
for tags in dht quic libp2pmdns quic,libp2pmdns; do
	arm64 -tags "$tags" -ldflags='-s -w' -o "$out/v"
	v=$(size "$out/v")
	printf '%-48s %11s B  (%+d B)\n' "full build, linux/arm64, -tags $tags" "$v" "$((v - f))"
done

bypkg() {
	# Not counted: bss (B, b), undefined (U), and crypto/internal/fips140/
	# drbg.memory, 32 MiB of zeros nm lists as data that take no file space.
	go tool nm -size "$1" | awk '$3 != "B" && $3 != "b" && $3 != "U" && $4 != "crypto/internal/fips140/drbg.memory" {
		name = $4; for (i = 5; i <= NF; i++) name = name " " $i
		sub(/^type:\*?/, "", name); sub(/^go:itab\.\*?/, "", name); sub(/^[*(]+/, "", name)
		n = split(name, a, "/"); split(a[n], b, "."); p = ""
		for (i = 1; i < n; i++) p = p a[i] "/"
		p = p b[1]
		if (p == "") p = "(unnamed)"
		s[p] += $2
	} END { for (k in s) printf "%10d  %s\n", s[k], k }' | sort -rn | head -n "$top"
}
mipsle -tags router -o "$out/router.sym"
echo
echo "largest packages, router build (symbol bytes):"
bypkg "$out/router.sym"
arm64 -o "$out/full.sym"
echo
echo "largest packages, full build (symbol bytes):"
bypkg "$out/full.sym"
