/*
 * dynamic.c - dynamic provisioning of carvefs volumes for claims; see
 * include/dynamic.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duration.h"
#include "dynamic/dynamic.h"
#include "dynamic/dynspec.h"
#include "kube/events.h"
#include "kube/kube.h"
#include "log.h"
#include "metrics.h"
#include "pv.h"
#include "quantity.h"
#include "retryset.h"
#include "ctlclient.h"
#include "wire.h"
#include "jpath.h"
#include "clock.h"

#define RETRY_BASE_NS (2ull * DURATION_NS_PER_SEC)
#define RETRY_CAP_NS (300ull * DURATION_NS_PER_SEC)
#define REASON_SUCCEEDED "ProvisioningSucceeded"
#define REASON_FAILED "ProvisioningFailed"
#define MSG_MAX 1024

struct dynamic {
	struct kube *kube; /* borrowed */
	char *node_name;
	char *socket;
	json_t *volumes; /* the daemon's volumes as of this pass; NULL if unknown */
	json_t *classes; /* StorageClasses fetched in this pass, by name */
	json_t *ours;	 /* names of carvefs's classes, as of the last good list */
	json_t *pool;	 /* the daemon's pool in this pass, fetched when needed */
	/*
	 * Claims and released PVs whose handling failed, by uid: not tried
	 * again before their backoff unless the object changed (another
	 * resourceVersion), which may be the fix.
	 */
	struct retryset *retries;
	/*
	 * Volumes reported as left without PV and claim, by name: said once,
	 * forgotten once resolved. Only their memos are used.
	 */
	struct retryset *orphans;
	bool in_use; /* some StorageClass is carvefs's */
};

/* Records that handling @uid at @rv failed; the delay before the next try, in seconds. */
static double retry_failed(struct dynamic *d, const char *uid, const char *rv)
{
	return (double)retryset_failed(d->retries, uid, rv, clock_now_ns()) / 1e9;
}

/* ---- life cycle --------------------------------------------------------- */

int dynamic_new(struct kube *kube, const char *node_name, const char *carvefs_socket,
		struct dynamic **ret_dynamic)
{
	struct dynamic *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->node_name = strdup(node_name);
	d->socket = strdup(carvefs_socket ? carvefs_socket : WIRE_DEFAULT_SOCKET);
	if (!d->node_name || !d->socket ||
	    retryset_new(RETRY_BASE_NS, RETRY_CAP_NS, 0, clock_now_ns(), &d->retries) < 0 ||
	    retryset_new(RETRY_BASE_NS, RETRY_CAP_NS, sizeof(bool), 0, &d->orphans) < 0) {
		dynamic_free(d);
		return -ENOMEM;
	}
	d->kube = kube;
	*ret_dynamic = d;
	return 0;
}

struct dynamic *dynamic_free(struct dynamic *d)
{
	if (!d)
		return NULL;
	retryset_free(d->retries);
	retryset_free(d->orphans);
	json_decref(d->volumes);
	json_decref(d->classes);
	json_decref(d->ours);
	json_decref(d->pool);
	free(d->node_name);
	free(d->socket);
	free(d);
	return NULL;
}

bool dynamic_in_use(const struct dynamic *d)
{
	return d->in_use;
}

const json_t *dynamic_classes(const struct dynamic *d)
{
	return d->ours;
}

bool dynamic_owns_volume(const struct dynamic *d, const char *name)
{
	if (!d->volumes)
		return strncmp(name, "pvc-", 4) == 0;
	return jpath_get(jpath_find(d->volumes, name, "name"), "labels",
			 DYNSPEC_LABEL_CLAIM_UID) != NULL;
}

/* ---- lookups and reports ------------------------------------------------ */

