#!/bin/sh
# shellcheck disable=SC2317 # fail() and on_exit() run from the EXIT trap
# build-control-plane.sh - build a Kubernetes control plane and node for the
# tests: kube-apiserver and kube-controller-manager (the provisioner's tests
# against a real API), kube-scheduler, kubelet and the pause binary (the tests
# that run pods on a real node, tests/k8s/node.py).
#
# No package archive ships a kube-apiserver, but Debian 12 ships the full
# Kubernetes 1.20.2 tree (with vendor/) as the source package `kubernetes`, and
# etcd as the binary package `etcd-server`.  This script:
#
#   1. installs the build and run dependencies from Debian (golang-1.19-go,
#      rsync, etcd-server, golang-github-modern-go-reflect2-dev, dpkg-dev,
#      python3-jsonschema);
#   2. downloads the `kubernetes` source package through a private deb-src
#      copy of the system's apt sources (the system configuration is left
#      untouched);
#   3. replaces the vendored github.com/modern-go/reflect2 1.0.1, which crashes
#      the apiserver when built with Go >= 1.18, by Debian's 1.0.2;
#   4. generates the OpenAPI definitions the tarball lacks (upstream's `make`
#      does it with openapi-gen, built from the vendored kube-openapi);
#   5. builds the Go binaries in GOPATH mode, offline, and the static pause
#      binary with gcc, and installs them into $CACHE/bin.
#
# Idempotent: when $CACHE/bin holds working binaries it exits at once, and it
# builds only the binaries missing there (a cache made before the node's
# binaries were added gets just those).  The first build takes 10 to 25
# minutes on 2 cores, depending on the machine; the Go build cache is kept,
# so a rebuild takes a few minutes.
#
# Environment:
#   CARVEFS_K8S_CACHE    cache directory (default /var/cache/carvefs/k8s)
#   CARVEFS_APT_SOURCES  deb822 file to derive deb-src entries from
#                        (default /etc/apt/sources.list.d/debian.sources)
#   CARVEFS_K8S_KEEP_SRC keep the unpacked source tree after the build if 1
#
# Layout of the cache:
#   bin/        kube-apiserver, kube-controller-manager, kube-scheduler,
#               kubelet, pause
#   src/        the downloaded source package (.dsc, tarballs)
#   gopath/     the unpacked tree during a build (removed afterwards)
#   go-build/   the Go build cache
#   build.log   the verbose log of the last build
set -eu

