/*
 * control.c - the control socket's verbs; see control.h, and
 * include/wire.h for the protocol. The socket itself is ctlserver.c's.
 *
 * Every verb runs on the server's one thread, so verbs of different clients
 * are serialised there as well as by the manager's own lock.
 *
 * Arguments are checked here, field by field, so that a client learns which
 * field is wrong; the manager then applies the volume-level rules (room in
 * the pool, shrinking below usage, ...).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control.h"
#include "ctlreply.h"
#include "ctlserver.h"
#include "log.h"
#include "volname.h"
#include "volume.h"
#include "wire.h"

struct control {
	struct volmgr *mgr;
	struct ctlserver *server;
};

/* A request being answered: its fields, and why it failed if it did. */
struct request {
	json_t *obj;
	const char *verb;
	const char *name; /* the volume, for verbs that take one; checked */
	const char *code;
	char msg[WIRE_MSG_MAX];
};

/* Records the failure of @rq and returns @r, so handlers can "return fail(...)". */
__attribute__((format(printf, 4, 5)))
static int fail(struct request *rq, const char *code, int r, const char *fmt, ...)
{
	va_list ap;

	rq->code = code;
	va_start(ap, fmt);
	vsnprintf(rq->msg, sizeof(rq->msg), fmt, ap);
	va_end(ap);
	return r;
}

/*
 * Records a failure reported by the manager: its own sentence if it wrote
 * one, else the errno's text about @name.
 */
static int fail_mgr(struct request *rq, int r, const char *name, const char *mgr_msg)
{
	if (mgr_msg && mgr_msg[0])
		return fail(rq, wire_code_for_errno(r), r, "%s", mgr_msg);
	if (name)
		return fail(rq, wire_code_for_errno(r), r, "volume '%s': %s", name, strerror(-r));
	return fail(rq, wire_code_for_errno(r), r, "%s", strerror(-r));
}

/* Wrong JSON types are the client's bug (bad_request); bad values are the user's. */
static int check_fields(struct request *rq, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(rq->obj, key, v) {
		bool ok = strcmp(key, "verb") == 0;

		for (size_t i = 0; !ok && allowed[i]; i++)
			ok = strcmp(key, allowed[i]) == 0;
		if (!ok)
			return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL,
				    "unknown field '%s' for verb '%s'", key, rq->verb);
	}
	return 0;
}

static int get_name(struct request *rq, const char **ret_name)
{
	json_t *v = json_object_get(rq->obj, "name");
	struct errmsg reason;
	const char *name;
	int r;

	if (!v)
		return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL,
			    "field 'name' is required for verb '%s'", rq->verb);
	if (!json_is_string(v))
		return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL, "field 'name' must be a string");
	name = json_string_value(v);
	/* An embedded NUL would make the name checked differ from the name sent. */
	if (strlen(name) != json_string_length(v))
		r = errmsg_set(&reason, -EINVAL, "contains a NUL byte");
	else
		r = volname_validate(name, &reason);
	if (r < 0)
		return fail(rq, WIRE_E_INVALID, -EINVAL, "volume name '%.*s' is invalid: %s",
			    VOLNAME_MAX + 8, name, reason.text);
	*ret_name = name;
	return 0;
}

/*
 * Reads an optional integer field in [@min, @max]. *ret_present says whether
 * it was given; *ret_val is untouched when it was not.
 */
static int get_uint(struct request *rq, const char *field, uint64_t min, uint64_t max,
		    uint64_t *ret_val, bool *ret_present)
{
	json_t *v = json_object_get(rq->obj, field);
	char what[96];
	json_int_t i;

	if (min == 0 && max == INT64_MAX)
		snprintf(what, sizeof(what), "a non-negative integer");
	else if (min == 1 && max == INT64_MAX)
		snprintf(what, sizeof(what), "a positive integer");
	else
		snprintf(what, sizeof(what), "an integer from %" PRIu64 " to %" PRIu64, min, max);

	if (ret_present)
		*ret_present = v != NULL;
	if (!v)
		return 0;
	if (!json_is_integer(v))
		return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL, "field '%s' must be %s", field, what);
	i = json_integer_value(v);
	if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
		return fail(rq, WIRE_E_INVALID, -EINVAL, "field '%s' must be %s", field, what);
	*ret_val = (uint64_t)i;
	return 0;
}

