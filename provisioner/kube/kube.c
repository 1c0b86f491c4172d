/*
 * kube.c - a small Kubernetes API client over libcurl; see include/kube.h.
 */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kube/kube.h"
#include "log.h"
#include "metrics.h"
#include "growbuf.h"
#include "jpath.h"
#include "clock.h"
#include "fileio.h"

/* A PV list of a large cluster is a few MB; anything far beyond is not sane. */
#define KUBE_BODY_MAX (256 * 1024 * 1024)
/* One watch event is one object. */
#define KUBE_EVENT_MAX (16 * 1024 * 1024)
#define KUBE_TOKEN_MAX (64 * 1024)
#define KUBE_KUBECONFIG_MAX (4 * 1024 * 1024)
/* A projected service account token is rotated; reading it this often follows. */
#define KUBE_TOKEN_REREAD_S 60
/* Items per page of a list: bounds what one answer holds. */
#define KUBE_LIST_LIMIT 500
/* A watch is given this much beyond its timeoutSeconds before it is called dead. */
#define KUBE_WATCH_SLACK_S 30L
#define KUBE_USER_AGENT "carve-provisioner"

struct kube {
	CURL *curl;
	char *server;
	struct curl_blob ca, cert, key;
	char *ca_file, *cert_file, *key_file;
	char *token;
	char *token_file;
	time_t token_read_at;
	bool insecure;
	const atomic_bool *cancel; /* set by another thread: abort a watch */
	char err[512];
};

__attribute__((format(printf, 2, 3)))
static void set_err(struct kube *k, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(k->err, sizeof(k->err), fmt, ap);
	va_end(ap);
}

const char *kube_last_error(const struct kube *k)
{
	return k->err;
}

/* ---- configuration ------------------------------------------------------ */

int kube_config_load(const char *path, struct kubeconfig **ret_kc)
{
	char *text = NULL, *copy = NULL;
	struct errmsg err;
	size_t len;
	int r;

	r = fileio_read(AT_FDCWD, path, true, KUBE_KUBECONFIG_MAX, &text, &len);
	if (r < 0) {
		log_error_errno(r, "cannot read the kubeconfig \"%s\"", path);
		goto cleanup;
	}
	copy = strdup(path);
	if (!copy) {
		r = -ENOMEM;
		goto cleanup;
	}
	r = kubeconfig_parse(text, len, NULL, dirname(copy), ret_kc, &err);
	if (r == -ENOMEM)
		goto cleanup;
	if (r < 0)
		log_error("%s: %s", path, err.text);
cleanup:
	if (text)
		explicit_bzero(text, strlen(text));
	free(text);
	free(copy);
	return r;
}

int kube_config_in_cluster(struct kubeconfig **ret_kc)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	int r;

	if (!host || host[0] == '\0')
		return -ENOENT;
	r = kubeconfig_in_cluster(host, port, KUBECONFIG_SA_TOKEN, KUBECONFIG_SA_CA, ret_kc);
	if (r == -EINVAL)
		log_error("in-cluster: KUBERNETES_SERVICE_HOST '%s' / KUBERNETES_SERVICE_PORT '%s' "
			  "do not make an address",
			  host, port ? port : "");
	return r;
}

/* ---- the client --------------------------------------------------------- */

static int dup_blob(struct curl_blob *blob, const char *data, size_t len)
{
	if (!data)
		return 0;
	blob->data = malloc(len ? len : 1);
	if (!blob->data)
		return -ENOMEM;
	memcpy(blob->data, data, len);
	blob->len = len;
	blob->flags = CURL_BLOB_NOCOPY;
	return 0;
}

