/*
 * pv.c - PersistentVolume objects and manifests; see include/pv.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "pv.h"
#include "quantity.h"
#include "yamlscalar.h"
#include "growbuf.h"
#include "jpath.h"

#define GIB (UINT64_C(1) << 30)
#define MIB (UINT64_C(1) << 20)
/* Manifests are small; these bound what a hostile file can cost to read. */
#define MANIFEST_DEPTH_MAX 64
#define MANIFEST_NODES_MAX 100000

uint32_t pv_fnv1a32(uint32_t hash, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		hash ^= p[i];
		hash *= UINT32_C(16777619);
	}
	return hash;
}

void pv_name(const char *entry, const char *node, const char *class_name,
	     char ret_name[PV_NAME_MAX])
{
	uint32_t h = PV_FNV32_OFFSET;

	h = pv_fnv1a32(h, entry, strlen(entry));
	h = pv_fnv1a32(h, node, strlen(node));
	h = pv_fnv1a32(h, class_name, strlen(class_name));
	snprintf(ret_name, PV_NAME_MAX, "local-pv-%" PRIx32, h);
}

uint64_t pv_capacity_round(uint64_t bytes)
{
	if (bytes / GIB >= 10)
		return bytes / GIB * GIB;
	if (bytes / MIB >= 10)
		return bytes / MIB * MIB;
	return bytes;
}

int pv_provisioner_name(const char *node_name, const json_t *node, bool node_name_only,
			char **ret_name)
{
	const char *uid = node ? jpath_str(node, "metadata", "uid") : NULL;
	char *s = NULL;
	int r;

	if (node_name_only || !uid || uid[0] == '\0')
		r = asprintf(&s, "local-volume-provisioner-%s", node_name);
	else
		r = asprintf(&s, "local-volume-provisioner-%s-%s", node_name, uid);
	if (r < 0)
		return -ENOMEM;
	*ret_name = s;
	return 0;
}

const char *pv_node_hostname(const char *node_name, const json_t *node)
{
	if (!node)
		return node_name;
	return jpath_str(node, "metadata", "labels", PV_LABEL_HOSTNAME);
}

/* ---- building ----------------------------------------------------------- */

/*
 * Sets @key to a new string. json_string() refuses invalid UTF-8, which a
 * directory entry may well be: that is -EILSEQ, not an allocation failure.
 */
static int set_str(json_t *o, const char *key, const char *value)
{
	json_t *s = json_string(value);

	if (!s)
		return -EILSEQ;
	return json_object_set_new(o, key, s) < 0 ? -ENOMEM : 0;
}

static int set_new(json_t *o, const char *key, json_t *v)
{
	if (!v)
		return -ENOMEM;
	return json_object_set_new(o, key, v) < 0 ? -ENOMEM : 0;
}

static int build_labels(const struct pv_request *req, json_t **ret)
{
	const struct prov_config *cfg = req->config;
	const json_t *node_labels = req->node ? jpath_get(req->node, "metadata", "labels") : NULL;
	json_t *labels = json_object();
	int r = 0;

	if (!labels)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_node_labels_for_pv && r == 0; i++) {
		const char *name = cfg->node_labels_for_pv[i];
		const char *value;

		/* Without a cluster the one node label known is the hostname. */
		if (req->node)
			value = jpath_str(node_labels, name);
		else
			value = strcmp(name, PV_LABEL_HOSTNAME) == 0 ? req->node_name : NULL;
		if (value)
			r = set_str(labels, name, value);
	}
	for (size_t i = 0; i < cfg->n_labels_for_pv && r == 0; i++)
		r = set_str(labels, cfg->labels_for_pv[i].key, cfg->labels_for_pv[i].value);
	if (r < 0) {
		json_decref(labels);
		return r;
	}
	*ret = labels;
	return 0;
}

