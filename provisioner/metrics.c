/*
 * metrics.c - the provisioner's metrics registry and its text format; see
 * include/metrics.h.
 *
 * Every value is an independent atomic updated with relaxed ordering: each
 * is a count or a sum read on its own, nothing is published through it, so
 * no ordering between them is needed.
 */
#include <stdatomic.h>
#include <string.h>

#include "histogram.h"
#include "metrics.h"
#include "promtext.h"

#define PREFIX "local_volume_provisioner_"

enum { MODE_FS, MODE_BLOCK, N_MODES };
static const char *const mode_name[N_MODES] = { "Filesystem", "Block" };

enum { N_KNOWN_METHODS = 5, METHOD_OTHER = N_KNOWN_METHODS, N_METHODS };
static const char *const method_name[N_METHODS] = { "GET",   "POST",  "PUT",
						    "DELETE", "PATCH", "other" };

typedef _Atomic uint64_t counter_t;

/* Every histogram here has Prometheus' default buckets. */
#define BOUNDS (&histogram_default_bounds)

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
	counter_t provisioned;
	counter_t provision_failed;
	counter_t dynamic_deleted;
	counter_t orphaned; /* a gauge: the latest count */
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
	histogram_observe(h, BOUNDS, ns);
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

void metrics_provisioned(bool ok)
{
	add(ok ? &reg.provisioned : &reg.provision_failed, 1);
}

void metrics_dynamic_deleted(void)
{
	add(&reg.dynamic_deleted, 1);
}

void metrics_orphaned_volumes(uint64_t n)
{
	atomic_store_explicit(&reg.orphaned, n, memory_order_relaxed);
}

static void clear(counter_t *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		atomic_store_explicit(&c[i], 0, memory_order_relaxed);
}

static void clear_histograms(struct histogram *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		histogram_reset(&h[i]);
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
	clear(&reg.provisioned, 1);
	clear(&reg.provision_failed, 1);
	clear(&reg.dynamic_deleted, 1);
	clear(&reg.orphaned, 1);
}

size_t metrics_escape_label(const char *value, char *buf, size_t size)
{
	return promtext_escape_label(value, buf, size);
}

/* ---- formatting --------------------------------------------------------- */

static void put_histogram(struct promtext *o, const char *name, const struct promtext_label *l,
			  size_t n, struct histogram *h)
{
	struct histogram_snapshot s;

	histogram_read(h, BOUNDS, &s);
	promtext_histogram(o, name, l, n, BOUNDS, &s);
}

#define DISCOVERY PREFIX "persistentvolume_discovery_"
#define DELETE PREFIX "persistentvolume_delete_"
#define REQUESTS PREFIX "apiserver_requests_"
#define PROCTABLE PREFIX "proctable_"

/*
 * A family with one series per value of its first label, the counter or
 * histogram at the same index holding each; the other labels are fixed.
 */
struct family {
	const char *name;
	const char *type; /* "counter" or "histogram" */
	const char *help;
	size_t n_labels;
	counter_t *counters;	    /* for a counter */
	struct histogram *histograms; /* for a histogram */
};

/*
 * Writes @f with @l[0] taking each of the @n @values; only the series
 * @show marks when it is not NULL.
 */
static void put_family(struct promtext *o, const struct family *f, struct promtext_label *l,
		       const char *const *values, int n, const bool *show)
{
	promtext_family(o, f->name, f->type, f->help);
	for (int i = 0; i < n; i++) {
		if (show && !show[i])
			continue;
		l[0].value = values[i];
		if (f->histograms)
			put_histogram(o, f->name, l, f->n_labels, &f->histograms[i]);
		else
			promtext_u64(o, f->name, l, f->n_labels, get(&f->counters[i]));
	}
}

