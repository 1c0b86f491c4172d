/*
 * config.c - the provisioner's configuration directory; see
 * include/provconfig.h.
 *
 * Each key file is loaded with libyaml's document API, which keeps the line
 * of every node, and then walked against the schema, so every error can say
 * where it is. Scalars are typed as YAML 1.2's core schema types them: a
 * plain `true` is a boolean and a plain `10` a number, as they are to the
 * upstream provisioner, so a value it would reject is rejected here too
 * (with a hint to quote it). The walk charges every node it visits to a
 * budget, so a small file of nested aliases cannot make it run for ever.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "duration.h"
#include "fileio.h"
#include "k8sname.h"
#include "config.h"
#include "yamlscalar.h"

/* Nodes one parse may visit: a real configuration uses a few hundred. */
#define NODE_BUDGET 200000
/* Bounds that keep the quadratic duplicate checks cheap. */
#define MAP_ENTRIES_MAX 1024
#define LIST_ENTRIES_MAX 1024
#define PATTERNS_MAX 64
/* Room for a key path such as "fast.selector[0].matchExpressions[1].values". */
#define KEY_MAX 512

struct provconfig_file {
	char *name;
	char *text;
	size_t len;
};

/* Files sorted by name, so two snapshots compare pairwise. */
struct provconfig_snapshot {
	struct provconfig_file *files;
	size_t n_files;
};

/* ---- snapshots ---------------------------------------------------------- */

int provconfig_snapshot_new(struct provconfig_snapshot **ret_snap)
{
	struct provconfig_snapshot *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	*ret_snap = s;
	return 0;
}

struct provconfig_snapshot *provconfig_snapshot_free(struct provconfig_snapshot *snap)
{
	if (!snap)
		return NULL;
	for (size_t i = 0; i < snap->n_files; i++) {
		free(snap->files[i].name);
		free(snap->files[i].text);
	}
	free(snap->files);
	free(snap);
	return NULL;
}

int provconfig_snapshot_add(struct provconfig_snapshot *snap, const char *name,
			    const char *text, size_t len)
{
	struct provconfig_file *files, f = { 0 };
	size_t at = 0;
	int r;

	if (len > PROVCONFIG_FILE_MAX)
		return -EFBIG;
	if (snap->n_files >= PROVCONFIG_FILES_MAX)
		return -EMFILE;
	while (at < snap->n_files) {
		r = strcmp(snap->files[at].name, name);
		if (r == 0)
			return -EEXIST;
		if (r > 0)
			break;
		at++;
	}
	f.name = strdup(name);
	f.text = malloc(len + 1);
	if (!f.name || !f.text)
		goto nomem;
	memcpy(f.text, text, len);
	f.text[len] = '\0';
	f.len = len;
	files = realloc(snap->files, (snap->n_files + 1) * sizeof(*files));
	if (!files)
		goto nomem;
	memmove(files + at + 1, files + at, (snap->n_files - at) * sizeof(*files));
	files[at] = f;
	snap->files = files;
	snap->n_files++;
	return 0;
nomem:
	free(f.name);
	free(f.text);
	return -ENOMEM;
}


int provconfig_snapshot_read(int dir_fd, struct provconfig_snapshot **ret_snap)
{
	struct provconfig_snapshot *snap = NULL;
	char **names = NULL, *text = NULL;
	size_t n = 0, len = 0;
	int r;

	r = fileio_list_names(dir_fd, 0, &names, &n);
	if (r < 0)
		return r;
	r = provconfig_snapshot_new(&snap);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		/* "..data" and "..2024_01_01_..." belong to the ConfigMap volume. */
		if (strncmp(names[i], "..", 2) == 0)
			continue;
		r = fileio_read(dir_fd, names[i], true, PROVCONFIG_FILE_MAX, &text, &len);
		if (r == -ENOTSUP || r == -EISDIR || r == -ENOENT)
			continue; /* a directory, a socket, or gone since it was listed */
		if (r < 0)
			goto out;
		r = provconfig_snapshot_add(snap, names[i], text, len);
		free(text);
		text = NULL;
		if (r < 0)
			goto out;
	}
	*ret_snap = snap;
	snap = NULL;
	r = 0;
out:
	provconfig_snapshot_free(snap);
	fileio_names_free(names, n);
	return r;
}

bool provconfig_snapshot_equal(const struct provconfig_snapshot *a,
			       const struct provconfig_snapshot *b)
{
	if (!a || !b)
		return a == b;
	if (a->n_files != b->n_files)
		return false;
	for (size_t i = 0; i < a->n_files; i++) {
		const struct provconfig_file *fa = &a->files[i], *fb = &b->files[i];

		if (strcmp(fa->name, fb->name) != 0 || fa->len != fb->len ||
		    memcmp(fa->text, fb->text, fa->len) != 0)
			return false;
	}
	return true;
}

/* ---- the configuration -------------------------------------------------- */

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static void class_release(struct prov_class *c)
{
	free(c->name);
	free(c->host_dir);
	free(c->mount_dir);
	strv_free(c->block_cleaner_command);
	free(c->access_mode);
	free(c->fs_type);
	strv_free(c->name_patterns);
	json_decref(c->selector);
}

