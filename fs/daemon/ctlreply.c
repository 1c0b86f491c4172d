/*
 * ctlreply.c - the control socket's reply objects; see ctlreply.h.
 *
 * Keys go out in the order they are packed (jansson keeps insertion order
 * and the server dumps without sorting), which clients and tests see.
 */
#include <string.h>

#include "ctlreply.h"

/* count, sum and the median and 99th percentile estimated from the buckets. */
static json_t *latency_json(const struct histogram_snapshot *h)
{
	return json_pack("{s:I, s:I, s:I, s:I}", "count", (json_int_t)h->count, "sum_ns",
			 (json_int_t)h->sum_ns, "p50_ns",
			 (json_int_t)histogram_quantile_ns(h, &histogram_io_bounds, 0.5), "p99_ns",
			 (json_int_t)histogram_quantile_ns(h, &histogram_io_bounds, 0.99));
}

json_t *ctlreply_volume(const struct volume_stats *s)
{
	json_t *o, *labels = NULL;

	if (s->labels[0])
		labels = json_loads(s->labels, 0, NULL);
	if (!labels)
		labels = json_object();
	o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:I, s:s, s:o}",
		      "name", s->name, "mountpoint", s->mountpoint, "state", s->state,
		      "capacity_bytes", (json_int_t)s->capacity_bytes,
		      "used_bytes", (json_int_t)s->used_bytes,
		      "inode_limit", (json_int_t)s->inode_limit,
		      "used_inodes", (json_int_t)s->used_inodes,
		      "uid", (int)s->uid, "gid", (int)s->gid, "mode", (int)s->mode,
		      "created_unix", (json_int_t)s->created_unix,
		      "storage_class", s->storage_class, "labels", labels);
	if (!o)
		return NULL;
	if (strcmp(s->state, "error") == 0)
		json_object_set_new(o, "error", json_string(s->error));
	if (s->recorded)
		json_object_set_new(o, "limits",
				    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
					      "riops", (json_int_t)s->limits.riops,
					      "wiops", (json_int_t)s->limits.wiops,
					      "rbps", (json_int_t)s->limits.rbps,
					      "wbps", (json_int_t)s->limits.wbps,
					      "burst_ms", (json_int_t)s->limits.burst_ms,
					      "iops_size_bytes", (json_int_t)s->limits.iops_size_bytes));
	if (s->served)
		json_object_set_new(
			o, "io",
			json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
				  "read_ops", (json_int_t)s->read_ops,
				  "write_ops", (json_int_t)s->write_ops,
				  "read_bytes", (json_int_t)s->read_bytes,
				  "write_bytes", (json_int_t)s->write_bytes,
				  "throttled_ns", (json_int_t)s->throttled_ns,
				  "queue_depth", (json_int_t)s->queue_depth,
				  "read_latency", latency_json(&s->read_latency),
				  "write_latency", latency_json(&s->write_latency)));
	return o;
}

json_t *ctlreply_volumes(const struct volume_stats *vols, size_t n)
{
	json_t *arr = json_array();

	if (!arr)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *o = ctlreply_volume(&vols[i]);

		if (!o || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

json_t *ctlreply_pool(const char *path, const struct pool_info *info)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "path", path, "size_bytes",
			 (json_int_t)info->size_bytes, "free_bytes", (json_int_t)info->free_bytes,
			 "allocated_bytes", (json_int_t)info->allocated_bytes, "committed_bytes",
			 (json_int_t)info->committed_bytes, "volumes", (json_int_t)info->volumes);
}
