/*
 * control.c - the control socket server; see control.h, and
 * include/wire.h for the protocol.
 *
 * One thread runs a poll() loop over the listening socket, an eventfd that
 * control_stop() writes, and at most CONTROL_CLIENTS_MAX connections. All
 * sockets are non-blocking and every connection has its own input and output
 * buffer, so a client that sends half a line or stops reading its replies
 * never holds up the others; one that makes no progress for
 * CONTROL_STALL_NS is dropped.
 *
 * Requests are answered one at a time, in order: while a reply is still
 * being written, the connection's further input is not read (backpressure
 * instead of an unbounded queue). Every volmgr verb runs on this thread, so
 * verbs of different clients are serialised here as well as by the
 * manager's own lock.
 *
 * Arguments are checked here, field by field, so that a client learns which
 * field is wrong; the manager then applies the volume-level rules (room in
 * the pool, shrinking below usage, ...).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "log.h"
#include "volname.h"
#include "volume.h"
#include "wire.h"

#define CONTROL_CLIENTS_MAX 64
#define CONTROL_BACKLOG 16
/* A client that neither reads nor writes for this long loses its slot. */
#define CONTROL_STALL_NS (5ULL * 1000000000ULL)
/* How long a refused peer has to read its one-line answer. */
#define CONTROL_REJECT_NS (2ULL * 1000000000ULL)
/* Pause before accepting again when the process is out of descriptors. */
#define CONTROL_ACCEPT_BACKOFF_NS (200ULL * 1000000ULL)
/* A line, its newline included, fits in WIRE_LINE_MAX bytes. */
#define CONTROL_IN_MAX WIRE_LINE_MAX

struct client {
	int fd; /* -1: free slot */
	pid_t pid;
	uid_t uid;
	bool rejected; /* not root: answered once, now drained until it goes */
	bool eof;      /* the peer shut down its sending side */
	bool closing;  /* close as soon as the output is written */
	char *in;      /* CONTROL_IN_MAX bytes */
	size_t in_len;
	char *out; /* one reply being written, owned */
	size_t out_len, out_off;
	uint64_t deadline_ns; /* 0: none */
};

/* Everything below is owned by the control thread once it runs. */
struct control {
	char *path;
	dev_t sock_dev;
	ino_t sock_ino;
	int listen_fd;
	int stop_fd;
	struct volmgr *mgr;
	pthread_t thread;
	bool thread_started;
	uint64_t accept_paused_until_ns;
	struct client clients[CONTROL_CLIENTS_MAX];
};

/* A request being answered: its fields, and why it failed if it did. */
struct request {
	json_t *obj;
	const char *verb;
	const char *name; /* the volume, for verbs that take one; checked */
	const char *code;
	char msg[WIRE_MSG_MAX];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

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
	const char *reason = NULL;
	const char *name;

	if (!v)
		return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL,
			    "field 'name' is required for verb '%s'", rq->verb);
	if (!json_is_string(v))
		return fail(rq, WIRE_E_BAD_REQUEST, -EINVAL, "field 'name' must be a string");
	name = json_string_value(v);
	/* An embedded NUL would make the name checked differ from the name sent. */
	if (strlen(name) != json_string_length(v) || volname_validate(name, &reason) < 0)
		return fail(rq, WIRE_E_INVALID, -EINVAL, "volume name '%.*s' is invalid: %s",
			    VOLNAME_MAX + 8, name, reason ? reason : "contains a NUL byte");
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
	char msg[WIRE_MSG_MAX] = "";
	json_t *vol = NULL;
	int r;

	r = volmgr_stats(c->mgr, name, &vol, msg);
	if (r < 0 && after_change) {
		log_warn_errno(r, "volume '%s': cannot describe it after %s", name, rq->verb);
		return 0;
	}
	if (r < 0)
		return fail_mgr(rq, r, name, msg);
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
	char msg[WIRE_MSG_MAX] = "";
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

	r = volmgr_create(c->mgr, spec, msg);
	if (r < 0) {
		r = fail_mgr(rq, r, spec->name, msg);
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
	char msg[WIRE_MSG_MAX] = "";
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
	r = volmgr_delete(c->mgr, name, force, msg);
	if (r < 0)
		return fail_mgr(rq, r, name, msg);
	return 0;
}

