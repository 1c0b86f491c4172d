/*
 * ctlclient.h - the client of the carvefs daemon's control socket (wire.h),
 * for carvectl and the provisioner: one request, its answer as JSON.
 *
 * A connection per request: carvectl sends one, and the provisioner's
 * passes ask a handful of questions every period; a fresh connection
 * survives a daemon restart between them. Does not log: the caller knows
 * which volume and claim a failure concerns.
 *
 * Every function returns 0 or -errno, with the reason in @ret_msg
 * (errmsg.h; may be NULL) on failure:
 *   - the daemon refused: its code's errno (no_space -ENOSPC, not_found
 *     -ENOENT, already_exists -EEXIST, busy -EBUSY, invalid_argument and
 *     bad_request -EINVAL, unknown_verb -EOPNOTSUPP, permission_denied
 *     -EACCES, internal and others -EIO), with the daemon's sentence;
 *   - the daemon was not reached or did not answer (ctlclient_unreachable()
 *     is true): -ECONNREFUSED when it cannot be reached (not running, no
 *     socket, not root; never -ENOENT, which is the daemon's not_found),
 *     -ETIMEDOUT when no reply came in time, -ECONNRESET when the
 *     connection failed or closed before a reply;
 *   - -EPROTO for an answer that is not a reply, -ENOMEM.
 * @socket_path NULL means WIRE_DEFAULT_SOCKET.
 */
#ifndef CARVEFS_CTLCLIENT_H
#define CARVEFS_CTLCLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "errmsg.h"
#include "wire.h"

/* Long enough for a create to mount its volume, or a wipe to empty it, on a busy node. */
#define CTLCLIENT_TIMEOUT_MS (60 * 1000)

/* True if @r, from a call below, means the daemon did not answer at all. */
bool ctlclient_unreachable(int r);

/*
 * Sends @request, waiting at most @timeout_ms (< 0: forever); the whole
 * reply ({"ok": true, ...}, a new reference) to *ret_reply, may be NULL.
 */
int ctlclient_call(const char *socket_path, const json_t *request, int timeout_ms,
		   json_t **ret_reply, struct errmsg *ret_msg);

/* Every volume (the V objects of wire.h) as a JSON array in *ret_volumes. */
int ctlclient_list(const char *socket_path, json_t **ret_volumes, struct errmsg *ret_msg);

/* The pool (P of wire.h) in *ret_pool. */
int ctlclient_pool(const char *socket_path, json_t **ret_pool, struct errmsg *ret_msg);

/* The volume @name (a V object) in *ret_volume. */
int ctlclient_stats(const char *socket_path, const char *name, json_t **ret_volume,
		    struct errmsg *ret_msg);

/*
 * Resizes the volume @name to @size_bytes, refused unless there is room at
 * @overcommit (> 0; 0 leaves the daemon's own rule). Its new state (a V
 * object) in *ret_volume, which may be NULL.
 */
int ctlclient_resize(const char *socket_path, const char *name, uint64_t size_bytes,
		     double overcommit, json_t **ret_volume, struct errmsg *ret_msg);

/* Deletes the volume @name; @force deletes it even when it is in use. */
int ctlclient_delete(const char *socket_path, const char *name, bool force,
		     struct errmsg *ret_msg);

/* Empties the volume @name, waiting at most @timeout_ms. */
int ctlclient_wipe(const char *socket_path, const char *name, int timeout_ms,
		   struct errmsg *ret_msg);

#endif
