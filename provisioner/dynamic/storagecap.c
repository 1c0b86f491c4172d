/*
 * storagecap.c - this node's room as CSIStorageCapacity objects; see
 * storagecap.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynamic/sizing.h"
#include "dynamic/storagecap.h"
#include "log.h"
#include "pv.h"
#include "quantity.h"

/* Paths, with the version as the first %s. */
#define VERSION_PATH "/apis/storage.k8s.io/%s"
#define COLLECTION_PATH "/apis/storage.k8s.io/%s/namespaces/%s/csistoragecapacities"
#define OBJECT_PATH "/apis/storage.k8s.io/%s/namespaces/%s/csistoragecapacities/%s"
#define RESOURCE "csistoragecapacities"
#define LABEL_MANAGED_BY "app.kubernetes.io/managed-by"

/* Newest first: the first one the cluster serves is used. */
static const char *const versions[] = { "v1", "v1beta1", "v1alpha1" };

struct storagecap {
	struct kube *kube; /* borrowed */
	char *namespace;
	const char *version; /* one of versions[]; NULL: not served */
	bool discovered;
	int last_error; /* the failure said last; 0 after a success */
};

int storagecap_new(struct kube *kube, const char *namespace, struct storagecap **ret_cap)
{
	struct storagecap *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->kube = kube;
	s->namespace = strdup(namespace ? namespace : STORAGECAP_DEFAULT_NAMESPACE);
	if (!s->namespace) {
		free(s);
		return -ENOMEM;
	}
	*ret_cap = s;
	return 0;
}

struct storagecap *storagecap_free(struct storagecap *s)
{
	if (s) {
		free(s->namespace);
		free(s);
	}
	return NULL;
}

/* Says a failure once, until a success or another failure. */
static int report(struct storagecap *s, int r, const char *what)
{
	if (r != s->last_error)
		log_warn("CSIStorageCapacity not updated: %s: %s", what, kube_last_error(s->kube));
	s->last_error = r;
	return r;
}

/* True if the discovery document @doc of a version lists the resource. */
static bool serves_resource(const json_t *doc)
{
	const json_t *res;
	size_t i;

	json_array_foreach(json_object_get(doc, "resources"), i, res)
	{
		const char *name = json_string_value(json_object_get(res, "name"));

		if (name && strcmp(name, RESOURCE) == 0)
			return true;
	}
	return false;
}

/* Finds the newest version of storage.k8s.io that serves the resource. */
static int discover(struct storagecap *s)
{
	char path[64];
	size_t i;
	int r;

	s->version = NULL;
	for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		json_t *doc = NULL;
		bool found;

		snprintf(path, sizeof(path), VERSION_PATH, versions[i]);
		r = kube_request(s->kube, "GET", path, NULL, NULL, &doc);
		found = r == 0 && serves_resource(doc);
		json_decref(doc);
		if (r == -ENOENT)
			continue;
		if (r < 0)
			return r == -ENOMEM ? r : report(s, r, "API discovery");
		if (found) {
			s->version = versions[i];
			break;
		}
	}
	s->discovered = true;
	if (s->version)
		log_info("publishing this node's room as storage.k8s.io/%s CSIStorageCapacity "
			 "objects in namespace '%s'",
			 s->version, s->namespace);
	else
		log_warn("the cluster serves no CSIStorageCapacity API (storage.k8s.io v1, "
			 "v1beta1 or v1alpha1): the scheduler cannot see this node's room");
	return 0;
}

static const char *object_str(const json_t *o, const char *a, const char *b)
{
	return json_string_value(json_object_get(json_object_get(o, a), b));
}

/* The kubernetes.io/hostname value an object's nodeTopology matches, or NULL. */
static const char *topology_hostname(const json_t *obj)
{
	return json_string_value(json_object_get(
		json_object_get(json_object_get(obj, "nodeTopology"), "matchLabels"),
		PV_LABEL_HOSTNAME));
}

static bool has_class(const json_t *classes, const char *name)
{
	const json_t *c;
	size_t i;

	json_array_foreach(classes, i, c)
	{
		if (name && json_string_value(c) && strcmp(json_string_value(c), name) == 0)
			return true;
	}
	return false;
}