static const char *const resize_fields[] = { "name", "size_bytes", "overcommit", NULL };

static int do_resize(struct control *c, struct request *rq, json_t *reply)
{
	char msg[WIRE_MSG_MAX] = "";
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
	r = volmgr_resize(c->mgr, name, size, overcommit, msg);
	if (r < 0)
		return fail_mgr(rq, r, name, msg);
	return reply_with_volume(c, rq, name, true, reply);
}

/* Reads the volume's current limits from its V object (wire.h). */
static int current_limits(struct control *c, struct request *rq, const char *name,
			  struct io_limits *ret_limits)
{
	char msg[WIRE_MSG_MAX] = "";
	struct io_limits l = { 0 };
	json_t *vol = NULL, *lim;
	int r;

	r = volmgr_stats(c->mgr, name, &vol, msg);
	if (r < 0)
		return fail_mgr(rq, r, name, msg);
	lim = json_object_get(vol, "limits");
	for (size_t i = 0; limit_fields[i]; i++) {
		json_t *v = json_object_get(lim, limit_fields[i]);

		if (json_is_integer(v) && json_integer_value(v) >= 0)
			*limit_slot(&l, i) = (uint64_t)json_integer_value(v);
	}
	json_decref(vol);
	*ret_limits = l;
	return 0;
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
	char msg[WIRE_MSG_MAX] = "";
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

	r = volmgr_set_limits(c->mgr, name, &limits, msg);
	if (r < 0)
		return fail_mgr(rq, r, name, msg);
	return reply_with_volume(c, rq, name, true, reply);
}

static int do_wipe(struct control *c, struct request *rq, json_t *reply)
{
	char msg[WIRE_MSG_MAX] = "";
	int r;

	(void)reply;
	r = volmgr_wipe(c->mgr, rq->name, msg);
	if (r < 0)
		return fail_mgr(rq, r, rq->name, msg);
	return 0;
}

static int do_list(struct control *c, struct request *rq, json_t *reply)
{
	json_t *vols = NULL;
	int r;

	r = volmgr_list(c->mgr, &vols);
	if (r < 0)
		return fail_mgr(rq, r, NULL, NULL);
	if (json_object_set_new(reply, "volumes", vols) < 0)
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
	o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "path", volmgr_pool_dir(c->mgr),
		      "size_bytes", (json_int_t)info.size_bytes, "free_bytes",
		      (json_int_t)info.free_bytes, "allocated_bytes", (json_int_t)info.allocated_bytes,
		      "committed_bytes", (json_int_t)info.committed_bytes, "volumes",
		      (json_int_t)info.volumes);
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

static json_t *error_reply(const char *code, const char *msg)
{
	return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
}

/* Answers one request line; returns the reply, or NULL when out of memory. */
static json_t *handle_line(struct control *c, const char *line, size_t len)
{
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
		reply = error_reply(rq.code, rq.msg);
		log_debug("control request '%s' failed: %s", rq.verb ? rq.verb : "?", rq.msg);
	}
	json_decref(rq.obj);
	return reply;
}

static void client_close(struct client *cl)
{
	if (cl->fd < 0)
		return;
	close(cl->fd);
	free(cl->in);
	free(cl->out);
	*cl = (struct client){ .fd = -1 };
}

/*
 * Queues @reply as one line. The client's input is not read again until it
 * has been written, so there is never more than one reply queued.
 */
static int client_queue(struct client *cl, json_t *reply)
{
	char *text;
	size_t len;

	if (!reply)
		return -ENOMEM;
	text = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	/* json_dumps' buffer is exactly long enough; make room for the newline. */
	cl->out = realloc(text, len + 2);
	if (!cl->out) {
		free(text);
		return -ENOMEM;
	}
	cl->out[len] = '\n';
	cl->out[len + 1] = '\0';
	cl->out_len = len + 1;
	cl->out_off = 0;
	cl->deadline_ns = now_ns() + CONTROL_STALL_NS;
	return 0;
}