static int build_metadata(const struct pv_request *req, const char *name, json_t **ret)
{
	json_t *meta = json_object(), *labels = NULL, *ann = NULL, *owner = NULL;
	const char *uid;
	char *prov = NULL;
	int r;

	if (!meta)
		return -ENOMEM;
	r = set_str(meta, "name", name);
	if (r < 0)
		goto out;
	r = build_labels(req, &labels);
	if (r < 0)
		goto out;
	if (json_object_size(labels) > 0) {
		r = set_new(meta, "labels", labels);
		labels = NULL;
		if (r < 0)
			goto out;
	}
	r = pv_provisioner_name(req->node_name, req->node, req->config->use_node_name_only, &prov);
	if (r < 0)
		goto out;
	ann = json_object();
	r = set_new(meta, "annotations", ann);
	if (r < 0)
		goto out;
	r = set_str(ann, PV_ANN_PROVISIONED_BY, prov);
	if (r < 0)
		goto out;
	/* An owner needs the Node's uid, which only a cluster can give. */
	uid = req->node ? jpath_str(req->node, "metadata", "uid") : NULL;
	if (req->config->set_pv_owner_ref && uid) {
		json_t *refs = json_array();

		owner = json_object();
		r = set_new(meta, "ownerReferences", refs);
		if (r < 0)
			goto out;
		if (!owner || json_array_append(refs, owner) < 0) {
			r = -ENOMEM;
			goto out;
		}
		r = set_str(owner, "apiVersion", "v1");
		if (r == 0)
			r = set_str(owner, "kind", "Node");
		if (r == 0)
			r = set_str(owner, "name", req->node_name);
		if (r == 0)
			r = set_str(owner, "uid", uid);
		if (r < 0)
			goto out;
	}
	*ret = meta;
	meta = NULL;
out:
	json_decref(owner);
	json_decref(labels);
	json_decref(meta);
	free(prov);
	return r;
}

static int build_node_affinity(const struct pv_request *req, const char *hostname, json_t **ret)
{
	json_t *aff = NULL;
	size_t i;
	json_t *term;

	aff = json_pack("{s:{s:[{s:[{s:s, s:s, s:[s]}]}]}}", "required", "nodeSelectorTerms",
			"matchExpressions", "key", PV_LABEL_HOSTNAME, "operator", "In", "values",
			hostname);
	if (!aff)
		return -ENOMEM;
	json_array_foreach(req->cls->selector, i, term)
	{
		json_t *terms = jpath_get(aff, "required", "nodeSelectorTerms");

		if (json_array_append_new(terms, json_deep_copy(term)) < 0) {
			json_decref(aff);
			return -ENOMEM;
		}
	}
	*ret = aff;
	return 0;
}

int pv_build(const struct pv_request *req, json_t **ret_pv, const char **ret_why)
{
	const struct prov_class *cls = req->cls;
	const char *hostname, *reclaim = "Delete", *why = NULL;
	char name[PV_NAME_MAX], quantity[32], *path = NULL;
	json_t *pv = NULL, *spec, *local, *v = NULL, *opts;
	size_t i;
	int r;

	hostname = pv_node_hostname(req->node_name, req->node);
	if (!hostname) {
		why = "the node has no " PV_LABEL_HOSTNAME " label";
		r = -ENODATA;
		goto out;
	}
	if (req->storage_class && jpath_str(req->storage_class, "reclaimPolicy"))
		reclaim = jpath_str(req->storage_class, "reclaimPolicy");
	if (strcmp(reclaim, "Delete") != 0 && strcmp(reclaim, "Retain") != 0) {
		why = "the StorageClass's reclaimPolicy is neither Delete nor Retain";
		r = -EINVAL;
		goto out;
	}
	pv_name(req->entry, req->node_name, cls->name, name);
	if (asprintf(&path, "%s/%s", strcmp(cls->host_dir, "/") == 0 ? "" : cls->host_dir,
		     req->entry) < 0) {
		path = NULL;
		r = -ENOMEM;
		goto out;
	}
	r = quantity_format(pv_capacity_round(req->capacity_bytes), quantity, sizeof(quantity));
	if (r < 0)
		goto out;

	pv = json_object();
	if (!pv) {
		r = -ENOMEM;
		goto out;
	}
	r = set_str(pv, "apiVersion", "v1");
	if (r == 0)
		r = set_str(pv, "kind", "PersistentVolume");
	if (r < 0)
		goto out;
	r = build_metadata(req, name, &v);
	if (r == 0)
		r = set_new(pv, "metadata", v);
	if (r < 0)
		goto out;

	spec = json_object();
	r = set_new(pv, "spec", spec);
	if (r == 0)
		r = set_new(spec, "capacity", json_pack("{s:s}", "storage", quantity));
	if (r < 0)
		goto out;
	local = json_object();
	r = set_new(spec, "local", local);
	if (r == 0)
		r = set_str(local, "path", path);
	/* fsType only means something to the kubelet for a device it formats. */
	if (r == 0 && req->is_block && cls->fs_type)
		r = set_str(local, "fsType", cls->fs_type);
	if (r == 0)
		r = set_new(spec, "accessModes", json_pack("[s]", cls->access_mode));
	if (r == 0)
		r = set_str(spec, "persistentVolumeReclaimPolicy", reclaim);
	if (r == 0)
		r = set_str(spec, "storageClassName", cls->name);
	if (r < 0)
		goto out;
	opts = json_array();
	if (!opts) {
		r = -ENOMEM;
		goto out;
	}
	json_array_foreach(json_object_get(req->storage_class, "mountOptions"), i, v)
	{
		if (json_is_string(v) && json_array_append(opts, v) < 0) {
			json_decref(opts);
			r = -ENOMEM;
			goto out;
		}
	}
	if (json_array_size(opts) > 0) {
		r = set_new(spec, "mountOptions", opts);
		if (r < 0)
			goto out;
	} else {
		json_decref(opts);
	}
	r = set_str(spec, "volumeMode", provconfig_volume_mode_name(cls->volume_mode));
	if (r < 0)
		goto out;
	r = build_node_affinity(req, hostname, &v);
	if (r == 0)
		r = set_new(spec, "nodeAffinity", v);
	if (r < 0)
		goto out;

	*ret_pv = pv;
	pv = NULL;
	r = 0;
out:
	if (r == -EILSEQ)
		why = "a name or path is not valid UTF-8";
	if (ret_why)
		*ret_why = why;
	json_decref(pv);
	free(path);
	return r;
}