/* Posts an Event on @claim; a failure is only worth a warning. */
static void post(struct dynamic *d, const json_t *claim, const char *type, const char *reason,
		 const char *message)
{
	int r = event_post(d->kube, claim, type, reason, message);

	if (r < 0)
		log_warn("claim '%s/%s': cannot post the %s event: %s",
			 jpath_str(claim, "metadata", "namespace"),
			 jpath_str(claim, "metadata", "name"), reason,
			 r == -ENOMEM ? "out of memory" : kube_last_error(d->kube));
}

/* Logs and posts ProvisioningFailed; returns @r. */
__attribute__((format(printf, 4, 5)))
static int claim_failed(struct dynamic *d, const json_t *claim, int r, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("claim '%s/%s': %s", jpath_str(claim, "metadata", "namespace"),
		  jpath_str(claim, "metadata", "name"), msg);
	post(d, claim, EVENT_WARNING, REASON_FAILED, msg);
	return r;
}

/* The StorageClass @name, fetched once per pass. NULL (logged) if it cannot be had. */
static const json_t *storage_class(struct dynamic *d, const char *name)
{
	json_t *sc = json_object_get(d->classes, name);
	int r;

	if (sc)
		return sc;
	r = kube_get_storage_class(d->kube, name, &sc);
	if (r < 0) {
		log_error("cannot get StorageClass '%s': %s", name,
			  r == -ENOMEM ? "out of memory" : kube_last_error(d->kube));
		return NULL;
	}
	if (json_object_set_new(d->classes, name, sc) < 0)
		return NULL;
	return sc;
}

/*
 * Hands @claim back to the scheduler: removes its selected-node annotation
 * if it still names this node. The resourceVersion makes the patch refuse
 * to undo a newer choice; after such a conflict the claim is read again.
 */
static int unselect_node(struct dynamic *d, const json_t *claim)
{
	const char *ns = jpath_str(claim, "metadata", "namespace");
	const char *name = jpath_str(claim, "metadata", "name");
	json_t *cur = json_incref((json_t *)claim), *patch = NULL;
	int r = -ESTALE;

	for (int attempt = 0; attempt < 3 && r == -ESTALE; attempt++) {
		const char *selected =
			jpath_str(cur, "metadata", "annotations", DYNSPEC_ANN_SELECTED_NODE);

		if (!selected || strcmp(selected, d->node_name) != 0) {
			r = 0;
			break;
		}
		patch = json_pack("{s:{s:s, s:{s:n}}}", "metadata", "resourceVersion",
				  jpath_str(cur, "metadata", "resourceVersion") ?: "",
				  "annotations", DYNSPEC_ANN_SELECTED_NODE);
		if (!patch) {
			r = -ENOMEM;
			break;
		}
		r = kube_patch_pvc(d->kube, ns, name, patch, NULL);
		json_decref(patch);
		if (r != -ESTALE)
			break;
		json_decref(cur);
		cur = NULL;
		r = kube_get_pvc(d->kube, ns, name, &cur);
		if (r == 0)
			r = -ESTALE;
	}
	json_decref(cur);
	if (r == -ENOENT)
		return 0; /* the claim is gone: nothing to hand back */
	if (r < 0)
		return log_error_errno(r, "claim '%s/%s': cannot remove its %s annotation: %s", ns,
				       name, DYNSPEC_ANN_SELECTED_NODE, kube_last_error(d->kube));
	log_info("claim '%s/%s' handed back to the scheduler", ns, name);
	return 0;
}

/* ---- provisioning ------------------------------------------------------- */

/*
 * Carves the volume @name for @claim, or finds the one an earlier attempt
 * carved. Its V object to *ret_volume (a new reference). Returns 0,
 * -ENOSPC when the claim was handed back for want of room (reported), or
 * another -errno (reported).
 */
