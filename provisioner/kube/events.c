/*
 * events.c - core/v1 Events about claims and PVs; see include/events.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube/events.h"

static pthread_mutex_t host_lock = PTHREAD_MUTEX_INITIALIZER;
static char *host; /* protected by host_lock */

/*
 * The last timestamp used in a name. Two events about one object within
 * the clock's resolution would otherwise get the same name, and the second
 * would be refused as AlreadyExists.
 */
static _Atomic uint64_t last_name_ns;

int event_set_host(const char *node_name)
{
	char *copy = NULL;

	if (node_name && !(copy = strdup(node_name)))
		return -ENOMEM;
	pthread_mutex_lock(&host_lock);
	free(host);
	host = copy;
	pthread_mutex_unlock(&host_lock);
	return 0;
}

static uint64_t unique_ns(const struct timespec *ts)
{
	uint64_t now = (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
	uint64_t last = atomic_load_explicit(&last_name_ns, memory_order_relaxed);

	/* Relaxed suffices: only uniqueness of the value matters, nothing is published with it. */
	for (;;) {
		uint64_t next = now > last ? now : last + 1;

		if (atomic_compare_exchange_weak_explicit(&last_name_ns, &last, next,
							  memory_order_relaxed,
							  memory_order_relaxed))
			return next;
	}
}

/* kind and apiVersion of @object, inferred when a list item lacks them. */
static const char *object_kind(const json_t *object, const char *ns)
{
	const char *kind = json_string_value(json_object_get(object, "kind"));
	const json_t *spec = json_object_get(object, "spec");

	if (kind)
		return kind;
	if (ns && json_object_get(spec, "resources"))
		return "PersistentVolumeClaim";
	if (!ns && json_object_get(spec, "capacity"))
		return "PersistentVolume";
	return NULL;
}

int event_post(struct kube *k, const json_t *object, const char *type, const char *reason,
	       const char *message)
{
	const json_t *meta = json_object_get(object, "metadata");
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *ns = json_string_value(json_object_get(meta, "namespace"));
	const char *uid = json_string_value(json_object_get(meta, "uid"));
	const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
	const char *api_version = json_string_value(json_object_get(object, "apiVersion"));
	const char *kind = object_kind(object, ns);
	const char *event_ns = ns ? ns : "default";
	json_t *ev = NULL, *involved = NULL, *answer = NULL;
	char *ev_name = NULL, *path = NULL, stamp[32];
	struct timespec ts;
	struct tm tm;
	int r;

	if (!name || !kind)
		return -EINVAL;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (asprintf(&ev_name, "%s.%llx", name, (unsigned long long)unique_ns(&ts)) < 0) {
		ev_name = NULL;
		r = -ENOMEM;
		goto cleanup;
	}
	if (asprintf(&path, "/api/v1/namespaces/%s/events", event_ns) < 0) {
		path = NULL;
		r = -ENOMEM;
		goto cleanup;
	}
	involved = json_pack("{s:s, s:s, s:s}", "kind", kind, "apiVersion",
			     api_version ? api_version : "v1", "name", name);
	if (!involved || (ns && json_object_set_new(involved, "namespace", json_string(ns)) < 0) ||
	    (uid && json_object_set_new(involved, "uid", json_string(uid)) < 0) ||
	    (rv && json_object_set_new(involved, "resourceVersion", json_string(rv)) < 0)) {
		r = -ENOMEM;
		goto cleanup;
	}
	/*
	 * No eventTime: that would make it a new-style Event, which must name a
	 * reporting controller and instance the 1.x validation insists on.
	 */
	ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:O, s:s, s:s, s:s, s:{s:s}, s:s, s:s, s:i}",
		       "apiVersion", "v1", "kind", "Event", "metadata", "name", ev_name,
		       "namespace", event_ns, "involvedObject", involved, "type", type, "reason",
		       reason, "message", message, "source", "component", EVENTS_COMPONENT,
		       "firstTimestamp", stamp, "lastTimestamp", stamp, "count", 1);
	if (!ev) {
		r = -EINVAL; /* a string that is not UTF-8 */
		goto cleanup;
	}
	pthread_mutex_lock(&host_lock);
	if (host)
		r = json_object_set_new(json_object_get(ev, "source"), "host", json_string(host));
	else
		r = 0;
	pthread_mutex_unlock(&host_lock);
	if (r < 0) {
		r = -ENOMEM;
		goto cleanup;
	}
	r = kube_request(k, "POST", path, ev, NULL, &answer);
cleanup:
	json_decref(ev);
	json_decref(involved);
	json_decref(answer);
	free(ev_name);
	free(path);
	return r;
}