static int get_required_uint(struct request *rq, const char *field, uint64_t min, uint64_t max,
			     uint64_t *ret_val)
{
	bool present;
	int r;

	r = get_uint(rq, field, min, max, ret_val, &present);
	if (r < 0)
		return r;
	if (!present)
		return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL, "field '%s' is required for verb '%s'",
			    field, rq->verb);
	return 0;
}

/* The optional "overcommit" ratio of create and resize: a number > 0; 0 when absent. */
static int get_overcommit(struct request *rq, double *ret_ratio)
{
	json_t *v = json_object_get(rq->obj, "overcommit");

	*ret_ratio = 0;
	if (!v)
		return 0;
	if (!json_is_number(v))
		return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL, "field 'overcommit' must be a number");
	if (!(json_number_value(v) > 0) || json_number_value(v) > 1000)
		return fail(rq, WIRE_E_INVALID, -EINVAL,
			    "field 'overcommit' must be a ratio above 0 and at most 1000, not %g",
			    json_number_value(v));
	*ret_ratio = json_number_value(v);
	return 0;
}

static const char *const limit_fields[] = {
	"riops", "wiops", "rbps", "wbps", "burst_ms", "iops_size_bytes", NULL,
};

static uint64_t *limit_slot(struct io_limits *l, size_t i)
{
	uint64_t *slots[] = {
		&l->riops, &l->wiops, &l->rbps, &l->wbps, &l->burst_ms, &l->iops_size_bytes,
	};

	return slots[i];
}

/* Overwrites the limits given in the request; *ret_count says how many were. */
static int get_limits(struct request *rq, struct io_limits *limits, unsigned *ret_count)
{
	unsigned count = 0;

	for (size_t i = 0; limit_fields[i]; i++) {
		bool present;
		int r;

		r = get_uint(rq, limit_fields[i], 0, INT64_MAX, limit_slot(limits, i), &present);
		if (r < 0)
			return r;
		count += present;
	}
	if (ret_count)
		*ret_count = count;
	return 0;
}

static int get_labels(struct request *rq, char *buf, size_t len)
{
	json_t *v = json_object_get(rq->obj, "labels");
	const char *key;
	json_t *val;
	char *text;
	int r = 0;

	if (!v)
		return 0;
	if (!json_is_object(v))
		return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL,
			    "field 'labels' must be an object of strings");
	json_object_foreach(v, key, val) {
		if (!json_is_string(val))
			return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL,
				    "field 'labels' must be an object of strings "
				    "(label '%.64s' is not)",
				    key);
	}
	text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return fail(rq, WIRE_E_INTERNAL, -ENOMEM, "out of memory");
	if (strlen(text) >= len) {
		r = fail(rq, WIRE_E_INVALID, -EINVAL,
			 "field 'labels' is too large: at most %zu bytes as compact JSON", len - 1);
		goto out;
	}
	memcpy(buf, text, strlen(text) + 1);
out:
	free(text);
	return r;
}

/*
 * Adds the volume as the manager reports it to @reply. After a change that
 * succeeded, failing to describe the result must not turn the reply into an
 * error (a client would retry a create that already happened): with @after_change
 * the reply just goes without it.
 */
static int reply_with_volume(struct control *c, struct request *rq, const char *name,
			     bool after_change, json_t *reply)
{
	struct errmsg msg = { "" };
	struct volume_stats *s;
	json_t *vol = NULL;
	int r;

	/* Several KiB (labels, mountpoint, histograms): not on the thread's stack. */
	s = calloc(1, sizeof(*s));
	r = s ? volmgr_stats(c->mgr, name, s, &msg) : -ENOMEM;
	if (r == 0 && !(vol = ctlreply_volume(s)))
		r = -ENOMEM;
	free(s);
	if (r < 0 && after_change) {
		log_warn_errno(r, "volume '%s': cannot describe it after %s", name, rq->verb);
		return 0;
	}
	if (r < 0)
		return fail_mgr(rq, r, name, msg.text);
	if (json_object_set_new(reply, "volume", vol) < 0)
		return fail(rq, WIRE_E_INTERNAL, -ENOMEM, "out of memory");
	return 0;
}

