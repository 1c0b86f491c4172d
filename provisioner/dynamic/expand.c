/*
 * expand.c - growing carvefs volumes for claims that ask for more; see
 * include/expand.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "static/cleaner.h"
#include "duration.h"
#include "kube/events.h"
#include "dynamic/dynspec.h"
#include "dynamic/expand.h"
#include "log.h"
#include "pv.h"
#include "quantity.h"
#include "retryset.h"
#include "dynamic/sizing.h"
#include "ctlclient.h"
#include "jpath.h"
#include "clock.h"

#define EXPAND_RETRY_BASE_NS (10 * DURATION_NS_PER_SEC)
#define EXPAND_RETRY_CAP_NS (300 * DURATION_NS_PER_SEC)

/*
 * What the expander remembers of a claim between passes, as the memo of its
 * uid in the retry set: the request it last saw (to tell a lowered
 * request), and its last failure (to post one Event per distinct failure).
 * The set does the backoff, with the size tried as the version: a new size
 * asked for is tried at once.
 */
struct expand_claim {
	uint64_t last_request_bytes;
	uint64_t failed_target_bytes; /* 0: no failure pending */
	int failed_error;
	bool shrink_reported;
};

struct expand {
	struct kube *kube; /* borrowed */
	char *socket;
	struct retryset *claims; /* by uid, with a struct expand_claim memo */
};

/* One PV of ours that is bound, with what the pass learned about it. */
struct candidate {
	const json_t *pv;
	const char *volume; /* the carvefs volume's name */
};

int expand_new(struct kube *kube, const char *carvefs_socket, struct expand **ret_expand)
{
	struct expand *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->kube = kube;
	if ((carvefs_socket && !(e->socket = strdup(carvefs_socket))) ||
	    retryset_new(EXPAND_RETRY_BASE_NS, EXPAND_RETRY_CAP_NS, sizeof(struct expand_claim),
			 clock_now_ns(), &e->claims) < 0) {
		expand_free(e);
		return -ENOMEM;
	}
	*ret_expand = e;
	return 0;
}

struct expand *expand_free(struct expand *e)
{
	if (!e)
		return NULL;
	retryset_free(e->claims);
	free(e->socket);
	free(e);
	return NULL;
}

/*
 * The carvefs volume behind @pv if the PV is ours: a dynamic PV names it in
 * an annotation; a static one is found by its path among the volumes this
 * pass discovered. NULL otherwise.
 */
static const char *volume_of(const json_t *pv, const struct expand_input *in)
{
	const json_t *ann = jpath_get(pv, "metadata", "annotations");
	const char *by = pv_get_provisioned_by(pv), *path = pv_get_path(pv);

	if (!by || !pv_on_node(pv, in->hostname))
		return NULL;
	if (dynspec_provisioner_ours(by))
		return json_string_value(json_object_get(ann, EXPAND_ANN_VOLUME));
	if (!in->provisioner || strcmp(by, in->provisioner) != 0 || !path || !in->res)
		return NULL;
	for (size_t i = 0; i < in->res->n_volumes; i++) {
		const struct disc_volume *v = &in->res->volumes[i];

		if (strcmp(v->host_path, path) == 0 && !v->is_block &&
		    discovery_is_carvefs(v->fstype))
			return cleaner_carvefs_name(v->source, v->mount_path);
	}
	return NULL;
}

/* Every claim in the cluster into *ret_items (a new reference). Logs. */
static int list_claims(struct expand *e, json_t **ret_items)
{
	json_t *answer = NULL, *items;
	int r;

	r = kube_request(e->kube, "GET", "/api/v1/persistentvolumeclaims", NULL, NULL, &answer);
	if (r < 0) {
		if (r != -ENOMEM)
			log_error("cannot list claims: %s", kube_last_error(e->kube));
		goto out;
	}
	items = json_object_get(answer, "items");
	if (!json_is_array(items)) {
		log_error("cannot list claims: the answer has no items");
		r = -EPROTO;
		goto out;
	}
	*ret_items = json_incref(items);
out:
	json_decref(answer);
	return r;
}

/*
 * Whether the claim's StorageClass allows expansion. Classes are fetched
 * once per pass and kept in @cache (name -> class, or null when missing).
 */
