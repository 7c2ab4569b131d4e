#!/bin/sh
# check.sh [IPK DEB]: checks an .ipk and a .deb the way opkg and dpkg will
# see them. Without arguments (make package-check) it builds one of each
# first: meshd_*_mipsel_24kc.ipk from a mipsle router build and
# meshd_*_amd64.deb from an amd64 build, into $OUT (default: a temporary
# directory). Exits non-zero at the first failed check and says which.
#
# .ipk: outer gzip'd tar with exactly ./debian-binary ./data.tar.gz
# ./control.tar.gz; debian-binary 2.0; control fields (Package, Version,
# Architecture, Installed-Size = uncompressed data tar, Source, SourceName,
# License, Section, Maintainer, Description, Require-User, no Depends);
# conffiles name regular files of the package; files owned by 0:0 with
# SDK modes; the init script a procd rc.common script, executable; the
# binary's CPU matches Architecture; maintainer scripts hand over to
# default_postinst/default_prerm; two builds are byte-identical; the init
# script's UCI-to-meshd.conf writer produces a file meshd accepts, and its
# start_service does what it should (packaging/owrt-init-test.sh, as root).
# .deb: dpkg-deb --info fields, --contents owners and modes, conffiles, the
# unit's directives, systemd-analyze verify and security (when systemd-analyze
# is here), lintian (when installed: no errors), maintainer scripts parse,
# the shipped meshd.conf is accepted by meshd.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/pkglib.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok    $*"; }
fail() {
	echo "FAIL  $*" >&2
	fails=$((fails + 1))
}
check() { # check DESCRIPTION COMMAND...
	_d=$1
	shift
	if "$@" >"$tmp/out" 2>&1; then ok "$_d"; else
		fail "$_d"
		sed 's/^/      /' "$tmp/out" >&2
	fi
}

# meshd_accepts CONF: the meshd for this machine loads CONF without a
# configuration error (status then fails only because no daemon runs).
host_meshd=""
meshd_accepts() {
	_out=$("$host_meshd" status --config "$1" --data "$tmp/nodata" 2>&1) && return 1
	case "$_out" in
	*"not running"*) return 0 ;;
	*)
		echo "$_out"
		return 1
		;;
	esac
}

