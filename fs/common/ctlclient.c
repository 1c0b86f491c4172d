/*
 * ctlclient.c - requests to the carvefs daemon; see include/ctlclient.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlclient.h"

static int errno_for_code(const char *code)
{
	static const struct {
		const char *code;
		int r;
	} map[] = {
		{ WIRE_E_NO_SPACE, -ENOSPC },	   { WIRE_E_NOT_FOUND, -ENOENT },
		{ WIRE_E_EXISTS, -EEXIST },	   { WIRE_E_BUSY, -EBUSY },
		{ WIRE_E_INVALID, -EINVAL },	   { WIRE_E_BAD_REQUEST, -EINVAL },
		{ WIRE_E_UNKNOWN_VERB, -EOPNOTSUPP }, { WIRE_E_PERMISSION, -EACCES },
	};

	for (size_t i = 0; code && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(code, map[i].code) == 0)
			return map[i].r;
	return -EIO;
}

bool ctlclient_unreachable(int r)
{
	return r == -ECONNREFUSED || r == -ETIMEDOUT || r == -ECONNRESET;
}

/* The reason a connect() failed, and what the user can do about it. */
static int unreachable(struct errmsg *m, const char *socket_path, int r)
{
	const char *hint = "";

	if (r == -ENOENT || r == -ECONNREFUSED)
		hint = " (is the daemon running?)";
	else if (r == -EACCES || r == -EPERM)
		hint = " (the control socket is for root only)";
	return errmsg_set(m, -ECONNREFUSED, "cannot reach carvefs at '%s': %s%s", socket_path,
			  strerror(-r), hint);
}

/* The reason wire_call() failed; the daemon was reached but did not answer. */
static int no_reply(struct errmsg *m, const char *socket_path, int timeout_ms, int r)
{
	if (r == -ENOMEM)
		return errmsg_set(m, r, "out of memory");
	if (r == -ETIMEDOUT && timeout_ms % 1000 == 0)
		return errmsg_set(m, r, "carvefs at '%s' did not reply within %d s", socket_path,
				  timeout_ms / 1000);
	if (r == -ETIMEDOUT)
		return errmsg_set(m, r, "carvefs at '%s' did not reply within %d ms", socket_path,
				  timeout_ms);
	if (r == -EPROTO)
		return errmsg_set(m, -ECONNRESET,
				  "carvefs at '%s' closed the connection without a reply",
				  socket_path);
	return errmsg_set(m, -ECONNRESET, "cannot talk to carvefs at '%s': %s", socket_path,
			  strerror(-r));
}

int ctlclient_call(const char *socket_path, const json_t *request, int timeout_ms,
		   json_t **ret_reply, struct errmsg *ret_msg)
{
	json_t *reply = NULL, *err;
	char *text = NULL, *line = NULL;
	const char *why, *code;
	json_error_t jerr;
	int fd = -1, r;

	if (!socket_path)
		socket_path = WIRE_DEFAULT_SOCKET;
	text = json_dumps(request, JSON_COMPACT);
	if (!text) {
		r = errmsg_set(ret_msg, -ENOMEM, "out of memory");
		goto out;
	}
	fd = wire_connect(socket_path);
	if (fd < 0) {
		r = unreachable(ret_msg, socket_path, fd);
		goto out;
	}
	r = wire_call(fd, text, timeout_ms, &line);
	if (r < 0) {
		r = no_reply(ret_msg, socket_path, timeout_ms, r);
		goto out;
	}
	reply = json_loads(line, 0, &jerr);
	if (!json_is_object(reply)) {
		r = errmsg_set(ret_msg, -EPROTO, "malformed reply from carvefs: %s",
			       reply ? "not a JSON object" : jerr.text);
		goto out;
	}
	err = json_object_get(reply, "error");
	if (err) {
		code = json_string_value(json_object_get(err, "code"));
		why = json_string_value(json_object_get(err, "message"));
		r = errmsg_set(ret_msg, errno_for_code(code), "%s",
			       why    ? why
			       : code ? code
				      : "the daemon reported an unspecified error");
		goto out;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		r = errmsg_set(ret_msg, -EPROTO,
			       "malformed reply from carvefs: neither \"ok\" nor \"error\"");
		goto out;
	}
	if (ret_reply) {
		*ret_reply = reply;
		reply = NULL;
	}
	r = 0;
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
		    json_type type, json_t **ret, struct errmsg *ret_msg)
{
	json_t *reply = NULL, *v;
	int r;

	/* json_pack fails on a name that is not UTF-8, or out of memory. */
	if (!req)
		return errmsg_set(ret_msg, -EINVAL, "cannot build the request");
	r = ctlclient_call(socket_path, req, timeout_ms, &reply, ret_msg);
	json_decref(req);
	if (r < 0 || !field)
		goto out;
	v = json_object_get(reply, field);
	if (!v || json_typeof(v) != type) {
		r = errmsg_set(ret_msg, -EPROTO, "malformed reply from carvefs: no '%s'", field);
		goto out;
	}
	if (ret)
		*ret = json_incref(v);
out:
	json_decref(reply);
	return r;
}

int ctlclient_list(const char *socket_path, json_t **ret_volumes, struct errmsg *ret_msg)
{
	return call_for(socket_path, json_pack("{s:s}", "verb", "list"), CTLCLIENT_TIMEOUT_MS,
			"volumes", JSON_ARRAY, ret_volumes, ret_msg);
}

int ctlclient_pool(const char *socket_path, json_t **ret_pool, struct errmsg *ret_msg)
{
	return call_for(socket_path, json_pack("{s:s}", "verb", "pool"), CTLCLIENT_TIMEOUT_MS,
			"pool", JSON_OBJECT, ret_pool, ret_msg);
}

int ctlclient_stats(const char *socket_path, const char *name, json_t **ret_volume,
		    struct errmsg *ret_msg)
{
	return call_for(socket_path, json_pack("{s:s, s:s}", "verb", "stats", "name", name),
			CTLCLIENT_TIMEOUT_MS, "volume", JSON_OBJECT, ret_volume, ret_msg);
}

int ctlclient_resize(const char *socket_path, const char *name, uint64_t size_bytes,
		     double overcommit, json_t **ret_volume, struct errmsg *ret_msg)
{
	json_t *req = json_pack("{s:s, s:s, s:I}", "verb", "resize", "name", name, "size_bytes",
				(json_int_t)size_bytes);

	if (req && overcommit > 0 &&
	    json_object_set_new(req, "overcommit", json_real(overcommit)) < 0) {
		json_decref(req);
		req = NULL;
	}
	return call_for(socket_path, req, CTLCLIENT_TIMEOUT_MS, ret_volume ? "volume" : NULL,
			JSON_OBJECT, ret_volume, ret_msg);
}

int ctlclient_delete(const char *socket_path, const char *name, bool force,
		     struct errmsg *ret_msg)
{
	return call_for(socket_path,
			json_pack("{s:s, s:s, s:b}", "verb", "delete", "name", name, "force", force),
			CTLCLIENT_TIMEOUT_MS, NULL, JSON_NULL, NULL, ret_msg);
}

int ctlclient_wipe(const char *socket_path, const char *name, int timeout_ms,
		   struct errmsg *ret_msg)
{
	return call_for(socket_path, json_pack("{s:s, s:s}", "verb", "wipe", "name", name),
			timeout_ms, NULL, JSON_NULL, NULL, ret_msg);
}