static int carve(struct dynamic *d, const json_t *claim, const json_t *sc, const char *name,
		 uint64_t size, const struct dynspec_params *params, double overcommit,
		 json_t **ret_volume)
{
	const json_t *existing = jpath_find(d->volumes, name, "name");
	json_t *req = NULL, *reply = NULL;
	struct errmsg msg = { "" };
	char want[32], have[32];
	int r;

	if (existing) {
		if (!dynspec_volume_matches(existing, claim, size))
			return claim_failed(d, claim, -EEXIST,
					    "a carvefs volume named '%s' exists on node '%s' but was "
					    "not carved for this claim or has another size; it is "
					    "left alone",
					    name, d->node_name);
		log_info("claim '%s/%s': reusing volume '%s' carved by an earlier attempt",
			 jpath_str(claim, "metadata", "namespace"),
			 jpath_str(claim, "metadata", "name"), name);
		*ret_volume = json_incref((json_t *)existing);
		return 0;
	}

	/* A claim larger than the whole pool fits nowhere here, whatever is freed. */
	if (!d->pool) {
		r = ctlclient_pool(d->socket, &d->pool, &msg);
		if (r < 0)
			return claim_failed(d, claim, r,
					    "cannot measure the carvefs pool on node '%s': %s",
					    d->node_name, msg.text);
	}
	{
		const json_t *sz = json_object_get(d->pool, "size_bytes");

		if (json_is_integer(sz) && (uint64_t)json_integer_value(sz) < size) {
			quantity_format_human(size, want, sizeof(want));
			quantity_format_human((uint64_t)json_integer_value(sz), have, sizeof(have));
			claim_failed(d, claim, -ENOSPC,
				     "the claim asks %s, more than the whole carvefs pool of node "
				     "'%s' (%s)",
				     want, d->node_name, have);
			unselect_node(d, claim);
			return -ENOSPC;
		}
	}

	r = dynspec_create_request(name, size, params, jpath_str(sc, "metadata", "name"), claim,
				   overcommit, &req);
	if (r < 0)
		return claim_failed(d, claim, r, "cannot build the volume request: %s",
				    strerror(-r));
	r = ctlclient_call(d->socket, req, CTLCLIENT_TIMEOUT_MS, &reply, &msg);
	json_decref(req);
	if (r == -ENOSPC) {
		claim_failed(d, claim, r, "not enough room on node '%s': %s", d->node_name, msg.text);
		unselect_node(d, claim);
		return r;
	}
	if (r < 0) {
		r = claim_failed(d, claim, r, "cannot carve volume '%s' on node '%s': %s", name,
				 d->node_name, msg.text);
		goto out;
	}
	/* The pool changed: measure it again if another claim needs it in this pass. */
	json_decref(d->pool);
	d->pool = NULL;
	*ret_volume = json_incref(json_object_get(reply, "volume"));
	if (!*ret_volume) {
		r = claim_failed(d, claim, -EPROTO, "the daemon's reply lacks the volume");
	} else {
		if (quantity_format(size, want, sizeof(want)) < 0)
			snprintf(want, sizeof(want), "?");
		log_info("claim '%s/%s': carved volume '%s' (%s)",
			 jpath_str(claim, "metadata", "namespace"),
			 jpath_str(claim, "metadata", "name"), name, want);
	}
out:
	json_decref(reply);
	return r;
}

/*
 * Creates @pv. A PV of that name already pre-bound to this claim counts as
 * created: an earlier attempt whose answer was lost. Returns 0 or -errno
 * (reported).
 */
static int create_pv(struct dynamic *d, const json_t *claim, const json_t *pv)
{
	const char *name = jpath_str(pv, "metadata", "name");
	json_t *cur = NULL;
	int r;

	r = kube_create_pv(d->kube, pv, NULL);
	if (r != -EEXIST) {
		if (r < 0)
			return claim_failed(d, claim, r, "cannot create PV '%s': %s", name,
					    kube_last_error(d->kube));
		return 0;
	}
	r = kube_get_pv(d->kube, name, &cur);
	if (r == 0 && dynspec_pv_ours(cur) &&
	    dynspec_pv_for_claim(cur, jpath_str(claim, "metadata", "uid"))) {
		log_info("PV '%s' exists already for this claim: an earlier create went through",
			 name);
	} else if (r == 0) {
		r = claim_failed(d, claim, -EEXIST,
				 "a PV named '%s' exists and is not this claim's", name);
	} else if (r == -ENOENT) {
		/* Deleted between the two requests: the next try creates it. */
		r = claim_failed(d, claim, -EAGAIN,
				 "PV '%s' was deleted while being created; trying again", name);
	} else {
		r = claim_failed(d, claim, r, "cannot read PV '%s': %s", name,
				 kube_last_error(d->kube));
	}
	json_decref(cur);
	return r;
}

