/*
 * daemonctl.c - requests to the carvefs daemon; see include/daemonctl.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemonctl.h"

static int errno_for_code(const char *code)
{
	static const struct {
		const char *code;
		int r;
	} map[] = {
		{ WIRE_E_NO_SPACE, -ENOSPC },	   { WIRE_E_NOT_FOUND, -ENOENT },
		{ WIRE_E_BUSY, -EBUSY },	   { WIRE_E_INVALID, -EINVAL },
		{ WIRE_E_BAD_REQUEST, -EINVAL },   { WIRE_E_UNKNOWN_VERB, -EOPNOTSUPP },
		{ WIRE_E_PERMISSION, -EACCES },
	};

	for (size_t i = 0; code && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(code, map[i].code) == 0)
			return map[i].r;
	return -EIO;
}

int daemonctl_call(const char *socket_path, const json_t *request, int timeout_ms,
		   json_t **ret_reply, char *ret_msg, size_t msg_len)
{
	json_t *reply = NULL, *err;
	char *text = NULL, *line = NULL;
	const char *why;
	int fd = -1, r;

	snprintf(ret_msg, msg_len, "%s", "");
	if (!socket_path)
		socket_path = WIRE_DEFAULT_SOCKET;
	text = json_dumps(request, JSON_COMPACT);
	if (!text) {
		r = -ENOMEM;
		snprintf(ret_msg, msg_len, "out of memory");
		goto out;
	}
	fd = wire_connect(socket_path);
	if (fd < 0) {
		/* -ENOENT is the daemon's not_found: a missing socket must not read as that. */
		r = -ECONNREFUSED;
		snprintf(ret_msg, msg_len, "cannot reach the carvefs daemon at %s: %s", socket_path,
			 strerror(-fd));
		goto out;
	}
	r = wire_call(fd, text, timeout_ms, &line);
	if (r < 0) {
		snprintf(ret_msg, msg_len, "no answer from the carvefs daemon at %s: %s",
			 socket_path, strerror(-r));
		goto out;
	}
	reply = json_loads(line, 0, NULL);
	if (!json_is_object(reply)) {
		r = -EPROTO;
		snprintf(ret_msg, msg_len, "the carvefs daemon's answer is not a JSON object");
		goto out;
	}
	if (json_is_true(json_object_get(reply, "ok"))) {
		*ret_reply = reply;
		reply = NULL;
		r = 0;
		goto out;
	}
	err = json_object_get(reply, "error");
	r = errno_for_code(json_string_value(json_object_get(err, "code")));
	why = json_string_value(json_object_get(err, "message"));
	snprintf(ret_msg, msg_len, "%s", why ? why : "the carvefs daemon refused without a reason");
out:
	if (fd >= 0)
		close(fd);
	json_decref(reply);
	free(text);
	free(line);
	return r;
}
