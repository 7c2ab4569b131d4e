# shellcheck shell=sh disable=SC2034 # sourced; MESHD_TARGETS is used by the caller
# Sourced by the packaging scripts (POSIX sh). The release matrix, one target
# a line: NAME GOOS GOARCH VARIANT. NAME is what goes into the file name
# (meshd-VERSION-NAME[-router]); VARIANT is GOARM for arm and GOMIPS/GOMIPS64
# for the MIPS family, "-" for none.
MESHD_TARGETS='linux-amd64 linux amd64 -
linux-arm64 linux arm64 -
linux-armv7 linux arm 7
linux-armv6 linux arm 6
linux-mips-softfloat linux mips softfloat
linux-mipsle-softfloat linux mipsle softfloat
linux-mips64-softfloat linux mips64 softfloat'

# meshd_version prints the version stamped into release binaries: $VERSION if
# set, else `git describe --tags --always --dirty`, else "dev".
meshd_version() {
	if [ -n "${VERSION:-}" ]; then
		echo "$VERSION"
		return
	fi
	git describe --tags --always --dirty 2>/dev/null || echo dev
}

# meshd_build OUT GOOS GOARCH VARIANT FLAVOUR VERSION builds ./cmd/meshd into
# OUT. FLAVOUR is "full" or "router" (-tags router: no libp2p). The flags make
# the build reproducible: no cgo, -trimpath (no local paths), an empty build
# id, stripped symbol tables (-s -w), the version from the caller, and
# -buildvcs=false so that a build from a source tarball (no .git) is the same
# bytes as one from a checkout (the version string already names the commit).
# GOFLAGS is cleared so a developer's environment cannot change the bytes.
meshd_build() {
	_out=$1 _os=$2 _arch=$3 _var=$4 _flavour=$5 _ver=$6
	_env=""
	case "$_arch" in
	arm) _env="GOARM=$_var" ;;
	mips | mipsle) _env="GOMIPS=$_var" ;;
	mips64 | mips64le) _env="GOMIPS64=$_var" ;;
	esac
	_tags=""
	[ "$_flavour" = router ] && _tags="-tags=router"
	# shellcheck disable=SC2086 # $_env and $_tags are empty or one word
	env GOFLAGS= CGO_ENABLED=0 GOOS="$_os" GOARCH="$_arch" $_env \
		go build $_tags -trimpath -buildvcs=false \
		-ldflags="-s -w -buildid= -X main.version=$_ver" \
		-o "$_out" ./cmd/meshd
}