struct prov_config *provconfig_free(struct prov_config *c)
{
	if (!c)
		return NULL;
	for (size_t i = 0; i < c->n_classes; i++)
		class_release(&c->classes[i]);
	free(c->classes);
	for (size_t i = 0; i < c->n_node_labels_for_pv; i++)
		free(c->node_labels_for_pv[i]);
	free(c->node_labels_for_pv);
	for (size_t i = 0; i < c->n_labels_for_pv; i++) {
		free(c->labels_for_pv[i].key);
		free(c->labels_for_pv[i].value);
	}
	free(c->labels_for_pv);
	for (size_t i = 0; i < c->n_warnings; i++)
		free(c->warnings[i]);
	free(c->warnings);
	free(c);
	return NULL;
}

const struct prov_class *provconfig_class(const struct prov_config *c, const char *name)
{
	for (size_t i = 0; i < c->n_classes; i++)
		if (strcmp(c->classes[i].name, name) == 0)
			return &c->classes[i];
	return NULL;
}

double provconfig_overcommit(const struct prov_config *c)
{
	return c ? c->overcommit : PROVCONFIG_DEFAULT_OVERCOMMIT;
}

const char *provconfig_volume_mode_name(enum prov_volume_mode mode)
{
	return mode == PROV_MODE_BLOCK ? "Block" : "Filesystem";
}

/* ---- the YAML walk ------------------------------------------------------ */

struct parser {
	const char *file; /* the key being parsed, which is also its file name */
	yaml_document_t doc;
	struct prov_config *cfg;
	struct errmsg *err;
	long budget;
};

/* Formats a key path for messages; a path too long for @len is cut short. */
__attribute__((format(printf, 3, 4)))
static void keyf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

static size_t node_line(const yaml_node_t *n)
{
	return n ? n->start_mark.line + 1 : 1;
}

/* Writes "file:line: key: message" and returns -EINVAL. */
__attribute__((format(printf, 4, 5)))
static int perr(struct parser *p, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
	char msg[PROVCONFIG_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return errmsg_set(p->err, -EINVAL, "%s:%zu: %s: %s", p->file, node_line(n), key, msg);
}

/* Records a warning "file:line: key: message". Returns 0 or -ENOMEM. */
__attribute__((format(printf, 4, 5)))
static int pwarn(struct parser *p, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
	struct prov_config *c = p->cfg;
	char msg[PROVCONFIG_ERR_MAX], *line = NULL, **v;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (asprintf(&line, "%s:%zu: %s: %s", p->file, node_line(n), key, msg) < 0)
		return -ENOMEM;
	v = realloc(c->warnings, (c->n_warnings + 1) * sizeof(*v));
	if (!v) {
		free(line);
		return -ENOMEM;
	}
	v[c->n_warnings++] = line;
	c->warnings = v;
	return 0;
}

/* The node @id, or NULL once the walk has used up its budget. */
static yaml_node_t *node_at(struct parser *p, int id)
{
	if (--p->budget < 0)
		return NULL;
	return yaml_document_get_node(&p->doc, id);
}

static int budget_error(struct parser *p, const yaml_node_t *n, const char *key)
{
	return perr(p, n, key, "too many nodes to walk (nested aliases?)");
}

static const char *scalar_text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool match_any(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (strcmp(s, *words) == 0)
			return true;
	return false;
}

/* The core schema type of the scalar node @n. */
static enum yamlscalar_type scalar_type(const yaml_node_t *n)
{
	return yamlscalar_type(scalar_text(n), n->data.scalar.length,
			       n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
}

/* What a node is, for "must be X, not Y" messages. */
static const char *node_what(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_SCALAR_NODE:
		switch (scalar_type(n)) {
		case YAMLSCALAR_NULL:
			return "empty";
		case YAMLSCALAR_BOOL:
			return "a boolean";
		case YAMLSCALAR_INT:
		case YAMLSCALAR_FLOAT:
			return "a number";
		case YAMLSCALAR_STR:
			return "a string";
		}
		break;
	default:
		break;
	}
	return "empty";
}

static bool node_is_null(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && scalar_type(n) == YAMLSCALAR_NULL;
}

/*
 * The number of pairs of @root, one key's whole value, into *ret_count: 0
 * for an empty value, an error for anything else but a mapping, or for one
 * of more than MAP_ENTRIES_MAX. @what and @entries say in messages what
 * the mapping should be and what it holds.
 */
static int want_mapping(struct parser *p, const yaml_node_t *root, const char *what,
			const char *entries, size_t *ret_count)
{
	size_t count;

	*ret_count = 0;
	if (node_is_null(root))
		return 0;
	if (root->type != YAML_MAPPING_NODE)
		return perr(p, root, p->file, "must be a mapping%s, not %s", what, node_what(root));
	count = (size_t)(root->data.mapping.pairs.top - root->data.mapping.pairs.start);
	if (count > MAP_ENTRIES_MAX)
		return perr(p, root, p->file, "has more than %d %s", MAP_ENTRIES_MAX, entries);
	*ret_count = count;
	return 0;
}

/*
 * The name and value nodes of the pair @pr of the mapping @map at @key,
 * whose keys are field names: those must be scalars.
 */
static int field_at(struct parser *p, const yaml_node_t *map, const yaml_node_pair_t *pr,
		    const char *key, yaml_node_t **ret_name, yaml_node_t **ret_value)
{
	yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);

	if (!k || !v)
		return budget_error(p, map, key);
	if (k->type != YAML_SCALAR_NODE)
		return perr(p, k, key, "field names must be strings");
	*ret_name = k;
	*ret_value = v;
	return 0;
}