static int dup_str(char **dst, const char *src)
{
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

int kube_new(const struct kubeconfig *kc, struct kube **ret_kube)
{
	struct kube *k;
	int r;

	if (!kc->server)
		return -EINVAL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	/* Counted by libcurl: balanced in kube_free(). */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(k);
		return -ENOMEM;
	}
	k->curl = curl_easy_init();
	if (!k->curl) {
		r = -ENOMEM;
		goto cleanup;
	}
	r = dup_str(&k->server, kc->server);
	if (r == 0)
		r = dup_blob(&k->ca, kc->ca_data, kc->ca_len);
	if (r == 0)
		r = dup_blob(&k->cert, kc->cert_data, kc->cert_len);
	if (r == 0)
		r = dup_blob(&k->key, kc->key_data, kc->key_len);
	if (r == 0)
		r = dup_str(&k->ca_file, kc->ca_file);
	if (r == 0)
		r = dup_str(&k->cert_file, kc->cert_file);
	if (r == 0)
		r = dup_str(&k->key_file, kc->key_file);
	if (r == 0)
		r = dup_str(&k->token, kc->token);
	if (r == 0)
		r = dup_str(&k->token_file, kc->token_file);
	if (r < 0)
		goto cleanup;
	k->insecure = kc->insecure_skip_tls_verify;
	*ret_kube = k;
	k = NULL;
cleanup:
	kube_free(k);
	return r;
}

struct kube *kube_free(struct kube *k)
{
	if (!k)
		return NULL;
	if (k->curl)
		curl_easy_cleanup(k->curl);
	curl_global_cleanup();
	free(k->server);
	free(k->ca.data);
	free(k->cert.data);
	if (k->key.data)
		explicit_bzero(k->key.data, k->key.len);
	free(k->key.data);
	free(k->ca_file);
	free(k->cert_file);
	free(k->key_file);
	if (k->token)
		explicit_bzero(k->token, strlen(k->token));
	free(k->token);
	free(k->token_file);
	free(k);
	return NULL;
}

/* Re-reads a token file now and then: projected tokens are rotated. */
static int refresh_token(struct kube *k)
{
	char *text = NULL;
	size_t len;
	time_t now = time(NULL);
	int r;

	if (!k->token_file || (k->token && now - k->token_read_at < KUBE_TOKEN_REREAD_S))
		return 0;
	r = fileio_read(AT_FDCWD, k->token_file, true, KUBE_TOKEN_MAX, &text, &len);
	if (r < 0) {
		set_err(k, "cannot read the token file \"%s\": %s", k->token_file, strerror(-r));
		/* A token read before stays usable until it is replaced. */
		return k->token ? 0 : r;
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
			   text[len - 1] == ' ' || text[len - 1] == '\t'))
		text[--len] = '\0';
	if (k->token) {
		explicit_bzero(k->token, strlen(k->token));
		free(k->token);
	}
	k->token = text;
	k->token_read_at = now;
	return 0;
}

/*
 * Resets the handle and sets what every request shares: URL, TLS,
 * authentication, headers, the connect timeout. *ret_headers is for the
 * caller to free after the transfer.
 */
static int setup(struct kube *k, const char *url, const char *content_type,
		 struct curl_slist **ret_headers)
{
	struct curl_slist *h = NULL, *t;
	char *auth = NULL;
	int r;

