# meshd — build and test entry points. `make test` is what CI runs (.ci/run).

GO        ?= go
FUZZTIME  ?= 3s
# Core packages: pure protocol logic that must behave the same on every CPU we
# ship to. Their tests also run on big-endian MIPS and on ARM under qemu-user.
CORE_PATTERNS := ./envelope/... ./routing/... ./transport/lora/... ./transport/serialport/... ./broadcast/... ./fapp/... ./firmware-bridge/kiss/...
# Tested with -tags router on mipsle under qemu (make dist-smoke).
ROUTER_QEMU_PATTERNS := $(CORE_PATTERNS)
# Cross-compilation targets every commit must build for.
CROSS := linux/amd64 linux/arm64 linux/arm/7 linux/mips/softfloat linux/mipsle/softfloat

.PHONY: all build run test deps check-go fmt vet race cross qemu fuzz bench sim-big clean dist size-check dist-smoke dist-repro ipk deb package-check

all: build

build: check-go
	$(GO) build -trimpath -o bin/meshd ./cmd/meshd

# Run a node with embedded defaults (no config needed): identity created on
# first start, TCP on :4731, mDNS discovery on, API socket in the data dir.
run: check-go
	$(GO) run ./cmd/meshd run

# The whole suite. Installs what it needs on Debian/Ubuntu.
test: deps fmt vet race cross qemu fuzz size-check dist-smoke package-check
	@echo "all checks passed"

deps:
	@scripts/install-deps.sh

check-go:
	@scripts/check-go.sh

fmt: check-go
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: check-go
	$(GO) vet ./...

race: check-go
	$(GO) test -race -count=1 -timeout 20m ./...
	# The opt-in libp2p features (QUIC, libp2p mDNS, the DHT: docs/size.md).
	$(GO) test -race -count=1 -tags quic,libp2pmdns,dht ./transport/libp2p/

cross: check-go
	@scripts/cross-build.sh $(CROSS)

qemu: check-go
	@scripts/qemu-test.sh $(CORE_PATTERNS)

fuzz: check-go
	@scripts/fuzz-all.sh $(FUZZTIME)

# Release matrix into dist/ (packaging/README.md): 7 targets x full/router,
# sizes (dist/SIZES.md, dist/sizes.tsv) and dist/SHA256SUMS.
dist: check-go
	@packaging/dist.sh

# Size budgets: mipsle router build <= 8,000,000 bytes, arm64 full build
# <= 20,000,000 bytes (stripped).
size-check: check-go
	@packaging/check-sizes.sh

# Every MIPS/ARM release target starts under qemu-user and answers
# `meshd version`; the router build's tests run on little-endian MIPS.
dist-smoke: check-go
	@packaging/smoke.sh
	@QEMU_ARCHS=mipsle QEMU_TAGS=router scripts/qemu-test.sh $(ROUTER_QEMU_PATTERNS)

# Builds release binaries twice (other path, empty build cache) and compares.
dist-repro: check-go
	@packaging/repro-check.sh

# OpenWrt .ipk per architecture (router build) and Debian .deb per
# architecture (full build) from dist/, into dist/ (docs/install-openwrt.md,
# docs/install-debian.md). Missing dist/ binaries are built first.
ipk: check-go
	@packaging/packages.sh ipk

deb: check-go
	@packaging/packages.sh deb

# Builds one .ipk (mipsel_24kc) and one .deb (amd64) and checks them as opkg
# and dpkg see them; runs lintian and systemd-analyze when installed.
package-check: check-go
	@packaging/check.sh

bench: check-go
	$(GO) test -run '^$$' -bench . -benchmem ./envelope/...

clean:
	rm -rf bin dist

include sim/meshsim.mk