/*
 * A string value into *ret (a copy, owned by the caller); NULL for an empty
 * (null) value, which the caller treats as "not set".
 */
static int want_string(struct parser *p, const yaml_node_t *n, const char *key, char **ret)
{
	enum yamlscalar_type k;
	char *s;

	if (n->type != YAML_SCALAR_NODE)
		return perr(p, n, key, "must be a string, not %s", node_what(n));
	k = scalar_type(n);
	if (k == YAMLSCALAR_NULL) {
		*ret = NULL;
		return 0;
	}
	if (k != YAMLSCALAR_STR)
		return perr(p, n, key, "must be a string, not %s; quote it: \"%s\"", node_what(n),
			    scalar_text(n));
	if (strlen(scalar_text(n)) != n->data.scalar.length)
		return perr(p, n, key, "must not contain a NUL character");
	s = strdup(scalar_text(n));
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

/* A boolean; a null value leaves *ret alone. */
static int want_bool(struct parser *p, const yaml_node_t *n, const char *key, bool *ret)
{
	bool b = false;
	enum yamlscalar_type k;

	if (n->type != YAML_SCALAR_NODE)
		return perr(p, n, key, "must be true or false, not %s", node_what(n));
	k = scalar_type(n);
	if (k == YAMLSCALAR_NULL)
		return 0;
	if (k != YAMLSCALAR_BOOL || yamlscalar_bool(scalar_text(n), &b) < 0)
		return perr(p, n, key, "must be true or false, not \"%s\"", scalar_text(n));
	*ret = b;
	return 0;
}

/*
 * A list of strings into a NULL-terminated *ret_v (and its length); a null
 * value gives an empty list. Items are named key[i] in messages.
 */
static int want_string_list(struct parser *p, const yaml_node_t *n, const char *key,
			    char ***ret_v, size_t *ret_n)
{
	size_t count, i = 0;
	char **v = NULL;
	int r;

	if (node_is_null(n)) {
		count = 0;
	} else if (n->type != YAML_SEQUENCE_NODE) {
		return perr(p, n, key, "must be a list of strings, not %s", node_what(n));
	} else {
		count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
		if (count > LIST_ENTRIES_MAX)
			return perr(p, n, key, "has more than %d items", LIST_ENTRIES_MAX);
	}
	v = calloc(count + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (i = 0; i < count; i++) {
		yaml_node_t *item = node_at(p, n->data.sequence.items.start[i]);
		char ikey[KEY_MAX];

		keyf(ikey, sizeof(ikey), "%s[%zu]", key, i);
		if (!item) {
			r = budget_error(p, n, key);
			goto fail;
		}
		r = want_string(p, item, ikey, &v[i]);
		if (r < 0)
			goto fail;
		if (!v[i]) {
			r = perr(p, item, ikey, "must be a string, not empty");
			goto fail;
		}
	}
	*ret_v = v;
	*ret_n = count;
	return 0;
fail:
	strv_free(v);
	return r;
}

/* ---- value rules -------------------------------------------------------- */

/*
 * Cleans an absolute path lexically, as Go's filepath.Clean does, so that
 * hostDir + "/" + entry is exactly the path the upstream provisioner puts in
 * a PV. Returns a new string, or NULL on allocation failure.
 */
static char *path_clean(const char *in)
{
	size_t len = strlen(in), o = 0;
	char *out = malloc(len + 2);
	const char *p = in;

	if (!out)
		return NULL;
	out[o++] = '/';
	while (*p) {
		const char *seg;
		size_t n;

		while (*p == '/')
			p++;
		seg = p;
		while (*p && *p != '/')
			p++;
		n = (size_t)(p - seg);
		if (n == 0 || (n == 1 && seg[0] == '.'))
			continue;
		if (n == 2 && seg[0] == '.' && seg[1] == '.') {
			/* back to the previous '/', never above the root */
			while (o > 1 && out[o - 1] != '/')
				o--;
			if (o > 1)
				o--;
			continue;
		}
		if (o > 1)
			out[o++] = '/';
		memcpy(out + o, seg, n);
		o += n;
	}
	out[o] = '\0';
	return out;
}

/* ---- storageClassMap ---------------------------------------------------- */

static const char *const access_modes[] = { "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany",
					    "ReadWriteOncePod", NULL };
static const char *const operators[] = { "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt",
					 NULL };

/* One NodeSelectorRequirement into a new JSON object. */
static int parse_requirement(struct parser *p, const yaml_node_t *n, const char *key,
			     json_t **ret)
{
	char *lkey = NULL, *op = NULL, **values = NULL, fkey[KEY_MAX];
	const yaml_node_t *values_node = n;
	size_t n_values = 0;
	bool has_values = false;
	json_t *o = NULL, *arr = NULL;
	struct errmsg why;
	int r;

	if (n->type != YAML_MAPPING_NODE)
		return perr(p, n, key, "must be a mapping with key, operator and values, not %s",
			    node_what(n));
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k, *v;
		const char *f;

		r = field_at(p, n, pr, key, &k, &v);
		if (r < 0)
			goto out;
		f = scalar_text(k);
		keyf(fkey, sizeof(fkey), "%s.%s", key, f);
		if (strcmp(f, "key") == 0 && !lkey) {
			r = want_string(p, v, fkey, &lkey);
		} else if (strcmp(f, "operator") == 0 && !op) {
			r = want_string(p, v, fkey, &op);
			if (r == 0 && op && !match_any(op, operators))
				r = perr(p, v, fkey,
					 "must be In, NotIn, Exists, DoesNotExist, Gt or Lt, not \"%s\"",
					 op);
		} else if (strcmp(f, "values") == 0 && !has_values) {
			r = want_string_list(p, v, fkey, &values, &n_values);
			has_values = true;
			values_node = v;
		} else if (strcmp(f, "key") == 0 || strcmp(f, "operator") == 0 ||
			   strcmp(f, "values") == 0) {
			r = perr(p, k, fkey, "given twice");
		} else {
			r = pwarn(p, k, fkey, "unknown field, ignored");
		}
		if (r < 0)
			goto out;
	}
	if (!lkey) {
		r = perr(p, n, key, "key is required");
		goto out;
	}
	if (k8sname_label_key(lkey, &why) < 0) {
		r = perr(p, n, key, "\"%s\" is not a valid label key: %s", lkey, why.text);
		goto out;
	}
	if (!op) {
		r = perr(p, n, key, "operator is required");
		goto out;
	}
	if ((strcmp(op, "In") == 0 || strcmp(op, "NotIn") == 0) && n_values == 0) {
		r = perr(p, values_node, key, "operator %s needs at least one value", op);
		goto out;
	}
	if ((strcmp(op, "Exists") == 0 || strcmp(op, "DoesNotExist") == 0) && n_values != 0) {
		r = perr(p, values_node, key, "operator %s takes no values", op);
		goto out;
	}
	if (strcmp(op, "Gt") == 0 || strcmp(op, "Lt") == 0) {
		char *end = NULL;

		if (n_values != 1) {
			r = perr(p, values_node, key, "operator %s needs exactly one value", op);
			goto out;
		}
		errno = 0;
		(void)strtoll(values[0], &end, 10);
		if (errno != 0 || end == values[0] || *end != '\0') {
			r = perr(p, values_node, key, "operator %s needs an integer value, not \"%s\"",
				 op, values[0]);
			goto out;
		}
	}
	o = json_object();
	arr = json_array();
	if (!o || !arr || json_object_set_new(o, "key", json_string(lkey)) < 0 ||
	    json_object_set_new(o, "operator", json_string(op)) < 0) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n_values; i++) {
		if (json_array_append_new(arr, json_string(values[i])) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	if (n_values > 0) {
		r = json_object_set(o, "values", arr);
		if (r < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	*ret = o;
	o = NULL;
	r = 0;
out:
	json_decref(o);
	json_decref(arr);
	free(lkey);
	free(op);
	strv_free(values);
	return r;
}

/* A list of NodeSelectorRequirements (matchExpressions or matchFields). */
static int parse_requirements(struct parser *p, const yaml_node_t *n, const char *key,
			      json_t **ret)
{
	json_t *arr = NULL;
	int r;

	if (n->type != YAML_SEQUENCE_NODE)
		return perr(p, n, key, "must be a list, not %s", node_what(n));
	arr = json_array();
	if (!arr)
		return -ENOMEM;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		yaml_node_t *item = node_at(p, *it);
		char ikey[KEY_MAX];
		json_t *req = NULL;

		keyf(ikey, sizeof(ikey), "%s[%td]", key, it - n->data.sequence.items.start);
		if (!item) {
			r = budget_error(p, n, key);
			goto fail;
		}
		r = parse_requirement(p, item, ikey, &req);
		if (r < 0)
			goto fail;
		if (json_array_append_new(arr, req) < 0) {
			r = -ENOMEM;
			goto fail;
		}
	}
	*ret = arr;
	return 0;
fail:
	json_decref(arr);
	return r;
}

/* selector: a list of NodeSelectorTerms into a JSON array (NULL if empty). */
static int parse_selector(struct parser *p, const yaml_node_t *n, const char *key, json_t **ret)
{
	json_t *terms = NULL, *term = NULL;
	int r;

	if (node_is_null(n)) {
		*ret = NULL;
		return 0;
	}
	if (n->type != YAML_SEQUENCE_NODE)
		return perr(p, n, key, "must be a list of node selector terms, not %s",
			    node_what(n));
	terms = json_array();
	if (!terms)
		return -ENOMEM;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		yaml_node_t *t = node_at(p, *it);
		char tkey[KEY_MAX];

		keyf(tkey, sizeof(tkey), "%s[%td]", key, it - n->data.sequence.items.start);
		if (!t) {
			r = budget_error(p, n, key);
			goto fail;
		}
		if (t->type != YAML_MAPPING_NODE) {
			r = perr(p, t, tkey, "must be a mapping with matchExpressions or matchFields, not %s",
				 node_what(t));
			goto fail;
		}
		term = json_object();
		if (!term) {
			r = -ENOMEM;
			goto fail;
		}
		for (yaml_node_pair_t *pr = t->data.mapping.pairs.start;
		     pr < t->data.mapping.pairs.top; pr++) {
			yaml_node_t *k, *v;
			char fkey[KEY_MAX];
			json_t *reqs = NULL;
			const char *f;

			r = field_at(p, t, pr, tkey, &k, &v);
			if (r < 0)
				goto fail;
			f = scalar_text(k);
			keyf(fkey, sizeof(fkey), "%s.%s", tkey, f);
			if (strcmp(f, "matchExpressions") != 0 && strcmp(f, "matchFields") != 0) {
				r = pwarn(p, k, fkey, "unknown field, ignored");
				if (r < 0)
					goto fail;
				continue;
			}
			if (json_object_get(term, f)) {
				r = perr(p, k, fkey, "given twice");
				goto fail;
			}
			r = parse_requirements(p, v, fkey, &reqs);
			if (r < 0)
				goto fail;
			if (json_object_set_new(term, f, reqs) < 0) {
				r = -ENOMEM;
				goto fail;
			}
		}
		if (json_object_size(term) == 0) {
			r = perr(p, t, tkey, "needs matchExpressions or matchFields");
			goto fail;
		}
		if (json_array_append_new(terms, term) < 0) {
			term = NULL;
			r = -ENOMEM;
			goto fail;
		}
		term = NULL;
	}
	if (json_array_size(terms) == 0) {
		json_decref(terms);
		terms = NULL;
	}
	*ret = terms;
	return 0;
fail:
	json_decref(term);
	json_decref(terms);
	return r;
}

/* namePattern: comma-separated globs; empty items are dropped, as upstream does. */
static int split_patterns(struct parser *p, const yaml_node_t *n, const char *key,
			  const char *s, char ***ret)
{
	char **v = calloc(PATTERNS_MAX + 1, sizeof(*v));
	size_t count = 0;
	int r;

	if (!v)
		return -ENOMEM;
	while (*s) {
		size_t len = strcspn(s, ",");

		if (len > 0) {
			if (count == PATTERNS_MAX) {
				r = perr(p, n, key, "has more than %d patterns", PATTERNS_MAX);
				goto fail;
			}
			v[count] = strndup(s, len);
			if (!v[count++]) {
				r = -ENOMEM;
				goto fail;
			}
		}
		s += len;
		if (*s == ',')
			s++;
	}
	if (count == 0) {
		r = perr(p, n, key, "has no pattern");
		goto fail;
	}
	*ret = v;
	return 0;
fail:
	strv_free(v);
	return r;
}

static char **strv_of(const char *s)
{
	char **v = calloc(2, sizeof(*v));

	if (!v)
		return NULL;
	v[0] = strdup(s);
	if (!v[0]) {
		free(v);
		return NULL;
	}
	return v;
}

enum class_field {
	F_HOST_DIR,
	F_MOUNT_DIR,
	F_BLOCK_CLEANER,
	F_VOLUME_MODE,
	F_ACCESS_MODE,
	F_FS_TYPE,
	F_NAME_PATTERN,
	F_SELECTOR,
	F_COUNT,
};

static const char *const class_fields[F_COUNT] = {
	[F_HOST_DIR] = "hostDir",	  [F_MOUNT_DIR] = "mountDir",
	[F_BLOCK_CLEANER] = "blockCleanerCommand", [F_VOLUME_MODE] = "volumeMode",
	[F_ACCESS_MODE] = "accessMode", [F_FS_TYPE] = "fsType",
	[F_NAME_PATTERN] = "namePattern", [F_SELECTOR] = "selector",
};

/* An absolute directory path, cleaned, into *ret. */
static int want_dir(struct parser *p, const yaml_node_t *v, const char *fkey, char **ret)
{
	char *s = NULL;
	int r;

	r = want_string(p, v, fkey, &s);
	if (r < 0 || !s)
		return r;
	if (s[0] != '/') {
		r = perr(p, v, fkey, "must be an absolute path, not \"%s\"", s);
		free(s);
		return r;
	}
	*ret = path_clean(s);
	free(s);
	return *ret ? 0 : -ENOMEM;
}

static int parse_class(struct parser *p, const yaml_node_t *name_node, const yaml_node_t *n,
		       struct prov_class *c)
{
	const char *name = c->name;
	char *s = NULL;
	unsigned seen = 0;
	int r;

	if (!node_is_null(n) && n->type != YAML_MAPPING_NODE)
		return perr(p, n, name, "must be a mapping with hostDir and mountDir, not %s",
			    node_what(n));
	c->volume_mode = PROV_MODE_FILESYSTEM;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start;
	     n->type == YAML_MAPPING_NODE && pr < n->data.mapping.pairs.top; pr++) {
		yaml_node_t *k, *v;
		char fkey[KEY_MAX];
		int f;

		r = field_at(p, n, pr, name, &k, &v);
		if (r < 0)
			return r;
		keyf(fkey, sizeof(fkey), "%s.%s", name, scalar_text(k));
		for (f = 0; f < F_COUNT; f++)
			if (strcmp(scalar_text(k), class_fields[f]) == 0)
				break;
		if (f == F_COUNT) {
			r = pwarn(p, k, fkey, "unknown field, ignored");
			if (r < 0)
				return r;
			continue;
		}
		if (seen & (1u << f))
			return perr(p, k, fkey, "given twice");
		seen |= 1u << f;

		switch (f) {
		case F_HOST_DIR:
			r = want_dir(p, v, fkey, &c->host_dir);
			break;
		case F_MOUNT_DIR:
			r = want_dir(p, v, fkey, &c->mount_dir);
			break;
		case F_BLOCK_CLEANER: {
			size_t count;

			if (node_is_null(v))
				break; /* the default, below */
			r = want_string_list(p, v, fkey, &c->block_cleaner_command, &count);
			if (r == 0 && count == 0)
				r = perr(p, v, fkey, "must not be an empty list");
			break;
		}
		case F_VOLUME_MODE:
			r = want_string(p, v, fkey, &s);
			if (r < 0 || !s || strcmp(s, "Filesystem") == 0 || s[0] == '\0')
				break;
			if (strcmp(s, "Block") == 0)
				c->volume_mode = PROV_MODE_BLOCK;
			else
				r = perr(p, v, fkey, "must be \"Filesystem\" or \"Block\", not \"%s\"", s);
			break;
		case F_ACCESS_MODE:
			r = want_string(p, v, fkey, &s);
			if (r < 0 || !s || s[0] == '\0')
				break;
			if (!match_any(s, access_modes)) {
				r = perr(p, v, fkey,
					 "must be ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod, not \"%s\"",
					 s);
				break;
			}
			c->access_mode = s;
			s = NULL;
			break;
		case F_FS_TYPE:
			r = want_string(p, v, fkey, &s);
			if (r < 0 || !s || s[0] == '\0')
				break;
			c->fs_type = s;
			s = NULL;
			break;
		case F_NAME_PATTERN:
			r = want_string(p, v, fkey, &s);
			if (r < 0 || !s || s[0] == '\0')
				break;
			r = split_patterns(p, v, fkey, s, &c->name_patterns);
			break;
		case F_SELECTOR:
			r = parse_selector(p, v, fkey, &c->selector);
			break;
		}
		free(s);
		s = NULL;
		if (r < 0)
			return r;
	}
	if (!c->host_dir)
		return perr(p, name_node, name, "hostDir is required");
	if (!c->mount_dir)
		return perr(p, name_node, name, "mountDir is required");
	if (!c->block_cleaner_command)
		c->block_cleaner_command = strv_of(PROVCONFIG_DEFAULT_BLOCK_CLEANER);
	if (!c->access_mode)
		c->access_mode = strdup("ReadWriteOnce");
	if (!c->name_patterns)
		c->name_patterns = strv_of("*");
	if (!c->block_cleaner_command || !c->access_mode || !c->name_patterns)
		return -ENOMEM;
	return 0;
}

static int class_cmp(const void *a, const void *b)
{
	return strcmp(((const struct prov_class *)a)->name, ((const struct prov_class *)b)->name);
}

static int parse_class_map(struct parser *p, const yaml_node_t *root)
{
	struct prov_config *cfg = p->cfg;
	size_t count;
	int r;

	r = want_mapping(p, root, " of storage class names", "classes", &count);
	if (r < 0 || node_is_null(root))
		return r;
	cfg->classes = calloc(count ? count : 1, sizeof(*cfg->classes));
	if (!cfg->classes)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++) {
		yaml_node_pair_t *pr = &root->data.mapping.pairs.start[i];
		yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
		struct prov_class *c = &cfg->classes[i];
		struct errmsg why;
		char *name = NULL;

		if (!k || !v)
			return budget_error(p, root, p->file);
		r = want_string(p, k, p->file, &name);
		if (r < 0)
			return r;
		cfg->n_classes = i + 1; /* from here on c is released with the config */
		c->name = name;
		if (k8sname_dns_subdomain(name, &why) < 0)
			return perr(p, k, p->file, "\"%s\" is not a valid storage class name: %s",
				    name ? name : "", why.text);
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->classes[j].name, name) == 0)
				return perr(p, k, name, "storage class given twice");
		r = parse_class(p, k, v, c);
		if (r < 0)
			return r;
	}
	qsort(cfg->classes, cfg->n_classes, sizeof(*cfg->classes), class_cmp);
	return 0;
}

