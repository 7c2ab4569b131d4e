# Sourced by packaging/ipk.sh, packaging/deb.sh and packaging/check.sh (POSIX
# sh): version normalisation, the architecture tables and the check that a
# binary is built for the package's architecture.

# OpenWrt package architectures we build .ipk files for, with the release
# binary (packaging/targets.sh NAME, router build) that runs there. A package
# is per architecture: opkg refuses one whose Architecture is not in the
# router's `opkg print-architecture`. The binary is static (CGO_ENABLED=0), so
# one Go build serves every OpenWrt architecture of its CPU family:
#   mips*_*   GOARCH=mips/mipsle GOMIPS=softfloat (OpenWrt MIPS targets have
#             no FPU or build soft-float userland)
#   arm_*vfp* GOARCH=arm GOARM=7 (ARMv7 with VFPv3 or later), except the
#             ARMv6 arm1176jzf-s (Raspberry Pi 1/Zero), GOARM=6
#   aarch64_* GOARCH=arm64
#   x86_64    GOARCH=amd64
# Not covered by the release binaries: ARM without FPU (arm_cortex-a9 of
# bcm53xx, arm_arm926ej-s, arm_xscale, ...: need GOARM=5), i386, mips64
# hard-float. Build those by hand and pass the binary to ipk.sh.
IPK_ARCHES='mipsel_24kc linux-mipsle-softfloat
mipsel_74kc linux-mipsle-softfloat
mipsel_mips32 linux-mipsle-softfloat
mips_24kc linux-mips-softfloat
mips_4kec linux-mips-softfloat
mips_mips32 linux-mips-softfloat
arm_cortex-a7_neon-vfpv4 linux-armv7
arm_cortex-a9_vfpv3-d16 linux-armv7
arm_cortex-a9_neon linux-armv7
arm_cortex-a15_neon-vfpv4 linux-armv7
arm_cortex-a5_vfpv4 linux-armv7
arm_cortex-a8_vfpv3 linux-armv7
arm_arm1176jzf-s_vfp linux-armv6
aarch64_generic linux-arm64
aarch64_cortex-a53 linux-arm64
aarch64_cortex-a72 linux-arm64
aarch64_cortex-a76 linux-arm64
x86_64 linux-amd64'

# Debian architectures we build .deb files for, with the release binary
# (full build, libp2p included). armhf gets the ARMv6 build: Raspberry Pi OS's
# 32-bit armhf is ARMv6 + VFP (Pi 1 and Zero), and GOARM=6 code also runs on
# Debian's ARMv7 armhf.
DEB_ARCHES='amd64 linux-amd64
arm64 linux-arm64
armhf linux-armv6'

die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

# pkg_version VERSION prints a package version opkg, apk and dpkg order
# correctly: a leading "v" goes; a version that does not start with a digit
# and a dot (git describe without tags: "2a4cdc0-dirty") becomes
# 0.0.0~gitYYYYMMDD.HASH, which sorts before any release 0.0.1 and later;
# "-dirty" becomes "+dirty"; other "-" (git describe: 0.1.0-12-gabc) become
# "+" so that they sort after the tag.
pkg_version() {
	_v=${1#v}
	case "$_v" in
	[0-9]*.[0-9]*) ;;
	*)
		_d=$(date -u -d "@$(source_date_epoch)" +%Y%m%d)
		_v="0.0.0~git$_d.$_v"
		;;
	esac
	echo "$_v" | sed -e 's/-dirty$/+dirty/' -e 's/-/+/g'
}

# source_date_epoch: the last commit's time, for reproducible archives.
source_date_epoch() {
	if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
		echo "$SOURCE_DATE_EPOCH"
		return
	fi
	git -C "$(dirname "$0")" log -1 --format=%ct 2>/dev/null || date +%s
}

# go_setting BINARY KEY prints a build setting recorded in a Go binary
# (GOARCH, GOARM, GOMIPS, -tags, ...), empty if absent.
go_setting() {
	go version -m "$1" 2>/dev/null | awk -v k="$2" '$1 == "build" { split($2, a, "="); if (a[1] == k) { sub("^[^=]*=", "", $2); print $2 } }'
}

# elf_info BINARY prints "CLASS DATA MACHINE" of an ELF file (1/2 = 32/64
# bit, 1/2 = little/big endian, e_machine as a number) without file(1).
elf_info() {
	_h=$(od -A n -t u1 -N 20 "$1" | tr -s ' \n' '  ')
	set -- $_h
	[ "$1 $2 $3 $4" = "127 69 76 70" ] || return 1
	_class=$5 _data=$6
	if [ "$_data" = 1 ]; then _m=$((${19} + 256 * ${20})); else _m=$((${19} * 256 + ${20})); fi
	echo "$_class $_data $_m"
}

# check_binary BINARY GOARCH [VARIANT] fails unless BINARY is a Linux ELF
# for GOARCH (and GOARM/GOMIPS VARIANT when the binary records one): a
# package must not carry a binary for another CPU under its Architecture.
check_binary() {
	_bin=$1 _want=$2 _var=${3:-}
	[ -f "$_bin" ] || die "$_bin: no such file"
	_elf=$(elf_info "$_bin") || die "$_bin: not an ELF binary"
	case "$_want" in
	amd64) _exp="2 1 62" ;;
	386) _exp="1 1 3" ;;
	arm64) _exp="2 1 183" ;;
	arm) _exp="1 1 40" ;;
	mips) _exp="1 2 8" ;;
	mipsle) _exp="1 1 8" ;;
	mips64) _exp="2 2 8" ;;
	mips64le) _exp="2 1 8" ;;
	*) die "unknown GOARCH $_want" ;;
	esac
	[ "$_elf" = "$_exp" ] || die "$_bin: ELF class/data/machine $_elf, want $_exp ($_want)"
	command -v go >/dev/null 2>&1 || return 0
	_ga=$(go_setting "$_bin" GOARCH)
	[ -z "$_ga" ] || [ "$_ga" = "$_want" ] || die "$_bin: built for GOARCH=$_ga, want $_want"
	[ -n "$_var" ] || return 0
	case "$_want" in
	arm) _got=$(go_setting "$_bin" GOARM) ;;
	mips | mipsle) _got=$(go_setting "$_bin" GOMIPS) ;;
	mips64 | mips64le) _got=$(go_setting "$_bin" GOMIPS64) ;;
	*) return 0 ;;
	esac
	[ -z "$_got" ] || [ "$_got" = "$_var" ] || die "$_bin: built with variant $_got, want $_var"
}

# target_of NAME prints "GOARCH VARIANT" of a packaging/targets.sh target.
target_of() {
	. "$(dirname "$0")/targets.sh"
	echo "$MESHD_TARGETS" | awk -v n="$1" '$1 == n { print $3, $4 }'
}