static void put_pv_families(struct promtext *o)
{
	struct promtext_label l[2] = { { "mode", NULL }, { "type", "process" } };
	const struct family families[] = {
		{ DISCOVERY "total", "counter", "Number of persistent volumes created.", 1,
		  reg.discovered, NULL },
		{ DISCOVERY "duration_seconds", "histogram",
		  "Duration of discovery passes, in seconds.", 1, NULL, reg.discovery },
		{ DELETE "total", "counter",
		  "Number of released volumes cleaned and their persistent volumes deleted.", 2,
		  reg.deleted, NULL },
		{ DELETE "failed_total", "counter",
		  "Number of released volumes whose cleaning or deletion failed.", 2,
		  reg.delete_failed, NULL },
		{ DELETE "duration_seconds", "histogram",
		  "Duration of cleaning a released volume and deleting its persistent volume, in seconds.",
		  2, NULL, reg.delete_duration },
	};

	for (size_t i = 0; i < sizeof(families) / sizeof(*families); i++)
		put_family(o, &families[i], l, mode_name, N_MODES, NULL);
}

static void put_api_families(struct promtext *o)
{
	struct promtext_label l = { "method", NULL };
	bool show[N_METHODS];
	const struct family families[] = {
		{ REQUESTS "total", "counter", "Number of API server requests.", 1, reg.requests,
		  NULL },
		{ REQUESTS "failed_total", "counter", "Number of failed API server requests.", 1,
		  reg.requests_failed, NULL },
		{ REQUESTS "duration_seconds", "histogram",
		  "Duration of API server requests, in seconds.", 1, NULL, reg.request_duration },
	};

	/* "other" appears once some request used another method, in all three families. */
	for (int i = 0; i < N_METHODS; i++)
		show[i] = i != METHOD_OTHER || get(&reg.requests[i]) != 0;
	for (size_t i = 0; i < sizeof(families) / sizeof(*families); i++)
		put_family(o, &families[i], &l, method_name, N_METHODS, show);
}

static void put_proctable(struct promtext *o)
{
	uint64_t ok = 0, failed = 0;

	for (int m = 0; m < N_MODES; m++) {
		ok += get(&reg.deleted[m]);
		failed += get(&reg.delete_failed[m]);
	}
	promtext_family(o, PROCTABLE "running", "gauge", "Number of volume cleanings running.");
	promtext_u64(o, PROCTABLE "running", NULL, 0, get(&reg.running));
	promtext_family(o, PROCTABLE "succeeded", "gauge", "Number of volume cleanings that succeeded.");
	promtext_u64(o, PROCTABLE "succeeded", NULL, 0, ok);
	promtext_family(o, PROCTABLE "failed", "gauge", "Number of volume cleanings that failed.");
	promtext_u64(o, PROCTABLE "failed", NULL, 0, failed);
}

static void put_dynamic(struct promtext *o)
{
	promtext_family(o, "carvefs_dynamic_provisioned_total", "counter",
			"Volumes carved for claims and offered as PVs.");
	promtext_u64(o, "carvefs_dynamic_provisioned_total", NULL, 0, get(&reg.provisioned));
	promtext_family(o, "carvefs_dynamic_provisioning_failed_total", "counter",
			"Attempts to provision a claim that failed.");
	promtext_u64(o, "carvefs_dynamic_provisioning_failed_total", NULL, 0,
		     get(&reg.provision_failed));
	promtext_family(o, "carvefs_dynamic_deleted_total", "counter",
			"Volumes of released claims deleted with their PVs.");
	promtext_u64(o, "carvefs_dynamic_deleted_total", NULL, 0, get(&reg.dynamic_deleted));
	promtext_family(o, "carvefs_dynamic_orphaned_volumes", "gauge",
			"Volumes carved for claims whose claim and PV are both gone (kept).");
	promtext_u64(o, "carvefs_dynamic_orphaned_volumes", NULL, 0, get(&reg.orphaned));
}

int metrics_format(char **ret_text, size_t *ret_len)
{
	struct promtext o = { 0 };

	put_pv_families(&o);
	put_api_families(&o);
	put_proctable(&o);
	put_dynamic(&o);
	return promtext_finish(&o, ret_text, ret_len);
}