/* ---- the other keys ----------------------------------------------------- */

static int parse_node_labels(struct parser *p, const yaml_node_t *root)
{
	struct prov_config *cfg = p->cfg;
	char **v = NULL;
	size_t n = 0;
	int r;

	r = want_string_list(p, root, p->file, &v, &n);
	if (r < 0)
		return r;
	cfg->node_labels_for_pv = v;
	cfg->n_node_labels_for_pv = n;
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item = yaml_document_get_node(&p->doc,
								 root->data.sequence.items.start[i]);
		char ikey[KEY_MAX];
		struct errmsg why;

		keyf(ikey, sizeof(ikey), "%s[%zu]", p->file, i);
		if (k8sname_label_key(v[i], &why) < 0)
			return perr(p, item, ikey, "\"%s\" is not a valid label name: %s", v[i],
				    why.text);
	}
	return 0;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct prov_label *)a)->key, ((const struct prov_label *)b)->key);
}

static int parse_labels(struct parser *p, const yaml_node_t *root)
{
	struct prov_config *cfg = p->cfg;
	size_t count;
	int r;

	r = want_mapping(p, root, " of label names to values", "labels", &count);
	if (r < 0 || node_is_null(root))
		return r;
	cfg->labels_for_pv = calloc(count ? count : 1, sizeof(*cfg->labels_for_pv));
	if (!cfg->labels_for_pv)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++) {
		yaml_node_pair_t *pr = &root->data.mapping.pairs.start[i];
		yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
		struct prov_label *l = &cfg->labels_for_pv[i];
		struct errmsg why;
		char lkey[KEY_MAX];

		if (!k || !v)
			return budget_error(p, root, p->file);
		cfg->n_labels_for_pv = i + 1;
		r = want_string(p, k, p->file, &l->key);
		if (r < 0)
			return r;
		if (k8sname_label_key(l->key, &why) < 0)
			return perr(p, k, p->file, "\"%s\" is not a valid label name: %s",
				    l->key ? l->key : "", why.text);
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->labels_for_pv[j].key, l->key) == 0)
				return perr(p, k, l->key, "label given twice");
		keyf(lkey, sizeof(lkey), "%s.%s", p->file, l->key);
		r = want_string(p, v, lkey, &l->value);
		if (r < 0)
			return r;
		if (!l->value)
			l->value = strdup("");
		if (!l->value)
			return -ENOMEM;
		if (k8sname_label_value(l->value, &why) < 0)
			return perr(p, v, lkey,
				    "\"%s\" is not a valid label value (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit): %s",
				    l->value, why.text);
	}
	qsort(cfg->labels_for_pv, cfg->n_labels_for_pv, sizeof(*cfg->labels_for_pv), label_cmp);
	return 0;
}

