/*
 * kubeconfig.c - kubeconfig and in-cluster settings; see include/kubeconfig.h.
 *
 * The file is loaded into a libyaml document tree (which also resolves
 * anchors and aliases) and walked: small files, so simplicity wins over
 * streaming.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "kube/kubeconfig.h"

/* A kubeconfig is a few kilobytes; anything far larger is not one. */
#define KUBECONFIG_TEXT_MAX (4 * 1024 * 1024)

struct parse {
	yaml_document_t *doc;
	struct errmsg *err;
};

static const char *scalar(const yaml_node_t *n)
{
	if (!n || n->type != YAML_SCALAR_NODE)
		return NULL;
	return (const char *)n->data.scalar.value;
}

/* The value of @key in the mapping @map, or NULL (also when @map is not one). */
static yaml_node_t *map_get(yaml_document_t *doc, const yaml_node_t *map, const char *key)
{
	const yaml_node_pair_t *pair;

	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		const char *k = scalar(yaml_document_get_node(doc, pair->key));

		if (k && strcmp(k, key) == 0)
			return yaml_document_get_node(doc, pair->value);
	}
	return NULL;
}

/*
 * In the list @list_key ("clusters", ...) the entry named @name, and in it
 * the mapping @inner_key ("cluster", ...) into *ret_inner.
 */
static int named_entry(struct parse *p, const yaml_node_t *root, const char *list_key,
		       const char *inner_key, const char *name, yaml_node_t **ret_inner)
{
	yaml_node_t *list = map_get(p->doc, root, list_key);
	yaml_node_item_t *item;

	if (list && list->type != YAML_SEQUENCE_NODE)
		return errmsg_set(p->err, -EINVAL, "%s: not a list", list_key);
	if (list) {
		for (item = list->data.sequence.items.start; item < list->data.sequence.items.top;
		     item++) {
			yaml_node_t *e = yaml_document_get_node(p->doc, *item);
			const char *n = scalar(map_get(p->doc, e, "name"));
			yaml_node_t *inner;

			if (!n || strcmp(n, name) != 0)
				continue;
			inner = map_get(p->doc, e, inner_key);
			if (!inner || inner->type != YAML_MAPPING_NODE)
				return errmsg_set(p->err, -EINVAL, "%s '%s': no %s mapping", list_key, name,
					    inner_key);
			*ret_inner = inner;
			return 0;
		}
	}
	return errmsg_set(p->err, -EINVAL, "no %s named '%s'", inner_key, name);
}