# One timestamp for both builds of the reproducibility check: the last
# commit's time could change between them in a busy tree.
SOURCE_DATE_EPOCH=$(source_date_epoch)
export SOURCE_DATE_EPOCH
out=${OUT:-$tmp/pkg}
version=${VERSION:-0.0.1}
if [ $# -eq 2 ]; then
	ipk=$1 deb=$2
	host_meshd=${MESHD_HOST:-}
else
	[ $# -eq 0 ] || die "usage: check.sh [IPK DEB]"
	mkdir -p "$out" "$tmp/bin"
	echo "building mipsle router and amd64 binaries ..."
	(cd "$root" && . "$here/targets.sh" &&
		meshd_build "$tmp/bin/meshd-mipsle-router" linux mipsle softfloat router "v$version" &&
		meshd_build "$tmp/bin/meshd-amd64" linux amd64 - full "v$version")
	ipk=$("$here/ipk.sh" "$tmp/bin/meshd-mipsle-router" mipsel_24kc "$version" "$out")
	deb=$("$here/deb.sh" "$tmp/bin/meshd-amd64" amd64 "$version" "$out")
	# Reproducibility: the same inputs give the same bytes.
	ipk2=$("$here/ipk.sh" "$tmp/bin/meshd-mipsle-router" mipsel_24kc "$version" "$tmp/again")
	deb2=$("$here/deb.sh" "$tmp/bin/meshd-amd64" amd64 "$version" "$tmp/again")
	check "ipk is reproducible" cmp "$ipk" "$ipk2"
	check "deb is reproducible" cmp "$deb" "$deb2"
	[ "$(uname -m)" = x86_64 ] && host_meshd=$tmp/bin/meshd-amd64
fi
if [ -z "$host_meshd" ]; then
	(cd "$root" && go build -o "$tmp/meshd-host" ./cmd/meshd)
	host_meshd=$tmp/meshd-host
fi
# The router build for this machine: what the .ipk runs, started below with
# the config the shipped /etc/config/meshd produces.
(cd "$root" && CGO_ENABLED=0 go build -tags router -o "$tmp/meshd-host-router" ./cmd/meshd)

# ---------------------------------------------------------------- .ipk
echo "checking $ipk"
x=$tmp/ipk
mkdir -p "$x/outer" "$x/control" "$x/data"
check "ipk: outer archive is gzip" sh -c '[ "$(od -A n -t x1 -N 2 "$1" | tr -d " ")" = 1f8b ]' _ "$ipk"
check "ipk: outer tar holds exactly debian-binary, data.tar.gz, control.tar.gz" \
	sh -c '[ "$(tar -tzf "$1" | sed "s|^\./||" | sort | tr "\n" " ")" = "control.tar.gz data.tar.gz debian-binary " ]' _ "$ipk"
tar -xzf "$ipk" -C "$x/outer"
check "ipk: debian-binary is 2.0" sh -c '[ "$(cat "$1")" = 2.0 ]' _ "$x/outer/debian-binary"
tar -xzf "$x/outer/control.tar.gz" -C "$x/control"
tar -xzf "$x/outer/data.tar.gz" -C "$x/data"
ctl=$x/control/control
field() { sed -n "s/^$1: *//p" "$ctl"; }
arch=$(field Architecture)
for f in Package Version Architecture Installed-Size Source SourceName License Section Maintainer Description Require-User; do
	check "ipk: control has $f" sh -c '[ -n "$1" ]' _ "$(field "$f")"
done
check "ipk: Package is meshd" test "$(field Package)" = meshd
check "ipk: file name is Package_Version_Architecture.ipk" \
	test "$(basename "$ipk")" = "meshd_$(field Version)_$arch.ipk"
check "ipk: no Depends (static binary)" sh -c '! grep -q "^Depends:" "$1"' _ "$ctl"
check "ipk: Installed-Size is the uncompressed data tar" \
	test "$(field Installed-Size)" = "$(gzip -dc "$x/outer/data.tar.gz" | wc -c)"
check "ipk: Architecture $arch is one we build" sh -c 'echo "$1" | grep -q "^$2 "' _ "$IPK_ARCHES" "$arch"
target=$(echo "$IPK_ARCHES" | awk -v a="$arch" '$1 == a { print $2 }')
set -- $(target_of "$target")
check "ipk: binary is $1/$2 as $arch needs" sh -c '. "$1"; check_binary "$2" "$3" "$4"' _ "$here/pkglib.sh" "$x/data/usr/bin/meshd" "$1" "$([ "$2" = - ] || echo "$2")"
check "ipk: conffiles is /etc/config/meshd" test "$(cat "$x/control/conffiles")" = /etc/config/meshd
while read -r cf; do
	check "ipk: conffile $cf is a regular file in data" test -f "$x/data$cf"
done <"$x/control/conffiles"
listing=$(tar -tvzf "$x/outer/data.tar.gz")
check "ipk: every data entry is owned by 0/0" sh -c '! echo "$1" | awk "{print \$2}" | grep -v "^0/0$"' _ "$listing"
mode() { echo "$listing" | awk -v p="./$1" '$6 == p { print $1 }'; }
check "ipk: /usr/bin/meshd is -rwxr-xr-x" test "$(mode usr/bin/meshd)" = -rwxr-xr-x
check "ipk: /etc/init.d/meshd is -rwxr-xr-x" test "$(mode etc/init.d/meshd)" = -rwxr-xr-x
check "ipk: /etc/config/meshd is -rw------- (may hold the network key)" test "$(mode etc/config/meshd)" = -rw-------
check "ipk: init script runs under rc.common with procd" \
	sh -c 'head -n 1 "$1" | grep -qx "#!/bin/sh /etc/rc.common" && grep -qx "USE_PROCD=1" "$1" && grep -q "procd_add_reload_trigger meshd" "$1"' _ "$x/data/etc/init.d/meshd"
# OpenWrt's shell is busybox ash: use it for the init script when it is
# here (apt install busybox), else the system sh.
owrt_sh=sh
command -v busybox >/dev/null 2>&1 && owrt_sh="busybox sh"
echo "      OpenWrt scripts run with: $owrt_sh"
check "ipk: init script parses ($owrt_sh -n)" $owrt_sh -n "$x/data/etc/init.d/meshd"
check "ipk: hotplug handler parses ($owrt_sh -n)" $owrt_sh -n "$x/data/etc/hotplug.d/tty/50-meshd"
for s in postinst prerm; do
	check "ipk: $s is executable" test -x "$x/control/$s"
	check "ipk: $s parses (sh -n)" sh -n "$x/control/$s"
done
check "ipk: postinst calls default_postinst" grep -q '^default_postinst "\$0" "\$@"$' "$x/control/postinst"
check "ipk: prerm calls default_prerm" grep -q '^default_prerm "\$0" "\$@"$' "$x/control/prerm"

# The init script's writer: source it (it only defines functions), give it
# the variables uci_validate_section would set and a config_list_foreach
# over plain variables, and let meshd parse the result. Covers quoting of
# " and \, lists, booleans, numbers and empty options; procd and UCI
# themselves are OpenWrt's and not exercised here.
cat >"$tmp/writer.sh" <<'EOF'
. "$1"
config_list_foreach() { eval "_l=\${list_$1_$2:-}"; for _i in $_l; do "$3" "$_i"; done; }
name='Node "A" \ on the roof' listen=':4731' mdns=1 network_key='' pq=0
list_main_peer='192.0.2.1:4731 example.net:4731#00112233445566778899aabbccddeeff'
device='/dev/ttyUSB0' region=EU868 frequency=869525000 bandwidth='' spreading_factor=9
coding_rate='' tx_power=14 duty_cycle=0.05
web_listen='127.0.0.1:8080' tls=1 list_web_host='mesh.example.org'
api_listen='' log_level=debug routing_commit_delay=30s
write_conf
EOF
check "ipk: UCI writer output" $owrt_sh "$tmp/writer.sh" "$x/data/etc/init.d/meshd"
$owrt_sh "$tmp/writer.sh" "$x/data/etc/init.d/meshd" >"$tmp/uci.conf" 2>&1 || true
check "ipk: UCI writer quotes \" and \\" grep -qxF 'name = "Node \"A\" \\ on the roof"' "$tmp/uci.conf"
check "ipk: UCI writer lists" grep -qxF 'peers = ["192.0.2.1:4731", "example.net:4731#00112233445566778899aabbccddeeff"]' "$tmp/uci.conf"
check "ipk: meshd accepts the UCI writer's config" meshd_accepts "$tmp/uci.conf"
check "ipk: meshd accepts the writer's config with everything empty" $owrt_sh -c '
	. "$1"; config_list_foreach() { :; }
	write_conf >"$2"' _ "$x/data/etc/init.d/meshd" "$tmp/empty.conf"
check "ipk: ... and meshd accepts it" meshd_accepts "$tmp/empty.conf"

# The shipped /etc/config/meshd through the writer, with the web UI turned
# on: the router build must start with it (it has no web TLS, so a web.tls
# default of 1 would stop it). UCI is read by a small awk instead of
# OpenWrt's uci; "listen" of sections other than main becomes web_listen and
# api_listen as in the init script.
awk -v q="'" '
function val(  v) { v = $0; sub(/^[ \t]*(option|list)[ \t]+[^ \t]+[ \t]*/, "", v); gsub(q, "", v); return v }
$1 == "config" { sec = $3; gsub(q, "", sec) }
$1 == "option" { n = $2; if (n == "listen" && sec != "main") n = sec "_listen"; print n "=" q val() q }
$1 == "list" { l = "list_" sec "_" $2; print l "=\"${" l ":+$" l " }" val() "\"" }
' "$x/data/etc/config/meshd" >"$tmp/uci-vars.sh"
cat >"$tmp/defaults.sh" <<'END'
. "$1"
config_list_foreach() { eval "_l=\${list_$1_$2:-}"; for _i in $_l; do "$3" "$_i"; done; }
. "$2"
web_listen=127.0.0.1:0
write_conf
END
$owrt_sh "$tmp/defaults.sh" "$x/data/etc/init.d/meshd" "$tmp/uci-vars.sh" >"$tmp/defaults.conf"
check "ipk: shipped UCI defaults give listen :4731, mdns on, log level info" sh -c '
	grep -qx "listen = \":4731\"" "$1" && grep -qx "mdns = true" "$1" && grep -qx "level = \"info\"" "$1"' _ "$tmp/defaults.conf"
# Loopback and no mDNS for the test run (the environment overrides the file).
MESHD_TCP_LISTEN=127.0.0.1:0 MESHD_TCP_MDNS=false \
	"$tmp/meshd-host-router" run --config "$tmp/defaults.conf" --data "$tmp/owrt-data" >"$tmp/owrt.log" 2>&1 &
owrt=$!
i=0
while ! grep -q 'msg="web UI"' "$tmp/owrt.log" && kill -0 "$owrt" 2>/dev/null && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
check "ipk: the router build starts with the shipped UCI defaults and the web UI on" grep -q 'msg="web UI"' "$tmp/owrt.log"
kill "$owrt" 2>/dev/null || true
wait "$owrt" 2>/dev/null || true
grep -q 'msg="web UI"' "$tmp/owrt.log" || sed 's/^/      /' "$tmp/owrt.log" >&2
# start_service itself, in a private mount namespace (root, busybox).
rc=0
MESHD_HOST=$host_meshd "$here/owrt-init-test.sh" "$x/data/etc/init.d/meshd" "$x/data/etc/config/meshd" || rc=$?
case $rc in
0 | 77) ;;
*) fail "ipk: init script start_service (packaging/owrt-init-test.sh)" ;;
esac