static int class_allows(struct expand *e, json_t *cache, const char *name, bool *ret_allows)
{
	json_t *sc = json_object_get(cache, name);
	int r;

	if (!sc) {
		r = kube_get_storage_class(e->kube, name, &sc);
		if (r == -ENOENT)
			sc = json_null();
		else if (r < 0)
			return log_error_errno(r, "StorageClass '%s': %s", name,
					       kube_last_error(e->kube));
		if (json_object_set_new(cache, name, sc) < 0)
			return -ENOMEM;
	}
	*ret_allows = json_is_true(json_object_get(sc, "allowVolumeExpansion"));
	return 0;
}

/* The volume's capacity according to the daemon. */
static int volume_capacity(struct expand *e, const char *volume, uint64_t *ret_bytes,
			   struct errmsg *msg)
{
	json_t *vol = NULL;
	json_int_t cap;
	int r;

	r = ctlclient_stats(e->socket, volume, &vol, msg);
	if (r < 0)
		return r;
	cap = json_integer_value(json_object_get(vol, "capacity_bytes"));
	json_decref(vol);
	if (cap <= 0)
		return errmsg_set(msg, -EPROTO, "the carvefs daemon did not say the volume's capacity");
	*ret_bytes = (uint64_t)cap;
	return 0;
}

/* Grows the volume to @target_bytes; its new capacity into *ret_bytes. */
static int volume_resize(struct expand *e, const char *volume, uint64_t target_bytes,
			 double overcommit, uint64_t *ret_bytes, struct errmsg *msg)
{
	json_t *vol = NULL;
	json_int_t cap;
	int r;

	r = ctlclient_resize(e->socket, volume, target_bytes, overcommit, &vol, msg);
	if (r < 0)
		return r;
	cap = json_integer_value(json_object_get(vol, "capacity_bytes"));
	json_decref(vol);
	*ret_bytes = cap > 0 ? (uint64_t)cap : target_bytes;
	return 0;
}

static void post(struct expand *e, const json_t *claim, const char *type, const char *reason,
		 const char *message)
{
	int r = event_post(e->kube, claim, type, reason, message);

	if (r < 0)
		log_warn_errno(r, "claim '%s/%s': cannot post the %s Event: %s",
			       jpath_str(claim, "metadata", "namespace"),
			       jpath_str(claim, "metadata", "name"), reason,
			       kube_last_error(e->kube));
}

/*
 * Steps 2 to 4 once the volume holds @size_bytes: the PV's capacity, the
 * claim's status, the Event. Each step is skipped when already done.
 */
static int finish(struct expand *e, const json_t *claim, const json_t *pv, const char *volume,
		  uint64_t size_bytes, const char *ns, const char *name)
{
	const char *pv_name = pv_get_name(pv);
	const char *have = jpath_str(pv, "spec", "capacity", "storage");
	json_t *patch = NULL;
	char size[32], path[512], msg[256];
	uint64_t have_bytes = 0;
	bool needed;
	int r;

	r = quantity_format(size_bytes, size, sizeof(size));
	if (r < 0)
		return r;
	if (!have || quantity_parse(have, &have_bytes) < 0 || have_bytes < size_bytes) {
		patch = json_pack("{s:{s:{s:s}}}", "spec", "capacity", "storage", size);
		if (!patch)
			return -ENOMEM;
		r = kube_patch_pv(e->kube, pv_name, patch, NULL);
		json_decref(patch);
		patch = NULL;
		if (r < 0)
			return log_error_errno(r, "PV '%s': cannot set its capacity to %s: %s",
					       pv_name, size, kube_last_error(e->kube));
		log_info("PV '%s': capacity %s", pv_name, size);
	}
	r = sizing_claim_status_patch(claim, size_bytes, &patch, &needed);
	if (r < 0)
		return r;
	if (!needed)
		return 0;
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/persistentvolumeclaims/%s/status", ns,
		 name);
	r = kube_request(e->kube, "PATCH", path, patch, NULL, NULL);
	json_decref(patch);
	if (r < 0)
		return log_error_errno(r, "claim '%s/%s': cannot set its status capacity to %s: %s",
				       ns, name, size, kube_last_error(e->kube));
	log_info("claim '%s/%s': expanded to %s (carvefs volume '%s')", ns, name, size, volume);
	snprintf(msg, sizeof(msg), "carvefs volume '%s' of PV '%s' expanded to %s", volume,
		 pv_name, size);
	post(e, claim, EVENT_NORMAL, "VolumeResizeSuccessful", msg);
	return 0;
}

