/*
 * wire.h - the control socket's protocol, shared by the daemon, carvectl and
 * the provisioner.
 *
 * A unix stream socket; the client writes one JSON object per line, the
 * daemon answers each with one JSON object per line, in order. A line is at
 * most WIRE_LINE_MAX bytes. Only root may connect (the daemon checks
 * SO_PEERCRED and answers "permission_denied" to anyone else).
 *
 * Requests: {"verb": "<verb>", ...arguments}
 *   create     name, size_bytes, [inodes], [uid, gid, mode], [riops, wiops,
 *              rbps, wbps, burst_ms, iops_size_bytes], [storage_class],
 *              [labels (object)], [overcommit (number > 0)]
 *   delete     name, [force (bool)]
 *   resize     name, size_bytes, [overcommit]
 *   set-limits name, any of riops, wiops, rbps, wbps, burst_ms, iops_size_bytes
 *   wipe       name
 *   list
 *   stats      name
 *   pool
 *   ping
 *
 * Replies:
 *   success: {"ok": true, ...}  create/resize/set-limits/stats add "volume": V;
 *            list adds "volumes": [V...]; pool adds "pool": P; delete/wipe/ping
 *            add nothing else.
 *   failure: {"error": {"code": "<code>", "message": "<one sentence>"}}
 *
 * V, a volume: {"name", "mountpoint", "state" ("mounted"|"unmounted"|"error"),
 *   "capacity_bytes", "used_bytes", "inode_limit", "used_inodes",
 *   "uid", "gid", "mode", "created_unix", "storage_class", "labels",
 *   "limits": {"riops","wiops","rbps","wbps","burst_ms","iops_size_bytes"},
 *   "io": {"read_ops","write_ops","read_bytes","write_bytes","throttled_ns",
 *          "queue_depth", "read_latency": L, "write_latency": L}}
 *   "io" is there while the volume is served. L summarises the latency
 *   histogram of one direction (reads or writes that reached the backing
 *   file, from the request's arrival to its reply): {"count", "sum_ns",
 *   "p50_ns", "p99_ns"}, the percentiles estimated from the buckets as
 *   Prometheus' histogram_quantile() does (0 while count is 0).
 *
 * P, the pool: {"path", "size_bytes", "free_bytes" (available to unprivileged
 *   writers), "allocated_bytes" (capacities summed), "committed_bytes" (what
 *   volumes may still write: capacity - used, summed), "volumes"}.
 *
 * overcommit: with it, create and a growing resize fail with "no_space" when
 * committed_bytes plus what the volume may still write would exceed
 * free_bytes * overcommit. Without it, a volume only has to fit on the
 * pool's filesystem.
 *
 * Error codes are stable; scripts may rely on them.
 */
#ifndef CARVEFS_WIRE_H
#define CARVEFS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_LINE_MAX (64 * 1024)
#define WIRE_REPLY_MAX (16 * 1024 * 1024)
#define WIRE_MSG_MAX 512
#define WIRE_DEFAULT_SOCKET "/run/carvefs/carvefs.sock"

#define WIRE_E_BAD_REQUEST "bad_request"	 /* not JSON, no verb, wrong types */
#define WIRE_E_UNKNOWN_VERB "unknown_verb"
#define WIRE_E_INVALID "invalid_argument"	 /* a value breaks a rule (name, size) */
#define WIRE_E_NOT_FOUND "not_found"
#define WIRE_E_EXISTS "already_exists"
#define WIRE_E_BUSY "busy"			 /* in use; retry or force */
#define WIRE_E_NO_SPACE "no_space"		 /* the pool or the volume lacks room */
#define WIRE_E_PERMISSION "permission_denied"
#define WIRE_E_INTERNAL "internal"

/*
 * Maps a negative errno from the daemon's volume manager to the stable code
 * above: -EINVAL invalid_argument, -ENOENT not_found, -EEXIST already_exists,
 * -EBUSY busy, -ENOSPC no_space, -EPERM/-EACCES permission_denied, other
 * internal.
 */
const char *wire_code_for_errno(int r);

/*
 * Deadlines are CLOCK_MONOTONIC nanoseconds (UINT64_MAX: never).
 *
 * Waits until @fd is ready for @events or @deadline_ns passes. Returns 0
 * (also for POLLHUP and POLLERR: the next send or recv reports them) or
 * -ETIMEDOUT. poll() is given the rest rounded up to a whole millisecond,
 * so a call never gives up before its time.
 */
int wire_wait_fd(int fd, short events, uint64_t deadline_ns);
/* Sends all of @data on the stream socket @fd (never SIGPIPE). Returns 0 or -errno. */
int wire_send_all(int fd, const void *data, size_t len, uint64_t deadline_ns);

/*
 * Client side: connects to @path. Returns an fd owned by the caller or
 * -errno (-ENOENT / -ECONNREFUSED when the daemon is not running).
 */
int wire_connect(const char *path);

/*
 * Client side: sends @request (one JSON object, no newline) and reads one
 * reply line (at most WIRE_REPLY_MAX bytes, else -EMSGSIZE) into a malloc'd,
 * NUL-terminated *ret_reply owned by the caller.
 * Gives up after @timeout_ms. Returns 0 or -errno (-ETIMEDOUT, -EPROTO if
 * the daemon closed without a complete line).
 */
int wire_call(int fd, const char *request, int timeout_ms, char **ret_reply);

#endif