/* Serves one wanted claim. Returns 0, or -errno (reported) to be tried again later. */
static int provision(struct dynamic *d, const json_t *claim, const json_t *pvs,
		     const char *hostname, double overcommit)
{
	const char *ns = jpath_str(claim, "metadata", "namespace");
	const char *cname = jpath_str(claim, "metadata", "name");
	const char *uid = jpath_str(claim, "metadata", "uid");
	const char *class_name = jpath_str(claim, "spec", "storageClassName");
	const json_t *sc, *existing_pv;
	struct dynspec_params params;
	char size_text[32], *name = NULL;
	struct errmsg err;
	json_t *volume = NULL, *pv = NULL;
	const char *path, *provisioner;
	uint64_t size;
	int r;

	r = dynspec_volume_name(claim, &name);
	if (r < 0)
		return r;
	existing_pv = jpath_find(pvs, name, "metadata", "name");
	if (existing_pv) {
		if (dynspec_pv_for_claim(existing_pv, uid)) {
			log_debug("claim '%s/%s': PV '%s' exists; the PV controller binds it", ns,
				  cname, name);
			r = 0;
		} else {
			r = claim_failed(d, claim, -EEXIST,
					 "a PV named '%s' exists and is not this claim's", name);
		}
		goto out;
	}
	if (!class_name) {
		r = claim_failed(d, claim, -EINVAL, "the claim names no StorageClass");
		goto out;
	}
	sc = storage_class(d, class_name);
	if (!sc) {
		r = -EAGAIN;
		goto out;
	}
	provisioner = json_string_value(json_object_get(sc, "provisioner"));
	if (!dynspec_provisioner_ours(provisioner)) {
		log_debug("claim '%s/%s': StorageClass '%s' is not carvefs's", ns, cname,
			  class_name);
		r = 0;
		goto out;
	}
	if (dynspec_claim_supported(claim, &err) < 0 ||
	    dynspec_claim_size(claim, &size, &err) < 0 ||
	    dynspec_params_resolve(json_object_get(sc, "parameters"),
				   jpath_get(claim, "metadata", "annotations"), &params, &err) < 0) {
		r = claim_failed(d, claim, -EINVAL, "%s", err.text);
		goto out;
	}

	r = carve(d, claim, sc, name, size, &params, overcommit, &volume);
	if (r == -ENOSPC) {
		r = 0; /* handed back: no longer this node's claim */
		goto out;
	}
	if (r < 0)
		goto out;
	path = json_string_value(json_object_get(volume, "mountpoint"));
	if (!path) {
		r = claim_failed(d, claim, -EPROTO, "volume '%s' has no mountpoint", name);
		goto out;
	}
	r = dynspec_pv_build(&(struct dynspec_pv_request){ .claim = claim,
							   .storage_class = sc,
							   .name = name,
							   .path = path,
							   .hostname = hostname,
							   .capacity_bytes = size },
			     &pv, &err);
	if (r < 0) {
		r = claim_failed(d, claim, r, "%s", err.text);
		goto out;
	}
	r = create_pv(d, claim, pv);
	if (r < 0)
		goto out;
	if (quantity_format(size, size_text, sizeof(size_text)) < 0)
		snprintf(size_text, sizeof(size_text), "?");
	log_info("claim '%s/%s': created PV '%s' (%s at \"%s\")", ns, cname, name, size_text, path);
	{
		char msg[MSG_MAX];

		snprintf(msg, sizeof(msg), "Successfully provisioned volume %s (%s) on node '%s'",
			 name, size_text, d->node_name);
		post(d, claim, EVENT_NORMAL, REASON_SUCCEEDED, msg);
	}
	metrics_provisioned(true);
out:
	json_decref(volume);
	json_decref(pv);
	free(name);
	return r;
}

