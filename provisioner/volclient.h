/*
 * volclient.h - the provisioner's client of the carvefs daemon's control
 * socket (wire.h): one request, its answer as JSON.
 *
 * A connection per request: the passes ask a handful of questions every
 * period, and a fresh connection survives a daemon restart between them.
 * Does not log: the caller knows which volume and claim a failure concerns.
 *
 * Every function returns 0 or -errno. A refusal by the daemon comes back as
 * its code's errno (no_space -ENOSPC, not_found -ENOENT, busy -EBUSY,
 * invalid_argument and bad_request -EINVAL, unknown_verb -EOPNOTSUPP,
 * permission_denied -EACCES, others -EIO) with the daemon's sentence in
 * @ret_msg. Otherwise: -ECONNREFUSED when the daemon cannot be reached (not
 * running, no socket; never -ENOENT, which is the daemon's not_found),
 * -ETIMEDOUT, -EPROTO for an answer that is not a reply, -ENOMEM, and
 * @ret_msg says that. @ret_msg is WIRE_MSG_MAX bytes and always a string
 * afterwards. @socket_path NULL means WIRE_DEFAULT_SOCKET.
 */
#ifndef CARVEFS_VOLCLIENT_H
#define CARVEFS_VOLCLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "wire.h"

/* Long enough for a create to mount its volume, or a wipe to empty it, on a busy node. */
#define VOLCLIENT_TIMEOUT_MS (60 * 1000)

/* Sends @request; the whole reply ({"ok": true, ...}, a new reference) to *ret_reply, may be NULL. */
int volclient_call(const char *socket_path, const json_t *request, int timeout_ms,
		   json_t **ret_reply, char *ret_msg);

/* Every volume (the V objects of wire.h) as a JSON array in *ret_volumes. */
int volclient_list(const char *socket_path, json_t **ret_volumes, char *ret_msg);

/* The pool (P of wire.h) in *ret_pool. */
int volclient_pool(const char *socket_path, json_t **ret_pool, char *ret_msg);

/* The volume @name (a V object) in *ret_volume. */
int volclient_stats(const char *socket_path, const char *name, json_t **ret_volume,
		    char *ret_msg);

/*
 * Resizes the volume @name to @size_bytes, refused unless there is room at
 * @overcommit (> 0; 0 leaves the daemon's own rule). Its new state (a V
 * object) in *ret_volume, which may be NULL.
 */
int volclient_resize(const char *socket_path, const char *name, uint64_t size_bytes,
		     double overcommit, json_t **ret_volume, char *ret_msg);

/* Deletes the volume @name; @force deletes it even when it is in use. */
int volclient_delete(const char *socket_path, const char *name, bool force, char *ret_msg);

/* Empties the volume @name, waiting at most @timeout_ms. */
int volclient_wipe(const char *socket_path, const char *name, int timeout_ms, char *ret_msg);

#endif
