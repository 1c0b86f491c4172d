/*
 * metrics.c - the provisioner's metrics registry and its text format; see
 * include/metrics.h.
 *
 * Every value is an independent atomic updated with relaxed ordering: each
 * is a count or a sum read on its own, nothing is published through it, so
 * no ordering between them is needed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#define PREFIX "local_volume_provisioner_"
#define NS_PER_MS UINT64_C(1000000)

/* Prometheus' default buckets, in nanoseconds and as the le label. */
#define N_BOUNDS 11
#define N_SLOTS (N_BOUNDS + 1) /* the last one: above every bound */

static const uint64_t bound_ns[N_BOUNDS] = {
	5 * NS_PER_MS,	  10 * NS_PER_MS,   25 * NS_PER_MS,   50 * NS_PER_MS,
	100 * NS_PER_MS,  250 * NS_PER_MS,  500 * NS_PER_MS,  1000 * NS_PER_MS,
	2500 * NS_PER_MS, 5000 * NS_PER_MS, 10000 * NS_PER_MS,
};
static const char *const bound_le[N_SLOTS] = {
	"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
};

enum { MODE_FS, MODE_BLOCK, N_MODES };
static const char *const mode_name[N_MODES] = { "Filesystem", "Block" };

enum { N_KNOWN_METHODS = 5, METHOD_OTHER = N_KNOWN_METHODS, N_METHODS };
static const char *const method_name[N_METHODS] = { "GET",   "POST",  "PUT",
						    "DELETE", "PATCH", "other" };

typedef _Atomic uint64_t counter_t;

struct histogram {
	counter_t slot[N_SLOTS]; /* per bucket, not cumulative: summed when formatted */
	counter_t sum_ns;
};

static struct {
	counter_t discovered[N_MODES];
	struct histogram discovery[N_MODES];
	counter_t deleted[N_MODES];
	counter_t delete_failed[N_MODES];
	struct histogram delete_duration[N_MODES];
	counter_t running;
	counter_t requests[N_METHODS];
	counter_t requests_failed[N_METHODS];
	struct histogram request_duration[N_METHODS];
} reg; /* static storage: zero-initialized atomics are valid */

