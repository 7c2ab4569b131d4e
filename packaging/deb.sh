#!/bin/sh
# deb.sh BINARY DEBARCH VERSION [OUTDIR] builds meshd_VERSION_DEBARCH.deb.
# BINARY is a meshd built for the Debian architecture DEBARCH (amd64, arm64,
# armhf, ...: the table in packaging/pkglib.sh), VERSION the release (a
# leading v is dropped). The package holds
#   /usr/bin/meshd
#   /usr/lib/systemd/system/meshd.service  hardened unit, user meshd
#   /usr/lib/sysusers.d/meshd.conf         the meshd user and group
#   /usr/lib/modules-load.d/meshd.conf     USB serial drivers loaded at boot
#   /etc/meshd/meshd.conf                  conffile: `meshd init` template
#   /etc/profile.d/meshd.sh                group meshd -> MESHD_DATA
#   /usr/share/doc/meshd/copyright, changelog.gz
# and maintainer scripts (packaging/debian/) that create the user, own the
# config root:meshd 0640 and enable/start the unit. Built with
# dpkg-deb --build --root-owner-group, so every file is root's without
# fakeroot; mtimes are SOURCE_DATE_EPOCH (default: the last commit's time).
#
# The config template comes from `meshd init --stdout`: BINARY itself when it
# runs here, else MESHD_HOST (a meshd for this machine), else `go run`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/pkglib.sh"

[ $# -ge 3 ] && [ $# -le 4 ] || die "usage: deb.sh BINARY DEBARCH VERSION [OUTDIR]"
bin=$1 arch=$2 version=$(pkg_version "$3") out=${4:-dist}
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is needed (apt install dpkg)"

case "$arch" in
amd64) goarch=amd64 ;;
arm64) goarch=arm64 ;;
armhf | armel) goarch=arm ;;
i386) goarch=386 ;;
mips64el) goarch=mips64le ;;
*) die "unknown Debian architecture $arch" ;;
esac
check_binary "$bin" "$goarch"
if [ "$arch" = armhf ] && command -v go >/dev/null 2>&1; then
	# armhf has VFP; GOARM=5 would work but run soft-float.
	case "$(go_setting "$bin" GOARM)" in 6 | 7 | 7,* | 6,*) ;; *) echo "deb.sh: warning: $bin is not GOARM=6/7" >&2 ;; esac
fi

sde=$(source_date_epoch)
export SOURCE_DATE_EPOCH=$sde
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pkg=$tmp/root
deb=$here/debian
mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/systemd/system" \
	"$pkg/usr/lib/sysusers.d" "$pkg/etc/meshd" "$pkg/etc/profile.d" \
	"$pkg/usr/share/doc/meshd"
install -m 0755 "$bin" "$pkg/usr/bin/meshd"
install -m 0644 "$deb/meshd.service" "$pkg/usr/lib/systemd/system/meshd.service"
install -m 0644 "$deb/meshd.sysusers" "$pkg/usr/lib/sysusers.d/meshd.conf"
mkdir -p "$pkg/usr/lib/modules-load.d"
install -m 0644 "$deb/meshd.modules-load" "$pkg/usr/lib/modules-load.d/meshd.conf"
install -m 0644 "$deb/meshd.profile" "$pkg/etc/profile.d/meshd.sh"
install -m 0644 "$deb/copyright" "$pkg/usr/share/doc/meshd/copyright"

# The default config: every key commented out at its default.
template() {
	if "$bin" init --stdout 2>/dev/null; then
		return
	fi
	if [ -n "${MESHD_HOST:-}" ]; then
		"$MESHD_HOST" init --stdout
		return
	fi
	(cd "$root" && go run -tags router ./cmd/meshd init --stdout)
}
{
	echo "# /etc/meshd/meshd.conf of the meshd Debian package. The service runs"
	echo "#   meshd run --data /var/lib/meshd --config /etc/meshd/meshd.conf"
	echo "# so data_dir below is not used by it. After a change:"
	echo "#   systemctl restart meshd   (or reload: applies what can change live)"
	echo "#"
	template
} >"$pkg/etc/meshd/meshd.conf"
chmod 0644 "$pkg/etc/meshd/meshd.conf"
grep -q '^\[tcp\]' "$pkg/etc/meshd/meshd.conf" || die "no config template (meshd init --stdout failed)"

# A native package's changelog (Debian policy 12.7): one entry per build;
# the history is git's.
maint=${DEB_MAINTAINER:-meshd developers <maintainers@meshd.invalid>}
printf 'meshd (%s) unstable; urgency=medium\n\n  * Release %s.\n  * Changes: the git log of https://github.com/openmeshd/meshd.\n\n -- %s  %s\n' \
	"$version" "$version" "$maint" "$(date -u -R -d "@$sde")" | gzip -n -9 >"$pkg/usr/share/doc/meshd/changelog.gz"
chmod 0644 "$pkg/usr/share/doc/meshd/changelog.gz"
# Go links statically by design (CGO_ENABLED=0: one binary for every libc).
mkdir -p "$pkg/usr/share/lintian/overrides"
echo "meshd: statically-linked-binary [usr/bin/meshd]" >"$pkg/usr/share/lintian/overrides/meshd"
chmod 0644 "$pkg/usr/share/lintian/overrides/meshd"

install -m 0755 "$deb/postinst" "$deb/prerm" "$deb/postrm" "$pkg/DEBIAN/"
printf '/etc/meshd/meshd.conf\n/etc/profile.d/meshd.sh\n' >"$pkg/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<EOF
Package: meshd
Version: $version
Architecture: $arch
Maintainer: $maint
Installed-Size: $size
Depends: adduser
Section: net
Priority: optional
Homepage: https://github.com/openmeshd/meshd
Description: serverless mesh node (TCP, LoRa via RNode, libp2p)
 meshd joins a serverless mesh: nodes link over the LAN and the internet
 (TCP with Noise, mDNS discovery, optionally libp2p) and over LoRa radios
 running RNode firmware, route messages hop by hop with store-and-forward,
 and serve a local API, a CLI and an optional web UI.
 .
 The package runs meshd as a sandboxed systemd service under the user meshd;
 members of the group meshd can use the meshd command.
EOF
find "$pkg" -exec touch -h -d "@$sde" {} +

mkdir -p "$out"
file=$out/meshd_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$file" >/dev/null
echo "$file"