/*
 * The daemon said no (no room, no such volume, ...): the claim's business,
 * told on the claim, not a fault of the provisioner's that should make it
 * unready.
 */
static bool refused(int r)
{
	return r == -ENOSPC || r == -ENOENT || r == -EBUSY || r == -EINVAL || r == -EOPNOTSUPP ||
	       r == -EACCES;
}

/* Reports a failed resize, once per distinct failure, and schedules the retry. */
static void failed(struct expand *e, struct expand_claim *mem, const char *uid,
		   const char *version, const json_t *claim, const char *volume,
		   uint64_t target_bytes, int err, const char *why, const char *ns,
		   const char *name)
{
	char size[32], msg[ERRMSG_MAX + 128];
	uint64_t delay;

	if (quantity_format(target_bytes, size, sizeof(size)) < 0)
		snprintf(size, sizeof(size), "%llu", (unsigned long long)target_bytes);
	delay = retryset_failed(e->claims, uid, version, clock_now_ns());
	log_warn("claim '%s/%s': cannot expand carvefs volume '%s' to %s: %s; "
		 "trying again in %.0f s",
		 ns, name, volume, size, why, (double)delay / 1e9);
	/*
	 * The daemon's sentence carries figures that move with every write, so
	 * a failure is "the same" when its size and its cause are.
	 */
	if (mem->failed_target_bytes == target_bytes && mem->failed_error == err)
		return;
	mem->failed_target_bytes = target_bytes;
	mem->failed_error = err;
	snprintf(msg, sizeof(msg), "cannot expand carvefs volume '%s' to %s: %s", volume, size,
		 why);
	post(e, claim, EVENT_WARNING, "VolumeResizeFailed", msg);
}

/*
 * One bound claim of ours. Returns 0 (also when the daemon refused: that is
 * on the claim), 1 if the provisioner failed at its part (logged), or
 * -ENOMEM.
 */
static int expand_claim(struct expand *e, const struct expand_input *in, json_t *classes,
			const struct candidate *cand, const json_t *claim)
{
	const json_t *spec = json_object_get(claim, "spec");
	const char *ns = jpath_str(claim, "metadata", "namespace");
	const char *name = jpath_str(claim, "metadata", "name");
	const char *uid = jpath_str(claim, "metadata", "uid");
	const char *cls = json_string_value(json_object_get(spec, "storageClassName"));
	const char *request = jpath_str(spec, "resources", "requests", "storage");
	const char *capacity = jpath_str(cand->pv, "spec", "capacity", "storage");
	const char *status_cap = jpath_str(claim, "status", "capacity", "storage");
	struct expand_claim *mem;
	enum sizing_verdict verdict;
	uint64_t req_bytes, target, have, size;
	struct errmsg why;
	char sz[32], version[SIZING_DECIMAL_MAX];
	bool allows = false;
	int r;

	if (!ns || !name || !uid)
		return 0;
	mem = retryset_memo(e->claims, uid);
	if (!mem)
		return -ENOMEM;
	r = sizing_judge(request, capacity, mem->last_request_bytes, &verdict, &req_bytes, &target);
	if (r < 0) {
		log_debug("claim '%s/%s': request '%s' or PV capacity '%s' unreadable", ns, name,
			  request ? request : "", capacity ? capacity : "");
		return 0;
	}
	if (verdict == SIZING_SHRINK) {
		if (!mem->shrink_reported) {
			(void)errmsg_set(&why, -EINVAL,
				 "carvefs volumes cannot shrink: the request of %s is below the "
				 "volume's %s; the volume is left as it is",
				 request, capacity);
			log_warn("claim '%s/%s': %s", ns, name, why.text);
			post(e, claim, EVENT_WARNING, "VolumeResizeFailed", why.text);
			mem->shrink_reported = true;
		}
		return 0;
	}
	mem->shrink_reported = false;
	mem->last_request_bytes = req_bytes;
	if (verdict == SIZING_KEEP) {
		/*
		 * The PV holds the request but the claim's status does not say
		 * so: a pass that stopped between the two. The volume is asked
		 * below rather than the PV believed, which anyone may edit.
		 */
		if (!status_cap || quantity_parse(status_cap, &have) < 0 || have >= req_bytes) {
			mem->failed_target_bytes = 0;
			retryset_succeeded(e->claims, uid);
			return 0;
		}
		r = sizing_round_up(req_bytes, SIZING_ALIGN_BYTES, &target);
		if (r < 0)
			return 0;
	}

	if (!cls) {
		log_debug("claim '%s/%s' has no StorageClass: not expanded", ns, name);
		return 0;
	}
	r = class_allows(e, classes, cls, &allows);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return 1;
	if (!allows) {
		log_debug("claim '%s/%s': StorageClass '%s' does not allow expansion", ns, name,
			  cls);
		return 0;
	}
	snprintf(version, sizeof(version), "%llu", (unsigned long long)target);
	if (!retryset_due(e->claims, uid, version, clock_now_ns())) {
		log_debug("claim '%s/%s': expansion failed recently; waiting", ns, name);
		return 0;
	}
	if (quantity_format(target, sz, sizeof(sz)) < 0)
		snprintf(sz, sizeof(sz), "?");

	r = volume_capacity(e, cand->volume, &have, &why);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		failed(e, mem, uid, version, claim, cand->volume, target, r, why.text, ns, name);
		return !refused(r);
	}
	if (have >= target) {
		/* Grown by an earlier pass that stopped before the PV, or by hand. */
		size = have;
		log_info("claim '%s/%s': carvefs volume '%s' holds %s already", ns, name,
			 cand->volume, sz);
	} else {
		log_info("claim '%s/%s' asks for %s: expanding carvefs volume '%s'", ns, name, sz,
			 cand->volume);
		r = volume_resize(e, cand->volume, target, in->overcommit, &size, &why);
		if (r == -ENOMEM)
			return r;
		if (r < 0) {
			failed(e, mem, uid, version, claim, cand->volume, target, r, why.text, ns,
			       name);
			return !refused(r);
		}
	}
	mem->failed_target_bytes = 0;
	retryset_succeeded(e->claims, uid);
	r = finish(e, claim, cand->pv, cand->volume, size, ns, name);
	if (r == -ENOMEM)
		return r;
	return r < 0;
}