static void add(counter_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(counter_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static void observe(struct histogram *h, uint64_t ns)
{
	size_t i = 0;

	while (i < N_BOUNDS && ns > bound_ns[i])
		i++;
	add(&h->slot[i], 1);
	add(&h->sum_ns, ns);
}

static int mode_of(bool is_block)
{
	return is_block ? MODE_BLOCK : MODE_FS;
}

void metrics_discovered(bool is_block)
{
	add(&reg.discovered[mode_of(is_block)], 1);
}

void metrics_discovery_pass(bool is_block, uint64_t ns)
{
	observe(&reg.discovery[mode_of(is_block)], ns);
}

void metrics_delete_started(void)
{
	add(&reg.running, 1);
}

void metrics_delete_done(bool is_block, bool ok, uint64_t ns)
{
	int m = mode_of(is_block);

	atomic_fetch_sub_explicit(&reg.running, 1, memory_order_relaxed);
	add(ok ? &reg.deleted[m] : &reg.delete_failed[m], 1);
	observe(&reg.delete_duration[m], ns);
}

void metrics_api_request(const char *method, bool ok, uint64_t ns)
{
	size_t i = 0;

	while (i < N_KNOWN_METHODS && (!method || strcmp(method, method_name[i]) != 0))
		i++;
	add(&reg.requests[i], 1);
	if (!ok)
		add(&reg.requests_failed[i], 1);
	observe(&reg.request_duration[i], ns);
}

static void clear(counter_t *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		atomic_store_explicit(&c[i], 0, memory_order_relaxed);
}

static void clear_histograms(struct histogram *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		clear(h[i].slot, N_SLOTS);
		clear(&h[i].sum_ns, 1);
	}
}

void metrics_reset(void)
{
	clear(reg.discovered, N_MODES);
	clear_histograms(reg.discovery, N_MODES);
	clear(reg.deleted, N_MODES);
	clear(reg.delete_failed, N_MODES);
	clear_histograms(reg.delete_duration, N_MODES);
	clear(&reg.running, 1);
	clear(reg.requests, N_METHODS);
	clear(reg.requests_failed, N_METHODS);
	clear_histograms(reg.request_duration, N_METHODS);
}

size_t metrics_escape_label(const char *value, char *buf, size_t size)
{
	size_t n = 0;

	for (const char *p = value; *p; p++) {
		char esc[2] = { *p, '\0' };
		size_t w = 1;

		if (*p == '\\' || *p == '"' || *p == '\n') {
			esc[0] = '\\';
			esc[1] = *p == '\n' ? 'n' : *p;
			w = 2;
		}
		for (size_t j = 0; j < w; j++, n++)
			if (n + 1 < size)
				buf[n] = esc[j];
	}
	if (size > 0)
		buf[n < size ? n : size - 1] = '\0';
	return n;
}

/* ---- formatting --------------------------------------------------------- */

struct out {
	char *data;
	size_t len, cap;
	int err;
};

/* Room for @n more bytes and a NUL. */
static int reserve(struct out *o, size_t n)
{
	size_t cap = o->cap ? o->cap : 4096;
	char *p;

	if (o->err)
		return o->err;
	if (o->len + n + 1 <= o->cap)
		return 0;
	while (cap < o->len + n + 1)
		cap *= 2;
	p = realloc(o->data, cap);
	if (!p) {
		o->err = -ENOMEM;
		return o->err;
	}
	o->data = p;
	o->cap = cap;
	return 0;
}

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		o->err = o->err ? o->err : -EINVAL;
		return;
	}
	if (reserve(o, (size_t)n) < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(o->data + o->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	o->len += (size_t)n;
}

static void put_escaped(struct out *o, const char *value)
{
	size_t n = metrics_escape_label(value, NULL, 0);

	if (reserve(o, n) < 0)
		return;
	metrics_escape_label(value, o->data + o->len, n + 1);
	o->len += n;
}

struct label {
	const char *name, *value;
};

/* "{a="x",b="y",le="0.5"}", or nothing without labels. */
static void put_labels(struct out *o, const struct label *l, size_t n, const char *le)
{
	if (n == 0 && !le)
		return;
	put(o, "{");
	for (size_t i = 0; i < n; i++) {
		put(o, "%s%s=\"", i > 0 ? "," : "", l[i].name);
		put_escaped(o, l[i].value);
		put(o, "\"");
	}
	if (le)
		put(o, "%sle=\"%s\"", n > 0 ? "," : "", le);
	put(o, "}");
}

static void put_header(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_value(struct out *o, const char *name, const struct label *l, size_t n,
		      uint64_t v)
{
	put(o, "%s", name);
	put_labels(o, l, n, NULL);
	put(o, " %" PRIu64 "\n", v);
}

static void put_histogram(struct out *o, const char *name, const struct label *l, size_t n,
			  struct histogram *h)
{
	uint64_t count = 0, sum_ns = get(&h->sum_ns);

	for (size_t i = 0; i < N_SLOTS; i++) {
		count += get(&h->slot[i]);
		put(o, "%s_bucket", name);
		put_labels(o, l, n, bound_le[i]);
		put(o, " %" PRIu64 "\n", count);
	}
	put(o, "%s_sum", name);
	put_labels(o, l, n, NULL);
	put(o, " %" PRIu64 ".%09" PRIu64 "\n", sum_ns / 1000000000, sum_ns % 1000000000);
	put(o, "%s_count", name);
	put_labels(o, l, n, NULL);
	put(o, " %" PRIu64 "\n", count);
}

#define DISCOVERY PREFIX "persistentvolume_discovery_"
#define DELETE PREFIX "persistentvolume_delete_"
#define REQUESTS PREFIX "apiserver_requests_"
#define PROCTABLE PREFIX "proctable_"

static void put_pv_families(struct out *o)
{
	struct label l[2] = { { "mode", NULL }, { "type", "process" } };
	int m;

	put_header(o, DISCOVERY "total", "counter", "Number of persistent volumes created.");
	for (m = 0; m < N_MODES; m++) {
		l[0].value = mode_name[m];
		put_value(o, DISCOVERY "total", l, 1, get(&reg.discovered[m]));
	}
	put_header(o, DISCOVERY "duration_seconds", "histogram",
		   "Duration of discovery passes, in seconds.");
	for (m = 0; m < N_MODES; m++) {
		l[0].value = mode_name[m];
		put_histogram(o, DISCOVERY "duration_seconds", l, 1, &reg.discovery[m]);
	}
	put_header(o, DELETE "total", "counter",
		   "Number of released volumes cleaned and their persistent volumes deleted.");
	for (m = 0; m < N_MODES; m++) {
		l[0].value = mode_name[m];
		put_value(o, DELETE "total", l, 2, get(&reg.deleted[m]));
	}
	put_header(o, DELETE "failed_total", "counter",
		   "Number of released volumes whose cleaning or deletion failed.");
	for (m = 0; m < N_MODES; m++) {
		l[0].value = mode_name[m];
		put_value(o, DELETE "failed_total", l, 2, get(&reg.delete_failed[m]));
	}
	put_header(o, DELETE "duration_seconds", "histogram",
		   "Duration of cleaning a released volume and deleting its persistent volume, in seconds.");
	for (m = 0; m < N_MODES; m++) {
		l[0].value = mode_name[m];
		put_histogram(o, DELETE "duration_seconds", l, 2, &reg.delete_duration[m]);
	}
}

static void put_api_families(struct out *o)
{
	struct label l = { "method", NULL };
	int i;

	/* "other" appears once some request used another method. */
	put_header(o, REQUESTS "total", "counter", "Number of API server requests.");
	for (i = 0; i < N_METHODS; i++) {
		if (i == METHOD_OTHER && get(&reg.requests[i]) == 0)
			continue;
		l.value = method_name[i];
		put_value(o, REQUESTS "total", &l, 1, get(&reg.requests[i]));
	}
	put_header(o, REQUESTS "failed_total", "counter", "Number of failed API server requests.");
	for (i = 0; i < N_METHODS; i++) {
		if (i == METHOD_OTHER && get(&reg.requests[i]) == 0)
			continue;
		l.value = method_name[i];
		put_value(o, REQUESTS "failed_total", &l, 1, get(&reg.requests_failed[i]));
	}
	put_header(o, REQUESTS "duration_seconds", "histogram",
		   "Duration of API server requests, in seconds.");
	for (i = 0; i < N_METHODS; i++) {
		if (i == METHOD_OTHER && get(&reg.requests[i]) == 0)
			continue;
		l.value = method_name[i];
		put_histogram(o, REQUESTS "duration_seconds", &l, 1, &reg.request_duration[i]);
	}
}

static void put_proctable(struct out *o)
{
	uint64_t ok = 0, failed = 0;

	for (int m = 0; m < N_MODES; m++) {
		ok += get(&reg.deleted[m]);
		failed += get(&reg.delete_failed[m]);
	}
	put_header(o, PROCTABLE "running", "gauge", "Number of volume cleanings running.");
	put_value(o, PROCTABLE "running", NULL, 0, get(&reg.running));
	put_header(o, PROCTABLE "succeeded", "gauge", "Number of volume cleanings that succeeded.");
	put_value(o, PROCTABLE "succeeded", NULL, 0, ok);
	put_header(o, PROCTABLE "failed", "gauge", "Number of volume cleanings that failed.");
	put_value(o, PROCTABLE "failed", NULL, 0, failed);
}

int metrics_format(char **ret_text, size_t *ret_len)
{
	struct out o = { 0 };
	int r;

	put_pv_families(&o);
	put_api_families(&o);
	put_proctable(&o);
	r = o.err;
	if (r < 0)
		goto cleanup;
	*ret_text = o.data;
	*ret_len = o.len;
	o.data = NULL;
cleanup:
	free(o.data);
	return r;
}
