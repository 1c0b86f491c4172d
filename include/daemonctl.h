/*
 * daemonctl.h - one request to the carvefs daemon's control socket (wire.h)
 * and its answer as JSON, for the provisioner's passes.
 *
 * A connection per request: the passes ask a handful of questions every
 * period, and a fresh connection survives a daemon restart between them.
 * Does not log: the caller knows which volume and claim a failure concerns.
 */
#ifndef CARVEFS_DAEMONCTL_H
#define CARVEFS_DAEMONCTL_H

#include <stddef.h>

#include <jansson.h>

#include "wire.h"

#define DAEMONCTL_TIMEOUT_MS (30 * 1000)

/*
 * Sends @request to the daemon at @socket_path (NULL: WIRE_DEFAULT_SOCKET)
 * and waits at most @timeout_ms for the answer. On success *ret_reply is
 * the whole reply object ({"ok": true, ...}), a new reference.
 * On a refusal returns its code as -errno (no_space -ENOSPC, not_found
 * -ENOENT, busy -EBUSY, invalid_argument and bad_request -EINVAL,
 * unknown_verb -EOPNOTSUPP, permission_denied -EACCES, others -EIO) and
 * copies the daemon's sentence into @ret_msg. Other failures:
 * -ECONNREFUSED when the daemon cannot be reached (not running, no
 * socket), -ETIMEDOUT, -EPROTO for an answer that is not a reply, -ENOMEM;
 * @ret_msg then says so as well.
 * @ret_msg (@msg_len bytes, WIRE_MSG_MAX suffice) is always a string.
 */
int daemonctl_call(const char *socket_path, const json_t *request, int timeout_ms,
		   json_t **ret_reply, char *ret_msg, size_t msg_len);

#endif
