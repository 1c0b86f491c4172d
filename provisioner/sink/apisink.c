/*
 * apisink.c - the sink that registers PVs with the Kubernetes API; see
 * include/kube.h and include/sink.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "duration.h"
#include "kube/kube.h"
#include "log.h"
#include "pv.h"
#include "sink/sink.h"
#include "jpath.h"

/* Retries of one pass sleep at most this long in all, so a pass ends. */
#define APISINK_PASS_RETRY_NS (20 * DURATION_NS_PER_SEC)
#define APISINK_BACKOFF_BASE_NS (200 * UINT64_C(1000000))
#define APISINK_BACKOFF_CAP_NS (5 * DURATION_NS_PER_SEC)
#define PROVISIONER_PREFIX "local-volume-provisioner-"

struct apisink {
	struct sink base;
	struct kube *kube;
	struct backoff backoff;
	uint64_t budget_ns; /* sleep left for retries in this pass */
	/* learned from the Node at each pass; NULL until then */
	char *node_name;
	char *hostname;
	char *node_uid;
};

static struct apisink *to_apisink(struct sink *s)
{
	return (struct apisink *)s;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / DURATION_NS_PER_SEC),
			       .tv_nsec = (long)(ns % DURATION_NS_PER_SEC) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * After a failed call: true if it is worth another try, having slept the
 * backoff delay out of the pass's budget.
 */
static bool retry(struct apisink *a, int r, const char *what)
{
	uint64_t d;

	if (!kube_retryable(r))
		return false;
	d = backoff_next(&a->backoff);
	if (d > a->budget_ns) {
		log_warn("%s: %s; giving up for this pass", what, kube_last_error(a->kube));
		return false;
	}
	a->budget_ns -= d;
	log_warn("%s: %s; retrying in %llu ms", what, kube_last_error(a->kube),
		 (unsigned long long)(d / 1000000));
	sleep_ns(d);
	return true;
}

static int set_str(char **dst, const char *src)
{
	char *s = NULL;

	if (src) {
		s = strdup(src);
		if (!s)
			return -ENOMEM;
	}
	free(*dst);
	*dst = s;
	return 0;
}

static int api_get_node(struct sink *s, const char *name, json_t **ret_node)
{
	struct apisink *a = to_apisink(s);
	json_t *node = NULL;
	const char *uid;
	int r;

	/* get_node starts every pass: the retry budget is renewed here. */
	a->budget_ns = APISINK_PASS_RETRY_NS;
	backoff_reset(&a->backoff);
	do
		r = kube_get_node(a->kube, name, &node);
	while (retry(a, r, "get node"));
	if (r < 0) {
		if (r != -ENOMEM)
			log_error("%s", kube_last_error(a->kube));
		goto cleanup;
	}
	backoff_reset(&a->backoff);
	uid = jpath_str(node, "metadata", "uid");
	r = set_str(&a->node_name, name);
	if (r == 0)
		r = set_str(&a->hostname, pv_node_hostname(name, node));
	if (r == 0)
		r = set_str(&a->node_uid, uid);
	if (r < 0)
		goto cleanup;
	*ret_node = node;
	node = NULL;
cleanup:
	json_decref(node);
	return r;
}

static int api_get_storage_class(struct sink *s, const char *name, json_t **ret_class)
{
	struct apisink *a = to_apisink(s);
	int r;

	do
		r = kube_get_storage_class(a->kube, name, ret_class);
	while (retry(a, r, "get storage class"));
	if (r == 0)
		backoff_reset(&a->backoff);
	else if (r != -ENOENT && r != -ENOMEM)
		log_error("%s", kube_last_error(a->kube));
	return r;
}

static int api_list(struct sink *s, json_t **ret_pvs)
{
	struct apisink *a = to_apisink(s);
	json_t *all = NULL, *mine = NULL, *pv;
	size_t i;
	int r;

	/* A stale continue token (-ESTALE) is cured by listing again from the start. */
	do
		r = kube_list_pvs(a->kube, &all, NULL);
	while (retry(a, r == -ESTALE ? -EAGAIN : r, "list PVs"));
	if (r < 0) {
		if (r != -ENOMEM)
			log_error("%s", kube_last_error(a->kube));
		goto cleanup;
	}
	backoff_reset(&a->backoff);
	/* The pass matches by node and path: other nodes' PVs are of no use to it. */
	if (!a->hostname) {
		*ret_pvs = all;
		all = NULL;
		goto cleanup;
	}
	mine = json_array();
	if (!mine) {
		r = -ENOMEM;
		goto cleanup;
	}
	json_array_foreach(all, i, pv)
	{
		if (pv_on_node(pv, a->hostname) && json_array_append(mine, pv) < 0) {
			r = -ENOMEM;
			goto cleanup;
		}
	}
	*ret_pvs = mine;
	mine = NULL;
cleanup:
	json_decref(all);
	json_decref(mine);
	return r;
}