/* ---- reading PVs -------------------------------------------------------- */

const char *pv_get_name(const json_t *pv)
{
	return jpath_str(pv, "metadata", "name");
}

const char *pv_get_path(const json_t *pv)
{
	return jpath_str(pv, "spec", "local", "path");
}

const char *pv_get_provisioned_by(const json_t *pv)
{
	return jpath_str(pv, "metadata", "annotations", PV_ANN_PROVISIONED_BY);
}

bool pv_on_node(const json_t *pv, const char *hostname)
{
	const json_t *terms =
		jpath_get(pv, "spec", "nodeAffinity", "required", "nodeSelectorTerms");
	const json_t *term, *expr, *val;
	size_t i, j, k;

	json_array_foreach(terms, i, term)
	{
		json_array_foreach(json_object_get(term, "matchExpressions"), j, expr)
		{
			const char *key = jpath_str(expr, "key"), *op = jpath_str(expr, "operator");

			if (!key || !op || strcmp(key, PV_LABEL_HOSTNAME) != 0 ||
			    strcmp(op, "In") != 0)
				continue;
			json_array_foreach(json_object_get(expr, "values"), k, val)
			{
				const char *s = json_string_value(val);

				if (s && strcmp(s, hostname) == 0)
					return true;
			}
		}
	}
	return false;
}

json_t *pv_find(const json_t *pvs, const char *hostname, const char *path)
{
	size_t i;
	json_t *pv;

	json_array_foreach(pvs, i, pv)
	{
		const char *p = pv_get_path(pv);

		if (p && strcmp(p, path) == 0 && pv_on_node(pv, hostname))
			return pv;
	}
	return NULL;
}

/* ---- manifests: writing ------------------------------------------------- */

/* libyaml's output handler: 1 for success, 0 for failure. */
static int yaml_to_growbuf(void *data, unsigned char *buffer, size_t size)
{
	return growbuf_append(data, buffer, size) == 0;
}

/*
 * True if a plain @s could be read back as something other than a string,
 * by YAML 1.2 or by a YAML 1.1 reader (yes/no/on/off, 1_000, 0b1, 1:20):
 * anything that starts like a number, and the null and boolean words.
 */
