#!/bin/sh
# Installs the system packages the test suite needs on Debian/Ubuntu:
# qemu-user-static (core tests on mips and arm), iproute2 (network namespace
# tests), chromium (the web UI's browser tests), zbar-tools (an independent QR
# decoder for the web UI's QR encoder), avahi (mDNS interoperability test),
# xz-utils (make dist's compressed sizes), busybox (the OpenWrt init script's
# test runs under its ash).
# Does nothing when they are present.
set -eu
missing=""
command -v qemu-mips-static >/dev/null 2>&1 || missing="$missing qemu-user-static"
command -v xz >/dev/null 2>&1 || missing="$missing xz-utils"
command -v busybox >/dev/null 2>&1 || missing="$missing busybox"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v zbarimg >/dev/null 2>&1 || missing="$missing zbar-tools"
command -v avahi-browse >/dev/null 2>&1 || missing="$missing avahi-utils avahi-daemon dbus"
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
	echo "please install:$missing (no apt-get here)" >&2
	exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing:$missing"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
