#!/usr/bin/env bash
# The embedded default, end to end on one machine: a pool in a local folder,
# three volumes of different sizes mounted under a discovery directory, their
# PersistentVolume manifests written to a folder (no cluster needed), a
# volume filled until ENOSPC, and everything stopped and unmounted at the end.
#
# Usage: deploy/demo.sh BUILD_DIR   (run as root; `make demo` does this)
set -euo pipefail

build=${1:?usage: demo.sh BUILD_DIR}
run=${CARVEFS_DEMO_DIR:-$PWD/demo-run}
pool=$run/pool
disc=$run/mnt
sock=$run/carvefs.sock
pvdir=$run/pv
ctl() { "$build/carvectl" --socket "$sock" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	echo "demo: carvefs mounts filesystems; run it as root" >&2
	exit 1
fi

daemon_pid=
cleanup() {
	local rc=$?
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid"
		wait "$daemon_pid" || rc=1
	fi
	# Nothing of ours may stay mounted, whatever happened above.
	findmnt -rn -t fuse.carvefs -o TARGET | grep "^$disc/" | xargs -r umount -l || true
	exit $rc
}
trap cleanup EXIT

rm -rf "$run"
mkdir -p "$run"

step "starting carvefs: pool $pool, volumes under $disc"
"$build/carvefs" --pool "$pool" --discovery-dir "$disc" --socket "$sock" \
	--foreground 2>"$run/carvefs.log" &
daemon_pid=$!
for _ in $(seq 100); do
	ctl list >/dev/null 2>&1 && break
	kill -0 "$daemon_pid" 2>/dev/null || { cat "$run/carvefs.log"; exit 1; }
	sleep 0.1
done

step "carving three volumes"
ctl create small --size 64Mi --inodes 1000
ctl create medium --size 256Mi
ctl create large --size 1Gi
ctl list

step "each volume is a filesystem of its own"
df -h "$disc/small" "$disc/medium" "$disc/large"

step "filling 'small' until it is full"
set +e
dd if=/dev/zero of="$disc/small/fill" bs=1M status=none
echo "dd exited with status $? ($(ls -l "$disc/small/fill" | awk '{print $5}') bytes written)"
set -e
df -h "$disc/small"
echo "the disk itself still has room:"
df -h "$pool" | tail -1

step "registering the volumes as PersistentVolumes (no cluster: manifests to $pvdir)"
mkdir -p "$run/config"
cat >"$run/config/storageClassMap" <<YAML
carvefs-local:
  hostDir: $disc
  mountDir: $disc
  volumeMode: Filesystem
YAML
"$build/carve-provisioner" --config "$run/config" --node "$(hostname)" \
	--sink "dir:$pvdir" --carvefs-socket "$sock" --once
ls -l "$pvdir"
first=$(ls "$pvdir" | head -1)
echo "--- $first"
cat "$pvdir/$first"

step "stopping carvefs (volumes are unmounted, usage recorded)"
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=
findmnt -t fuse.carvefs | grep "$disc" && { echo "demo: a volume is still mounted" >&2; exit 1; }
echo "done: pool kept in $pool; run 'make demo' again to start afresh"