CACHE=${CARVEFS_K8S_CACHE:-/var/cache/carvefs/k8s}
SOURCES=${CARVEFS_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
GO=/usr/lib/go-1.19/bin/go
# In build order: the apiserver first, the others reuse most of its packages
# from the Go build cache.
BINS="kube-apiserver kube-controller-manager kube-scheduler kubelet"
PKGS="golang-1.19-go rsync etcd-server golang-github-modern-go-reflect2-dev"
PKGS="$PKGS dpkg-dev python3-jsonschema gcc libc6-dev"
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2

say() { printf 'build-control-plane: %s\n' "$*"; }

built() {
	for b in $BINS pause; do
		[ -x "$CACHE/bin/$b" ] || return 1
	done
	"$CACHE/bin/kube-apiserver" --version >/dev/null 2>&1 &&
		"$CACHE/bin/kubelet" --version >/dev/null 2>&1
}

missing_packages() {
	for p in $PKGS; do
		dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || printf '%s ' "$p"
	done
}

# The rest is one brace group, which the shell reads whole before running it:
# editing or updating this file during a long build cannot derail the build.
{
if built; then
	exit 0
fi

mkdir -p "$CACHE"
LOG=$CACHE/build.log

# Two `make check` runs may start at once: one builds, the other waits.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
	say "another build holds $CACHE/.lock; waiting for it..."
	flock 9
	if built; then
		exit 0
	fi
fi

: >"$LOG"
STEP=starting
fail() {
	say "FAILED while $STEP; last lines of $LOG:"
	tail -n 40 "$LOG" | sed 's/^/    /'
	exit 1
}
on_exit() {
	rc=$?
	[ "$rc" -eq 0 ] || fail
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# run CMD... - run a command with its output in the build log.
run() {
	printf '+ %s\n' "$*" >>"$LOG"
	"$@" >>"$LOG" 2>&1
}

# 1. Packages.
STEP="installing packages"
missing=$(missing_packages)
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		say "missing Debian packages: $missing; run this script as root once"
		exit 1
	fi
	say "installing Debian packages: $missing"
	export DEBIAN_FRONTEND=noninteractive
	run apt-get -qq update
	# shellcheck disable=SC2086
	run apt-get -qq install -y --no-install-recommends $missing
fi
[ -x "$GO" ] || { say "$GO not found after installing golang-1.19-go"; exit 1; }
[ -d "$REFLECT2" ] || { say "$REFLECT2 not found"; exit 1; }

# 2. Source package.
STEP="downloading the kubernetes source package"
mkdir -p "$CACHE/src"

# source_ok - whether $CACHE/src holds a .dsc and an orig tarball matching
# its checksum (a download may have been interrupted); sets $dsc and $orig.
source_ok() {
	dsc='' orig=''
	for f in "$CACHE"/src/kubernetes_*.dsc; do
		[ -f "$f" ] && dsc=$f
	done
	[ -n "$dsc" ] || return 1
	for f in "$CACHE"/src/kubernetes_*.orig.tar.gz "$CACHE"/src/kubernetes_*.orig.tar.xz; do
		[ -f "$f" ] && orig=$f
	done
	[ -n "$orig" ] || return 1
	sum=$(sed -n '/^Checksums-Sha256:/,/^[^ ]/p' "$dsc" |
		awk -v f="$(basename "$orig")" '$3 == f { print $1 }')
	[ -n "$sum" ] && [ "$(sha256sum <"$orig" | cut -d' ' -f1)" = "$sum" ]
}

if ! source_ok; then
	[ -r "$SOURCES" ] || { say "cannot read $SOURCES"; exit 1; }
	say "downloading the kubernetes source package (about 34 MB)..."
	rm -f "$CACHE"/src/kubernetes_*
	CARVEFS_APT_SOURCES=$SOURCES
	export CARVEFS_APT_SOURCES
	run sh "$(dirname "$0")/../deb-source.sh" kubernetes "$CACHE/src"
	source_ok || { say "the downloaded source package is incomplete"; exit 1; }
fi
# "1.20.5+really1.20.2-1" -> "1.20.2"
version=$(sed -n 's/^Version: //p' "$dsc" | sed 's/-[^-]*$//; s/.*really//; s/+.*//')
say "source: $(basename "$orig") (Kubernetes $version)"

# 3. Unpack into a GOPATH.  The upstream tree is used as it is, apart from
# the reflect2 replacement.
STEP="unpacking the source"
GOPATH=$CACHE/gopath
tree=$GOPATH/src/k8s.io/kubernetes
if [ ! -f "$tree/.carvefs-unpacked" ]; then
	say "unpacking $(basename "$orig")..."
	rm -rf "$tree"
	mkdir -p "$tree"
	run tar -xf "$orig" -C "$tree" --strip-components=1
	[ -d "$tree/cmd/kube-apiserver" ] || { say "unexpected layout of $orig"; exit 1; }
	vdir=$tree/vendor/github.com/modern-go/reflect2
	rm -f "$vdir"/*.go "$vdir"/*.s
	cp "$REFLECT2"/*.go "$vdir"/
	if ls "$REFLECT2"/*.s >/dev/null 2>&1; then
		cp "$REFLECT2"/*.s "$vdir"/
	fi
	rm -f "$vdir"/*_test.go
	touch "$tree/.carvefs-unpacked"
fi

export GOPATH GO111MODULE=off GOPROXY=off GOFLAGS='' CGO_ENABLED=0
export GOCACHE="$CACHE/go-build" GOTMPDIR="$CACHE/tmp"
mkdir -p "$GOCACHE" "$GOTMPDIR" "$CACHE/bin"

# 4. The one generated source the tarball lacks: the OpenAPI definitions of
# kube-apiserver, which upstream's `make` produces with openapi-gen.  The input
# packages are chosen as build/root/Makefile.generated_files does: every
# directory of the tree (staging/src named as vendor/, third-party vendor/
# excluded) with a file tagged +k8s:openapi-gen.
# Only kube-apiserver compiles them in.
STEP="generating the OpenAPI definitions"
openapi=$tree/pkg/generated/openapi/zz_generated.openapi.go
if [ ! -x "$CACHE/bin/kube-apiserver" ] && [ ! -s "$openapi" ]; then
	say "generating the OpenAPI definitions..."
	# The tree's paths hold no blanks, so plain xargs is safe.
	# shellcheck disable=SC2038
	inputs=$(cd "$tree" &&
		find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune \
			-o -type f -name '*.go' -exec grep -l '^// *+k8s:' {} + |
		xargs grep -l '+k8s:openapi-gen=' |
		sed 's|/[^/]*$||; s|^\./staging/src/|vendor/|; s|^\./||' |
		grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' |
		LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
	[ -n "$inputs" ] || { say "no +k8s:openapi-gen packages found"; exit 1; }
	(cd "$tree" && run "$GO" build -o "$GOTMPDIR/openapi-gen" \
		./vendor/k8s.io/kube-openapi/cmd/openapi-gen)
	(cd "$tree" && run "$GOTMPDIR/openapi-gen" --logtostderr -i "$inputs" \
		-p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
		-h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
		-r "$GOTMPDIR/api-violations.report")
	[ -s "$openapi" ] || { say "openapi-gen produced no $openapi"; exit 1; }
fi

# 5. Build.
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
# The version is stamped into both packages that report it, as upstream's
# hack/lib/version.sh does (--version reads one, the /version endpoint the
# other).
ldflags="-s -w"
for vpkg in client-go/pkg/version component-base/version; do
	vpkg=k8s.io/kubernetes/vendor/k8s.io/$vpkg
	ldflags="$ldflags -X $vpkg.gitVersion=v$version -X $vpkg.gitMajor=$major"
	ldflags="$ldflags -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
done
if [ -f "$GOCACHE/.carvefs-complete" ]; then
	first=" (from the Go build cache)"
else
	first=" (the first build takes several minutes, up to about 20 on 2 slow cores)"
fi
for b in $BINS; do
	[ -x "$CACHE/bin/$b" ] && continue
	STEP="building $b"
	say "building $b$first..."
	start=$(date +%s)
	(cd "$tree" && run "$GO" build -v -trimpath -ldflags "$ldflags" \
		-o "$CACHE/bin/$b.new" "./cmd/$b")
	mv -f "$CACHE/bin/$b.new" "$CACHE/bin/$b"
	say "built $b in $(( $(date +%s) - start )) s"
	first=""
done

# The pod sandbox's process: it only reaps children and waits for a signal.
# Built as upstream's build/pause/Makefile does (static, its TAG as version).
if [ ! -x "$CACHE/bin/pause" ]; then
	STEP="building pause"
	tag=$(sed -n 's/^TAG = //p' "$tree/build/pause/Makefile")
	run gcc -Os -Wall -Werror -static "-DVERSION=v$tag-$version" \
		-o "$CACHE/bin/pause.new" "$tree/build/pause/linux/pause.c"
	mv -f "$CACHE/bin/pause.new" "$CACHE/bin/pause"
	say "built pause"
fi

STEP="checking the result"
for b in $BINS; do
	run "$CACHE/bin/$b" --version
done
run "$CACHE/bin/pause" -v
built || { say "the built kube-apiserver or kubelet does not run"; exit 1; }
touch "$GOCACHE/.carvefs-complete"
rm -rf "$GOTMPDIR"
# The unpacked tree is re-made from the tarball in a minute; the Go build cache
# alone makes rebuilds fast, since the tree is unpacked at the same path.
if [ "${CARVEFS_K8S_KEEP_SRC:-0}" != 1 ]; then
	rm -rf "$GOPATH"
fi
say "done: $("$CACHE/bin/kube-apiserver" --version) in $CACHE/bin"
exit 0
}
