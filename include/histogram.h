/*
 * histogram.h - latency histograms with fixed bucket bounds, recorded
 * without a lock from one thread and read from another.
 *
 * A histogram counts observations per bucket and sums them. The bounds are
 * inclusive upper edges ("le") in nanoseconds, ascending; one more bucket
 * holds what lies above the last bound. Buckets are kept apart, not
 * cumulative, so recording touches one counter and the sum; readers add
 * them up.
 *
 * Every counter is an independent atomic updated with relaxed ordering:
 * nothing is published through them. A reader racing a recorder may see
 * the sum one observation ahead of or behind the buckets, never a count
 * that goes backwards, and its count is always the sum of its buckets.
 *
 * Pure: the caller measures time. Never logs.
 */
#ifndef CARVEFS_HISTOGRAM_H
#define CARVEFS_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_MAX_BOUNDS 16

struct histogram_bounds {
	const uint64_t *le_ns; /* ascending */
	size_t n;	       /* at most HISTOGRAM_MAX_BOUNDS */
};

/* 50 us to 1 s: a request of a volume, from its arrival to its reply. */
extern const struct histogram_bounds histogram_io_bounds;
/* Prometheus' default buckets, 5 ms to 10 s: slower work (API calls, passes). */
extern const struct histogram_bounds histogram_default_bounds;

/* Zero-filled memory is an empty histogram. */
struct histogram {
	_Atomic uint64_t slot[HISTOGRAM_MAX_BOUNDS + 1];
	_Atomic uint64_t sum_ns;
};

/* A copy to format or summarise; slot[bounds->n] is the bucket above every bound. */
struct histogram_snapshot {
	uint64_t slot[HISTOGRAM_MAX_BOUNDS + 1];
	uint64_t count; /* the sum of slot[] */
	uint64_t sum_ns;
};

/* Records one observation of @ns; @b must be the bounds @h is always used with. */
void histogram_observe(struct histogram *h, const struct histogram_bounds *b, uint64_t ns);

void histogram_read(struct histogram *h, const struct histogram_bounds *b,
		    struct histogram_snapshot *ret_snapshot);

/* Sets every counter back to zero. Not atomic as a whole. */
void histogram_reset(struct histogram *h);

/*
 * Estimates the @q quantile (0 <= q <= 1) as Prometheus' histogram_quantile()
 * does: finds the bucket holding rank q * count and interpolates linearly
 * inside it, the first bucket starting at 0. A rank in the bucket above the
 * last bound yields the last bound, the most that can be said. Returns 0 for
 * an empty histogram.
 */
uint64_t histogram_quantile_ns(const struct histogram_snapshot *s,
			       const struct histogram_bounds *b, double q);

#endif
