/*
 * volmetrics.c - the daemon's metrics in the text format; see
 * volmetrics.h.
 *
 * Each family is written in one piece, every volume's sample in turn, as
 * the format requires; so the loops run family by family, not volume by
 * volume.
 */
#include <string.h>

#include "promtext.h"
#include "throttle.h"
#include "volmetrics.h"

#define P "carvefs_"
#define V P "volume_"
#define NS_PER_MS UINT64_C(1000000)

static const char *const states[] = { "mounted", "unmounted", "error" };

/* volume, storage_class (left out when empty), and one more for the caller. */
struct vlabels {
	struct promtext_label l[5];
};

static void vlabels_set(struct vlabels *vl, const struct volume_stats *v)
{
	memset(vl, 0, sizeof(*vl));
	vl->l[0] = (struct promtext_label){ "volume", v->name };
	vl->l[1] = (struct promtext_label){ "storage_class",
					    v->storage_class[0] ? v->storage_class : NULL };
}

enum field {
	F_CAPACITY,
	F_USED,
	F_INODE_LIMIT,
	F_INODES_USED,
	F_BURST_NS,
	F_IOPS_SIZE,
	F_THROTTLED_NS,
	F_QUEUE_DEPTH,
};

static uint64_t field(const struct volume_stats *v, enum field f)
{
	switch (f) {
	case F_CAPACITY:
		return v->capacity_bytes;
	case F_USED:
		return v->used_bytes;
	case F_INODE_LIMIT:
		return v->inode_limit;
	case F_INODES_USED:
		return v->used_inodes;
	case F_BURST_NS:
		return (v->limits.burst_ms ? v->limits.burst_ms : THROTTLE_DEFAULT_BURST_MS) *
		       NS_PER_MS;
	case F_IOPS_SIZE:
		return v->limits.iops_size_bytes;
	case F_THROTTLED_NS:
		return v->throttled_ns;
	case F_QUEUE_DEPTH:
		return v->queue_depth;
	}
	return 0;
}

/* A family with one sample per volume (served ones only if @served_only). */
static void put_per_volume(struct promtext *p, const struct volume_stats *vols, size_t n,
			   const char *name, const char *type, const char *help, enum field f,
			   bool seconds, bool served_only)
{
	struct vlabels vl;

	promtext_family(p, name, type, help);
	for (size_t i = 0; i < n; i++) {
		if (served_only && !vols[i].served)
			continue;
		vlabels_set(&vl, &vols[i]);
		if (seconds)
			promtext_seconds(p, name, vl.l, 2, field(&vols[i], f));
		else
			promtext_u64(p, name, vl.l, 2, field(&vols[i], f));
	}
}

enum io_field { IO_OPS, IO_BYTES, IO_LIMIT_IOPS, IO_LIMIT_BPS };

static uint64_t io_field(const struct volume_stats *v, enum io_field f, bool write)
{
	switch (f) {
	case IO_OPS:
		return write ? v->write_ops : v->read_ops;
	case IO_BYTES:
		return write ? v->write_bytes : v->read_bytes;
	case IO_LIMIT_IOPS:
		return write ? v->limits.wiops : v->limits.riops;
	case IO_LIMIT_BPS:
		return write ? v->limits.wbps : v->limits.rbps;
	}
	return 0;
}

/* A family with a read and a write sample per volume. */
static void put_per_op(struct promtext *p, const struct volume_stats *vols, size_t n,
		       const char *name, const char *type, const char *help, enum io_field f,
		       bool served_only)
{
	struct vlabels vl;

	promtext_family(p, name, type, help);
	for (size_t i = 0; i < n; i++) {
		if (served_only && !vols[i].served)
			continue;
		vlabels_set(&vl, &vols[i]);
		for (int w = 0; w < 2; w++) {
			vl.l[2] = (struct promtext_label){ "op", w ? "write" : "read" };
			promtext_u64(p, name, vl.l, 3, io_field(&vols[i], f, w));
		}
	}
}

static void put_daemon(struct promtext *p, const struct volume_stats *vols, size_t n,
		       const char *version)
{
	struct promtext_label l = { "version", version };

	promtext_family(p, P "build_info", "gauge",
			"Always 1; the version of the carvefs daemon serving these metrics.");
	promtext_u64(p, P "build_info", &l, 1, 1);
	promtext_family(p, P "volumes", "gauge", "Number of volumes in the pool, by state.");
	for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
		uint64_t count = 0;

		for (size_t i = 0; i < n; i++)
			count += strcmp(vols[i].state, states[s]) == 0;
		l = (struct promtext_label){ "state", states[s] };
		promtext_u64(p, P "volumes", &l, 1, count);
	}
}

