# meshd — build and test entry points. `make test` is what CI runs (.ci/run).

GO        ?= go
FUZZTIME  ?= 3s
# Core packages: pure protocol logic that must behave the same on every CPU we
# ship to. Their tests also run on big-endian MIPS and on ARM under qemu-user.
CORE_PATTERNS := ./envelope/... ./routing/... ./transport/lora/... ./broadcast/... ./fapp/... ./firmware-bridge/kiss/...
# Cross-compilation targets every commit must build for.
CROSS := linux/amd64 linux/arm64 linux/arm/7 linux/mips/softfloat linux/mipsle/softfloat

.PHONY: all build run test deps check-go fmt vet race cross qemu fuzz bench sim-big clean

all: build

build: check-go
	$(GO) build -trimpath -o bin/meshd ./cmd/meshd

# Run a node with embedded defaults (no config needed): identity created on
# first start, TCP on :4731, mDNS discovery on, API socket in the data dir.
run: check-go
	$(GO) run ./cmd/meshd run

# The whole suite. Installs what it needs on Debian/Ubuntu.
test: deps fmt vet race cross qemu fuzz
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

cross: check-go
	@scripts/cross-build.sh $(CROSS)

qemu: check-go
	@scripts/qemu-test.sh $(CORE_PATTERNS)

fuzz: check-go
	@scripts/fuzz-all.sh $(FUZZTIME)

bench: check-go
	$(GO) test -run '^$$' -bench . -benchmem ./envelope/...

clean:
	rm -rf bin dist

include sim/meshsim.mk