# ---------------------------------------------------------------- .deb
echo "checking $deb"
y=$tmp/deb
mkdir -p "$y"
info=$(dpkg-deb --info "$deb")
dfield() { dpkg-deb --field "$deb" "$1"; }
for f in Package Version Architecture Maintainer Installed-Size Depends Section Priority Description; do
	check "deb: control has $f" sh -c '[ -n "$1" ]' _ "$(dfield "$f")"
done
darch=$(dfield Architecture)
check "deb: file name is Package_Version_Architecture.deb" \
	test "$(basename "$deb")" = "meshd_$(dfield Version)_$darch.deb"
check "deb: Depends: adduser (postinst falls back to it)" test "$(dfield Depends)" = adduser
check "deb: postinst, prerm, postrm, conffiles present" \
	sh -c 'for f in postinst prerm postrm conffiles; do echo "$1" | grep -q " $f " || exit 1; done' _ "$info"
contents=$(dpkg-deb --contents "$deb")
check "deb: every entry is root/root" sh -c '! echo "$1" | awk "{print \$2}" | grep -v "^root/root$"' _ "$contents"
dmode() { echo "$contents" | awk -v p="./$1" '$6 == p { print $1 }'; }
check "deb: /usr/bin/meshd is -rwxr-xr-x" test "$(dmode usr/bin/meshd)" = -rwxr-xr-x
for f in usr/lib/systemd/system/meshd.service usr/lib/sysusers.d/meshd.conf \
	usr/lib/modules-load.d/meshd.conf etc/meshd/meshd.conf \
	etc/profile.d/meshd.sh usr/share/doc/meshd/copyright usr/share/doc/meshd/changelog.gz; do
	check "deb: /$f is -rw-r--r--" test "$(dmode "$f")" = -rw-r--r--
