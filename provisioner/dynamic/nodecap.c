/*
 * nodecap.c - the node's free carvefs capacity on its Node object; see
 * include/nodecap.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "dynamic/nodecap.h"
#include "dynamic/sizing.h"
#include "ctlclient.h"
#include "jpath.h"

struct nodecap {
	struct kube *kube; /* borrowed */
	char *socket;
	int last_error; /* the failure said last; 0 after a success */
};

int nodecap_new(struct kube *kube, const char *carvefs_socket, struct nodecap **ret_nodecap)
{
	struct nodecap *n = calloc(1, sizeof(*n));

	if (!n)
		return -ENOMEM;
	n->kube = kube;
	if (carvefs_socket && !(n->socket = strdup(carvefs_socket))) {
		free(n);
		return -ENOMEM;
	}
	*ret_nodecap = n;
	return 0;
}

struct nodecap *nodecap_free(struct nodecap *n)
{
	if (n) {
		free(n->socket);
		free(n);
	}
	return NULL;
}

/* Reads an unsigned byte count out of the pool object. */
static int pool_field(const json_t *pool, const char *key, uint64_t *ret)
{
	const json_t *v = json_object_get(pool, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EPROTO;
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

/* The pool's free and committed bytes from the daemon. */
static int measure(struct nodecap *n, uint64_t *ret_free, uint64_t *ret_committed,
		   struct errmsg *msg)
{
	json_t *pool = NULL;
	int r;

	r = ctlclient_pool(n->socket, &pool, msg);
	if (r < 0)
		return r;
	r = pool_field(pool, "free_bytes", ret_free);
	if (r == 0)
		r = pool_field(pool, "committed_bytes", ret_committed);
	if (r < 0)
		errmsg_set(msg, r, "the carvefs daemon's pool answer lacks free_bytes or "
				   "committed_bytes");
	json_decref(pool);
	return r;
}

/* Says a failure once, until a success or another failure. */
static int report(struct nodecap *n, int r, const char *why)
{
	if (r != n->last_error)
		log_warn("node capacity not updated: %s", why);
	n->last_error = r;
	return r;
}

int nodecap_update(struct nodecap *n, const char *node_name, const json_t *node,
		   double overcommit, uint64_t *ret_room)
{
	const json_t *meta = json_object_get(node, "metadata");
	const char *ann = jpath_str(meta, "annotations", NODECAP_ANN_BYTES);
	const char *label = jpath_str(meta, "labels", NODECAP_LABEL_GIB);
	char bytes[SIZING_DECIMAL_MAX], gib[SIZING_DECIMAL_MAX], path[320];
	struct errmsg msg;
	uint64_t free_b, committed, room;
	json_t *patch;
	int r;

	*ret_room = NODECAP_UNMEASURED;
	r = measure(n, &free_b, &committed, &msg);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return report(n, r, msg.text);
	room = sizing_allocatable(free_b, overcommit, committed);
	*ret_room = room;
	r = sizing_format_bytes(room, bytes, sizeof(bytes));
	if (r == 0)
		r = sizing_format_gib(room, gib, sizeof(gib));
	if (r < 0)
		return r;
	if (ann && label && strcmp(ann, bytes) == 0 && strcmp(label, gib) == 0) {
		n->last_error = 0;
		return 0;
	}
	patch = json_pack("{s:{s:{s:s}, s:{s:s}}}", "metadata", "annotations", NODECAP_ANN_BYTES,
			  bytes, "labels", NODECAP_LABEL_GIB, gib);
	if (!patch)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/api/v1/nodes/%s", node_name);
	r = kube_request(n->kube, "PATCH", path, patch, NULL, NULL);
	json_decref(patch);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return report(n, r, kube_last_error(n->kube));
	n->last_error = 0;
	/* The bytes may move with every write to a volume; whole GiB are news. */
	log_msg(label && strcmp(label, gib) == 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, 0,
		"node '%s': %s %s, %s %s", node_name, NODECAP_ANN_BYTES, bytes, NODECAP_LABEL_GIB,
		gib);
	return 0;
}
