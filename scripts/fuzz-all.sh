#!/bin/sh
# Runs every fuzz target in the module for the given time each (default 3s),
# one target at a time (go test -fuzz accepts one target per run).
set -eu
t=${1:-3s}
n=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' || true)
	for f in $targets; do
		printf 'fuzz %-50s %s\n' "$pkg" "$f"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log; exit 1; }
		n=$((n + 1))
	done
done
rm -f /tmp/fuzz.$$.log
echo "fuzzed $n targets for $t each"