int expand_pass(struct expand *e, const struct expand_input *in)
{
	struct candidate *cands = NULL;
	json_t *claims = NULL, *classes = NULL, *pv;
	size_t n = 0, i;
	int failures = 0, r;

	cands = calloc(json_array_size(in->pvs) + 1, sizeof(*cands));
	if (!cands)
		return -ENOMEM;
	json_array_foreach(in->pvs, i, pv)
	{
		const char *phase = jpath_str(pv, "status", "phase");
		const char *volume;

		if (!phase || strcmp(phase, "Bound") != 0 || !jpath_get(pv, "spec", "claimRef") ||
		    jpath_get(pv, "metadata", "deletionTimestamp"))
			continue;
		volume = volume_of(pv, in);
		if (!volume)
			continue;
		cands[n++] = (struct candidate){ .pv = pv, .volume = volume };
	}
	/* Nothing of ours is bound: no need to ask the apiserver for claims. */
	if (n == 0) {
		retryset_sweep(e->claims);
		r = 0;
		goto out;
	}
	r = list_claims(e, &claims);
	if (r < 0)
		goto out;
	classes = json_object();
	if (!classes) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const json_t *ref = jpath_get(cands[i].pv, "spec", "claimRef");
		const char *uid = json_string_value(json_object_get(ref, "uid"));
		const json_t *claim = uid ? jpath_find(claims, uid, "metadata", "uid") : NULL;
		const char *phase = claim ? jpath_str(claim, "status", "phase") : NULL;
		const char *bound = claim ? jpath_str(claim, "spec", "volumeName") : NULL;

		/* Bound both ways, as the PV controller leaves a finished binding. */
		if (!phase || strcmp(phase, "Bound") != 0 || !bound ||
		    strcmp(bound, pv_get_name(cands[i].pv)) != 0)
			continue;
		r = expand_claim(e, in, classes, &cands[i], claim);
		if (r < 0)
			goto out;
		failures += r;
	}
	retryset_sweep(e->claims);
	r = failures;
out:
	json_decref(claims);
	json_decref(classes);
	free(cands);
	return r;
}