static bool plain_is_ambiguous(const char *s)
{
	static const char *const words[] = { "y", "Y", "yes", "Yes", "YES", "n", "N",
					     "no", "No", "NO", "true", "True", "TRUE",
					     "false", "False", "FALSE", "on", "On", "ON",
					     "off", "Off", "OFF", "null", "Null", "NULL",
					     "~", NULL };
	const char *p = s;

	if (*s == '\0')
		return true;
	for (const char *const *w = words; *w; w++)
		if (strcmp(s, *w) == 0)
			return true;
	if (*p == '-' || *p == '+')
		p++;
	if (*p == '.')
		p++;
	return (*p >= '0' && *p <= '9') || strncasecmp(p, "inf", 3) == 0 ||
	       strncasecmp(p, "nan", 3) == 0;
}

static int emit(yaml_emitter_t *e, yaml_event_t *ev)
{
	return yaml_emitter_emit(e, ev) ? 0 : -ENOMEM;
}

static int emit_scalar(yaml_emitter_t *e, const char *s, size_t len, bool quote)
{
	yaml_event_t ev;

	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1,
					  quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE :
						  YAML_ANY_SCALAR_STYLE))
		return -ENOMEM;
	return emit(e, &ev);
}

static int emit_value(yaml_emitter_t *e, const json_t *v, int depth)
{
	yaml_event_t ev;
	const char *key;
	json_t *item;
	char num[64];
	size_t i;
	int r;

	if (depth > MANIFEST_DEPTH_MAX)
		return -E2BIG;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
							 json_object_size(v) ? YAML_BLOCK_MAPPING_STYLE :
									       YAML_FLOW_MAPPING_STYLE))
			return -ENOMEM;
		r = emit(e, &ev);
		json_object_foreach((json_t *)v, key, item)
		{
			if (r == 0)
				r = emit_scalar(e, key, strlen(key), plain_is_ambiguous(key));
			if (r == 0)
				r = emit_value(e, item, depth + 1);
		}
		if (r == 0 && !yaml_mapping_end_event_initialize(&ev))
			r = -ENOMEM;
		return r < 0 ? r : emit(e, &ev);
	case JSON_ARRAY:
		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
							  json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE :
									       YAML_FLOW_SEQUENCE_STYLE))
			return -ENOMEM;
		r = emit(e, &ev);
		json_array_foreach(v, i, item)
		{
			if (r == 0)
				r = emit_value(e, item, depth + 1);
		}
		if (r == 0 && !yaml_sequence_end_event_initialize(&ev))
			r = -ENOMEM;
		return r < 0 ? r : emit(e, &ev);
	case JSON_STRING:
		return emit_scalar(e, json_string_value(v), json_string_length(v),
				   plain_is_ambiguous(json_string_value(v)));
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return emit_scalar(e, num, strlen(num), false);
	case JSON_REAL:
		snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		if (!strpbrk(num, ".eEn")) /* keep it a float when read back */
			strcat(num, ".0");
		return emit_scalar(e, num, strlen(num), false);
	case JSON_TRUE:
		return emit_scalar(e, "true", 4, false);
	case JSON_FALSE:
		return emit_scalar(e, "false", 5, false);
	case JSON_NULL:
		return emit_scalar(e, "null", 4, false);
	}
	return -EINVAL;
}

int pv_manifest_format(const json_t *pv, char **ret_text, size_t *ret_len)
{
	struct growbuf b = { 0 };
	yaml_emitter_t e;
	yaml_event_t ev;
	int r;

	if (!json_is_object(pv))
		return -EINVAL;
	if (!yaml_emitter_initialize(&e))
		return -ENOMEM;
	yaml_emitter_set_output(&e, yaml_to_growbuf, &b);
	yaml_emitter_set_unicode(&e, 1);
	yaml_emitter_set_width(&e, -1); /* never fold a long path across lines */
	yaml_emitter_set_indent(&e, 2);

	r = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) ? emit(&e, &ev) : -ENOMEM;
	if (r == 0)
		r = yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) ?
			    emit(&e, &ev) :
			    -ENOMEM;
	if (r == 0)
		r = emit_value(&e, pv, 0);
	if (r == 0)
		r = yaml_document_end_event_initialize(&ev, 1) ? emit(&e, &ev) : -ENOMEM;
	if (r == 0)
		r = yaml_stream_end_event_initialize(&ev) ? emit(&e, &ev) : -ENOMEM;
	if (r == 0 && !yaml_emitter_flush(&e))
		r = -ENOMEM;
	yaml_emitter_delete(&e);
	/* libyaml leaves the last line open after an implicit document end. */
	if (r == 0 && b.len > 0 && b.data[b.len - 1] != '\n')
		r = growbuf_append(&b, "\n", 1);
	if (r < 0 || !b.data) {
		free(b.data);
		return r < 0 ? r : -ENOMEM;
	}
	*ret_text = b.data;
	*ret_len = b.len;
	return 0;
}