/* ---- deletion ----------------------------------------------------------- */

static bool deletable(const json_t *pv, const char *hostname)
{
	const json_t *spec = json_object_get(pv, "spec");
	const char *phase = jpath_str(pv, "status", "phase");
	const char *policy = json_string_value(json_object_get(spec,
								"persistentVolumeReclaimPolicy"));

	return dynspec_pv_ours(pv) && pv_on_node(pv, hostname) && phase &&
	       strcmp(phase, "Released") == 0 && policy && strcmp(policy, "Delete") == 0 &&
	       !jpath_get(pv, "metadata", "deletionTimestamp");
}

/* Deletes the volume of the released PV @pv, then the PV. Returns 0 or -errno (logged). */
static int delete_released(struct dynamic *d, const json_t *pv)
{
	const char *name = jpath_str(pv, "metadata", "name");
	const char *uid = jpath_str(pv, "metadata", "uid");
	const char *volume = dynspec_pv_volume(pv);
	const char *claim_uid = jpath_str(pv, "spec", "claimRef", "uid");
	const json_t *v;
	struct errmsg msg = { "" };
	int r;

	if (!volume)
		volume = name;
	if (!d->volumes) {
		log_warn("PV '%s' released, but the daemon's volumes are unknown: not deleting yet",
			 name);
		return -EAGAIN;
	}
	v = jpath_find(d->volumes, volume, "name");
	if (v) {
		const char *label = jpath_str(v, "labels", DYNSPEC_LABEL_CLAIM_UID);

		/* Only the volume carved for the claim this PV was bound to. */
		if (!label || !claim_uid || strcmp(label, claim_uid) != 0) {
			log_error("PV '%s' released, but volume '%s' belongs to another claim "
				  "('%s', not '%s'): neither is deleted",
				  name, volume, label ? label : "", claim_uid ? claim_uid : "");
			return -EPERM;
		}
		r = ctlclient_delete(d->socket, volume, true, &msg);
		if (r < 0 && r != -ENOENT)
			return log_error_errno(r, "PV '%s' released: cannot delete volume '%s': %s",
					       name, volume, msg.text);
		log_info("PV '%s' released: deleted volume '%s'", name, volume);
	}
	r = kube_delete_pv(d->kube, name, uid);
	if (r == -ENOENT || r == -ESTALE)
		r = 0; /* gone already, or another PV of that name since */
	if (r < 0)
		return log_error_errno(r, "PV '%s': volume deleted, but not the PV: %s", name,
				       kube_last_error(d->kube));
	log_info("PV '%s' deleted", name);
	return 0;
}

/* ---- orphans ------------------------------------------------------------ */

static bool volume_has_pv(const json_t *pvs, const char *volume)
{
	const json_t *pv;
	size_t i;

	json_array_foreach(pvs, i, pv)
	{
		const char *v = dynspec_pv_volume(pv), *n = jpath_str(pv, "metadata", "name");

		if ((v && strcmp(v, volume) == 0) || (n && strcmp(n, volume) == 0))
			return true;
	}
	return false;
}

/*
 * A volume left by a claim deleted before its PV was made (the provisioner
 * stopped in between, or the PV create kept failing) may go when nothing
 * could have been lost with it: its class reclaims with Delete, as the
 * claim's owner asked, and it holds no file. Anything else is only said.
 */
static bool orphan_reclaimable(const struct dynamic *d, const json_t *vol)
{
	const char *cls = json_string_value(json_object_get(vol, "storage_class"));
	const json_t *sc = cls ? json_object_get(d->classes, cls) : NULL;
	const char *policy = json_string_value(json_object_get(sc, "reclaimPolicy"));
	const json_t *inodes = json_object_get(vol, "used_inodes");

	/* A class without reclaimPolicy has Delete, the API's default. */
	if (!sc || (policy && strcmp(policy, "Delete") != 0))
		return false;
	return json_is_integer(inodes) && json_integer_value(inodes) == 0;
}