/* Writes what the socket takes. Returns 0, or -errno when the client is gone. */
static int client_flush(struct client *cl)
{
	while (cl->out) {
		ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		cl->out_off += (size_t)n;
		cl->deadline_ns = now_ns() + CONTROL_STALL_NS;
		if (cl->out_off == cl->out_len) {
			free(cl->out);
			cl->out = NULL;
			cl->out_len = cl->out_off = 0;
			cl->deadline_ns = 0;
		}
	}
	return 0;
}

/*
 * Answers the complete lines in the input buffer, one reply at a time.
 * Returns 0, or -errno when the client must be dropped.
 */
static int client_process(struct control *c, struct client *cl)
{
	int r;

	while (!cl->out && !cl->closing && !cl->rejected) {
		char *nl = memchr(cl->in, '\n', cl->in_len);
		size_t len, used;

		if (nl) {
			len = (size_t)(nl - cl->in);
			used = len + 1;
		} else if (cl->in_len == CONTROL_IN_MAX) {
			char msg[WIRE_MSG_MAX];

			snprintf(msg, sizeof(msg), "request line is longer than %d bytes",
				 WIRE_LINE_MAX);
			r = client_queue(cl, error_reply(WIRE_E_BAD_REQUEST, msg));
			if (r < 0)
				return r;
			cl->closing = true;
			break;
		} else if (cl->eof && cl->in_len > 0) {
			/* A last request without its newline is still a request. */
			len = used = cl->in_len;
		} else {
			break;
		}
		if (len > 0 && cl->in[len - 1] == '\r')
			len--;
		r = client_queue(cl, handle_line(c, cl->in, len));
		if (r < 0)
			return r;
		memmove(cl->in, cl->in + used, cl->in_len - used);
		cl->in_len -= used;
		r = client_flush(cl);
		if (r < 0)
			return r;
	}
	if (cl->eof && !cl->out && (cl->in_len == 0 || cl->closing || cl->rejected))
		return -ECONNRESET;
	if (cl->closing && !cl->out)
		return -ECONNRESET;
	return 0;
}

static int client_read(struct client *cl)
{
	ssize_t n;

	if (cl->rejected) {
		char sink[4096];

		n = recv(cl->fd, sink, sizeof(sink), MSG_DONTWAIT);
		/* Its request has arrived, so our answer is queued before its read. */
		if (n >= 0)
			return -ECONNRESET;
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	}
	n = recv(cl->fd, cl->in + cl->in_len, CONTROL_IN_MAX - cl->in_len, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0)
		cl->eof = true;
	cl->in_len += (size_t)n;
	return 0;
}

static struct client *client_slot(struct control *c)
{
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++)
		if (c->clients[i].fd < 0)
			return &c->clients[i];
	return NULL;
}

/*
 * A refused connection gets one answer and is closed. The answer is tiny and
 * the socket new, so a non-blocking send cannot come up short.
 */
static void answer_and_close(int fd, const char *code, const char *msg)
{
	json_t *reply = error_reply(code, msg);
	char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;

	if (text) {
		size_t len = strlen(text);

		text[len] = '\n';
		(void)!send(fd, text, len + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	free(text);
	json_decref(reply);
	close(fd);
}

static void accept_one(struct control *c)
{
	struct ucred cred;
	socklen_t cred_len = sizeof(cred);
	struct client *cl;
	int fd;

	fd = accept4(c->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			log_warn_errno(-errno, "control socket: cannot accept a connection");
			c->accept_paused_until_ns = now_ns() + CONTROL_ACCEPT_BACKOFF_NS;
		}
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) < 0) {
		log_warn_errno(-errno, "control socket: cannot identify a peer");
		close(fd);
		return;
	}
	cl = client_slot(c);
	if (!cl) {
		log_warn("control socket: refusing a connection from pid %d: %d connections open",
			 (int)cred.pid, CONTROL_CLIENTS_MAX);
		answer_and_close(fd, WIRE_E_BUSY, "too many control connections; retry later");
		return;
	}
	*cl = (struct client){ .fd = fd, .pid = cred.pid, .uid = cred.uid };
	if (cred.uid != 0) {
		log_warn("control socket: refusing pid %d of uid %u: only root is served",
			 (int)cred.pid, (unsigned)cred.uid);
		cl->rejected = true;
		/*
		 * Kept open until the client has sent its request: closed earlier,
		 * the client's write would fail before it could read the answer.
		 */
		if (client_queue(cl, error_reply(WIRE_E_PERMISSION,
						 "the control socket is for root only")) < 0 ||
		    client_flush(cl) < 0) {
			client_close(cl);
			return;
		}
		cl->deadline_ns = now_ns() + CONTROL_REJECT_NS;
		return;
	}
	cl->in = malloc(CONTROL_IN_MAX);
	if (!cl->in) {
		log_warn("control socket: out of memory for a connection");
		client_close(cl);
	}
}