static int parse_min_resync(struct parser *p, const yaml_node_t *root)
{
	char *s = NULL;
	uint64_t ns;
	int r;

	if (root->type == YAML_SCALAR_NODE && scalar_type(root) == YAMLSCALAR_INT)
		return perr(p, root, p->file, "must be a duration with a unit, e.g. \"5m\", not %s",
			    scalar_text(root));
	r = want_string(p, root, p->file, &s);
	if (r < 0 || !s)
		return r;
	r = duration_parse(s, &ns);
	if (r == -ERANGE)
		r = perr(p, root, p->file, "\"%s\" is negative or too long", s);
	else if (r < 0)
		r = perr(p, root, p->file, "\"%s\" is not a duration (e.g. \"5m\", \"1h30m\")", s);
	else
		p->cfg->min_resync_period_ns = ns;
	free(s);
	return r;
}

/*
 * dynamicProvisioning: a mapping of carvefs' own settings for claims it
 * carves volumes for. A ratio of 0, a negative one or a string would make
 * every claim fail (or none be refused), so they are errors, not warnings.
 */
static int parse_dynamic(struct parser *p, const yaml_node_t *root)
{
	size_t count;
	int r;

	r = want_mapping(p, root, " (e.g. \"overcommit: 1.5\")", "fields", &count);
	if (r < 0)
		return r;
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *k, *v;
		char fkey[KEY_MAX];
		enum yamlscalar_type kind;
		double ratio = 0;

		r = field_at(p, root, &root->data.mapping.pairs.start[i], p->file, &k, &v);
		if (r < 0)
			return r;
		keyf(fkey, sizeof(fkey), "%s.%s", p->file, scalar_text(k));
		if (strcmp(scalar_text(k), "overcommit") != 0) {
			r = pwarn(p, k, fkey, "unknown field, ignored");
			if (r < 0)
				return r;
			continue;
		}
		kind = v->type == YAML_SCALAR_NODE ? scalar_type(v) : YAMLSCALAR_NULL;
		if (v->type == YAML_SCALAR_NODE && kind == YAMLSCALAR_STR)
			return perr(p, v, fkey, "must be a number (a ratio such as 1.5), not \"%s\"",
				    scalar_text(v));
		if (kind != YAMLSCALAR_INT && kind != YAMLSCALAR_FLOAT)
			return perr(p, v, fkey, "must be a number (a ratio such as 1.5), not %s",
				    node_what(v));
		if (yamlscalar_float(scalar_text(v), &ratio) < 0 || !isfinite(ratio) || ratio <= 0 ||
		    ratio > PROVCONFIG_OVERCOMMIT_MAX)
			return perr(p, v, fkey, "must be a ratio above 0 and at most %g, not %s",
				    PROVCONFIG_OVERCOMMIT_MAX, scalar_text(v));
		p->cfg->overcommit = ratio;
	}
	return 0;
}