/* A string field: absent is fine (NULL), anything but a scalar is not. */
static int get_str(struct parse *p, const yaml_node_t *map, const char *what, const char *key,
		   const char **ret)
{
	yaml_node_t *n = map_get(p->doc, map, key);

	*ret = NULL;
	if (!n)
		return 0;
	if (n->type != YAML_SCALAR_NODE)
		return errmsg_set(p->err, -EINVAL, "%s.%s: not a string", what, key);
	/* "key:" with nothing after it is null in YAML, i.e. unset. */
	if (n->data.scalar.length == 0 && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		return 0;
	*ret = scalar(n);
	return 0;
}

static int dup_path(const char *base_dir, const char *path, char **ret)
{
	if (!path) {
		*ret = NULL;
		return 0;
	}
	if (path[0] == '/' || !base_dir || base_dir[0] == '\0')
		*ret = strdup(path);
	else if (asprintf(ret, "%s/%s", base_dir, path) < 0)
		*ret = NULL;
	return *ret ? 0 : -ENOMEM;
}

/* A *-data field: base64 of PEM. */
static int get_data(struct parse *p, const yaml_node_t *map, const char *what, const char *key,
		    char **ret_data, size_t *ret_len)
{
	const char *s;
	int r;

	r = get_str(p, map, what, key, &s);
	if (r < 0 || !s)
		return r;
	r = kubeconfig_base64_decode(s, ret_data, ret_len);
	if (r == -EINVAL)
		return errmsg_set(p->err, r, "%s.%s: not base64", what, key);
	return r;
}

static int get_file(struct parse *p, const yaml_node_t *map, const char *what, const char *key,
		    const char *base_dir, char **ret)
{
	const char *s;
	int r;

	r = get_str(p, map, what, key, &s);
	if (r < 0)
		return r;
	return dup_path(base_dir, s, ret);
}

static int parse_cluster(struct parse *p, const yaml_node_t *c, const char *name,
			 const char *base_dir, struct kubeconfig *kc)
{
	const char *server, *insecure;
	size_t n;
	int r;

	r = get_str(p, c, "cluster", "server", &server);
	if (r < 0)
		return r;
	if (!server || server[0] == '\0')
		return errmsg_set(p->err, -EINVAL, "cluster '%s': no server", name);
	if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
		return errmsg_set(p->err, -EINVAL, "cluster '%s': server '%s' is not an http(s) URL", name,
			    server);
	kc->server = strdup(server);
	if (!kc->server)
		return -ENOMEM;
	/* Request paths start with '/'; "https://h:6443/" would double it. */
	n = strlen(kc->server);
	while (n > 0 && kc->server[n - 1] == '/')
		kc->server[--n] = '\0';

	r = get_str(p, c, "cluster", "insecure-skip-tls-verify", &insecure);
	if (r < 0)
		return r;
	if (insecure) {
		if (strcmp(insecure, "true") == 0)
			kc->insecure_skip_tls_verify = true;
		else if (strcmp(insecure, "false") != 0)
			return errmsg_set(p->err, -EINVAL, "cluster '%s': insecure-skip-tls-verify: not a boolean",
				    name);
	}
	r = get_data(p, c, "cluster", "certificate-authority-data", &kc->ca_data, &kc->ca_len);
	if (r < 0)
		return r;
	if (!kc->ca_data)
		r = get_file(p, c, "cluster", "certificate-authority", base_dir, &kc->ca_file);
	return r;
}

static int parse_user(struct parse *p, const yaml_node_t *u, const char *name,
		      const char *base_dir, struct kubeconfig *kc)
{
	const char *token;
	int r;

	r = get_str(p, u, "user", "token", &token);
	if (r < 0)
		return r;
	if (token) {
		kc->token = strdup(token);
		if (!kc->token)
			return -ENOMEM;
	} else {
		r = get_file(p, u, "user", "tokenFile", base_dir, &kc->token_file);
		if (r < 0)
			return r;
	}
	r = get_data(p, u, "user", "client-certificate-data", &kc->cert_data, &kc->cert_len);
	if (r == 0 && !kc->cert_data)
		r = get_file(p, u, "user", "client-certificate", base_dir, &kc->cert_file);
	if (r == 0)
		r = get_data(p, u, "user", "client-key-data", &kc->key_data, &kc->key_len);
	if (r == 0 && !kc->key_data)
		r = get_file(p, u, "user", "client-key", base_dir, &kc->key_file);
	if (r < 0)
		return r;
	if ((kc->cert_data || kc->cert_file) != (kc->key_data || kc->key_file))
		return errmsg_set(p->err, -EINVAL, "user '%s': a client certificate needs its key and the key its certificate",
			    name);
	if (!kc->token && !kc->token_file && !kc->cert_data && !kc->cert_file &&
	    (map_get(p->doc, u, "exec") || map_get(p->doc, u, "auth-provider") ||
	     map_get(p->doc, u, "username")))
		return errmsg_set(p->err, -EOPNOTSUPP,
			    "user '%s': only token, tokenFile and client certificates are supported",
			    name);
	return 0;
}

static int parse_doc(struct parse *p, const char *context, const char *base_dir,
		     struct kubeconfig *kc)
{
	yaml_node_t *root = yaml_document_get_root_node(p->doc), *ctx, *cluster, *user;
	const char *cluster_name, *user_name;
	int r;

	if (!root || root->type != YAML_MAPPING_NODE)
		return errmsg_set(p->err, -EINVAL, "not a kubeconfig: the document is not a mapping");
	if (!context) {
		r = get_str(p, root, "kubeconfig", "current-context", &context);
		if (r < 0)
			return r;
		if (!context || context[0] == '\0')
			return errmsg_set(p->err, -EINVAL, "no current-context");
	}
	r = named_entry(p, root, "contexts", "context", context, &ctx);
	if (r < 0)
		return r;
	r = get_str(p, ctx, "context", "cluster", &cluster_name);
	if (r == 0)
		r = get_str(p, ctx, "context", "user", &user_name);
	if (r < 0)
		return r;
	if (!cluster_name)
		return errmsg_set(p->err, -EINVAL, "context '%s': no cluster", context);
	r = named_entry(p, root, "clusters", "cluster", cluster_name, &cluster);
	if (r < 0)
		return r;
	r = parse_cluster(p, cluster, cluster_name, base_dir, kc);
	if (r < 0)
		return r;
	/* A context without a user talks to the cluster anonymously. */
	if (!user_name)
		return 0;
	r = named_entry(p, root, "users", "user", user_name, &user);
	if (r < 0)
		return r;
	return parse_user(p, user, user_name, base_dir, kc);
}

int kubeconfig_parse(const char *text, size_t len, const char *context, const char *base_dir,
		     struct kubeconfig **ret_kc, struct errmsg *ret_msg)
{
	struct parse p = { .err = ret_msg };
	yaml_parser_t parser;
	yaml_document_t doc;
	struct kubeconfig *kc = NULL;
	bool parser_ok = false, doc_ok = false;
	int r;

	if (len > KUBECONFIG_TEXT_MAX) {
		r = errmsg_set(p.err, -EINVAL, "too large for a kubeconfig");
		goto cleanup;
	}
	if (!yaml_parser_initialize(&parser)) {
		r = -ENOMEM;
		goto cleanup;
	}
	parser_ok = true;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		r = parser.error == YAML_MEMORY_ERROR ?
			    -ENOMEM :
			    errmsg_set(p.err, -EINVAL, "line %zu: %s", parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "malformed YAML");
		goto cleanup;
	}
	doc_ok = true;
	p.doc = &doc;
	kc = calloc(1, sizeof(*kc));
	if (!kc) {
		r = -ENOMEM;
		goto cleanup;
	}
	r = parse_doc(&p, context, base_dir, kc);
	if (r < 0)
		goto cleanup;
	*ret_kc = kc;
	kc = NULL;
cleanup:
	if (r == -ENOMEM)
		errmsg_set(ret_msg, r, "out of memory");
	kubeconfig_free(kc);
	if (doc_ok)
		yaml_document_delete(&doc);
	if (parser_ok)
		yaml_parser_delete(&parser);
	return r;
}

