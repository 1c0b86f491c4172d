/*
 * dynspec.c - claims of carvefs StorageClasses: parameters, volumes and PVs;
 * see include/dynspec.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynamic/dynspec.h"
#include "duration.h"
#include "pv.h"
#include "quantity.h"
#include "jpath.h"

struct param_info {
	const char *key;
	const char *field;
	const char *max_key; /* NULL: no bound */
};

static const struct param_info params[DYNSPEC_N_PARAMS] = {
	[DYNSPEC_INODES] = { "inodes", "inodes", "maxInodes" },
	[DYNSPEC_RIOPS] = { "readIOPS", "riops", "maxReadIOPS" },
	[DYNSPEC_WIOPS] = { "writeIOPS", "wiops", "maxWriteIOPS" },
	[DYNSPEC_RBPS] = { "readBytesPerSecond", "rbps", "maxReadBytesPerSecond" },
	[DYNSPEC_WBPS] = { "writeBytesPerSecond", "wbps", "maxWriteBytesPerSecond" },
	[DYNSPEC_BURST_MS] = { "burstSeconds", "burst_ms", NULL },
};

/* The daemon takes limits up to INT64_MAX. */
#define VALUE_MAX ((uint64_t)INT64_MAX)

const char *dynspec_param_key(enum dynspec_param p)
{
	return p < DYNSPEC_N_PARAMS ? params[p].key : NULL;
}

const char *dynspec_param_field(enum dynspec_param p)
{
	return p < DYNSPEC_N_PARAMS ? params[p].field : NULL;
}

/*
 * One value, from @where ("StorageClass parameter" or "annotation") under
 * @key. Parameters are strings in the API; an annotation is too.
 */
static int parse_value(enum dynspec_param p, const char *where, const char *key,
		       const json_t *v, uint64_t *ret, struct errmsg *m)
{
	const char *s = json_string_value(v);
	int r;

	if (!s)
		return errmsg_set(m, -EINVAL, "%s %s: must be a string", where, key);
	if (s[0] == '-')
		return errmsg_set(m, -EINVAL, "%s %s=\"%s\": must not be negative", where, key, s);
	if (p == DYNSPEC_BURST_MS) {
		struct errmsg why;

		if (duration_parse_seconds_ms(s, ret, &why) < 0)
			return errmsg_set(m, -EINVAL, "%s %s=\"%s\": %s", where, key, s, why.text);
		return 0;
	}
	r = quantity_parse(s, ret);
	if (r == 0 && *ret > VALUE_MAX)
		r = -ERANGE;
	if (r == -ERANGE)
		return errmsg_set(m, -EINVAL, "%s %s=\"%s\": too large", where, key, s);
	if (r < 0)
		return errmsg_set(m, -EINVAL, "%s %s=\"%s\": not a quantity (e.g. \"5000\", \"2k\", \"100Mi\")",
			    where, key, s);
	return 0;
}

static int param_by_key(const char *key, bool *ret_is_max)
{
	for (int i = 0; i < DYNSPEC_N_PARAMS; i++) {
		if (strcmp(key, params[i].key) == 0) {
			*ret_is_max = false;
			return i;
		}
		if (params[i].max_key && strcmp(key, params[i].max_key) == 0) {
			*ret_is_max = true;
			return i;
		}
	}
	return -1;
}

static void known_keys(char *buf, size_t len, bool with_max)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < DYNSPEC_N_PARAMS && off < len; i++) {
		off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? ", " : "", params[i].key);
		if (with_max && params[i].max_key && off < len)
			off += (size_t)snprintf(buf + off, len - off, ", %s", params[i].max_key);
	}
}

int dynspec_params_resolve(const json_t *parameters, const json_t *annotations,
			   struct dynspec_params *ret, struct errmsg *ret_msg)
{
	struct dynspec_params out = { 0 };
	uint64_t max[DYNSPEC_N_PARAMS] = { 0 };
	bool has_max[DYNSPEC_N_PARAMS] = { false };
	char known[256];
	const char *key;
	json_t *v;
	int r;