static int do_ping(struct control *c, struct request *rq, json_t *reply)
{
	(void)c;
	(void)rq;
	(void)reply;
	return 0;
}

static const char *const create_fields[] = {
	"name", "size_bytes", "inodes", "uid", "gid", "mode", "riops", "wiops", "rbps", "wbps",
	"burst_ms", "iops_size_bytes", "storage_class", "labels", "overcommit", NULL,
};

static int do_create(struct control *c, struct request *rq, json_t *reply)
{
	struct errmsg msg = { "" };
	struct volume_spec *spec;
	bool has_uid, has_gid, has_mode;
	uint64_t uid = 0, gid = 0, mode = 0755;
	json_t *sc;
	int r;

	/* The spec carries a 4 KiB labels buffer: keep it off the thread's stack. */
	spec = calloc(1, sizeof(*spec));
	if (!spec)
		return fail(rq, WIRE_E_INTERNAL, -ENOMEM, "out of memory");

	snprintf(spec->name, sizeof(spec->name), "%s", rq->name);
	r = get_required_uint(rq, "size_bytes", 1, INT64_MAX, &spec->capacity_bytes);
	if (r < 0)
		goto out;
	r = get_uint(rq, "inodes", 0, INT64_MAX, &spec->inode_limit, NULL);
	if (r < 0)
		goto out;
	/* (uid_t)-1 means "no change" to chown(2): it can never be an owner. */
	r = get_uint(rq, "uid", 0, UINT32_MAX - 1, &uid, &has_uid);
	if (r < 0)
		goto out;
	r = get_uint(rq, "gid", 0, UINT32_MAX - 1, &gid, &has_gid);
	if (r < 0)
		goto out;
	r = get_uint(rq, "mode", 0, 07777, &mode, &has_mode);
	if (r < 0)
		goto out;
	spec->has_owner = has_uid || has_gid || has_mode;
	spec->uid = (uint32_t)uid;
	spec->gid = (uint32_t)gid;
	spec->mode = (uint32_t)mode;
	r = get_limits(rq, &spec->limits, NULL);
	if (r < 0)
		goto out;

	sc = json_object_get(rq->obj, "storage_class");
	if (sc) {
		if (!json_is_string(sc)) {
			r = fail(rq, WIRE_E_BAD_REQUEST, -EINVAL,
				 "field 'storage_class' must be a string");
			goto out;
		}
		if (json_string_length(sc) >= sizeof(spec->storage_class) ||
		    strlen(json_string_value(sc)) != json_string_length(sc)) {
			r = fail(rq, WIRE_E_INVALID, -EINVAL,
				 "field 'storage_class' must be at most %zu characters",
				 sizeof(spec->storage_class) - 1);
			goto out;
		}
		snprintf(spec->storage_class, sizeof(spec->storage_class), "%s",
			 json_string_value(sc));
	}
	r = get_labels(rq, spec->labels, sizeof(spec->labels));
	if (r < 0)
		goto out;
	r = get_overcommit(rq, &spec->overcommit);
	if (r < 0)
		goto out;

	r = volmgr_create(c->mgr, spec, &msg);
	if (r < 0) {
		r = fail_mgr(rq, r, spec->name, msg.text);
		goto out;
	}
	r = reply_with_volume(c, rq, spec->name, true, reply);
out:
	free(spec);
	return r;
}

static const char *const delete_fields[] = { "name", "force", NULL };