static const char *const known_keys[] = { "storageClassMap", "nodeLabelsForPV", "labelsForPV",
					  "useNodeNameOnly", "setPVOwnerRef", "minResyncPeriod",
					  "useJobForCleaning", "dynamicProvisioning", NULL };

/* Keys of the upstream format that carve-provisioner accepts but has no use for. */
static const char *const ignored_keys[] = { "useAlphaAPI", "jobTolerations",
					    "removeNodeNotReadyTaint",
					    "provisionerNotReadyNodeTaintKey", NULL };

static int parse_key(struct parser *p, const yaml_node_t *root)
{
	const char *key = p->file;
	bool b = false;
	int r;

	if (strcmp(key, "storageClassMap") == 0)
		return parse_class_map(p, root);
	if (strcmp(key, "nodeLabelsForPV") == 0)
		return parse_node_labels(p, root);
	if (strcmp(key, "labelsForPV") == 0)
		return parse_labels(p, root);
	if (strcmp(key, "useNodeNameOnly") == 0)
		return want_bool(p, root, key, &p->cfg->use_node_name_only);
	if (strcmp(key, "setPVOwnerRef") == 0)
		return want_bool(p, root, key, &p->cfg->set_pv_owner_ref);
	if (strcmp(key, "minResyncPeriod") == 0)
		return parse_min_resync(p, root);
	if (strcmp(key, "dynamicProvisioning") == 0)
		return parse_dynamic(p, root);
	if (strcmp(key, "useJobForCleaning") == 0) {
		r = want_bool(p, root, key, &b);
		if (r == 0 && b)
			r = perr(p, root, key,
				 "useJobForCleaning is not supported: carve-provisioner cleans on the node");
		return r;
	}
	if (match_any(key, ignored_keys)) {
		if (node_is_null(root) ||
		    (root->type == YAML_SCALAR_NODE && scalar_type(root) == YAMLSCALAR_BOOL &&
		     yamlscalar_bool(scalar_text(root), &b) == 0 && !b))
			return 0;
		return pwarn(p, root, key, "not supported by carve-provisioner, ignored");
	}
	return pwarn(p, NULL, key, "unknown key, ignored");
}