static void put_info(struct promtext *p, const struct volume_stats *vols, size_t n)
{
	struct vlabels vl;

	promtext_family(p, V "info", "gauge",
			"Always 1; the volume's mountpoint and state (mounted, unmounted or error).");
	for (size_t i = 0; i < n; i++) {
		vlabels_set(&vl, &vols[i]);
		vl.l[2] = (struct promtext_label){ "mountpoint", vols[i].mountpoint };
		vl.l[3] = (struct promtext_label){ "state", vols[i].state };
		promtext_u64(p, V "info", vl.l, 4, 1);
	}
}

static void put_latency(struct promtext *p, const struct volume_stats *vols, size_t n)
{
	const char *name = V "io_request_duration_seconds";
	struct vlabels vl;

	promtext_family(p, name, "histogram",
			"Time from a read or write request's arrival to its reply, throttling "
			"included, in seconds.");
	for (size_t i = 0; i < n; i++) {
		if (!vols[i].served)
			continue;
		vlabels_set(&vl, &vols[i]);
		vl.l[2] = (struct promtext_label){ "op", "read" };
		promtext_histogram(p, name, vl.l, 3, &histogram_io_bounds, &vols[i].read_latency);
		vl.l[2] = (struct promtext_label){ "op", "write" };
		promtext_histogram(p, name, vl.l, 3, &histogram_io_bounds, &vols[i].write_latency);
	}
}

int volmetrics_format(const struct volume_stats *vols, size_t n, const char *version,
		      bool keeper_holding, char **ret_text, size_t *ret_len)
{
	struct promtext p = { 0 };

	put_daemon(&p, vols, n, version);
	promtext_family(&p, P "keeper_holding", "gauge",
			"1 while carvefs-keeper holds every served volume's /dev/fuse fd; 0 means a "
			"crash of carvefs would end the volumes' mounts.");
	promtext_u64(&p, P "keeper_holding", NULL, 0, keeper_holding);
	put_info(&p, vols, n);
	put_per_volume(&p, vols, n, V "capacity_bytes", "gauge", "Capacity of the volume in bytes.",
		       F_CAPACITY, false, false);
	put_per_volume(&p, vols, n, V "used_bytes", "gauge",
		       "Bytes allocated in the volume (st_blocks of every object).", F_USED, false,
		       false);
	put_per_volume(&p, vols, n, V "inode_limit", "gauge",
		       "Most inodes the volume may hold; 0 means unlimited.", F_INODE_LIMIT, false,
		       false);
	put_per_volume(&p, vols, n, V "inodes_used", "gauge",
		       "Inodes used in the volume, its root directory not counted.", F_INODES_USED,
		       false, false);
	put_per_op(&p, vols, n, V "io_limit_iops", "gauge",
		   "Operations per second the volume may do; 0 means unlimited.", IO_LIMIT_IOPS,
		   false);
	put_per_op(&p, vols, n, V "io_limit_bytes_per_second", "gauge",
		   "Bytes per second the volume may transfer; 0 means unlimited.", IO_LIMIT_BPS,
		   false);
	put_per_volume(&p, vols, n, V "io_limit_burst_seconds", "gauge",
		       "How far ahead of its limits an idle volume may run, in seconds of them.",
		       F_BURST_NS, true, false);
	put_per_volume(&p, vols, n, V "io_limit_iops_size_bytes", "gauge",
		       "Size above which a request counts as several operations; 0 means off.",
		       F_IOPS_SIZE, false, false);
	put_per_op(&p, vols, n, V "io_ops_total", "counter",
		   "Read and write requests served from the backing file.", IO_OPS, true);
	put_per_op(&p, vols, n, V "io_bytes_total", "counter",
		   "Bytes read and written through the backing file.", IO_BYTES, true);
	put_per_volume(&p, vols, n, V "io_throttled_seconds_total", "counter",
		       "Time requests spent waiting for the IO limits, summed, in seconds.",
		       F_THROTTLED_NS, true, true);
	put_per_volume(&p, vols, n, V "io_queue_depth", "gauge",
		       "Requests waiting for the IO limits now.", F_QUEUE_DEPTH, false, true);
	put_latency(&p, vols, n);
	return promtext_finish(&p, ret_text, ret_len);
}