static int do_delete(struct control *c, struct request *rq, json_t *reply)
{
	struct errmsg msg = { "" };
	const char *name = rq->name;
	bool force = false;
	json_t *f;
	int r;

	(void)reply;
	f = json_object_get(rq->obj, "force");
	if (f) {
		if (!json_is_boolean(f))
			return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL,
				    "field 'force' must be true or false");
		force = json_is_true(f);
	}
	r = volmgr_delete(c->mgr, name, force, &msg);
	if (r < 0)
		return fail_mgr(rq, r, name, msg.text);
	return 0;
}

static const char *const resize_fields[] = { "name", "size_bytes", "overcommit", NULL };

static int do_resize(struct control *c, struct request *rq, json_t *reply)
{
	struct errmsg msg = { "" };
	const char *name = rq->name;
	double overcommit;
	uint64_t size;
	int r;

	r = get_required_uint(rq, "size_bytes", 1, INT64_MAX, &size);
	if (r < 0)
		return r;
	r = get_overcommit(rq, &overcommit);
	if (r < 0)
		return r;
	r = volmgr_resize(c->mgr, name, size, overcommit, &msg);
	if (r < 0)
		return fail_mgr(rq, r, name, msg.text);
	return reply_with_volume(c, rq, name, true, reply);
}

/* Reads the volume's current limits. */
static int current_limits(struct control *c, struct request *rq, const char *name,
			  struct io_limits *ret_limits)
{
	struct errmsg msg = { "" };
	struct volume_stats *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return fail(rq, WIRE_E_INTERNAL, -ENOMEM, "out of memory");
	r = volmgr_stats(c->mgr, name, s, &msg);
	if (r < 0)
		r = fail_mgr(rq, r, name, msg.text);
	else
		*ret_limits = s->limits;
	free(s);
	return r;
}

/*
 * set-limits changes only the limits it names, while the manager replaces the
 * whole set: merge with the current ones. Reading and writing cannot race
 * with another client, since every verb runs on this one thread.
 */
static const char *const set_limits_fields[] = {
	"name", "riops", "wiops", "rbps", "wbps", "burst_ms", "iops_size_bytes", NULL,
};

static int do_set_limits(struct control *c, struct request *rq, json_t *reply)
{
	struct errmsg msg = { "" };
	struct io_limits limits, given = { 0 };
	const char *name = rq->name;
	unsigned count;
	int r;

	r = get_limits(rq, &given, &count);
	if (r < 0)
		return r;
	if (count == 0)
		return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL,
			    "verb 'set-limits' needs at least one of the fields riops, wiops, "
			    "rbps, wbps, burst_ms, iops_size_bytes");
	r = current_limits(c, rq, name, &limits);
	if (r < 0)
		return r;
	for (size_t i = 0; limit_fields[i]; i++)
		if (json_object_get(rq->obj, limit_fields[i]))
			*limit_slot(&limits, i) = *limit_slot(&given, i);

	r = volmgr_set_limits(c->mgr, name, &limits, &msg);
	if (r < 0)
		return fail_mgr(rq, r, name, msg.text);
	return reply_with_volume(c, rq, name, true, reply);
}

static int do_wipe(struct control *c, struct request *rq, json_t *reply)
{
	struct errmsg msg = { "" };
	int r;

	(void)reply;
	r = volmgr_wipe(c->mgr, rq->name, &msg);
	if (r < 0)
		return fail_mgr(rq, r, rq->name, msg.text);
	return 0;
}

static int do_list(struct control *c, struct request *rq, json_t *reply)
{
	struct volume_stats *stats = NULL;
	json_t *vols;
	size_t n;
	int r;

	r = volmgr_list(c->mgr, &stats, &n);
	if (r < 0)
		return fail_mgr(rq, r, NULL, NULL);
	vols = ctlreply_volumes(stats, n);
	free(stats);
	if (!vols || json_object_set_new(reply, "volumes", vols) < 0)
		return fail(rq, WIRE_E_INTERNAL, -ENOMEM, "out of memory");
	return 0;
}

static int do_stats(struct control *c, struct request *rq, json_t *reply)
{
	return reply_with_volume(c, rq, rq->name, false, reply);
}