static int parse_file(struct parser *p, const struct provconfig_file *f)
{
	yaml_parser_t yp;
	yaml_node_t *root;
	int r;

	p->file = f->name;
	if (!yaml_parser_initialize(&yp))
		return -ENOMEM;
	yaml_parser_set_input_string(&yp, (const unsigned char *)f->text, f->len);
	if (!yaml_parser_load(&yp, &p->doc)) {
		if (yp.error == YAML_MEMORY_ERROR) {
			r = -ENOMEM;
		} else {
			char ctx[128] = "";

			if (yp.context)
				snprintf(ctx, sizeof(ctx), " %s started on line %zu", yp.context,
					 yp.context_mark.line + 1);
			r = errmsg_set(p->err, -EINVAL, "%s:%zu: %s: invalid YAML: %s%s", f->name,
				       yp.problem_mark.line + 1, f->name,
				       yp.problem ? yp.problem : "syntax error", ctx);
		}
		yaml_parser_delete(&yp);
		return r;
	}
	root = yaml_document_get_root_node(&p->doc);
	if (!root) {
		/* An empty file: the key is not set, but a misspelt one is still worth a word. */
		r = match_any(f->name, known_keys) || match_any(f->name, ignored_keys) ?
			    0 :
			    pwarn(p, NULL, f->name, "unknown key, ignored");
	} else {
		r = parse_key(p, root);
	}
	yaml_document_delete(&p->doc);
	if (r == 0) {
		/* A second document would be silently ignored: refuse it. */
		yaml_document_t next;

		if (!yaml_parser_load(&yp, &next)) {
			r = perr(p, NULL, f->name, "invalid YAML after the first document");
		} else {
			if (yaml_document_get_root_node(&next))
				r = perr(p, yaml_document_get_root_node(&next), f->name,
					 "holds more than one YAML document");
			yaml_document_delete(&next);
		}
	}
	yaml_parser_delete(&yp);
	return r;
}

