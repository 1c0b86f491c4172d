#!/bin/sh
# deb-source.sh - download a Debian source package (.dsc, tarballs) into a
# directory, through a private deb-src copy of the system's apt sources.
#
# The system's apt configuration is left untouched: the same archives are
# listed once more, with source indexes instead of binary ones, in a
# temporary apt directory below DEST, which is removed afterwards.
#
# Usage: tests/deb-source.sh PACKAGE DEST
# Environment:
#   CARVEFS_APT_SOURCES  deb822 file to derive deb-src entries from
#                        (default /etc/apt/sources.list.d/debian.sources)
set -eu

[ $# -eq 2 ] || { echo "usage: tests/deb-source.sh PACKAGE DEST" >&2; exit 2; }
pkg=$1
dest=$2
sources=${CARVEFS_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}

[ -r "$sources" ] || { echo "deb-source: cannot read $sources" >&2; exit 1; }
mkdir -p "$dest"
apt_dir=$(mktemp -d "$dest/.apt.XXXXXX")
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial"
sed 's/^Types:.*/Types: deb-src/' "$sources" >"$apt_dir/sources.list.d/deb-src.sources"
set -- -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d" \
	-o Dir::Etc::SourceList=/dev/null \
	-o "Dir::State::Lists=$apt_dir/lists"
apt-get -qq "$@" update ||
	{ echo "deb-source: apt-get update of the deb-src indexes failed" >&2; exit 1; }
(cd "$dest" && apt-get -qq "$@" source --download-only "$pkg") ||
	{ echo "deb-source: downloading the source package '$pkg' failed" >&2; exit 1; }
