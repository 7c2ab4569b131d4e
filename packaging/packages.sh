#!/bin/sh
# packages.sh ipk|deb [ARCH...]: packages from the release binaries in dist/
# (make dist), one per architecture of the table in packaging/pkglib.sh
# (IPK_ARCHES: router builds; DEB_ARCHES: full builds), or only the ARCHes
# named. A binary missing from dist/ is built first, the way make dist builds
# it (meshd_build of targets.sh; dist/'s SIZES and SHA256SUMS stay as they are).
# Packages go to dist/ next to the binaries. VERSION as for make dist.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"
. "$here/targets.sh"
. "$here/pkglib.sh"
[ $# -ge 1 ] || die "usage: packages.sh ipk|deb [ARCH...]"
kind=$1
shift
case "$kind" in
ipk) table=$IPK_ARCHES suffix=-router ;;
deb) table=$DEB_ARCHES suffix="" ;;
*) die "usage: packages.sh ipk|deb [ARCH...]" ;;
esac
dist=${DIST:-dist}
ver=$(meshd_version)
wanted="$*"
echo "$table" | while read -r arch name; do
	if [ -n "$wanted" ]; then
		case " $wanted " in *" $arch "*) ;; *) continue ;; esac
	fi
	bin=$dist/meshd-$ver-$name$suffix
	if [ ! -f "$bin" ]; then
		set -- $(echo "$MESHD_TARGETS" | awk -v n="$name" '$1 == n { print $2, $3, $4 }')
		mkdir -p "$dist"
		meshd_build "$bin" "$1" "$2" "$3" "$([ -n "$suffix" ] && echo router || echo full)" "$ver"
	fi
	"$here/$kind.sh" "$bin" "$arch" "$ver" "$dist"
done