static int create_object(struct storagecap *s, const char *hostname, const char *class_name,
			 const char *capacity)
{
	char api_version[64], path[256];
	json_t *obj;
	int r;

	snprintf(api_version, sizeof(api_version), "storage.k8s.io/%s", s->version);
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:{s:s}}, s:s, s:s}", "apiVersion",
			api_version, "kind", "CSIStorageCapacity", "metadata", "generateName",
			"carvefs-", "namespace", s->namespace, "labels", LABEL_MANAGED_BY,
			STORAGECAP_MANAGED_BY, "nodeTopology", "matchLabels", PV_LABEL_HOSTNAME,
			hostname, "storageClassName", class_name, "capacity", capacity);
	if (!obj)
		return -ENOMEM;
	snprintf(path, sizeof(path), COLLECTION_PATH, s->version, s->namespace);
	r = kube_request(s->kube, "POST", path, obj, NULL, NULL);
	json_decref(obj);
	if (r == 0)
		log_info("class '%s': CSIStorageCapacity of node '%s' created with %s bytes",
			 class_name, hostname, capacity);
	return r;
}

static int patch_object(struct storagecap *s, const char *name, const char *capacity)
{
	char path[512];
	json_t *patch = json_pack("{s:s}", "capacity", capacity);
	int r;

	if (!patch)
		return -ENOMEM;
	snprintf(path, sizeof(path), OBJECT_PATH, s->version, s->namespace, name);
	r = kube_request(s->kube, "PATCH", path, patch, NULL, NULL);
	json_decref(patch);
	return r;
}

static int delete_object(struct storagecap *s, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), OBJECT_PATH, s->version, s->namespace, name);
	return kube_request(s->kube, "DELETE", path, NULL, NULL, NULL);
}

int storagecap_update(struct storagecap *s, const char *hostname, const json_t *classes,
		      uint64_t room_bytes)
{
	char capacity[SIZING_DECIMAL_MAX], path[256];
	json_t *items = NULL, *done = NULL, *obj;
	size_t i;
	int r;

	if (!s->discovered) {
		r = discover(s);
		if (r < 0)
			return r;
	}
	/* Before the classes were ever listed, nothing is known to be gone. */
	if (!s->version || !classes)
		return 0;
	r = sizing_format_bytes(room_bytes, capacity, sizeof(capacity));
	if (r < 0)
		return r;
	snprintf(path, sizeof(path),
		 COLLECTION_PATH "?labelSelector=" LABEL_MANAGED_BY "%%3D" STORAGECAP_MANAGED_BY,
		 s->version, s->namespace);
	r = kube_list(s->kube, path, &items, NULL);
	if (r == -ENOENT) {
		/* The version went away (an upgrade): find the current one next time. */
		s->discovered = false;
		r = report(s, r, "listing " RESOURCE);
		goto out;
	}
	if (r < 0) {
		r = r == -ENOMEM ? r : report(s, r, "listing " RESOURCE);
		goto out;
	}
	done = json_array();
	if (!done) {
		r = -ENOMEM;
		goto out;
	}
	json_array_foreach(items, i, obj)
	{
		const char *name = object_str(obj, "metadata", "name");
		const char *cls = json_string_value(json_object_get(obj, "storageClassName"));
		const char *have = json_string_value(json_object_get(obj, "capacity"));
		const char *host = topology_hostname(obj);
		uint64_t have_bytes;

		if (!name || !host || strcmp(host, hostname) != 0)
			continue;
		/* A class gone, or a second object for one class. */
		if (!has_class(classes, cls) || has_class(done, cls)) {
			r = delete_object(s, name);
			if (r < 0 && r != -ENOENT) {
				r = r == -ENOMEM ? r : report(s, r, "deleting an object");
				goto out;
			}
			log_info("class '%s': CSIStorageCapacity '%s' of node '%s' deleted",
				 cls ? cls : "", name, hostname);
			continue;
		}
		if (json_array_append_new(done, json_string(cls)) < 0) {
			r = -ENOMEM;
			goto out;
		}
		/* The server writes quantities in its own form (1Gi for 1073741824). */
		if (have && quantity_parse(have, &have_bytes) == 0 && have_bytes == room_bytes)
			continue;
		r = patch_object(s, name, capacity);
		if (r < 0) {
			r = r == -ENOMEM ? r : report(s, r, "updating an object");
			goto out;
		}
		log_debug("class '%s': CSIStorageCapacity of node '%s' now %s bytes", cls,
			  hostname, capacity);
	}
	json_array_foreach(classes, i, obj)
	{
		const char *cls = json_string_value(obj);

		if (!cls || has_class(done, cls))
			continue;
		r = create_object(s, hostname, cls, capacity);
		if (r < 0) {
			r = r == -ENOMEM ? r : report(s, r, "creating an object");
			goto out;
		}
	}
	s->last_error = 0;
	r = 0;
out:
	json_decref(items);
	json_decref(done);
	return r;
}