done
dpkg-deb --raw-extract "$deb" "$y"
check "deb: conffiles are /etc/meshd/meshd.conf and /etc/profile.d/meshd.sh" \
	test "$(sort "$y/DEBIAN/conffiles" | tr '\n' ' ')" = "/etc/meshd/meshd.conf /etc/profile.d/meshd.sh "
case "$darch" in amd64 | arm64 | i386) dga=$darch ;; armhf | armel) dga=arm ;; mips64el) dga=mips64le ;; *) dga=unknown ;; esac
check "deb: binary is $dga for $darch" sh -c '. "$1"; check_binary "$2" "$3"' _ "$here/pkglib.sh" "$y/usr/bin/meshd" "$dga"
for s in postinst prerm postrm; do
	check "deb: $s parses (sh -n)" sh -n "$y/DEBIAN/$s"
done
unit=$y/usr/lib/systemd/system/meshd.service
check "deb: unit runs meshd run --data /var/lib/meshd --config /etc/meshd/meshd.conf" \
	grep -qx 'ExecStart=/usr/bin/meshd run --data /var/lib/meshd --config /etc/meshd/meshd.conf' "$unit"
for d in User=meshd Group=meshd SupplementaryGroups=dialout StateDirectory=meshd StateDirectoryMode=0750 \
	ConfigurationDirectory=meshd ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
	ProtectKernelTunables=yes ProtectKernelModules=yes ProtectKernelLogs=yes \
	'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK' 'DeviceAllow=char-ttyUSB rw' \
	'DeviceAllow=char-ttyACM rw' DevicePolicy=closed SystemCallFilter=@system-service CapabilityBoundingSet= \
	UMask=0007 Restart=on-failure 'ExecReload=/bin/kill -HUP $MAINPID'; do
	check "deb: unit has $d" grep -qxF "$d" "$unit"
