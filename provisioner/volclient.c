/*
 * volclient.c - requests to the carvefs daemon; see include/volclient.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "volclient.h"

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

int volclient_call(const char *socket_path, const json_t *request, int timeout_ms,
		   json_t **ret_reply, char *ret_msg)
{
	json_t *reply = NULL, *err;
	char *text = NULL, *line = NULL;
	const char *why;
	int fd = -1, r;

	snprintf(ret_msg, WIRE_MSG_MAX, "%s", "");
	if (!socket_path)
		socket_path = WIRE_DEFAULT_SOCKET;
	text = json_dumps(request, JSON_COMPACT);
	if (!text) {
		r = -ENOMEM;
		snprintf(ret_msg, WIRE_MSG_MAX, "out of memory");
		goto out;
	}
	fd = wire_connect(socket_path);
	if (fd < 0) {
		r = -ECONNREFUSED;
		snprintf(ret_msg, WIRE_MSG_MAX, "cannot reach the carvefs daemon at %s: %s",
			 socket_path, strerror(-fd));
		goto out;
	}
	r = wire_call(fd, text, timeout_ms, &line);
	if (r < 0) {
		snprintf(ret_msg, WIRE_MSG_MAX, "no answer from the carvefs daemon at %s: %s",
			 socket_path, strerror(-r));
		goto out;
	}
	reply = json_loads(line, 0, NULL);
	if (!json_is_object(reply)) {
		r = -EPROTO;
		snprintf(ret_msg, WIRE_MSG_MAX, "the carvefs daemon's answer is not a JSON object");
		goto out;
	}
	if (json_is_true(json_object_get(reply, "ok"))) {
		if (ret_reply) {
			*ret_reply = reply;
			reply = NULL;
		}
		r = 0;
		goto out;
	}
	err = json_object_get(reply, "error");
	r = errno_for_code(json_string_value(json_object_get(err, "code")));
	why = json_string_value(json_object_get(err, "message"));
	snprintf(ret_msg, WIRE_MSG_MAX, "%s",
		 why ? why : "the carvefs daemon refused without a reason");
out:
	if (fd >= 0)
		close(fd);
	json_decref(reply);
	free(text);
	free(line);
	return r;
}

/*
 * Sends @req (consumed; NULL means it could not be built) and hands the
 * member @field of the reply, of JSON type @type, to *ret (may be NULL).
 */
static int call_for(const char *socket_path, json_t *req, int timeout_ms, const char *field,
		    json_type type, json_t **ret, char *ret_msg)
{
	json_t *reply = NULL, *v;
	int r;

	if (!req) {
		/* json_pack fails on a name that is not UTF-8, or out of memory. */
		snprintf(ret_msg, WIRE_MSG_MAX, "cannot build the request");
		return -EINVAL;
	}
	r = volclient_call(socket_path, req, timeout_ms, &reply, ret_msg);
	json_decref(req);
	if (r < 0 || !field)
		goto out;
	v = json_object_get(reply, field);
	if (!v || json_typeof(v) != type) {
		snprintf(ret_msg, WIRE_MSG_MAX, "the carvefs daemon's answer has no '%s'", field);
		r = -EPROTO;
		goto out;
	}
	if (ret)
		*ret = json_incref(v);
out:
	json_decref(reply);
	return r;
}

int volclient_list(const char *socket_path, json_t **ret_volumes, char *ret_msg)
{
	return call_for(socket_path, json_pack("{s:s}", "verb", "list"), VOLCLIENT_TIMEOUT_MS,
			"volumes", JSON_ARRAY, ret_volumes, ret_msg);
}

int volclient_pool(const char *socket_path, json_t **ret_pool, char *ret_msg)
{
	return call_for(socket_path, json_pack("{s:s}", "verb", "pool"), VOLCLIENT_TIMEOUT_MS,
			"pool", JSON_OBJECT, ret_pool, ret_msg);
}

int volclient_stats(const char *socket_path, const char *name, json_t **ret_volume,
		    char *ret_msg)
{
	return call_for(socket_path, json_pack("{s:s, s:s}", "verb", "stats", "name", name),
			VOLCLIENT_TIMEOUT_MS, "volume", JSON_OBJECT, ret_volume, ret_msg);
}

int volclient_resize(const char *socket_path, const char *name, uint64_t size_bytes,
		     double overcommit, json_t **ret_volume, char *ret_msg)
{
	json_t *req = json_pack("{s:s, s:s, s:I}", "verb", "resize", "name", name, "size_bytes",
				(json_int_t)size_bytes);

	if (req && overcommit > 0 &&
	    json_object_set_new(req, "overcommit", json_real(overcommit)) < 0) {
		json_decref(req);
		req = NULL;
	}
	return call_for(socket_path, req, VOLCLIENT_TIMEOUT_MS, ret_volume ? "volume" : NULL,
			JSON_OBJECT, ret_volume, ret_msg);
}

int volclient_delete(const char *socket_path, const char *name, bool force, char *ret_msg)
{
	return call_for(socket_path,
			json_pack("{s:s, s:s, s:b}", "verb", "delete", "name", name, "force", force),
			VOLCLIENT_TIMEOUT_MS, NULL, JSON_NULL, NULL, ret_msg);
}

int volclient_wipe(const char *socket_path, const char *name, int timeout_ms, char *ret_msg)
{
	return call_for(socket_path, json_pack("{s:s, s:s}", "verb", "wipe", "name", name),
			timeout_ms, NULL, JSON_NULL, NULL, ret_msg);
}