	json_object_foreach((json_t *)parameters, key, v)
	{
		bool is_max;
		int i = param_by_key(key, &is_max);
		uint64_t value;

		if (i < 0) {
			known_keys(known, sizeof(known), true);
			return errmsg_set(ret_msg, -EINVAL,
				    "unknown StorageClass parameter %s=\"%s\" (known: %s)", key,
				    json_string_value(v) ? json_string_value(v) : "", known);
		}
		r = parse_value((enum dynspec_param)i, "StorageClass parameter", key, v, &value,
				ret_msg);
		if (r < 0)
			return r;
		if (is_max) {
			max[i] = value;
			has_max[i] = true;
		} else {
			out.value[i] = value;
			out.set[i] = true;
		}
	}
	for (int i = 0; i < DYNSPEC_N_PARAMS; i++)
		if (out.set[i] && has_max[i] && out.value[i] > max[i])
			return errmsg_set(ret_msg, -EINVAL,
				    "StorageClass parameter %s=\"%s\" is above the class's own %s (%llu)",
				    params[i].key,
				    json_string_value(json_object_get(parameters, params[i].key)),
				    params[i].max_key, (unsigned long long)max[i]);

	json_object_foreach((json_t *)annotations, key, v)
	{
		size_t pl = strlen(DYNSPEC_ANN_PREFIX);
		bool is_max;
		uint64_t value;
		int i;

		if (strncmp(key, DYNSPEC_ANN_PREFIX, pl) != 0)
			continue;
		i = param_by_key(key + pl, &is_max);
		if (i < 0) {
			known_keys(known, sizeof(known), false);
			return errmsg_set(ret_msg, -EINVAL,
				    "unknown annotation %s=\"%s\" (a claim may set: %s)", key,
				    json_string_value(v) ? json_string_value(v) : "", known);
		}
		if (is_max)
			return errmsg_set(ret_msg, -EINVAL,
				    "annotation %s=\"%s\": bounds are the StorageClass's to set, "
				    "not a claim's",
				    key, json_string_value(v) ? json_string_value(v) : "");
		r = parse_value((enum dynspec_param)i, "annotation", key, v, &value, ret_msg);
		if (r < 0)
			return r;
		if (has_max[i] && value > max[i])
			return errmsg_set(ret_msg, -EINVAL,
				    "annotation %s=\"%s\" is above the class's %s (%llu)", key,
				    json_string_value(v), params[i].max_key,
				    (unsigned long long)max[i]);
		out.value[i] = value;
		out.set[i] = true;
	}
	*ret = out;
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

bool dynspec_provisioner_ours(const char *name)
{
	return str_eq(name, DYNSPEC_PROVISIONER) || str_eq(name, DYNSPEC_PROVISIONER_LEGACY);
}

/*
 * Whether @claim's annotations hand it to carvefs on @node_name: the PV
 * controller names the class's provisioner (1.23+ also without "beta").
 */
static bool annotated_for(const json_t *claim, const char *node_name)
{
	const json_t *ann = jpath_get(claim, "metadata", "annotations");

	return str_eq(jpath_str(ann, DYNSPEC_ANN_SELECTED_NODE), node_name) &&
	       (dynspec_provisioner_ours(jpath_str(ann, DYNSPEC_ANN_PROVISIONER)) ||
		dynspec_provisioner_ours(jpath_str(ann, DYNSPEC_ANN_PROVISIONER_BETA)));
}

bool dynspec_claim_wanted(const json_t *claim, const char *node_name)
{
	const char *phase = jpath_str(claim, "status", "phase");
	const char *volume = jpath_str(claim, "spec", "volumeName");

	/* A claim just created may not have a status yet: it is pending. */
	if (phase && strcmp(phase, "Pending") != 0)
		return false;
	if (volume && volume[0] != '\0')
		return false;
	if (jpath_get(claim, "metadata", "deletionTimestamp"))
		return false;
	return annotated_for(claim, node_name);
}

bool dynspec_claim_grows(const json_t *claim, const char *node_name)
{
	const char *request = jpath_str(claim, "spec", "resources", "requests", "storage");
	const char *capacity = jpath_str(claim, "status", "capacity", "storage");
	uint64_t want, have;

	if (!str_eq(jpath_str(claim, "status", "phase"), "Bound") ||
	    !annotated_for(claim, node_name))
		return false;
	if (!request || !capacity || quantity_parse(request, &want) < 0 ||
	    quantity_parse(capacity, &have) < 0)
		return false;
	return want > have;
}

int dynspec_claim_size(const json_t *claim, uint64_t *ret_bytes, struct errmsg *ret_msg)
{
	const char *s = jpath_str(claim, "spec", "resources", "requests", "storage");
	uint64_t bytes;
	int r;

	if (!s)
		return errmsg_set(ret_msg, -EINVAL, "the claim requests no storage size");
	r = quantity_parse(s, &bytes);
	if (r < 0 || bytes == 0)
		return errmsg_set(ret_msg, -EINVAL, "the claim's storage request \"%s\" is %s", s,
			    r == -ERANGE ? "too large" : r < 0 ? "not a quantity" : "zero");
	if (bytes > VALUE_MAX - DYNSPEC_BLOCK_BYTES)
		return errmsg_set(ret_msg, -EINVAL, "the claim's storage request \"%s\" is too large", s);
	*ret_bytes = (bytes + DYNSPEC_BLOCK_BYTES - 1) / DYNSPEC_BLOCK_BYTES * DYNSPEC_BLOCK_BYTES;
	return 0;
}

int dynspec_claim_supported(const json_t *claim, struct errmsg *ret_msg)
{
	const json_t *spec = json_object_get(claim, "spec");
	const char *mode = json_string_value(json_object_get(spec, "volumeMode"));

	if (mode && strcmp(mode, "Filesystem") != 0)
		return errmsg_set(ret_msg, -EINVAL,
			    "volumeMode %s is not supported: carvefs volumes are filesystems", mode);
	if (json_object_get(spec, "selector") && !json_is_null(json_object_get(spec, "selector")))
		return errmsg_set(ret_msg, -EINVAL,
			    "a claim with a selector cannot be provisioned dynamically");
	if ((json_object_get(spec, "dataSource") &&
	     !json_is_null(json_object_get(spec, "dataSource"))) ||
	    (json_object_get(spec, "dataSourceRef") &&
	     !json_is_null(json_object_get(spec, "dataSourceRef"))))
		return errmsg_set(ret_msg, -EINVAL,
			    "a claim with a data source cannot be provisioned: carvefs has no "
			    "snapshots or clones");
	return 0;
}

int dynspec_volume_name(const json_t *claim, char **ret_name)
{
	const char *uid = jpath_str(claim, "metadata", "uid");

	if (!uid || uid[0] == '\0')
		return -EINVAL;
	if (asprintf(ret_name, "pvc-%s", uid) < 0) {
		*ret_name = NULL;
		return -ENOMEM;
	}
	return 0;
}

int dynspec_create_request(const char *name, uint64_t size_bytes,
			   const struct dynspec_params *p, const char *class_name,
			   const json_t *claim, double overcommit, json_t **ret_request)
{
	const char *ns = jpath_str(claim, "metadata", "namespace");
	const char *cname = jpath_str(claim, "metadata", "name");
	const char *uid = jpath_str(claim, "metadata", "uid");
	json_t *req;
	int r = 0;

	if (!ns || !cname || !uid || size_bytes > VALUE_MAX)
		return -EINVAL;
	req = json_pack("{s:s, s:s, s:I, s:{s:s, s:s, s:s}}", "verb", "create", "name", name,
			"size_bytes", (json_int_t)size_bytes, "labels",
			DYNSPEC_LABEL_CLAIM_NAMESPACE, ns, DYNSPEC_LABEL_CLAIM_NAME, cname,
			DYNSPEC_LABEL_CLAIM_UID, uid);
	if (!req)
		return -ENOMEM;
	if (class_name && json_object_set_new(req, "storage_class", json_string(class_name)) < 0)
		r = -ENOMEM;
	for (int i = 0; i < DYNSPEC_N_PARAMS && r == 0; i++)
		if (p && p->set[i] &&
		    json_object_set_new(req, params[i].field,
					json_integer((json_int_t)p->value[i])) < 0)
			r = -ENOMEM;
	if (r == 0 && overcommit > 0 &&
	    json_object_set_new(req, "overcommit", json_real(overcommit)) < 0)
		r = -ENOMEM;
	if (r < 0) {
		json_decref(req);
		return r;
	}
	*ret_request = req;
	return 0;
}

bool dynspec_volume_matches(const json_t *volume, const json_t *claim, uint64_t size_bytes)
{
	const char *label = jpath_str(volume, "labels", DYNSPEC_LABEL_CLAIM_UID);
	const json_t *cap = json_object_get(volume, "capacity_bytes");

	return str_eq(label, jpath_str(claim, "metadata", "uid")) && json_is_integer(cap) &&
	       (uint64_t)json_integer_value(cap) == size_bytes;
}

/* The claimRef of a PV pre-bound to @claim. */
static json_t *claim_ref(const json_t *claim)
{
	const char *ns = jpath_str(claim, "metadata", "namespace");
	const char *name = jpath_str(claim, "metadata", "name");
	const char *uid = jpath_str(claim, "metadata", "uid");
	const char *rv = jpath_str(claim, "metadata", "resourceVersion");
	json_t *ref;

	if (!ns || !name || !uid)
		return NULL;
	ref = json_pack("{s:s, s:s, s:s, s:s, s:s}", "apiVersion", "v1", "kind",
			"PersistentVolumeClaim", "namespace", ns, "name", name, "uid", uid);
	if (ref && rv && json_object_set_new(ref, "resourceVersion", json_string(rv)) < 0) {
		json_decref(ref);
		return NULL;
	}
	return ref;
}

int dynspec_pv_build(const struct dynspec_pv_request *req, json_t **ret_pv,
		     struct errmsg *ret_msg)
{
	const json_t *sc = req->storage_class;
	const char *policy = json_string_value(json_object_get(sc, "reclaimPolicy"));
	const char *class_name = jpath_str(sc, "metadata", "name");
	const char *provisioner = jpath_str(sc, "provisioner");
	const json_t *modes = jpath_get(req->claim, "spec", "accessModes");
	const json_t *mount_options = json_object_get(sc, "mountOptions");
	json_t *pv = NULL, *ref = NULL, *affinity = NULL;
	char size[32];
	int r;