int provconfig_parse(const struct provconfig_snapshot *snap, struct prov_config **ret_config,
		     struct errmsg *ret_msg)
{
	struct parser p = { .err = ret_msg, .budget = NODE_BUDGET };
	bool have_classes = false;
	int r;

	p.cfg = calloc(1, sizeof(*p.cfg));
	if (!p.cfg)
		return errmsg_set(ret_msg, -ENOMEM, "out of memory while parsing the configuration");
	p.cfg->min_resync_period_ns = PROVCONFIG_DEFAULT_MIN_RESYNC_NS;
	p.cfg->overcommit = PROVCONFIG_DEFAULT_OVERCOMMIT;
	for (size_t i = 0; i < snap->n_files; i++) {
		r = parse_file(&p, &snap->files[i]);
		if (r < 0)
			goto fail;
		if (strcmp(snap->files[i].name, "storageClassMap") == 0)
			have_classes = true;
	}
	if (!have_classes) {
		p.file = "storageClassMap";
		r = pwarn(&p, NULL, "storageClassMap", "missing: no volume will be discovered "
			  "(claims of carvefs's dynamic StorageClasses are still served)");
		if (r < 0)
			goto fail;
	}
	*ret_config = p.cfg;
	return 0;
fail:
	if (r == -ENOMEM)
		errmsg_set(ret_msg, r, "out of memory while parsing the configuration");
	provconfig_free(p.cfg);
	return r;
}
