/*
 * histogram.c - lock-free latency histograms; see include/histogram.h.
 */
#include "histogram.h"

#define US UINT64_C(1000)
#define MS UINT64_C(1000000)

static const uint64_t io_le_ns[] = {
	50 * US,  100 * US, 250 * US, 500 * US, 1 * MS,	  2500 * US, 5 * MS,
	10 * MS,  25 * MS,  50 * MS,  100 * MS, 250 * MS, 500 * MS,  1000 * MS,
};
const struct histogram_bounds histogram_io_bounds = { io_le_ns,
						      sizeof(io_le_ns) / sizeof(io_le_ns[0]) };

static const uint64_t default_le_ns[] = {
	5 * MS,	  10 * MS,   25 * MS,	50 * MS,   100 * MS,   250 * MS,
	500 * MS, 1000 * MS, 2500 * MS, 5000 * MS, 10000 * MS,
};
const struct histogram_bounds histogram_default_bounds = {
	default_le_ns, sizeof(default_le_ns) / sizeof(default_le_ns[0])
};

_Static_assert(sizeof(io_le_ns) / sizeof(io_le_ns[0]) <= HISTOGRAM_MAX_BOUNDS, "too many bounds");
_Static_assert(sizeof(default_le_ns) / sizeof(default_le_ns[0]) <= HISTOGRAM_MAX_BOUNDS,
	       "too many bounds");

void histogram_observe(struct histogram *h, const struct histogram_bounds *b, uint64_t ns)
{
	size_t lo = 0, hi = b->n;

	/* The first bound >= ns, or b->n: a value on a bound belongs to it (le). */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ns > b->le_ns[mid])
			lo = mid + 1;
		else
			hi = mid;
	}
	atomic_fetch_add_explicit(&h->slot[lo], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

void histogram_read(struct histogram *h, const struct histogram_bounds *b,
		    struct histogram_snapshot *ret_snapshot)
{
	struct histogram_snapshot s = { 0 };

	for (size_t i = 0; i <= b->n; i++) {
		s.slot[i] = atomic_load_explicit(&h->slot[i], memory_order_relaxed);
		s.count += s.slot[i];
	}
	s.sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
	*ret_snapshot = s;
}

void histogram_reset(struct histogram *h)
{
	for (size_t i = 0; i <= HISTOGRAM_MAX_BOUNDS; i++)
		atomic_store_explicit(&h->slot[i], 0, memory_order_relaxed);
	atomic_store_explicit(&h->sum_ns, 0, memory_order_relaxed);
}

uint64_t histogram_quantile_ns(const struct histogram_snapshot *s,
			       const struct histogram_bounds *b, double q)
{
	double rank, below = 0;

	if (s->count == 0 || b->n == 0)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	rank = q * (double)s->count;
	for (size_t i = 0; i <= b->n; i++) {
		double lower, upper;

		/* An empty bucket cannot hold the rank, even a rank of 0. */
		if (s->slot[i] == 0 || below + (double)s->slot[i] < rank) {
			below += (double)s->slot[i];
			continue;
		}
		if (i == b->n)
			return b->le_ns[b->n - 1];
		lower = i == 0 ? 0 : (double)b->le_ns[i - 1];
		upper = (double)b->le_ns[i];
		return (uint64_t)(lower + (upper - lower) * (rank - below) / (double)s->slot[i]);
	}
	return b->le_ns[b->n - 1];
}