	if (!policy)
		policy = "Delete";
	if (strcmp(policy, "Delete") != 0 && strcmp(policy, "Retain") != 0)
		return errmsg_set(ret_msg, -EINVAL,
			    "StorageClass reclaimPolicy %s is not supported (Delete or Retain)",
			    policy);
	if (!class_name)
		return errmsg_set(ret_msg, -EINVAL, "the StorageClass has no name");
	if (!dynspec_provisioner_ours(provisioner))
		return errmsg_set(ret_msg, -EINVAL, "the StorageClass is not carvefs's");
	ref = claim_ref(req->claim);
	if (!ref)
		return errmsg_set(ret_msg, -EINVAL, "the claim lacks a namespace, name or uid");
	if (quantity_format(req->capacity_bytes, size, sizeof(size)) < 0) {
		r = errmsg_set(ret_msg, -EINVAL, "the size %llu cannot be written as a quantity",
			       (unsigned long long)req->capacity_bytes);
		goto out;
	}
	affinity = json_pack("{s:{s:[{s:[{s:s, s:s, s:[s]}]}]}}", "required", "nodeSelectorTerms",
			     "matchExpressions", "key", PV_LABEL_HOSTNAME, "operator", "In", "values",
			     req->hostname);
	if (!affinity) {
		r = -ENOMEM;
		goto out;
	}
	pv = json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}},"
		       " s:{s:{s:s}, s:{s:s}, s:O, s:O, s:s, s:s, s:s}}",
		       "apiVersion", "v1", "kind", "PersistentVolume",
		       "metadata", "name", req->name, "annotations",
		       PV_ANN_PROVISIONED_BY, provisioner, DYNSPEC_ANN_VOLUME, req->name,
		       "spec", "capacity", "storage", size, "local", "path", req->path,
		       "nodeAffinity", affinity, "claimRef", ref, "storageClassName", class_name,
		       "persistentVolumeReclaimPolicy", policy, "volumeMode", "Filesystem");
	if (!pv) {
		r = -ENOMEM;
		goto out;
	}
	r = json_object_set_new(json_object_get(pv, "spec"), "accessModes",
				json_is_array(modes) && json_array_size(modes) > 0 ?
					json_deep_copy(modes) :
					json_pack("[s]", "ReadWriteOnce"));
	if (r == 0 && json_is_array(mount_options) && json_array_size(mount_options) > 0)
		r = json_object_set_new(json_object_get(pv, "spec"), "mountOptions",
					json_deep_copy(mount_options));
	if (r < 0) {
		r = -ENOMEM;
		goto out;
	}
	*ret_pv = pv;
	pv = NULL;
out:
	if (r == -ENOMEM)
		errmsg_set(ret_msg, r, "out of memory");
	json_decref(pv);
	json_decref(ref);
	json_decref(affinity);
	return r;
}

bool dynspec_pv_ours(const json_t *pv)
{
	return dynspec_provisioner_ours(pv_get_provisioned_by(pv));
}

bool dynspec_pv_for_claim(const json_t *pv, const char *claim_uid)
{
	return str_eq(jpath_str(pv, "spec", "claimRef", "uid"), claim_uid);
}

const char *dynspec_pv_volume(const json_t *pv)
{
	return jpath_str(pv, "metadata", "annotations", DYNSPEC_ANN_VOLUME);
}
