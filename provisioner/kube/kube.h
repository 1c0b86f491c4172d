/*
 * kube.h - a small Kubernetes API client over libcurl, and the sink that
 * registers PVs through it.
 *
 * One client is used from one thread at a time; it keeps one curl handle so
 * that its connection is reused between calls. Every call has a connect
 * timeout and an overall timeout; a watch instead has a low-speed limit, so
 * a connection that died silently is noticed.
 *
 * Errors are -errno, mapped from the HTTP status and the Status object the
 * apiserver answers with:
 *
 *   -ENOENT     404 NotFound
 *   -EEXIST     409 AlreadyExists (a create of an existing name)
 *   -ESTALE     409 Conflict (a stale resourceVersion or precondition), and
 *               410 Gone (a list or watch too old: list again)
 *   -EACCES     401, 403
 *   -EINVAL     400, 422 and other 4xx: the request is wrong
 *   -EAGAIN     429, 5xx, a refused/reset/timed-out connection: retry later
 *   -EPROTO     TLS failures, a body that is not JSON
 *   -ENOMEM
 *
 * kube_last_error() then says what happened in a sentence, for messages.
 */
#ifndef CARVEFS_KUBE_H
#define CARVEFS_KUBE_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "kube/kubeconfig.h"
#include "sink/sink.h"

#define KUBE_CONNECT_TIMEOUT_S 10L
#define KUBE_REQUEST_TIMEOUT_S 30L

struct kube;

/* A client for @kc (copied what it needs). Returns 0, -EINVAL, -ENOMEM. */
int kube_new(const struct kubeconfig *kc, struct kube **ret_kube);

/* Accepts NULL; returns NULL. */
struct kube *kube_free(struct kube *k);

/* The last error of @k as a sentence ("" when there was none). */
const char *kube_last_error(const struct kube *k);

/*
 * Reads the kubeconfig file @path (relative paths in it are taken relative
 * to its directory) into *ret_kc. Logs what is wrong. Returns 0 or -errno.
 */
int kube_config_load(const char *path, struct kubeconfig **ret_kc);

/*
 * The in-cluster configuration from KUBERNETES_SERVICE_HOST/PORT and the
 * mounted service account. Returns 0, -ENOENT when not in a cluster (the
 * variables are unset), or -errno (logged).
 */
int kube_config_in_cluster(struct kubeconfig **ret_kc);

/*
 * One request: @method ("GET", "POST", "PUT", "DELETE", "PATCH"), @path from
 * the server root ("/api/v1/nodes/x"), @body sent as JSON (NULL for none;
 * PATCH sends it as a JSON merge patch). The status code goes to *ret_status
 * and the parsed answer to *ret_json (may be NULL; on an error the Status
 * object, when there is one). Returns 0 for 2xx, else as above.
 */
int kube_request(struct kube *k, const char *method, const char *path, const json_t *body,
		 long *ret_status, json_t **ret_json);

/*
 * Every object of the collection at @collection ("/api/v1/persistentvolumes",
 * may carry a query), following continue tokens, and the list's
 * resourceVersion (malloc'd, may be NULL).
 */
int kube_list(struct kube *k, const char *collection, json_t **ret_items,
	      char **ret_resource_version);
/* Every PV, as kube_list(). */
int kube_list_pvs(struct kube *k, json_t **ret_items, char **ret_resource_version);
/* Every claim of every namespace, as kube_list(). */
int kube_list_pvcs(struct kube *k, json_t **ret_items, char **ret_resource_version);
/*
 * The calls on one object below hand the object the server answered with
 * to their json_t ** (a new reference; may be NULL where it says so) on
 * success only: on an error it is left alone, and the server's reason is
 * in kube_last_error().
 */
int kube_get_pvc(struct kube *k, const char *ns, const char *name, json_t **ret_pvc);
/* Applies the JSON merge patch @patch to the claim @ns/@name. */
int kube_patch_pvc(struct kube *k, const char *ns, const char *name, const json_t *patch,
		   json_t **ret_pvc);
int kube_get_pv(struct kube *k, const char *name, json_t **ret_pv);
int kube_get_node(struct kube *k, const char *name, json_t **ret_node);
int kube_get_storage_class(struct kube *k, const char *name, json_t **ret_class);
/* Creates @pv; the created object to *ret_pv (may be NULL). */
int kube_create_pv(struct kube *k, const json_t *pv, json_t **ret_pv);
/*
 * Deletes the PV @name if its uid is still @uid (NULL: any), so that a PV
 * re-created under the same name meanwhile is not deleted by mistake.
 */
int kube_delete_pv(struct kube *k, const char *name, const char *uid);
/* Applies the JSON merge patch @patch to the PV @name. */
int kube_patch_pv(struct kube *k, const char *name, const json_t *patch, json_t **ret_pv);

/*
 * Called for each watch event with its type ("ADDED", "MODIFIED",
 * "DELETED", "BOOKMARK") and object (borrowed). A nonzero return stops the
 * watch, and kube_watch() returns it.
 */
typedef int (*kube_watch_fn)(const char *type, json_t *object, void *userdata);

/*
 * Watches the collection at @path (e.g. "/api/v1/persistentvolumes") from
 * @resource_version (NULL: from now), for at most @timeout_s seconds (the
 * server closes the stream then). Returns 0 when the stream ends, -ESTALE
 * when the resourceVersion is too old (an HTTP 410, or the in-stream ERROR
 * event with code 410): list again; other errors as above, or what @fn
 * returned.
 */
int kube_watch(struct kube *k, const char *path, const char *resource_version, long timeout_s,
	       kube_watch_fn fn, void *userdata);

/*
 * Lets another thread abort this client's watch: once *@cancel is true,
 * kube_watch() returns -ECANCELED within about a second.
 */
void kube_set_cancel(struct kube *k, const atomic_bool *cancel);

/* True for the errors worth retrying after a pause. */
static inline bool kube_retryable(int r)
{
	return r == -EAGAIN;
}

/*
 * The API sink (see sink.h) over a client for @kc. Lists PVs on this node
 * (the node as learned by get_node), creates PVs (a PV that already exists
 * on this node at the same path counts as created: a retried create whose
 * first answer was lost; -EBUSY if that PV is being deleted), removes only
 * PVs annotated as provisioned by this node (-EPERM for others). Retryable errors are retried with backoff within a budget renewed
 * at each get_node, i.e. each pass. Returns 0 or -errno.
 */
int apisink_open(const struct kubeconfig *kc, struct sink **ret_sink);

#endif