	r = refresh_token(k);
	if (r < 0)
		return r;
	curl_easy_reset(k->curl);
	curl_easy_setopt(k->curl, CURLOPT_URL, url);
	curl_easy_setopt(k->curl, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(k->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(k->curl, CURLOPT_CONNECTTIMEOUT, KUBE_CONNECT_TIMEOUT_S);
	curl_easy_setopt(k->curl, CURLOPT_USERAGENT, KUBE_USER_AGENT);
	curl_easy_setopt(k->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	if (k->ca.data)
		curl_easy_setopt(k->curl, CURLOPT_CAINFO_BLOB, &k->ca);
	else if (k->ca_file)
		curl_easy_setopt(k->curl, CURLOPT_CAINFO, k->ca_file);
	if (k->cert.data)
		curl_easy_setopt(k->curl, CURLOPT_SSLCERT_BLOB, &k->cert);
	else if (k->cert_file)
		curl_easy_setopt(k->curl, CURLOPT_SSLCERT, k->cert_file);
	if (k->key.data)
		curl_easy_setopt(k->curl, CURLOPT_SSLKEY_BLOB, &k->key);
	else if (k->key_file)
		curl_easy_setopt(k->curl, CURLOPT_SSLKEY, k->key_file);
	curl_easy_setopt(k->curl, CURLOPT_SSLCERTTYPE, "PEM");
	curl_easy_setopt(k->curl, CURLOPT_SSLKEYTYPE, "PEM");
	if (k->insecure) {
		curl_easy_setopt(k->curl, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(k->curl, CURLOPT_SSL_VERIFYHOST, 0L);
	}

	t = curl_slist_append(h, "Accept: application/json");
	if (!t)
		goto nomem;
	h = t;
	if (content_type) {
		char ct[96];

		snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
		t = curl_slist_append(h, ct);
		if (!t)
			goto nomem;
		h = t;
	}
	if (k->token && k->token[0] != '\0') {
		if (asprintf(&auth, "Authorization: Bearer %s", k->token) < 0) {
			auth = NULL;
			goto nomem;
		}
		t = curl_slist_append(h, auth);
		explicit_bzero(auth, strlen(auth));
		free(auth);
		if (!t)
			goto nomem;
		h = t;
	}
	curl_easy_setopt(k->curl, CURLOPT_HTTPHEADER, h);
	*ret_headers = h;
	return 0;
nomem:
	curl_slist_free_all(h);
	return -ENOMEM;
}

static int curl_errno(CURLcode c)
{
	switch (c) {
	case CURLE_OK:
		return 0;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR: /* also a connection reset mid-handshake */
		return -EAGAIN;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPROTO;
	default:
		return -EIO;
	}
}

/* The errno of an HTTP answer; @st is its Status object or NULL. */
static int status_errno(long status, const json_t *st)
{
	const char *reason = json_string_value(json_object_get(st, "reason"));

	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 404:
		return -ENOENT;
	case 409:
		return reason && strcmp(reason, "AlreadyExists") == 0 ? -EEXIST : -ESTALE;
	case 410:
		return -ESTALE;
	case 401:
	case 403:
		return -EACCES;
	case 429:
		return -EAGAIN;
	default:
		if (status >= 500)
			return -EAGAIN;
		if (status >= 400)
			return -EINVAL;
		return -EPROTO;
	}
}

static void set_status_err(struct kube *k, const char *method, const char *path, long status,
			   const json_t *st)
{
	const char *reason = json_string_value(json_object_get(st, "reason"));
	const char *msg = json_string_value(json_object_get(st, "message"));

	set_err(k, "%s %s: HTTP %ld%s%s%s%s", method, path, status, reason ? " " : "",
		reason ? reason : "", msg ? ": " : "", msg ? msg : "");
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct growbuf *b = userdata;

	return growbuf_append(b, ptr, size * nmemb) < 0 ? 0 : size * nmemb;
}

int kube_request(struct kube *k, const char *method, const char *path, const json_t *body,
		 long *ret_status, json_t **ret_json)
{
	struct curl_slist *headers = NULL;
	struct growbuf resp = { .max = KUBE_BODY_MAX };
	json_t *answer = NULL;
	char *url = NULL, *text = NULL;
	const char *ct = NULL;
	long status = 0;
	uint64_t start = 0;
	CURLcode c;
	int r;

	k->err[0] = '\0';
	if (ret_json)
		*ret_json = NULL;
	if (asprintf(&url, "%s%s", k->server, path) < 0) {
		url = NULL;
		r = -ENOMEM;
		goto cleanup;
	}
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text) {
			r = -ENOMEM;
			goto cleanup;
		}
		ct = strcmp(method, "PATCH") == 0 ? "application/merge-patch+json" :
						    "application/json";
	}
	r = setup(k, url, ct, &headers);
	if (r < 0)
		goto cleanup;
	curl_easy_setopt(k->curl, CURLOPT_TIMEOUT, KUBE_REQUEST_TIMEOUT_S);
	curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(k->curl, CURLOPT_WRITEDATA, &resp);
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(k->curl, CURLOPT_CUSTOMREQUEST, method);
	if (text) {
		curl_easy_setopt(k->curl, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(k->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
	}
	start = clock_now_ns();
	c = curl_easy_perform(k->curl);
	if (c != CURLE_OK) {
		r = c == CURLE_WRITE_ERROR ? -EFBIG : curl_errno(c);
		set_err(k, "%s %s: %s", method, path, curl_easy_strerror(c));
		goto cleanup;
	}
	curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &status);
	if (resp.len > 0)
		answer = json_loadb(resp.data, resp.len, 0, NULL);
	r = status_errno(status, answer);
	if (r < 0) {
		set_status_err(k, method, path, status, answer);
	} else if (!answer || !json_is_object(answer)) {
		set_err(k, "%s %s: HTTP %ld with a body that is not a JSON object", method, path,
			status);
		r = -EPROTO;
	}
	if (ret_status)
		*ret_status = status;
	if (ret_json) {
		*ret_json = answer;
		answer = NULL;
	}
cleanup:
	if (start)
		metrics_api_request(method, r >= 0, clock_now_ns() - start);
	curl_slist_free_all(headers);
	json_decref(answer);
	free(resp.data);
	free(text);
	free(url);
	if (r < 0)
		log_debug("%s", k->err);
	return r;
}

/* "/prefix/<escaped name>" into *ret_path. */
static int object_path(struct kube *k, const char *prefix, const char *name, char **ret_path)
{
	char *esc = curl_easy_escape(k->curl, name, 0);
	int r = 0;

	if (!esc)
		return -ENOMEM;
	if (asprintf(ret_path, "%s/%s", prefix, esc) < 0) {
		*ret_path = NULL;
		r = -ENOMEM;
	}
	curl_free(esc);
	return r;
}

/*
 * kube_request() as the object calls below promise it: the answer goes to
 * *ret (may be NULL) on success only. On an error *ret is left alone and
 * the Status object the server sent is only in kube_last_error(), so a
 * caller never holds (and leaks) a Status it took for the object.
 */
static int request_object(struct kube *k, const char *method, const char *path,
			  const json_t *body, json_t **ret)
{
	json_t *answer = NULL;
	int r;

	r = kube_request(k, method, path, body, NULL, &answer);
	if (r == 0 && ret) {
		*ret = answer;
		answer = NULL;
	}
	json_decref(answer);
	return r;
}

/* request_object() on the object @name below @prefix. */
static int object_request(struct kube *k, const char *method, const char *prefix,
			  const char *name, const json_t *body, json_t **ret)
{
	char *path = NULL;
	int r;

	r = object_path(k, prefix, name, &path);
	if (r == 0)
		r = request_object(k, method, path, body, ret);
	free(path);
	return r;
}

#define PVS "/api/v1/persistentvolumes"

int kube_get_pv(struct kube *k, const char *name, json_t **ret_pv)
{
	return object_request(k, "GET", PVS, name, NULL, ret_pv);
}

int kube_get_node(struct kube *k, const char *name, json_t **ret_node)
{
	return object_request(k, "GET", "/api/v1/nodes", name, NULL, ret_node);
}

int kube_get_storage_class(struct kube *k, const char *name, json_t **ret_class)
{
	return object_request(k, "GET", "/apis/storage.k8s.io/v1/storageclasses", name, NULL,
			      ret_class);
}

int kube_create_pv(struct kube *k, const json_t *pv, json_t **ret_pv)
{
	return request_object(k, "POST", PVS, pv, ret_pv);
}

int kube_delete_pv(struct kube *k, const char *name, const char *uid)
{
	json_t *opts = NULL;
	int r;

	if (uid) {
		opts = json_pack("{s:s, s:s, s:{s:s}}", "kind", "DeleteOptions", "apiVersion", "v1",
				 "preconditions", "uid", uid);
		if (!opts)
			return -ENOMEM;
	}
	r = object_request(k, "DELETE", PVS, name, opts, NULL);
	json_decref(opts);
	return r;
}

int kube_patch_pv(struct kube *k, const char *name, const json_t *patch, json_t **ret_pv)
{
	return object_request(k, "PATCH", PVS, name, patch, ret_pv);
}

int kube_list(struct kube *k, const char *collection, json_t **ret_items,
	      char **ret_resource_version)
{
	json_t *all = NULL, *page = NULL;
	char *path = NULL, *rv = NULL, *cont = NULL;
	int r;

	all = json_array();
	if (!all)
		return -ENOMEM;
	for (;;) {
		const char *next, *page_rv;
		json_t *items;

		free(path);
		if (asprintf(&path, "%s%slimit=%d%s%s", collection,
			     strchr(collection, '?') ? "&" : "?", KUBE_LIST_LIMIT,
			     cont ? "&continue=" : "", cont ? cont : "") < 0) {
			path = NULL;
			r = -ENOMEM;
			goto cleanup;
		}
		json_decref(page);
		page = NULL;
		r = kube_request(k, "GET", path, NULL, NULL, &page);
		if (r < 0)
			goto cleanup;
		items = json_object_get(page, "items");
		if (!json_is_array(items) && !json_is_null(items) && items) {
			set_err(k, "GET %s: items is not a list", path);
			r = -EPROTO;
			goto cleanup;
		}
		if (items && json_array_extend(all, items) < 0) {
			r = -ENOMEM;
			goto cleanup;
		}
		page_rv = jpath_str(page, "metadata", "resourceVersion");
		if (page_rv) {
			free(rv);
			rv = strdup(page_rv);
			if (!rv) {
				r = -ENOMEM;
				goto cleanup;
			}
		}
		next = jpath_str(page, "metadata", "continue");
		curl_free(cont);
		cont = NULL;
		if (!next || next[0] == '\0')
			break;
		cont = curl_easy_escape(k->curl, next, 0);
		if (!cont) {
			r = -ENOMEM;
			goto cleanup;
		}
	}
	*ret_items = all;
	all = NULL;
	if (ret_resource_version) {
		*ret_resource_version = rv;
		rv = NULL;
	}
	r = 0;
cleanup:
	json_decref(all);
	json_decref(page);
	curl_free(cont);
	free(path);
	free(rv);
	return r;
}

int kube_list_pvs(struct kube *k, json_t **ret_items, char **ret_resource_version)
{
	return kube_list(k, PVS, ret_items, ret_resource_version);
}

int kube_list_pvcs(struct kube *k, json_t **ret_items, char **ret_resource_version)
{
	return kube_list(k, "/api/v1/persistentvolumeclaims", ret_items, ret_resource_version);
}

/* object_request() on the claim @ns/@name. */
static int pvc_request(struct kube *k, const char *method, const char *ns, const char *name,
		       const json_t *body, json_t **ret)
{
	char *esc = curl_easy_escape(k->curl, ns, 0), *prefix = NULL;
	int r;

	if (!esc)
		return -ENOMEM;
	if (asprintf(&prefix, "/api/v1/namespaces/%s/persistentvolumeclaims", esc) < 0) {
		curl_free(esc);
		return -ENOMEM;
	}
	curl_free(esc);
	r = object_request(k, method, prefix, name, body, ret);
	free(prefix);
	return r;
}

int kube_get_pvc(struct kube *k, const char *ns, const char *name, json_t **ret_pvc)
{
	return pvc_request(k, "GET", ns, name, NULL, ret_pvc);
}

int kube_patch_pvc(struct kube *k, const char *ns, const char *name, const json_t *patch,
		   json_t **ret_pvc)
{
	return pvc_request(k, "PATCH", ns, name, patch, ret_pvc);
}

/* ---- watch -------------------------------------------------------------- */

struct watch {
	struct kube *k;
	kube_watch_fn fn;
	void *userdata;
	struct growbuf line; /* bytes not yet ending in '\n', or an error body */
	long status;	 /* 0 until the first bytes arrive */
	int r;		 /* why the stream was stopped; 0 if it was not */
};

static int watch_event(struct watch *w, const char *text, size_t len)
{
	json_t *ev = json_loadb(text, len, 0, NULL), *obj;
	const char *type;
	int r;

	if (!ev) {
		set_err(w->k, "watch: an event that is not JSON");
		return -EPROTO;
	}
	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	if (!type || !json_is_object(obj)) {
		set_err(w->k, "watch: an event without type or object");
		r = -EPROTO;
	} else if (strcmp(type, "ERROR") == 0) {
		/* A Status in the stream: 410 Expired means the resourceVersion is gone. */
		long code = (long)json_integer_value(json_object_get(obj, "code"));

		set_status_err(w->k, "WATCH", "event", code, obj);
		r = status_errno(code, obj);
		if (r == 0)
			r = -EIO;
	} else {
		r = w->fn(type, obj, w->userdata);
	}
	json_decref(ev);
	return r;
}

static size_t watch_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct watch *w = userdata;
	size_t n = size * nmemb, start = 0;
	int r;

	if (w->status == 0)
		curl_easy_getinfo(w->k->curl, CURLINFO_RESPONSE_CODE, &w->status);
	r = growbuf_append(&w->line, ptr, n);
	if (r < 0)
		goto stop;
	if (w->status != 200)
		return n; /* an error body, read whole after the transfer */
	for (size_t i = 0; i < w->line.len; i++) {
		if (w->line.data[i] != '\n')
			continue;
		if (i > start) {
			r = watch_event(w, w->line.data + start, i - start);
			if (r != 0)
				goto stop;
		}
		start = i + 1;
	}
	memmove(w->line.data, w->line.data + start, w->line.len - start);
	w->line.len -= start;
	w->line.data[w->line.len] = '\0';
	return n;
stop:
	w->r = r;
	return 0;
}

void kube_set_cancel(struct kube *k, const atomic_bool *cancel)
{
	k->cancel = cancel;
}

/* curl calls this about once a second even on an idle stream. */
static int watch_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			  curl_off_t ulnow)
{
	const struct kube *k = userdata;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load_explicit(k->cancel, memory_order_relaxed) ? 1 : 0;
}