static int reclaim_orphan(struct dynamic *d, const json_t *vol, const char *name)
{
	const json_t *labels = json_object_get(vol, "labels");
	struct errmsg msg = { "" };
	int r;

	/* Not forced: a volume someone has started to use is left alone. */
	r = ctlclient_delete(d->socket, name, false, &msg);
	if (r < 0)
		return log_warn_errno(r, "volume '%s': cannot delete it: %s", name, msg.text);
	log_info("volume '%s' deleted: its claim '%s/%s' went away before it had a PV, and it "
		 "held nothing",
		 name,
		 json_string_value(json_object_get(labels, DYNSPEC_LABEL_CLAIM_NAMESPACE)) ?: "?",
		 json_string_value(json_object_get(labels, DYNSPEC_LABEL_CLAIM_NAME)) ?: "?");
	return 0;
}

/*
 * Deals with each volume of a claim left without PV and claim: deletes it
 * if that loses nothing, else says so once. Returns how many are kept.
 */
static unsigned report_orphans(struct dynamic *d, const json_t *claims, const json_t *pvs)
{
	unsigned count = 0;
	const json_t *v;
	size_t i;

	json_array_foreach(d->volumes, i, v)
	{
		const char *name = json_string_value(json_object_get(v, "name"));
		const char *claim_uid = jpath_str(v, "labels", DYNSPEC_LABEL_CLAIM_UID);
		bool *said;

		if (!name || !claim_uid || volume_has_pv(pvs, name) ||
		    jpath_find(claims, claim_uid, "metadata", "uid"))
			continue;
		if (orphan_reclaimable(d, v) && reclaim_orphan(d, v, name) == 0)
			continue;
		count++;
		said = retryset_memo(d->orphans, name);
		if (said && *said)
			continue;
		log_warn("volume '%s' was carved for claim '%s/%s' (uid %s), but neither the "
			 "claim nor a PV exists any more; it is kept: delete it with "
			 "'carvectl delete %s' if its data is not wanted",
			 name, jpath_str(v, "labels", DYNSPEC_LABEL_CLAIM_NAMESPACE) ?: "?",
			 jpath_str(v, "labels", DYNSPEC_LABEL_CLAIM_NAME) ?: "?", claim_uid, name);
		if (said)
			*said = true;
	}
	/* Forget those resolved since, so that a new orphan of the same name is said again. */
	retryset_sweep(d->orphans);
	return count;
}

/* ---- the pass ----------------------------------------------------------- */