static void *control_thread(void *arg)
{
	struct control *c = arg;
	struct pollfd pfds[2 + CONTROL_CLIENTS_MAX];
	struct client *owner[2 + CONTROL_CLIENTS_MAX];

	for (;;) {
		uint64_t now = now_ns(), next = 0;
		nfds_t n = 0;
		int timeout_ms = -1, r;

		pfds[n] = (struct pollfd){ .fd = c->stop_fd, .events = POLLIN };
		owner[n++] = NULL;
		if (c->accept_paused_until_ns > now) {
			next = c->accept_paused_until_ns;
		} else {
			pfds[n] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
			owner[n++] = NULL;
		}
		for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++) {
			struct client *cl = &c->clients[i];
			short events = 0;

			if (cl->fd < 0)
				continue;
			if (cl->deadline_ns && (!next || cl->deadline_ns < next))
				next = cl->deadline_ns;
			if (cl->out)
				events |= POLLOUT;
			if (!cl->out && (cl->rejected || (!cl->eof && !cl->closing &&
							  cl->in_len < CONTROL_IN_MAX)))
				events |= POLLIN;
			pfds[n] = (struct pollfd){ .fd = cl->fd, .events = events };
			owner[n++] = cl;
		}
		if (next)
			timeout_ms = next <= now ? 0 : (int)((next - now + 999999) / 1000000);

		r = poll(pfds, n, timeout_ms);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			log_error_errno(-errno, "control socket: poll failed; no longer serving");
			break;
		}
		if (pfds[0].revents)
			break;
		now = now_ns();
		for (nfds_t i = 1; i < n; i++) {
			struct client *cl = owner[i];
			short rev = pfds[i].revents;

			/*
			 * Deadlines are judged only here, after a poll that found the
			 * client idle: a long volume operation on this thread must not
			 * count against clients that had no chance to make progress.
			 */
			if (!rev && cl && cl->deadline_ns && cl->deadline_ns <= now) {
				log_warn("control socket: dropping pid %d: %s", (int)cl->pid,
					 cl->rejected ? "refused peer did not go away"
						      : "it stopped reading its replies");
				client_close(cl);
				continue;
			}
			if (!rev)
				continue;
			if (!cl) {
				accept_one(c);
				continue;
			}
			/* With POLLHUP the peer is gone both ways: nobody reads a reply. */
			if ((rev & (POLLERR | POLLNVAL)) || ((rev & POLLHUP) && cl->out)) {
				client_close(cl);
				continue;
			}
			r = 0;
			if (rev & POLLOUT)
				r = client_flush(cl);
			if (r >= 0 && (rev & (POLLIN | POLLHUP)) && !cl->out)
				r = client_read(cl);
			if (r >= 0 && (rev & POLLHUP) && !(rev & POLLIN))
				cl->eof = true;
			if (r >= 0)
				r = client_process(c, cl);
			if (r < 0)
				client_close(cl);
		}
	}
	return NULL;
}

/*
 * Creates the socket's directory, and any missing directory above it, without
 * touching the mode of one that exists: an operator may have opened it up on
 * purpose. The directory itself is 0700, the ones above 0755.
 */
static int make_parent_dirs(const char *path)
{
	char *dir = strdup(path);
	char *slash;
	int r = 0;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		goto out;
	*slash = '\0';
	for (char *p = dir + 1;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(dir, last ? 0700 : 0755) < 0 && errno != EEXIST) {
			r = -errno;
			goto out;
		}
		if (last)
			break;
		*p = '/';
	}