int kube_watch(struct kube *k, const char *path, const char *resource_version, long timeout_s,
	       kube_watch_fn fn, void *userdata)
{
	struct watch w = { .k = k, .fn = fn, .userdata = userdata,
			   .line = { .max = KUBE_EVENT_MAX } };
	struct curl_slist *headers = NULL;
	json_t *answer = NULL;
	char *url = NULL, *rv = NULL;
	CURLcode c;
	int r;

	k->err[0] = '\0';
	if (resource_version) {
		rv = curl_easy_escape(k->curl, resource_version, 0);
		if (!rv)
			return -ENOMEM;
	}
	if (asprintf(&url, "%s%s%swatch=1&allowWatchBookmarks=true&timeoutSeconds=%ld%s%s",
		     k->server, path, strchr(path, '?') ? "&" : "?", timeout_s,
		     rv ? "&resourceVersion=" : "", rv ? rv : "") < 0) {
		url = NULL;
		r = -ENOMEM;
		goto cleanup;
	}
	r = setup(k, url, NULL, &headers);
	if (r < 0)
		goto cleanup;
	/* No overall timeout: a watch lasts; a stalled one trips the speed limit. */
	curl_easy_setopt(k->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(k->curl, CURLOPT_LOW_SPEED_TIME, timeout_s + KUBE_WATCH_SLACK_S);
	curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, watch_write);
	curl_easy_setopt(k->curl, CURLOPT_WRITEDATA, &w);
	if (k->cancel) {
		curl_easy_setopt(k->curl, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(k->curl, CURLOPT_XFERINFOFUNCTION, watch_progress);
		curl_easy_setopt(k->curl, CURLOPT_XFERINFODATA, k);
	}
	c = curl_easy_perform(k->curl);
	if (w.r != 0) {
		r = w.r;
		goto cleanup;
	}
	if (c == CURLE_ABORTED_BY_CALLBACK) {
		r = -ECANCELED;
		goto cleanup;
	}
	if (c != CURLE_OK) {
		r = c == CURLE_WRITE_ERROR ? -EFBIG : curl_errno(c);
		set_err(k, "watch %s: %s", path, curl_easy_strerror(c));
		goto cleanup;
	}
	curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &w.status);
	if (w.status != 200) {
		if (w.line.len > 0)
			answer = json_loadb(w.line.data, w.line.len, 0, NULL);
		r = status_errno(w.status, answer);
		if (r == 0)
			r = -EPROTO;
		set_status_err(k, "watch", path, w.status, answer);
		goto cleanup;
	}
	r = 0;
cleanup:
	json_decref(answer);
	curl_slist_free_all(headers);
	free(w.line.data);
	curl_free(rv);
	free(url);
	if (r < 0)
		log_debug("%s", k->err);
	return r;
}