/* The StorageClasses by name into d->classes; notes whether one is ours. */
static int list_classes(struct dynamic *d)
{
	json_t *items = NULL, *ours = NULL, *sc;
	size_t i;
	int r;

	r = kube_list(d->kube, "/apis/storage.k8s.io/v1/storageclasses", &items, NULL);
	if (r < 0)
		return r;
	d->classes = json_object();
	ours = json_array();
	if (!d->classes || !ours) {
		r = -ENOMEM;
		goto out;
	}
	json_array_foreach(items, i, sc)
	{
		const char *name = jpath_str(sc, "metadata", "name");
		const char *provisioner = json_string_value(json_object_get(sc, "provisioner"));

		if (!name)
			continue;
		if (json_object_set(d->classes, name, sc) < 0) {
			r = -ENOMEM;
			goto out;
		}
		if (!dynspec_provisioner_ours(provisioner))
			continue;
		d->in_use = true;
		if (json_array_append_new(ours, json_string(name)) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	json_decref(d->ours);
	d->ours = ours;
	ours = NULL;
out:
	json_decref(items);
	json_decref(ours);
	return r;
}

static bool has_claim_volumes(const struct dynamic *d)
{
	const json_t *v;
	size_t i;

	json_array_foreach(d->volumes, i, v)
		if (jpath_get(v, "labels", DYNSPEC_LABEL_CLAIM_UID))
			return true;
	return false;
}

unsigned dynamic_pass(struct dynamic *d, const char *hostname, double overcommit)
{
	json_t *claims = NULL, *pvs = NULL, *pv, *claim;
	struct errmsg msg = { "" };
	unsigned errors = 0;
	size_t i;
	int r;

	json_decref(d->volumes);
	d->volumes = NULL;
	json_decref(d->pool);
	d->pool = NULL;
	json_decref(d->classes);
	d->classes = NULL;
	/*
	 * A node without a carvefs daemon is no error as long as nothing asks
	 * for one: the claims and PVs that do are reported below.
	 */
	r = ctlclient_list(d->socket, &d->volumes, &msg);
	if (r < 0)
		log_debug("cannot list the carvefs volumes at %s: %s", d->socket,
			  msg.text);

	r = list_classes(d);
	if (r == 0)
		r = kube_list_pvs(d->kube, &pvs, NULL);
	/* Every claim of a large cluster is a lot to list for nothing. */
	if (r == 0 && (d->in_use || has_claim_volumes(d)))
		r = kube_list_pvcs(d->kube, &claims, NULL);
	else if (r == 0 && !(claims = json_array()))
		r = -ENOMEM;
	if (r < 0) {
		log_error("dynamic provisioning: %s", r == -ENOMEM ? "out of memory" :
								      kube_last_error(d->kube));
		errors++;
		goto out;
	}

	json_array_foreach(claims, i, claim)
	{
		const char *uid = jpath_str(claim, "metadata", "uid");
		const char *rv = jpath_str(claim, "metadata", "resourceVersion");

		if (!uid || !dynspec_claim_wanted(claim, d->node_name))
			continue;
		if (!retryset_due(d->retries, uid, rv, clock_now_ns())) {
			log_debug("claim '%s/%s': failed recently; waiting before the next try",
				  jpath_str(claim, "metadata", "namespace"),
				  jpath_str(claim, "metadata", "name"));
			continue;
		}
		if (!d->volumes) {
			claim_failed(d, claim, -ENOENT,
				     "the carvefs daemon on node '%s' does not answer at %s: %s",
				     d->node_name, d->socket, msg.text[0] ? msg.text : "not running");
			r = -ENOENT;
		} else {
			r = provision(d, claim, pvs, hostname, overcommit);
		}
		if (r == -ENOMEM)
			goto out;
		if (r < 0) {
			metrics_provisioned(false);
			/* A claim asking for what cannot be had says nothing of this node's health. */
			if (r != -EINVAL && r != -EEXIST)
				errors++;
			log_info("claim '%s/%s': trying again in %.0f s",
				 jpath_str(claim, "metadata", "namespace"),
				 jpath_str(claim, "metadata", "name"), retry_failed(d, uid, rv));
		} else {
			retryset_succeeded(d->retries, uid);
		}
	}

	json_array_foreach(pvs, i, pv)
	{
		const char *uid = jpath_str(pv, "metadata", "uid");
		const char *rv = jpath_str(pv, "metadata", "resourceVersion");

		if (!uid || !deletable(pv, hostname) || !retryset_due(d->retries, uid, rv, clock_now_ns()))
			continue;
		r = delete_released(d, pv);
		if (r == 0)
			metrics_dynamic_deleted();
		if (r < 0) {
			errors++;
			log_info("PV '%s': trying again in %.0f s",
				 jpath_str(pv, "metadata", "name"), retry_failed(d, uid, rv));
		} else {
			retryset_succeeded(d->retries, uid);
		}
	}

	if (d->volumes)
		metrics_orphaned_volumes(report_orphans(d, claims, pvs));
	/* Only a pass that saw every claim and PV can tell which retries are moot. */
	retryset_sweep(d->retries);
out:
	json_decref(claims);
	json_decref(pvs);
	return errors;
}