done
check "deb: unit does not hide devices (PrivateDevices would hide the radio)" sh -c '! grep -q "^PrivateDevices=yes" "$1"' _ "$unit"
check "deb: sysusers creates user and group meshd" \
	sh -c 'grep -q "^g meshd " "$1" && grep -q "^u meshd " "$1"' _ "$y/usr/lib/sysusers.d/meshd.conf"
check "deb: meshd accepts the shipped /etc/meshd/meshd.conf" meshd_accepts "$y/etc/meshd/meshd.conf"
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify needs ExecStart to exist: point it at the extracted binary.
	sed "s|^ExecStart=/usr/bin/meshd|ExecStart=$y/usr/bin/meshd|" "$unit" >"$tmp/meshd.service"
	check "deb: systemd-analyze verify" systemd-analyze verify "$tmp/meshd.service"
	exposure=$(systemd-analyze security --offline=true "$tmp/meshd.service" 2>/dev/null |
		sed -n 's/.*Overall exposure level for meshd.service: \([0-9.]*\).*/\1/p')
	echo "      systemd-analyze security exposure: ${exposure:-?} (0 = locked down, 10 = unprotected)"
	check "deb: systemd-analyze security exposure <= 2.0" awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'
else
	echo "skip  systemd-analyze not installed"
fi
if command -v lintian >/dev/null 2>&1; then
	lintian --tag-display-limit 0 "$deb" >"$tmp/lintian" 2>&1 || true
	grep -v "running with root privileges" "$tmp/lintian" | sed 's/^/      /' || true
	check "deb: lintian reports no errors" sh -c '! grep -q "^E: " "$1"' _ "$tmp/lintian"
else
	echo "skip  lintian not installed (apt install lintian)"
fi

if [ "$fails" -gt 0 ]; then
	echo "package-check: $fails check(s) failed" >&2
	exit 1
fi
echo "package-check: all checks passed ($(basename "$ipk"), $(basename "$deb"))"
