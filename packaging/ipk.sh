#!/bin/sh
# ipk.sh BINARY ARCH VERSION [OUTDIR] builds meshd_VERSION_ARCH.ipk for
# OpenWrt's opkg without the OpenWrt SDK. BINARY is a meshd built for ARCH's
# CPU (the router build: packaging/dist.sh ...-router), ARCH an OpenWrt
# package architecture (mipsel_24kc, aarch64_cortex-a53, ...: the table in
# packaging/pkglib.sh), VERSION the release (a leading v is dropped).
#
# The layout is the one OpenWrt's scripts/ipkg-build writes today (openwrt/
# openwrt scripts/ipkg-build, "tar ... ./debian-binary ./data.tar.gz
# ./control.tar.gz | gzip"): the .ipk is a gzip'd tar (not an ar archive as
# in Debian and old ipkg) of debian-binary ("2.0"), data.tar.gz (the files,
# owned by root) and control.tar.gz (control, conffiles, postinst, prerm);
# Installed-Size is the size of the uncompressed data tar, as ipkg-build
# computes it. Archives are reproducible: sorted names, numeric owner 0,
# mtime SOURCE_DATE_EPOCH (default: the last commit's time), gzip -n.
#
# The package carries the same files as the feed package (openwrt/meshd):
# the binary, the procd init script, /etc/config/meshd (a conffile), the tty
# hotplug handler and the sysupgrade keep list. postinst/prerm call
# OpenWrt's default_postinst/default_prerm like SDK-built packages: they
# create the meshd user (Require-User), enable and start /etc/init.d/meshd,
# and stop/disable it on removal.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/pkglib.sh"

[ $# -ge 3 ] && [ $# -le 4 ] || die "usage: ipk.sh BINARY OPENWRT_ARCH VERSION [OUTDIR]"
bin=$1 arch=$2 version=$(pkg_version "$3") out=${4:-dist}

# The Go architecture this OpenWrt architecture needs, and the variant
# (GOARM/GOMIPS) when the release table names one.
target=$(echo "$IPK_ARCHES" | awk -v a="$arch" '$1 == a { print $2 }')
variant=""
if [ -n "$target" ]; then
	set -- $(target_of "$target")
	goarch=$1 variant=$2
	[ "$variant" = - ] && variant=""
else
	case "$arch" in
	mipsel_*) goarch=mipsle ;;
	mips_*) goarch=mips ;;
	mips64el_*) goarch=mips64le ;;
	mips64_*) goarch=mips64 ;;
	arm_*) goarch=arm ;;
	aarch64_*) goarch=arm64 ;;
	x86_64) goarch=amd64 ;;
	i386_*) goarch=386 ;;
	*) die "unknown OpenWrt architecture $arch" ;;
	esac
	echo "ipk.sh: $arch is not in the table of packaging/pkglib.sh; checking only that the binary is $goarch" >&2
fi
check_binary "$bin" "$goarch" "$variant"
if command -v go >/dev/null 2>&1 && ! go_setting "$bin" -tags | tr ',' '\n' | grep -qx router; then
	echo "ipk.sh: warning: $bin is not the router build (-tags router); it carries libp2p" >&2
fi

sde=$(source_date_epoch)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=$tmp/data ctl=$tmp/control
files=$root/openwrt/meshd/files
mkdir -p "$data/usr/bin" "$data/etc/init.d" "$data/etc/config" \
	"$data/etc/hotplug.d/tty" "$data/lib/upgrade/keep.d" "$ctl"
# Modes as the SDK installs them: INSTALL_BIN 0755, INSTALL_CONF 0600 (the
# UCI file may hold the network key), INSTALL_DATA 0644.
install -m 0755 "$bin" "$data/usr/bin/meshd"
install -m 0755 "$files/meshd.init" "$data/etc/init.d/meshd"
install -m 0600 "$files/meshd.config" "$data/etc/config/meshd"
install -m 0644 "$files/meshd.hotplug" "$data/etc/hotplug.d/tty/50-meshd"
install -m 0644 "$files/meshd.keep" "$data/lib/upgrade/keep.d/meshd"

tarc() { # tarc DIR ENTRIES...: a reproducible tar of DIR's ENTRIES on stdout
	_d=$1
	shift
	tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name \
		--mtime="@$sde" -C "$_d" -cf - "$@"
}
tarc "$data" . | gzip -n -9 >"$tmp/data.tar.gz"
size=$(gzip -dc "$tmp/data.tar.gz" | wc -c)

cat >"$ctl/control" <<EOF
Package: meshd
Version: $version
Source: openwrt/meshd
SourceName: meshd
License: NOASSERTION
Section: net
URL: https://github.com/openmeshd/meshd
Maintainer: meshd developers
Require-User: meshd:meshd
Architecture: $arch
Installed-Size: $size
SourceDateEpoch: $sde
Description: Serverless mesh node (TCP, LoRa via RNode)
 meshd joins a serverless mesh: nodes link over the LAN and internet (TCP
 with Noise, mDNS discovery) and over LoRa radios running RNode firmware,
 route messages hop by hop with store-and-forward, and serve a local API, a
 CLI and an optional web UI. Static binary: no dependencies.
EOF
echo /etc/config/meshd >"$ctl/conffiles"
# The maintainer scripts hand over to /lib/functions.sh like the SDK's
# generated ones; without it (installing into a non-OpenWrt root) they do
# nothing.
cat >"$ctl/postinst" <<'EOF'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = 1 ] && exit 0
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
. "${IPKG_INSTROOT}/lib/functions.sh"
default_postinst "$0" "$@"
EOF
cat >"$ctl/prerm" <<'EOF'
#!/bin/sh
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
. "${IPKG_INSTROOT}/lib/functions.sh"
default_prerm "$0" "$@"
EOF
chmod 0644 "$ctl/control" "$ctl/conffiles"
chmod 0755 "$ctl/postinst" "$ctl/prerm"
tarc "$ctl" . | gzip -n -9 >"$tmp/control.tar.gz"
echo 2.0 >"$tmp/debian-binary"

mkdir -p "$out"
pkg=$out/meshd_${version}_$arch.ipk
tarc "$tmp" ./debian-binary ./data.tar.gz ./control.tar.gz | gzip -n -9 >"$pkg.tmp"
mv "$pkg.tmp" "$pkg"
echo "$pkg"
