#!/usr/bin/env bash
# carvefs benchmark suite, in one run:
#   perf    fio data workloads on five targets side by side: a folder on the
#           pool's own filesystem (raw), a carvefs volume without limits,
#           libfuse's passthrough_hp over a folder of the same filesystem (the
#           FUSE peer), ext4 in a loop device with direct IO, ext4 in a
#           buffered loop device
#   meta    fio filecreate / filestat / filedelete over many files, same targets
#   inodes  daemon memory per cached inode, carvefs and the peer
#   limits  IO-limit accuracy: measured rate / configured limit
#   noisy   a reader on one volume, alone and next to a writer on another
#   scale   many volumes: create time, restart-to-all-mounted time, RSS, threads
#   restart fio with verification across hand-overs to a new daemon, and
#           across a SIGKILL and a restart: errors and the longest stall
#
# Usage: bench/run.sh BUILD_DIR        (as root; `make bench` runs it)
# Results: bench/results/results.{md,csv,png}; fio JSON under bench/work/raw.
# The environment knobs are described in bench/README.md.
set -euo pipefail

usage() { echo "usage: bench/run.sh BUILD_DIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
build=$(cd "$1" && pwd) || usage
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jobs=$here/jobs
work=${BENCH_WORK:-$here/work}
results=${BENCH_RESULTS:-$here/results}
run=$work/run   # pools, images, mountpoints: removed at the end
raw=$work/raw   # fio JSON, manifest, logs: kept for a closer look

RUNTIME=${BENCH_RUNTIME:-10}
RAMP=${BENCH_RAMP:-2}
REPEAT=${BENCH_REPEAT:-1}
SIZE=${BENCH_SIZE:-1g}
FILES=${BENCH_FILES:-10000}
VOLSIZE=${BENCH_VOLUME_SIZE:-8Gi}
LIMIT_RUNTIME=${BENCH_LIMIT_RUNTIME:-}
SCALE=${BENCH_SCALE_VOLUMES:-200}
INODE_FILES=${BENCH_INODE_FILES:-10000}
HANDOVERS=${BENCH_HANDOVERS:-3}
# Seconds of the restart section's SIGKILL job, the kill 2 s in.
CRASH_RUNTIME=5
SECTIONS=${BENCH_SECTIONS:-perf,meta,inodes,limits,noisy,scale,restart}
THREADS=${BENCH_THREADS:-}
# The FUSE peer, built by bench/build-peer.sh, and its options: no page,
# entry or attribute cache and no splice, as carvefs (which keeps entries
# and attributes for 1 s) neither splices nor uses the writeback cache.
PEER=${BENCH_PEER:-${CARVEFS_BENCH_CACHE:-/var/cache/carvefs/bench}/bin/passthrough_hp}
PEER_OPTS=(--nocache --nosplice)

# The limits whose accuracy is measured.
LIM_RIOPS=500
LIM_WIOPS=2000
LIM_RBPS_MI=20
LIM_WBPS_MI=100
LIM_RIOPS_LIVE=1000

PERF_WORKLOADS=(randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd1
	randwrite-4k-qd32 seqread-1m-qd4 seqwrite-1m-qd4 randrw-70-30-4k-qd16
	seqread-1m-qd4-buffered)
META_WORKLOADS=(meta-filecreate meta-filestat meta-filedelete)
TARGETS=(raw carvefs peer loop-dio loop-buf)

[[ $RUNTIME =~ ^[0-9]+$ ]] && [ -z "$LIMIT_RUNTIME" ] &&
	LIMIT_RUNTIME=$((RUNTIME > 10 ? RUNTIME : 10))
for v in RUNTIME RAMP REPEAT FILES SCALE LIMIT_RUNTIME INODE_FILES HANDOVERS; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || { [ "${!v}" -eq 0 ] && [ $v != RAMP ]; }; then
		echo "bench: BENCH_$v must be a whole number of at least 1 (RAMP: 0), not '${!v}'" >&2
		exit 2
	fi
done
if [ "$(id -u)" != 0 ]; then
	echo "bench: mounts FUSE volumes and loop devices; run it as root" >&2
	exit 1
fi
for tool in fio gnuplot losetup mkfs.ext4 findmnt /usr/bin/python3 \
	"$build/carvefs" "$build/carvectl"; do
	command -v "$tool" >/dev/null ||
		{ echo "bench: '$tool' is missing (make deps-bench installs it)" >&2; exit 1; }
done
has() { [[ ",$SECTIONS," == *",$1,"* ]]; }
if { has perf || has meta || has inodes; } && ! [ -x "$PEER" ]; then
	echo "bench: the FUSE peer '$PEER' is missing (bash bench/build-peer.sh builds it)" >&2
	exit 1
fi

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ctl() { "$build/carvectl" --socket "$sock" "$@"; }
sctl() { "$build/carvectl" --socket "$ssock" "$@"; }
note() { printf '%s=%s\n' "$1" "$2" >>"$raw/env.txt"; }
scale_note() { printf '%s=%s\n' "$1" "$2" >>"$raw/scale.txt"; }
proc_field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
# Mounts whose mountpoint lies under $1.
mounts_under() { awk -v p="$1/" 'index($5, p) == 1 { n++ } END { print n + 0 }' /proc/self/mountinfo; }
rss_kib() { proc_field "$1" VmRSS | tr -d ' kB'; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# Waits up to 15 s for $1 to be a mountpoint while PID $2 lives.
wait_mounted() {
	local i
	for ((i = 0; i < 1500; i++)); do
		findmnt -rn -M "$1" >/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.01
	done
	return 1
}

# ---------------------------------------------------------------------------
# Everything this script starts is recorded here and undone by cleanup, on
# success, failure or interrupt: daemons by PID, then every mount below $run,
# then the loop devices backed by images below $run.
daemon_pids=()
fio_pid=

stop_daemon() { # PID: SIGTERM, then SIGKILL after 60 s
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 6000; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.01
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "daemon $pid ignored SIGTERM for 60 s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

undo_mounts_and_loops() {
	local m dev img
	findmnt -rn -o TARGET | awk -v p="$run/" 'index($0, p) == 1' | sort -r |
		while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
				log "could not unmount $m"
		done
	for img in "$run"/*.img; do
		[ -e "$img" ] || continue
		for dev in $(losetup -n -O NAME -j "$img"); do
			losetup -d "$dev" 2>/dev/null || log "could not detach $dev"
		done
	done
}

cleanup() {
	local rc=$? pid
	set +e
	trap - EXIT INT TERM
	if [ -n "$fio_pid" ]; then
		kill -TERM "$fio_pid" 2>/dev/null
		wait "$fio_pid" 2>/dev/null
	fi
	for pid in "${daemon_pids[@]}"; do stop_daemon "$pid"; done
	undo_mounts_and_loops
	rm -rf "$run"
	[ $rc -eq 0 ] || log "failed (status $rc); fio JSON and daemon logs are in $raw"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A previous run that was killed outright may have left its mounts behind.
undo_mounts_and_loops
rm -rf "$run" "$raw"
mkdir -p "$run" "$raw" "$results"
: >"$raw/manifest.tsv"

started_pid=
start_daemon() { # POOL DISCOVERY SOCKET LOGFILE; sets started_pid
	local pid i
	"$build/carvefs" --pool "$1" --discovery-dir "$2" --socket "$3" \
		--foreground ${THREADS:+--threads "$THREADS"} </dev/null >>"$4" 2>&1 &
	pid=$!
	daemon_pids+=("$pid")
	started_pid=$pid
	for ((i = 0; i < 300; i++)); do
		"$build/carvectl" --socket "$3" list >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	log "carvefs did not come up; its log:"
	tail -20 "$4" >&2
	return 1
}

# run_fio SECTION CASE TARGET REP JOBFILE [fio args...]
# Runs one fio job, writes its JSON under $raw/SECTION/ and a manifest line.
# A failed or hung job is recorded as failed; the suite goes on.
run_fio() {
	local section=$1 case=$2 target=$3 rep=$4 jobfile=$5 status=ok rc=0
	shift 5
	local out=$raw/$section/$case.$target.$rep.json
	mkdir -p "$raw/$section"
	sync
	timeout --kill-after=10 $((RUNTIME + LIMIT_RUNTIME + RAMP + 300)) \
		fio --output-format=json --output="$out" "$jobs/$jobfile" "$@" \
		</dev/null 2>"$out.err" &
	fio_pid=$!
	wait "$fio_pid" || rc=$?
	fio_pid=
	if [ $rc -ne 0 ] || ! [ -s "$out" ]; then
		status=failed
		log "fio $case on $target failed (status $rc): $(tail -c 300 "$out.err" | tr '\n' ' ')"
	fi
	[ -s "$out.err" ] || rm -f "$out.err"
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$case" "$target" "$rep" \
		"${out#"$raw"/}" "$status" >>"$raw/manifest.tsv"
}

started_peer=
start_peer() { # BACKING MOUNTPOINT LOGFILE; sets started_peer
	mkdir -p "$1" "$2"
	"$PEER" --foreground "${PEER_OPTS[@]}" "$1" "$2" </dev/null >>"$3" 2>&1 &
	started_peer=$!
	daemon_pids+=("$started_peer")
	wait_mounted "$2" "$started_peer" && return 0
	log "passthrough_hp did not mount $2; its log:"
	tail -20 "$3" >&2
	return 1
}

prefill() { # DIR [SIZE]: lays out the test file
	BENCH_DIR=$1 BENCH_SIZE=${2:-$SIZE} fio --output=/dev/null "$jobs/prefill.fio" ||
		{ log "prefill of $1 failed"; return 1; }
}

export BENCH_SIZE=$SIZE BENCH_RAMP=$RAMP BENCH_FILES=$FILES

# ---------------------------------------------------------------------------
note date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
note kernel "$(uname -r)"
note cpus "$(nproc)"
note cpu_model "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
note mem_gib "$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
note fio "$(fio --version)"
note work_fs "$(findmnt -n -T "$work" -o SOURCE,FSTYPE | tr -s ' ')"
note carvefs "$("$build/carvefs" --version 2>&1 | head -1)"
note commit "$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
note runtime "$RUNTIME"
note ramp "$RAMP"
note repeat "$REPEAT"
note size "$SIZE"
note files "$FILES"
note volume_size "$VOLSIZE"
note limit_runtime "$LIMIT_RUNTIME"
note sections "$SECTIONS"
note peer "passthrough_hp ${PEER_OPTS[*]} ($(cat "$PEER.source" 2>/dev/null || echo 'source unknown'))"
suite_start=$(now)

pool=$run/pool
disc=$run/mnt
sock=$run/carvefs.sock
dlog=$raw/carvefs.log
daemon=

need_daemon() {
	[ -n "$daemon" ] && return 0
	log "starting carvefs: pool $pool, volumes under $disc"
	start_daemon "$pool" "$disc" "$sock" "$dlog"
	daemon=$started_pid
	note daemon_threads_idle "$(proc_field "$daemon" Threads)"
}

declare -A dir
if has perf || has meta; then
	need_daemon
	ctl create bench --size "$VOLSIZE" >/dev/null
	dir[raw]=$run/raw-dir
	dir[carvefs]=$disc/bench
	dir[peer]=$run/peer-mnt
	dir[loop-dio]=$run/loop-dio
	dir[loop-buf]=$run/loop-buf
	mkdir -p "${dir[raw]}"
	log "starting passthrough_hp ${PEER_OPTS[*]} on $run/peer-src"
	start_peer "$run/peer-src" "${dir[peer]}" "$raw/peer.log"
	peer=$started_peer
	for t in loop-dio loop-buf; do
		img=$run/$t.img
		truncate -s "$VOLSIZE" "$img" 2>/dev/null ||
			truncate -s "$(numfmt --from=iec-i "$VOLSIZE")" "$img"
		# Inode tables and journal written now, not by a background thread
		# during the measurements.
		mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
		if [ $t = loop-dio ]; then
			dev=$(losetup --direct-io=on -f --show "$img")
		else
			dev=$(losetup -f --show "$img")
		fi
		note "${t}_device" "$dev dio=$(cat "/sys/block/${dev#/dev/}/loop/dio" 2>/dev/null || echo '?')"
		mkdir -p "${dir[$t]}"
		mount "$dev" "${dir[$t]}"
	done
fi

if has perf; then
	for t in "${TARGETS[@]}"; do
		log "laying out $SIZE on $t"
		# The peer cannot write with O_DIRECT (README.md, Caveats): its
		# file is laid out in its backing folder.
		if [ "$t" = peer ]; then
			prefill "$run/peer-src"
		else
			prefill "${dir[$t]}"
		fi
	done
	sync
	# Targets interleave within each workload so that a slow phase of the
	# host weighs on all of them alike.
	for w in "${PERF_WORKLOADS[@]}"; do
		for ((rep = 1; rep <= REPEAT; rep++)); do
			for t in "${TARGETS[@]}"; do
				log "perf $w on $t (repetition $rep/$REPEAT)"
				BENCH_DIR=${dir[$t]} BENCH_RUNTIME=$RUNTIME \
					run_fio perf "$w" "$t" "$rep" "$w.fio"
			done
		done
	done
	note daemon_rss_kib_after_perf "$(proc_field "$daemon" VmRSS | tr -d ' kB')"
	note daemon_threads_after_perf "$(proc_field "$daemon" Threads)"
fi

if has meta; then
	for ((rep = 1; rep <= REPEAT; rep++)); do
		for t in "${TARGETS[@]}"; do
			rm -rf "${dir[$t]}/meta"
			mkdir -p "${dir[$t]}/meta"
			for w in "${META_WORKLOADS[@]}"; do
				log "meta $w, $FILES files, on $t (repetition $rep/$REPEAT)"
				BENCH_DIR=${dir[$t]} run_fio meta "$w" "$t" "$rep" "$w.fio"
			done
			rm -rf "${dir[$t]}/meta"
		done
	done
fi

if has perf || has meta; then
	# The data targets are done: the image files go before the next sections.
	for t in loop-dio loop-buf; do
		dev=$(findmnt -n -o SOURCE "${dir[$t]}")
		umount "${dir[$t]}"
		losetup -d "$dev"
		rm -f "$run/$t.img"
	done
	stop_daemon "$peer"
	rm -rf "${dir[raw]}" "$run/peer-src"
	ctl delete bench --force >/dev/null
fi

# make_files DIR N: N empty files f0 .. f(N-1) in DIR.
make_files() {
	/usr/bin/python3 -c '
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    os.close(os.open(f"{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
' "$1" "$2"
}

# inode_rss TARGET PID DIR: the daemon's RSS and open fds before and after
# `find` stats every file of DIR through its mount.
inode_rss() {
	local n
	sync
	sleep 0.5
	printf '%s_rss_kib_before=%s\n%s_fds_before=%s\n' "$1" "$(rss_kib "$2")" \
		"$1" "$(fd_count "$2")" >>"$raw/inodes.txt"
	n=$(find "$3" -type f -printf '%s\n' | wc -l)
	printf '%s_files=%s\n%s_rss_kib_after=%s\n%s_fds_after=%s\n' "$1" "$n" \
		"$1" "$(rss_kib "$2")" "$1" "$(fd_count "$2")" >>"$raw/inodes.txt"
}

if has inodes; then
	# Each daemon is fresh and has never seen the files: the files of
	# carvefs are created through its mount (so the volume counts them),
	# then the daemon is restarted; the peer's are created in its
	# backing folder, as it keeps no account.
	ipool=$run/inode-pool
	imnt=$run/inode-mnt
	isock=$run/inode.sock
	ilog=$raw/carvefs-inodes.log
	printf 'files=%s\n' "$INODE_FILES" >"$raw/inodes.txt"
	log "inodes: $INODE_FILES files on a carvefs volume"
	start_daemon "$ipool" "$imnt" "$isock" "$ilog"
	"$build/carvectl" --socket "$isock" create inodes --size 1Gi >/dev/null
	make_files "$imnt/inodes" "$INODE_FILES"
	stop_daemon "$started_pid"
	start_daemon "$ipool" "$imnt" "$isock" "$ilog"
	wait_mounted "$imnt/inodes" "$started_pid"
	log "inodes: find + stat of $INODE_FILES files through a fresh carvefs"
	inode_rss carvefs "$started_pid" "$imnt/inodes"
	"$build/carvectl" --socket "$isock" delete inodes --force >/dev/null
	stop_daemon "$started_pid"

	log "inodes: find + stat of $INODE_FILES files through a fresh passthrough_hp"
	mkdir -p "$run/inode-peer-src"
	make_files "$run/inode-peer-src" "$INODE_FILES"
	start_peer "$run/inode-peer-src" "$run/inode-peer-mnt" "$raw/peer.log"
	inode_rss peer "$started_peer" "$run/inode-peer-mnt"
	stop_daemon "$started_peer"
	rm -rf "$run/inode-peer-src"
fi

if has limits; then
	need_daemon
	ctl create limited --size "$VOLSIZE" >/dev/null
	vdir=$disc/limited
	log "laying out $SIZE on the limited volume before its limits are set"
	prefill "$vdir"
	sync
	note limits "riops=$LIM_RIOPS wiops=$LIM_WIOPS rbps=${LIM_RBPS_MI}Mi wbps=${LIM_WBPS_MI}Mi"
	# case, job, limit, unit
	limit_cases=(
		"riops randread-4k-qd16 $LIM_RIOPS iops"
		"wiops randwrite-4k-qd32 $LIM_WIOPS iops"
		"rbps seqread-1m-qd4 $((LIM_RBPS_MI * 1048576)) B/s"
		"wbps seqwrite-1m-qd4 $((LIM_WBPS_MI * 1048576)) B/s"
		"riops-live randread-4k-qd16 $LIM_RIOPS_LIVE iops"
	)
	for c in "${limit_cases[@]}"; do
		read -r case job limit unit <<<"$c"
		printf '%s=%s %s\n' "$case" "$limit" "$unit" >>"$raw/limits.txt"
	done
	for ((rep = 1; rep <= REPEAT; rep++)); do
		ctl set-limits limited --riops $LIM_RIOPS --wiops $LIM_WIOPS \
			--rbps ${LIM_RBPS_MI}Mi --wbps ${LIM_WBPS_MI}Mi >/dev/null
		for c in "${limit_cases[@]}"; do
			read -r case job limit unit <<<"$c"
			if [ "$case" = riops-live ]; then
				# Raised on the mounted volume, between two runs.
				ctl set-limits limited --riops $LIM_RIOPS_LIVE >/dev/null
			fi
			log "limits: $case on a volume limited to $limit $unit (repetition $rep/$REPEAT)"
			BENCH_DIR=$vdir BENCH_RUNTIME=$LIMIT_RUNTIME \
				run_fio limits "$case" carvefs "$rep" "$job.fio"
		done
	done
	ctl stats limited -o json >"$raw/limits/stats-limited.json" 2>&1 || true
	ctl delete limited --force >/dev/null
fi

if has noisy; then
	need_daemon
	ctl create tenant-a --size "$VOLSIZE" >/dev/null
	ctl create tenant-b --size "$VOLSIZE" >/dev/null
	log "laying out $SIZE on tenant-a and tenant-b"
	prefill "$disc/tenant-a"
	prefill "$disc/tenant-b"
	sync
	ctl set-limits tenant-b --wiops $LIM_WIOPS >/dev/null
	printf 'b_wiops=%s\n' $LIM_WIOPS >>"$raw/noisy.txt"
	export BENCH_DIR_A=$disc/tenant-a BENCH_DIR_B=$disc/tenant-b
	for ((rep = 1; rep <= REPEAT; rep++)); do
		log "noisy: tenant-a alone"
		BENCH_DIR=$BENCH_DIR_A BENCH_RUNTIME=$LIMIT_RUNTIME \
			run_fio noisy a-alone carvefs "$rep" noisy.fio --section=a
		log "noisy: tenant-a next to tenant-b limited to $LIM_WIOPS write IOPS"
		BENCH_DIR=$BENCH_DIR_A BENCH_RUNTIME=$LIMIT_RUNTIME \
			run_fio noisy a-with-b-limited carvefs "$rep" noisy.fio
		ctl set-limits tenant-b --wiops 0 >/dev/null
		log "noisy: tenant-a next to tenant-b without limits"
		BENCH_DIR=$BENCH_DIR_A BENCH_RUNTIME=$LIMIT_RUNTIME \
			run_fio noisy a-with-b-unlimited carvefs "$rep" noisy.fio
		ctl set-limits tenant-b --wiops $LIM_WIOPS >/dev/null
	done
	ctl delete tenant-a --force >/dev/null
	ctl delete tenant-b --force >/dev/null
fi

if [ -n "$daemon" ]; then
	note daemon_rss_kib_end "$(proc_field "$daemon" VmRSS | tr -d ' kB')"
	stop_daemon "$daemon"
	daemon=
fi

if has scale; then
	spool=$run/scale-pool
	smnt=$run/scale-mnt
	ssock=$run/scale.sock
	slog=$raw/carvefs-scale.log
	scale_note volumes "$SCALE"
	scale_note cpus "$(nproc)"
	log "scale: a fresh daemon, then $SCALE volumes"
	start_daemon "$spool" "$smnt" "$ssock" "$slog"
	sd=$started_pid
	scale_note rss_kib_0 "$(proc_field "$sd" VmRSS | tr -d ' kB')"
	scale_note threads_0 "$(proc_field "$sd" Threads)"
	t0=$(now)
	for ((i = 1; i <= SCALE; i++)); do
		sctl create "$(printf 'vol%04d' "$i")" --size 64Mi >/dev/null
	done
	t1=$(now)
	scale_note create_s "$(elapsed "$t0" "$t1")"
	scale_note mounted_after_create "$(mounts_under "$smnt")"
	sleep 1
	scale_note rss_kib_n "$(proc_field "$sd" VmRSS | tr -d ' kB')"
	scale_note threads_n "$(proc_field "$sd" Threads)"
	scale_note fds_n "$(find "/proc/$sd/fd" -mindepth 1 -maxdepth 1 | wc -l)"

	log "scale: stopping the daemon with $SCALE volumes mounted"
	t0=$(now)
	stop_daemon "$sd"
	t1=$(now)
	scale_note stop_s "$(elapsed "$t0" "$t1")"
	scale_note mounted_after_stop "$(mounts_under "$smnt")"

	log "scale: starting it again, waiting for $SCALE mounts"
	t0=$(now)
	"$build/carvefs" --pool "$spool" --discovery-dir "$smnt" --socket "$ssock" \
		--foreground ${THREADS:+--threads "$THREADS"} </dev/null >>"$slog" 2>&1 &
	sd=$!
	daemon_pids+=("$sd")
	n=0
	deadline=$(awk -v t="$t0" 'BEGIN { printf "%d", t + 300 }')
	while :; do
		n=$(mounts_under "$smnt")
		[ "$n" -ge "$SCALE" ] && break
		kill -0 "$sd" 2>/dev/null || { log "the daemon exited while starting"; break; }
		[ "$(date +%s)" -lt "$deadline" ] || { log "only $n mounts after 300 s"; break; }
		sleep 0.01
	done
	t1=$(now)
	scale_note restart_all_mounted_s "$(elapsed "$t0" "$t1")"
	scale_note mounted_after_restart "$n"
	for ((i = 0; i < 600; i++)); do
		sctl list >/dev/null 2>&1 && break
		sleep 0.05
	done
	scale_note restart_socket_s "$(elapsed "$t0" "$(now)")"
	sleep 1
	scale_note rss_kib_restart "$(proc_field "$sd" VmRSS | tr -d ' kB')"
	scale_note threads_restart "$(proc_field "$sd" Threads)"

	log "scale: deleting the $SCALE volumes"
	t0=$(now)
	for ((i = 1; i <= SCALE; i++)); do
		sctl delete "$(printf 'vol%04d' "$i")" --force >/dev/null
	done
	t1=$(now)
	scale_note delete_s "$(elapsed "$t0" "$t1")"
	stop_daemon "$sd"
fi

ms_now() { date +%s%3N; }
restart_note() { printf '%s=%s\n' "$1" "$2" >>"$raw/restart.txt"; }

# handover N OLD_PID: starts the same carvefs command while OLD_PID serves
# the pool and waits until one of them exits: the old one when it handed
# its volumes over, the new one when it refused. Sets started_pid to the
# daemon that serves the pool afterwards; returns 1 if no hand-over happened.
handover() {
	local h=$1 old=$2 new rc t0 t1 deadline status
	t0=$(ms_now)
	"$build/carvefs" --pool "$rpool" --discovery-dir "$rmnt" --socket "$rsock" \
		--foreground ${THREADS:+--threads "$THREADS"} </dev/null >>"$rlog" 2>&1 &
	new=$!
	daemon_pids+=("$new")
	deadline=$((t0 + 60000))
	while :; do
		if ! kill -0 "$old" 2>/dev/null; then
			rc=0
			wait "$old" || rc=$?
			status=handed-over
			break
		fi
		if ! kill -0 "$new" 2>/dev/null; then
			rc=0
			wait "$new" || rc=$?
			status=refused
			break
		fi
		if [ "$(ms_now)" -gt "$deadline" ]; then
			rc=
			status=timeout
			break
		fi
		sleep 0.002
	done
	t1=$(ms_now)
	restart_note "handover${h}_start_ms" "$t0"
	restart_note "handover${h}_end_ms" "$t1"
	restart_note "handover${h}_status" "$status"
	restart_note "handover${h}_exit" "$rc"
	case $status in
	handed-over)
		started_pid=$new
		restart_note "handover${h}_mounted_after" "$(mounts_under "$rmnt")"
		;;
	refused)
		started_pid=$old
		restart_note "handover${h}_message" "$(tail -n 1 "$rlog" | tr -d '\n')"
		log "restart: the new daemon refused to take over: $(tail -n 1 "$rlog")"
		return 1
		;;
	*)
		started_pid=$old
		log "restart: no hand-over within 60 s"
		return 1
		;;
	esac
}

# restart_fio_start NAME RUNTIME: starts the restart section's fio job on
# its volume in the background (fio_pid): JSON in
# $raw/restart/NAME.carvefs.1.json, per-IO logs $raw/restart/NAME_lat.*.
restart_fio_start() {
	local out=$raw/restart/$1.carvefs.1.json
	BENCH_DIR=$rmnt/restart BENCH_RUNTIME=$2 BENCH_LOG=$raw/restart/$1 \
		timeout --kill-after=10 $(($2 + 120)) fio --output-format=json \
		--output="$out" "$jobs/restart-randrw-4k-qd1.fio" </dev/null 2>"$out.err" &
	fio_pid=$!
}

# restart_fio_wait NAME KEY: waits for that job and notes its exit status as KEY.
restart_fio_wait() {
	local out=$raw/restart/$1.carvefs.1.json rc=0
	wait "$fio_pid" || rc=$?
	fio_pid=
	restart_note "$2" "$rc"
	[ -s "$out.err" ] || rm -f "$out.err"
	[ $rc -eq 0 ] ||
		log "restart: fio exited with status $rc: $(tail -c 300 "$out.err" 2>/dev/null | tr '\n' ' ')"
}

# crash OLD_PID: SIGKILL, then the same carvefs command at once, waiting
# until it answers on the control socket (polled every 50 ms). Sets
# started_pid to the new daemon; returns 1 if it did not come up.
crash() {
	local old=$1 t0 t1 status=restarted
	t0=$(ms_now)
	kill -KILL "$old"
	wait "$old" 2>/dev/null || true
	start_daemon "$rpool" "$rmnt" "$rsock" "$rlog" || status=failed
	t1=$(ms_now)
	restart_note crash_start_ms "$t0"
	restart_note crash_end_ms "$t1"
	restart_note crash_status "$status"
	restart_note crash_mounted_after "$(mounts_under "$rmnt")"
	[ $status = restarted ] && return 0
	restart_note crash_message "$(tail -n 1 "$rlog" | tr -d '\n')"
	return 1
}

if has restart; then
	rpool=$run/restart-pool
	rmnt=$run/restart-mnt
	rsock=$run/restart.sock
	rlog=$raw/carvefs-restart.log
	# A hand-over every 3 s, the first 2 s into the job, the last 3 s
	# before its end.
	rruntime=$((3 * HANDOVERS + 2))
	: >"$raw/restart.txt"
	restart_note handovers "$HANDOVERS"
	restart_note runtime "$rruntime"
	log "restart: $HANDOVERS hand-overs under fio with verification"
	start_daemon "$rpool" "$rmnt" "$rsock" "$rlog"
	rd=$started_pid
	"$build/carvectl" --socket "$rsock" create restart --size 1Gi >/dev/null
	# fio would lay the file out in 4k buffered writes, for seconds.
	prefill "$rmnt/restart" 256m
	mkdir -p "$raw/restart"
	restart_note fio_start_ms "$(ms_now)"
	restart_fio_start handover "$rruntime"
	for ((h = 1; h <= HANDOVERS; h++)); do
		sleep $((h == 1 ? 2 : 3))
		kill -0 "$fio_pid" 2>/dev/null || { log "restart: fio ended early"; break; }
		log "restart: hand-over $h of $HANDOVERS"
		handover "$h" "$rd" || { rd=$started_pid; break; }
		rd=$started_pid
	done
	restart_fio_wait handover fio_exit
	# Then the same job, on its own, across a SIGKILL of the serving daemon
	# 2 s in and the same command started again at once.
	log "restart: a SIGKILL and a restart under fio with verification"
	restart_note crash_runtime "$CRASH_RUNTIME"
	restart_note crash_fio_start_ms "$(ms_now)"
	restart_fio_start crash "$CRASH_RUNTIME"
	sleep 2
	if kill -0 "$fio_pid" 2>/dev/null; then
		crash "$rd" || true
		rd=$started_pid
	else
		log "restart: fio ended early"
	fi
	restart_fio_wait crash crash_fio_exit
	"$build/carvectl" --socket "$rsock" delete restart --force >/dev/null ||
		log "restart: could not delete the volume"
	stop_daemon "$rd"
fi

note suite_s "$(elapsed "$suite_start" "$(now)")"
log "writing the results"
/usr/bin/python3 "$here/report.py" --raw "$raw" --out "$results"

echo
cat "$results/results.md"
echo
echo "results: $results/results.md, $results/results.csv, $results/results.png"
echo "fio JSON and daemon logs: $raw"
