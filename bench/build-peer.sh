#!/bin/sh
# shellcheck disable=SC2317 # on_exit() runs from the EXIT trap
# build-peer.sh - build the FUSE peer of the benchmarks: libfuse's example
# filesystem passthrough_hp, from Debian's fuse3 source package.
#
# passthrough_hp is libfuse's own high-performance passthrough filesystem
# (low-level API, C++, multi-threaded): the FUSE neighbour every carvefs
# figure is compared with.  It is not committed here; this script:
#
#   1. checks that what the build needs is installed (meson, ninja-build,
#      g++, dpkg-dev, pkgconf: the package's own build system and tools;
#      `make deps-bench` installs them, and `make bench` runs this script);
#   2. downloads the fuse3 source package of the system's release through a
#      private deb-src copy of the system's apt sources (tests/deb-source.sh;
#      the system configuration is left untouched) and unpacks it with
#      Debian's patches applied (dpkg-source -x);
#   3. configures it as debian/rules does, with static libraries, and builds
#      the one target example/passthrough_hp, so the binary carries the
#      libfuse of the same source tree and needs nothing from the cache;
#   4. installs it as $CACHE/bin/passthrough_hp.
#
# Idempotent: when $CACHE/bin holds a working binary it exits at once.  The
# first build takes about a minute on two cores.
#
# Environment:
#   CARVEFS_BENCH_CACHE  cache directory (default /var/cache/carvefs/bench)
#   CARVEFS_APT_SOURCES  deb822 file to derive deb-src entries from
#
# Layout of the cache:
#   bin/        passthrough_hp, and passthrough_hp.source naming its source
#   src/        the downloaded source package (.dsc, tarballs)
#   build.log   the log of the last build
set -eu

CACHE=${CARVEFS_BENCH_CACHE:-/var/cache/carvefs/bench}
# The tools, by the Debian package that brings them (Makefile, DEB_BENCH).
TOOLS="meson:meson ninja:ninja-build g++:g++ dpkg-source:dpkg-dev pkgconf:pkgconf"
BIN=$CACHE/bin/passthrough_hp
here=$(cd "$(dirname "$0")" && pwd)

# Messages go to fd 3, the caller's standard output; once the build starts,
# everything else goes to the build log.
exec 3>&1
say() { printf 'build-peer: %s\n' "$*" >&3; }

# The .dsc in $CACHE/src, if any, in $dsc.
find_dsc() {
	dsc=''
	for f in "$CACHE"/src/fuse3_*.dsc; do
		[ -f "$f" ] && dsc=$f
	done
	[ -n "$dsc" ]
}

built() {
	[ -x "$BIN" ] && "$BIN" --help >/dev/null 2>&1
}

missing_packages() {
	for tp in $TOOLS; do
		command -v "${tp%%:*}" >/dev/null || printf '%s ' "${tp#*:}"
	done
}

# Read whole before it runs, so editing this file mid-build is harmless.
{
built && exit 0
missing=$(missing_packages)
if [ -n "$missing" ]; then
	say "missing Debian packages: $missing(make deps-bench installs them)"
	exit 1
fi
mkdir -p "$CACHE/bin" "$CACHE/src"
# Two runs at once: one builds, the other waits and finds the binary.
exec 9>"$CACHE/.lock"
flock 9
built && exit 0
LOG=$CACHE/build.log
exec >"$LOG" 2>&1
STEP=starting
tree=
on_exit() {
	rc=$?
	[ -z "$tree" ] || rm -rf "$tree"
	if [ "$rc" -ne 0 ]; then
		say "FAILED while $STEP; last lines of $LOG:"
		tail -n 30 "$LOG" | sed 's/^/    /' >&3
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# The .dsc lists every file of the package with its SHA-256; dpkg-source
# checks them when unpacking, so a torn download is caught there.
STEP="downloading the fuse3 source package"
if ! find_dsc; then
	say "downloading the fuse3 source package (about 4 MB)..."
	sh "$here/../tests/deb-source.sh" fuse3 "$CACHE/src"
	find_dsc || { say "no fuse3 .dsc after the download"; exit 1; }
fi

STEP="unpacking $(basename "$dsc")"
tree=$(mktemp -d "$CACHE/tree.XXXXXX")
if ! dpkg-source -x "$dsc" "$tree/src"; then
	rm -f "$CACHE"/src/fuse3_*
	say "the source package does not unpack (removed; run again to download it afresh)"
	exit 1
fi

STEP="building passthrough_hp"
say "building passthrough_hp from $(basename "$dsc")..."
# debian/rules: meson with -Duseroot=false; the rest keeps the build to the
# library and the examples.  -O2 as Debian's buildflags give.
meson setup "$tree/build" "$tree/src" --buildtype=plain \
	-Dc_args=-O2 -Dcpp_args=-O2 -Ddefault_library=static -Duseroot=false \
	-Dutils=false -Dtests=false -Dexamples=true
ninja -C "$tree/build" -j 2 example/passthrough_hp
install -m 0755 "$tree/build/example/passthrough_hp" "$BIN.new"
# What the results name as the peer's origin.
printf 'Debian source %s\n' "$(basename "$dsc" .dsc)" >"$BIN.source"
mv -f "$BIN.new" "$BIN"
built || { say "the built passthrough_hp does not run"; exit 1; }
say "done: $BIN ($(basename "$dsc" .dsc))"
exit 0
}