static int do_pool(struct control *c, struct request *rq, json_t *reply)
{
	struct pool_info info;
	json_t *o;
	int r;

	r = volmgr_pool_info(c->mgr, &info);
	if (r < 0)
		return fail(rq, WIRE_E_INTERNAL, r, "cannot measure the pool: %s", strerror(-r));
	o = ctlreply_pool(volmgr_pool_dir(c->mgr), &info);
	if (!o || json_object_set_new(reply, "pool", o) < 0)
		return fail(rq, WIRE_E_INTERNAL, -ENOMEM, "out of memory");
	return 0;
}

static bool takes_name(const char *const *fields)
{
	for (size_t i = 0; fields[i]; i++)
		if (strcmp(fields[i], "name") == 0)
			return true;
	return false;
}

static const char *const no_fields[] = { NULL };
static const char *const name_only[] = { "name", NULL };

/* Each verb's fields: anything else is refused, and "name" is checked, before its handler runs. */
static const struct verb {
	const char *name;
	int (*handle)(struct control *c, struct request *rq, json_t *reply);
	const char *const *fields;
} verbs[] = {
	{ "create", do_create, create_fields },
	{ "delete", do_delete, delete_fields },
	{ "resize", do_resize, resize_fields },
	{ "set-limits", do_set_limits, set_limits_fields },
	{ "wipe", do_wipe, name_only },
	{ "list", do_list, no_fields },
	{ "stats", do_stats, name_only },
	{ "pool", do_pool, no_fields },
	{ "ping", do_ping, no_fields },
};


/* Answers one request line; returns the reply, or NULL when out of memory. */
static json_t *handle_line(void *userdata, const char *line, size_t len)
{
	struct control *c = userdata;
	struct request rq = { .code = WIRE_E_INTERNAL };
	const struct verb *verb = NULL;
	json_error_t jerr;
	json_t *v, *reply = NULL;
	int r;

	rq.obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!rq.obj) {
		r = fail(&rq, WIRE_E_BAD_REQUEST, -EINVAL, "request is not valid JSON: %s",
			 jerr.text);
		goto out;
	}
	if (!json_is_object(rq.obj)) {
		r = fail(&rq, WIRE_E_BAD_REQUEST, -EINVAL, "request must be a JSON object");
		goto out;
	}
	v = json_object_get(rq.obj, "verb");
	if (!json_is_string(v)) {
		r = fail(&rq, WIRE_E_BAD_REQUEST, -EINVAL,
			 v ? "field 'verb' must be a string" : "field 'verb' is required");
		goto out;
	}
	rq.verb = json_string_value(v);
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(verbs[i].name, rq.verb) == 0)
			verb = &verbs[i];
	if (!verb) {
		r = fail(&rq, WIRE_E_UNKNOWN_VERB, -EINVAL, "unknown verb '%.64s'", rq.verb);
		goto out;
	}
	r = check_fields(&rq, verb->fields);
	if (r < 0)
		goto out;
	if (takes_name(verb->fields)) {
		r = get_name(&rq, &rq.name);
		if (r < 0)
			goto out;
	}
	reply = json_pack("{s:b}", "ok", 1);
	if (!reply) {
		r = fail(&rq, WIRE_E_INTERNAL, -ENOMEM, "out of memory");
		goto out;
	}
	r = verb->handle(c, &rq, reply);
out:
	if (r < 0) {
		json_decref(reply);
		reply = ctlserver_error_reply(rq.code, rq.msg);
		log_debug("control request '%s' failed: %s", rq.verb ? rq.verb : "?", rq.msg);
	}
	json_decref(rq.obj);
	return reply;
}


int control_start(const char *socket_path, struct volmgr *m, struct control **ret_ctl)
{
	struct control *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->mgr = m;
	r = ctlserver_start(socket_path, handle_line, c, &c->server);
	if (r < 0) {
		free(c);
		return r;
	}
	*ret_ctl = c;
	return 0;
}

struct control *control_stop(struct control *c)
{
	if (!c)
		return NULL;
	/* The server's thread is joined first: no verb runs after this. */
	c->server = ctlserver_stop(c->server);
	free(c);
	return NULL;
}