int kubeconfig_in_cluster(const char *host, const char *port, const char *token_file,
			  const char *ca_file, struct kubeconfig **ret_kc)
{
	struct kubeconfig *kc = NULL;
	char *end;
	unsigned long n;
	int r;

	if (!host || host[0] == '\0' || !port || port[0] == '\0')
		return -EINVAL;
	errno = 0;
	n = strtoul(port, &end, 10);
	if (errno != 0 || *end != '\0' || n == 0 || n > 65535 || port[0] == '-' ||
	    port[0] == '+')
		return -EINVAL;
	kc = calloc(1, sizeof(*kc));
	if (!kc)
		return -ENOMEM;
	/* An IPv6 service address needs brackets in a URL. */
	if (asprintf(&kc->server, strchr(host, ':') ? "https://[%s]:%lu" : "https://%s:%lu", host,
		     n) < 0) {
		kc->server = NULL;
		r = -ENOMEM;
		goto cleanup;
	}
	r = dup_path(NULL, token_file, &kc->token_file);
	if (r == 0)
		r = dup_path(NULL, ca_file, &kc->ca_file);
	if (r < 0)
		goto cleanup;
	*ret_kc = kc;
	kc = NULL;
cleanup:
	kubeconfig_free(kc);
	return r;
}

struct kubeconfig *kubeconfig_free(struct kubeconfig *kc)
{
	if (!kc)
		return NULL;
	free(kc->server);
	free(kc->ca_data);
	free(kc->ca_file);
	free(kc->cert_data);
	free(kc->cert_file);
	/* Key material and tokens should not linger in freed memory. */
	if (kc->key_data)
		explicit_bzero(kc->key_data, kc->key_len);
	free(kc->key_data);
	free(kc->key_file);
	if (kc->token)
		explicit_bzero(kc->token, strlen(kc->token));
	free(kc->token);
	free(kc->token_file);
	free(kc);
	return NULL;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int kubeconfig_base64_decode(const char *s, char **ret_data, size_t *ret_len)
{
	size_t len = strlen(s), n = 0, pad = 0;
	unsigned acc = 0, bits = 0;
	char *out;
	int r = -EINVAL;

	out = malloc(len / 4 * 3 + 4);
	if (!out)
		return -ENOMEM;
	for (const char *c = s; *c; c++) {
		int v;

		if (*c == ' ' || *c == '\n' || *c == '\r' || *c == '\t')
			continue;
		if (*c == '=') {
			pad++;
			continue;
		}
		v = b64_value((unsigned char)*c);
		/* Nothing but padding and whitespace may follow padding. */
		if (v < 0 || pad > 0)
			goto cleanup;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	/* 6 leftover bits cannot end a quantum; nor can more than 2 pads. */
	if (bits >= 6 || pad > 2 || (pad > 0 && (bits / 2) != pad) ||
	    (acc & ((1u << bits) - 1)) != 0)
		goto cleanup;
	out[n] = '\0';
	*ret_data = out;
	*ret_len = n;
	out = NULL;
	r = 0;
cleanup:
	free(out);
	return r;
}