/* ---- manifests: reading ------------------------------------------------- */

struct reader {
	yaml_document_t doc;
	long budget;
};

/*
 * The JSON value of the scalar @s as the core schema types it. An integer
 * past 64 bits becomes the nearest double, as any JSON reader would take
 * it. JSON has no infinity or NaN: such a float keeps its text, which is
 * also what the PV writer quotes.
 */
static json_t *scalar_json(const char *s, size_t len, bool plain)
{
	int64_t i;
	double d;
	bool b;

	switch (yamlscalar_type(s, len, plain)) {
	case YAMLSCALAR_NULL:
		return json_null();
	case YAMLSCALAR_BOOL:
		return yamlscalar_bool(s, &b) == 0 ? json_boolean(b) : NULL;
	case YAMLSCALAR_INT:
		if (yamlscalar_int(s, &i) == 0)
			return json_integer(i);
		/* fall through */
	case YAMLSCALAR_FLOAT:
		if (yamlscalar_float(s, &d) == 0 && isfinite(d))
			return json_real(d);
		break;
	case YAMLSCALAR_STR:
		break;
	}
	return json_stringn(s, len);
}

static int to_json(struct reader *rd, const yaml_node_t *n, int depth, json_t **ret)
{
	json_t *v = NULL;
	int r;

	if (depth > MANIFEST_DEPTH_MAX)
		return -E2BIG;
	if (--rd->budget < 0)
		return -E2BIG;
	switch (n->type) {
	case YAML_SCALAR_NODE: {
		const char *s = (const char *)n->data.scalar.value;

		v = scalar_json(s, n->data.scalar.length,
				n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
		if (!v)
			return -EBADMSG; /* not UTF-8 */
		break;
	}
	case YAML_SEQUENCE_NODE:
		v = json_array();
		if (!v)
			return -ENOMEM;
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++) {
			json_t *item = NULL;

			r = to_json(rd, yaml_document_get_node(&rd->doc, *it), depth + 1, &item);
			if (r == 0 && json_array_append_new(v, item) < 0)
				r = -ENOMEM;
			if (r < 0)
				goto fail;
		}
		break;
	case YAML_MAPPING_NODE:
		v = json_object();
		if (!v)
			return -ENOMEM;
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
		     p < n->data.mapping.pairs.top; p++) {
			const yaml_node_t *k = yaml_document_get_node(&rd->doc, p->key);
			json_t *item = NULL;

			if (!k || k->type != YAML_SCALAR_NODE ||
			    strlen((const char *)k->data.scalar.value) != k->data.scalar.length) {
				r = -EBADMSG;
				goto fail;
			}
			r = to_json(rd, yaml_document_get_node(&rd->doc, p->value), depth + 1, &item);
			if (r == 0 && json_object_set_new(v, (const char *)k->data.scalar.value,
							  item) < 0)
				r = -EBADMSG;
			if (r < 0)
				goto fail;
		}
		break;
	default:
		return -EBADMSG;
	}
	*ret = v;
	return 0;
fail:
	json_decref(v);
	return r;
}

int pv_manifest_parse(const char *text, size_t len, json_t **ret_pv)
{
	struct reader rd = { .budget = MANIFEST_NODES_MAX };
	yaml_parser_t yp;
	yaml_node_t *root;
	json_t *v = NULL;
	int r;

	if (!yaml_parser_initialize(&yp))
		return -ENOMEM;
	yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
	if (!yaml_parser_load(&yp, &rd.doc)) {
		r = yp.error == YAML_MEMORY_ERROR ? -ENOMEM : -EBADMSG;
		yaml_parser_delete(&yp);
		return r;
	}
	root = yaml_document_get_root_node(&rd.doc);
	if (!root || root->type != YAML_MAPPING_NODE)
		r = -EBADMSG;
	else
		r = to_json(&rd, root, 0, &v);
	yaml_document_delete(&rd.doc);
	yaml_parser_delete(&yp);
	if (r < 0)
		return r;
	*ret_pv = v;
	return 0;
}
