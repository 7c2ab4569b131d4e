#!/bin/sh
# owrt-init-test.sh INIT UCI: runs start_service of the OpenWrt init script
# INIT (files/meshd.init) under busybox ash, with the UCI file UCI, in a
# private mount namespace whose /var is a fresh tmpfs, and checks what it
# did: the generated /var/etc/meshd/meshd.conf (owner, mode, content), the
# data directory, the /var/lib/meshd link, the radio's device node, and the
# procd instance it declared. Needs root, unshare(1) and busybox; exits 77
# (skip) without them. packaging/check.sh calls it.
#
# OpenWrt's own pieces are replaced by small stand-ins: config_load and
# config_list_foreach read the UCI file through awk, uci_validate_section
# assigns each option or its default (it does not check types), procd_*
# record the instance's parameters. What this covers is the init script's
# own logic; procd, ubus and validate_data are OpenWrt's and not run here.
set -eu
[ $# -eq 2 ] || { echo "usage: owrt-init-test.sh INIT UCI" >&2; exit 2; }
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null 2>&1 || ! command -v busybox >/dev/null 2>&1; then
	echo "skip  init script test: needs root, unshare and busybox" >&2
	exit 77
fi
init=$(realpath "$1")
uci=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The test's /etc/config/meshd: the shipped one with a scratch data_dir, the
# unprivileged user nobody (the package's meshd user does not exist here), a
# fake radio, a web UI, two peers, and an extra_config file.
data=$tmp/data
sed -e "s|option data_dir '/etc/meshd'|option data_dir '$data'|" \
	-e "s|option user 'meshd'|option user 'nobody'|" \
	-e "s|option device ''|option device '/var/ttyFAKE0'|" \
	-e "s|option region ''|option region 'EU868'|" \
	-e "s|#list peer 'example.net:4731'|list peer 'a.example:4731'\n\tlist peer 'b.example:4731'|" \
	-e "s|option extra_config ''|option extra_config '$tmp/extra.conf'|" \
	"$uci" >"$tmp/uci"
printf '# extra\n[messages]\nmax_text = 2000\n' >"$tmp/extra.conf"
grep -q "option user 'nobody'" "$tmp/uci" && grep -q "ttyFAKE0" "$tmp/uci" || {
	echo "FAIL  could not adapt $uci for the test" >&2
	exit 1
}

cat >"$tmp/shims.sh" <<'EOF'
# Stand-ins for OpenWrt's /lib/functions.sh and /lib/functions/procd.sh.
uci_file=$UCI
uci_get() { # uci_get SECTION OPTION: the option's value, or nothing
	awk -v s="$1" -v o="$2" -v q="'" '
	$1 == "config" { sec = $3; gsub(q, "", sec) }
	sec == s && $1 == "option" && $2 == o { v = $0; sub(/^[ \t]*option[ \t]+[^ \t]+[ \t]*/, "", v); gsub(q, "", v); print v; found = 1 }
	END { exit !found }' "$uci_file"
}
config_load() { :; }
config_list_foreach() { # SECTION OPTION FUNC
	awk -v s="$1" -v o="$2" -v q="'" '
	$1 == "config" { sec = $3; gsub(q, "", sec) }
	sec == s && $1 == "list" && $2 == o { v = $0; sub(/^[ \t]*list[ \t]+[^ \t]+[ \t]*/, "", v); gsub(q, "", v); print v }' "$uci_file" >"$TMPD/list"
	while read -r _item; do "$3" "$_item"; done <"$TMPD/list"
}
uci_validate_section() { # PACKAGE TYPE SECTION SPEC...
	_sec=$3
	shift 3
	for _spec in "$@"; do
		_name=${_spec%%:*}
		_rest=${_spec#*:}
		_def=""
		case "$_rest" in *:*) _def=${_rest#*:} ;; esac
		if _v=$(uci_get "$_sec" "$_name"); then :; else _v=$_def; fi
		eval "$_name=\$_v"
	done
	return 0
}
procd_open_instance() { echo "open_instance" >>"$PROCD"; }
procd_set_param() { _k=$1; shift; echo "set $_k $*" >>"$PROCD"; }
procd_append_param() { _k=$1; shift; echo "append $_k $*" >>"$PROCD"; }
procd_close_instance() { echo "close_instance" >>"$PROCD"; }
EOF

cat >"$tmp/run.sh" <<'EOF'
# In the namespace: a fresh /var, a fake radio node, then start_service.
mount -t tmpfs none /var
mknod /var/ttyFAKE0 c 4 64 && chmod 0600 /var/ttyFAKE0
. "$TMPD/shims.sh"
. "$INIT"
start_service
echo "rc=$?" >>"$PROCD"
{
	stat -c '%U:%G %a %n' /var/etc/meshd /var/etc/meshd/meshd.conf "$DATA" /var/ttyFAKE0
	readlink /var/lib/meshd
	cat /var/etc/meshd/meshd.conf
} >"$TMPD/state" 2>&1
EOF
UCI=$tmp/uci TMPD=$tmp PROCD=$tmp/procd INIT=$init DATA=$data \
	unshare -m busybox sh "$tmp/run.sh" 2>"$tmp/err" || {
	echo "FAIL  start_service did not run:" >&2
	sed 's/^/      /' "$tmp/err" >&2
	exit 1
}

fails=0
t() { # t DESCRIPTION COMMAND...
	_d=$1
	shift
	if "$@" >/dev/null 2>&1; then echo "ok    init: $_d"; else
		echo "FAIL  init: $_d" >&2
		fails=$((fails + 1))
	fi
}
has() { grep -qxF "$2" "$tmp/$1"; }
t "start_service returns 0" has procd "rc=0"
t "procd command is meshd run --config /var/etc/meshd/meshd.conf --data DATA" \
	has procd "set command /usr/bin/meshd run --config /var/etc/meshd/meshd.conf --data $data"
t "runs as user nobody, group nogroup" sh -c 'grep -qx "set user nobody" "$1" && grep -qx "set group nogroup" "$1"' _ "$tmp/procd"
t "respawns (3600 5 5)" has procd "set respawn 3600 5 5"
t "restarts when the generated file or extra_config changes" sh -c '
	grep -qx "set file /var/etc/meshd/meshd.conf" "$1" && grep -qx "append file $2" "$1"' _ "$tmp/procd" "$tmp/extra.conf"
t "stdout and stderr to the log" sh -c 'grep -qx "set stdout 1" "$1" && grep -qx "set stderr 1" "$1"' _ "$tmp/procd"
t "/var/etc/meshd is root:nogroup 0750" has state "root:nogroup 750 /var/etc/meshd"
t "meshd.conf is root:nogroup 0640" has state "root:nogroup 640 /var/etc/meshd/meshd.conf"
t "data_dir is nobody:nogroup 0750" has state "nobody:nogroup 750 $data"
t "radio node gets group nogroup, rw for it" has state "root:nogroup 660 /var/ttyFAKE0"
t "/var/lib/meshd points at data_dir" has state "$data"
t "config has the peers" has state 'peers = ["a.example:4731", "b.example:4731"]'
t "config has the radio" sh -c 'grep -qx "device = \"/var/ttyFAKE0\"" "$1" && grep -qx "region = \"EU868\"" "$1"' _ "$tmp/state"
t "config ends with extra_config" has state "max_text = 2000"
sed -n '/^# Generated/,$p' "$tmp/state" >"$tmp/generated.conf"
if [ -n "${MESHD_HOST:-}" ]; then
	_out=$("$MESHD_HOST" status --config "$tmp/generated.conf" --data "$tmp/nodata" 2>&1) || true
	t "meshd accepts the generated config" sh -c 'case "$1" in *"not running"*) exit 0 ;; *) echo "$1"; exit 1 ;; esac' _ "$_out"
fi

# enabled 0: no instance. An extra_config without a [section]: refused.
sed "s|option enabled '1'|option enabled '0'|" "$tmp/uci" >"$tmp/uci.off"
: >"$tmp/procd"
UCI=$tmp/uci.off TMPD=$tmp PROCD=$tmp/procd INIT=$init DATA=$data \
	unshare -m busybox sh "$tmp/run.sh" 2>/dev/null || true
t "enabled 0 declares no instance" sh -c '! grep -q open_instance "$1"' _ "$tmp/procd"
printf 'max_text = 2000\n' >"$tmp/extra.conf"
: >"$tmp/procd"
UCI=$tmp/uci TMPD=$tmp PROCD=$tmp/procd INIT=$init DATA=$data \
	unshare -m busybox sh "$tmp/run.sh" 2>"$tmp/err" || true
t "extra_config without a [section] header is refused" sh -c '
	grep -qx "rc=1" "$1" && ! grep -q open_instance "$1" && grep -q "must start with a \[section\]" "$2"' _ "$tmp/procd" "$tmp/err"
# The tty hotplug handler, next to the init script in the package: on "add"
# of the configured port it gives the daemon's group rw; other ports and
# other actions are left alone. uci is a stand-in reading the test's UCI.
hotplug=$(dirname "$(dirname "$init")")/hotplug.d/tty/50-meshd
if [ -f "$hotplug" ]; then
	cat >"$tmp/hotplug.sh" <<'EOF'
mount -t tmpfs none /dev
mknod /dev/null c 1 3 && chmod 0666 /dev/null
mknod /dev/ttyACM0 c 166 0 && chmod 0600 /dev/ttyACM0
mknod /dev/ttyACM1 c 166 1 && chmod 0600 /dev/ttyACM1
uci() { # uci -q get meshd.SECTION.OPTION
	_k=${3#meshd.}
	awk -v s="${_k%%.*}" -v o="${_k#*.}" -v q="'" '
	$1 == "config" { sec = $3; gsub(q, "", sec) }
	sec == s && $1 == "option" && $2 == o { v = $0; sub(/^[ \t]*option[ \t]+[^ \t]+[ \t]*/, "", v); gsub(q, "", v); print v; f = 1 }
	END { exit !f }' "$UCI"
}
ACTION=remove DEVNAME=ttyACM0 . "$HOTPLUG"
ACTION=add DEVNAME=ttyACM1 . "$HOTPLUG"
stat -c '%U:%G %a %n' /dev/ttyACM0 /dev/ttyACM1 >"$TMPD/hp-before"
ACTION=add DEVNAME=ttyACM0 . "$HOTPLUG"
stat -c '%U:%G %a %n' /dev/ttyACM0 /dev/ttyACM1 >"$TMPD/hp-after"
EOF
	sed "s|option device '/var/ttyFAKE0'|option device '/dev/ttyACM0'|" "$tmp/uci" >"$tmp/uci.hp"
	# The handler ends with exit: run each event in a subshell.
	sed -i 's|^\(ACTION=.*\) \. "\$HOTPLUG"$|(\1 . "$HOTPLUG")|' "$tmp/hotplug.sh"
	UCI=$tmp/uci.hp TMPD=$tmp HOTPLUG=$hotplug unshare -m busybox sh "$tmp/hotplug.sh" 2>"$tmp/err" || true
	t "hotplug: remove and other ports change nothing" sh -c '
		grep -qx "root:root 600 /dev/ttyACM0" "$1" && grep -qx "root:root 600 /dev/ttyACM1" "$1"' _ "$tmp/hp-before"
	t "hotplug: add of the configured port gives group nogroup rw" sh -c '
		grep -qx "root:nogroup 660 /dev/ttyACM0" "$1" && grep -qx "root:root 600 /dev/ttyACM1" "$1"' _ "$tmp/hp-after"
fi
[ "$fails" -eq 0 ] || exit 1