/*
 * After a create answered AlreadyExists: 0 if the PV of that name is the
 * same volume (same node, same path), i.e. an earlier attempt whose answer
 * was lost did create it; -EEXIST if it is another one.
 */
static int check_existing(struct apisink *a, const json_t *pv)
{
	const char *name = pv_get_name(pv), *path = pv_get_path(pv), *hostname = a->hostname;
	json_t *cur = NULL;
	const char *cur_path;
	int r;

	do
		r = kube_get_pv(a->kube, name, &cur);
	while (retry(a, r, "get PV"));
	if (r == -ENOENT)
		return -EEXIST; /* gone again meanwhile: the next pass creates it */
	if (r < 0)
		return r;
	if (!hostname)
		hostname = pv_node_hostname(a->node_name ? a->node_name : "", NULL);
	/* Being deleted (a released volume): not registered until it is gone. */
	if (jpath_get(cur, "metadata", "deletionTimestamp")) {
		log_info("PV '%s' is being deleted; its volume is registered once it is gone", name);
		json_decref(cur);
		return -EBUSY;
	}
	cur_path = pv_get_path(cur);
	r = path && cur_path && strcmp(path, cur_path) == 0 && pv_on_node(cur, hostname) ? 0 :
											    -EEXIST;
	if (r == 0)
		log_info("PV '%s' exists already for \"%s\": an earlier create went through", name,
			 path);
	json_decref(cur);
	return r;
}

static int api_create(struct sink *s, const json_t *pv)
{
	struct apisink *a = to_apisink(s);
	int r;

	do
		r = kube_create_pv(a->kube, pv, NULL);
	while (retry(a, r, "create PV"));
	if (r == -EEXIST)
		return check_existing(a, pv);
	if (r == 0)
		backoff_reset(&a->backoff);
	else if (r != -ENOMEM)
		log_error("%s", kube_last_error(a->kube));
	return r;
}

/* True if @by names this node as the provisioner, in either form pv_provisioner_name() writes. */
static bool provisioned_by_us(const struct apisink *a, const char *by)
{
	size_t pl = strlen(PROVISIONER_PREFIX), nl;

	if (!by || !a->node_name || strncmp(by, PROVISIONER_PREFIX, pl) != 0)
		return false;
	by += pl;
	nl = strlen(a->node_name);
	if (strncmp(by, a->node_name, nl) != 0)
		return false;
	by += nl;
	if (*by == '\0')
		return true;
	return *by == '-' && a->node_uid && strcmp(by + 1, a->node_uid) == 0;
}

static int api_remove(struct sink *s, const char *name)
{
	struct apisink *a = to_apisink(s);
	json_t *pv = NULL;
	const char *uid;
	int r;

	do
		r = kube_get_pv(a->kube, name, &pv);
	while (retry(a, r, "get PV"));
	if (r < 0)
		goto cleanup;
	if (!provisioned_by_us(a, pv_get_provisioned_by(pv))) {
		log_error("PV '%s' is not provisioned by this node ('%s'): not deleting it", name,
			  pv_get_provisioned_by(pv) ? pv_get_provisioned_by(pv) : "");
		r = -EPERM;
		goto cleanup;
	}
	uid = jpath_str(pv, "metadata", "uid");
	do
		r = kube_delete_pv(a->kube, name, uid);
	while (retry(a, r, "delete PV"));
	/* A failed uid precondition: the PV we examined is gone, another took its name. */
	if (r == -ESTALE)
		r = -ENOENT;
	if (r == 0)
		backoff_reset(&a->backoff);
	else if (r != -ENOENT && r != -ENOMEM)
		log_error("%s", kube_last_error(a->kube));
cleanup:
	json_decref(pv);
	return r;
}

static void api_free(struct sink *s)
{
	struct apisink *a = to_apisink(s);

	kube_free(a->kube);
	free(a->node_name);
	free(a->hostname);
	free(a->node_uid);
	free(a);
}

static const struct sink_ops api_ops = {
	.kind = "api",
	/* A PV in a cluster may be bound: it is left to the release cycle. */
	.remove_vanished = false,
	.list = api_list,
	.create = api_create,
	.remove = api_remove,
	.get_node = api_get_node,
	.get_storage_class = api_get_storage_class,
	.free = api_free,
};

int apisink_open(const struct kubeconfig *kc, struct sink **ret_sink)
{
	struct apisink *a;
	struct timespec ts;
	int r;

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->base.ops = &api_ops;
	r = kube_new(kc, &a->kube);
	if (r < 0) {
		free(a);
		return r;
	}
	/* Nodes restarted together should not retry in step. */
	clock_gettime(CLOCK_REALTIME, &ts);
	backoff_init(&a->backoff, APISINK_BACKOFF_BASE_NS, APISINK_BACKOFF_CAP_NS,
		     ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid());
	a->budget_ns = APISINK_PASS_RETRY_NS;
	*ret_sink = &a->base;
	return 0;
}
