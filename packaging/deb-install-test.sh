#!/bin/sh
# deb-install-test.sh --yes DEB: installs the .deb into THIS system with
# dpkg, checks what the maintainer scripts did, runs the daemon the way the
# unit does (user meshd, group meshd + dialout, umask 0007, no capabilities,
# the unit's ExecStart) without systemd, checks that a member of group meshd
# can use the CLI (login shell: /etc/profile.d/meshd.sh) and a non-member
# cannot, reloads with SIGHUP, stops with SIGTERM, then purges the package
# and removes the two test users. Root only, and it changes the system, so it
# runs only with --yes; refuses when meshd is installed or /var/lib/meshd
# exists. Not part of make package-check. What it cannot check without
# systemd as PID 1: the sandbox directives themselves (systemd-analyze covers
# their syntax and score).
set -eu
[ "${1:-}" = --yes ] || {
	echo "usage: deb-install-test.sh --yes DEB (installs and purges meshd on this system)" >&2
	exit 2
}
deb=$2
[ "$(id -u)" = 0 ] || { echo "root only" >&2; exit 2; }
if dpkg -s meshd >/dev/null 2>&1 || [ -e /var/lib/meshd ]; then
	echo "meshd is installed or /var/lib/meshd exists: not touching it" >&2
	exit 2
fi
member=meshd-t-member other=meshd-t-other
pid=""
log=$(mktemp)
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	userdel -r "$member" 2>/dev/null || true
	userdel -r "$other" 2>/dev/null || true
	dpkg --purge meshd >/dev/null 2>&1 || true
	rm -f "$log"
}
trap cleanup EXIT
fails=0
check() {
	_d=$1
	shift
	if "$@" >/dev/null 2>&1; then echo "ok    $_d"; else
		echo "FAIL  $_d" >&2
		fails=$((fails + 1))
	fi
}

dpkg -i "$deb" >/dev/null
check "user meshd exists, primary group meshd" test "$(id -gn meshd)" = meshd
check "meshd's shell is nologin" sh -c 'getent passwd meshd | grep -q ":/usr/sbin/nologin$"'
check "/etc/meshd/meshd.conf is root:meshd 0640" test "$(stat -c '%U:%G %a' /etc/meshd/meshd.conf)" = "root:meshd 640"
check "/var/lib/meshd is meshd:meshd 0750" test "$(stat -c '%U:%G %a' /var/lib/meshd)" = "meshd:meshd 750"
check "unit enabled (multi-user.target.wants)" test -L /etc/systemd/system/multi-user.target.wants/meshd.service

# The unit's ExecStart, as the unit runs it. mDNS off and a loopback port so
# the test node does not show up on the host's networks.
exec_start=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/meshd.service)
MESHD_TCP_MDNS=false MESHD_TCP_LISTEN=127.0.0.1:0 \
	setpriv --reuid=meshd --regid=meshd --groups=dialout --inh-caps=-all \
	--bounding-set=-all --no-new-privs sh -c "umask 0007; exec $exec_start" >"$log" 2>&1 &
pid=$!
i=0
while [ ! -S /var/lib/meshd/meshd.sock ] && [ $i -lt 50 ]; do
	sleep 0.2
	i=$((i + 1))
done
check "daemon up, API socket in /var/lib/meshd" test -S /var/lib/meshd/meshd.sock
check "socket is meshd:meshd 0660" test "$(stat -c '%U:%G %a' /var/lib/meshd/meshd.sock)" = "meshd:meshd 660"
check "identity key is 0600" test "$(stat -c '%a' /var/lib/meshd/identity.key)" = 600
useradd -m -s /bin/sh "$member"
useradd -m -s /bin/sh "$other"
usermod -aG meshd "$member"
check "group member: meshd status works (login shell sets MESHD_DATA)" su - "$member" -c 'meshd status'
check "group member: cannot read the identity key" sh -c "! su - $member -c 'cat /var/lib/meshd/identity.key'"
check "non-member: meshd status --data /var/lib/meshd is refused" sh -c "! su - $other -c 'meshd status --data /var/lib/meshd'"
check "web passwd as user meshd writes a file the daemon can read" sh -c '
	echo "correct horse battery staple" |
		runuser -u meshd -- meshd web passwd --data /var/lib/meshd --config /etc/meshd/meshd.conf &&
		test "$(stat -c "%U %a" /var/lib/meshd/web.passwd)" = "meshd 600"'
kill -HUP "$pid"
sleep 1
check "SIGHUP reloads" grep -q "SIGHUP: reloading" "$log"
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
	sleep 0.2
	i=$((i + 1))
done
check "SIGTERM stops it" sh -c "! kill -0 $pid"
pid=""
dpkg --purge meshd >/dev/null
check "purge removes /var/lib/meshd" test ! -e /var/lib/meshd
check "purge removes /etc/meshd" test ! -e /etc/meshd
check "purge removes the statoverride" sh -c '! dpkg-statoverride --list /etc/meshd/meshd.conf'
[ "$fails" -eq 0 ] || { echo "deb-install-test: $fails failed" >&2; sed 's/^/      /' "$log" >&2; exit 1; }
echo "deb-install-test: all checks passed"