out:
	free(dir);
	return r;
}

/*
 * Clears the way for bind(): nothing there is fine; a socket nobody answers on
 * is a leftover of a dead daemon and goes; a live socket or anything that is
 * not a socket stays, and we refuse to start.
 */
static int clear_stale_socket(const char *path, const struct sockaddr_un *addr)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("control socket '%s' exists and is not a socket; not replacing it", path);
		return -EEXIST;
	}
	/* Non-blocking: a live daemon with a full backlog answers -EAGAIN, not a hang. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 ? -errno : 0;
	close(fd);
	if (r == 0 || r == -EAGAIN)
		return log_error_errno(-EADDRINUSE,
				       "control socket '%s' is served by another process", path);
	if (r != -ECONNREFUSED)
		return log_error_errno(r, "cannot check the existing control socket '%s'", path);
	log_info("removing the stale control socket '%s'", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return log_error_errno(-errno, "cannot remove the stale control socket '%s'", path);
	return 0;
}

int control_start(const char *socket_path, struct volmgr *m, struct control **ret_ctl)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	sigset_t all, old;
	struct control *c;
	bool bound = false;
	struct stat st;
	mode_t umask_old;
	int r;

	if (strlen(socket_path) >= sizeof(addr.sun_path)) {
		log_error("control socket path '%s' is longer than the %zu bytes a unix socket "
			  "allows",
			  socket_path, sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, socket_path, strlen(socket_path) + 1);

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->listen_fd = c->stop_fd = -1;
	c->mgr = m;
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++)
		c->clients[i].fd = -1;
	c->path = strdup(socket_path);
	if (!c->path) {
		r = -ENOMEM;
		goto err;
	}

	r = make_parent_dirs(socket_path);
	if (r < 0) {
		log_error_errno(r, "cannot create the directory of the control socket '%s'",
				socket_path);
		goto err;
	}
	r = clear_stale_socket(socket_path, &addr);
	if (r < 0)
		goto err;

	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->listen_fd < 0) {
		r = log_error_errno(-errno, "cannot create the control socket");
		goto err;
	}
	/*
	 * The socket file takes its mode from the umask at bind() time; setting
	 * it there leaves no window in which anyone but root could connect.
	 */
	umask_old = umask(0177);
	r = bind(c->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -errno : 0;
	umask(umask_old);
	if (r < 0) {
		log_error_errno(r, "cannot bind the control socket '%s'", socket_path);
		goto err;
	}
	bound = true;
	if (stat(socket_path, &st) < 0) {
		r = log_error_errno(-errno, "cannot stat the control socket '%s'", socket_path);
		goto err;
	}
	c->sock_dev = st.st_dev;
	c->sock_ino = st.st_ino;
	if (listen(c->listen_fd, CONTROL_BACKLOG) < 0) {
		r = log_error_errno(-errno, "cannot listen on the control socket '%s'",
				    socket_path);
		goto err;
	}
	c->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->stop_fd < 0) {
		r = -errno;
		goto err;
	}

	/* Signals belong to the main thread; this one must never take them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&c->thread, NULL, control_thread, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		log_error_errno(r, "cannot start the control socket thread");
		goto err;
	}
	c->thread_started = true;
	log_info("control socket listening on '%s'", socket_path);
	*ret_ctl = c;
	return 0;
err:
	if (bound)
		(void)unlink(socket_path);
	control_stop(c);
	return r;
}

struct control *control_stop(struct control *c)
{
	struct stat st;

	if (!c)
		return NULL;
	if (c->thread_started) {
		uint64_t one = 1;

		(void)!write(c->stop_fd, &one, sizeof(one));
		pthread_join(c->thread, NULL);
	}
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++)
		client_close(&c->clients[i]);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		/* Only our own socket: a newer daemon may have taken the path over. */
		if (stat(c->path, &st) == 0 && st.st_dev == c->sock_dev && st.st_ino == c->sock_ino)
			(void)unlink(c->path);
	}
	if (c->stop_fd >= 0)
		close(c->stop_fd);
	free(c->path);
	free(c);
	return NULL;
}
