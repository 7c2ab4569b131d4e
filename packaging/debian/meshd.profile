# meshd package, /etc/profile.d/meshd.sh: members of group meshd reach the
# system daemon with the plain `meshd` CLI. The CLI looks for the API socket
# in $MESHD_DATA, else ~/.local/share/meshd for users other than root; this
# points it at the service's data directory. Override with --data.
if [ -z "${MESHD_DATA:-}" ] && [ "$(id -u)" != 0 ] && id -Gn 2>/dev/null | tr ' ' '\n' | grep -qx meshd; then
	export MESHD_DATA=/var/lib/meshd
fi
