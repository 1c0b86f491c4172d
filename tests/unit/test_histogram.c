/*
 * Tests for histogram.c: which bucket a value lands in (bounds are
 * inclusive), the count and sum, reset, and the quantile estimate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "histogram.h"

#define US UINT64_C(1000)
#define MS UINT64_C(1000000)

static const struct histogram_bounds *io = &histogram_io_bounds;

static void test_bounds_ascending(void **state)
{
	(void)state;
	assert_int_equal(io->n, 14);
	assert_int_equal(io->le_ns[0], 50 * US);
	assert_int_equal(io->le_ns[io->n - 1], 1000 * MS);
	for (size_t i = 1; i < io->n; i++)
		assert_true(io->le_ns[i] > io->le_ns[i - 1]);
	assert_int_equal(histogram_default_bounds.n, 11);
	assert_int_equal(histogram_default_bounds.le_ns[0], 5 * MS);
}

static void test_buckets(void **state)
{
	struct histogram h;
	struct histogram_snapshot s;

	(void)state;
	memset(&h, 0, sizeof(h));
	histogram_observe(&h, io, 0);		   /* below everything: the first */
	histogram_observe(&h, io, 50 * US);	   /* on a bound: in it */
	histogram_observe(&h, io, 50 * US + 1);	   /* just above: the next */
	histogram_observe(&h, io, 1000 * MS);	   /* the last bound */
	histogram_observe(&h, io, 1000 * MS + 1); /* above every bound */
	histogram_observe(&h, io, UINT64_C(1) << 62);
	histogram_read(&h, io, &s);
	assert_int_equal(s.slot[0], 2);
	assert_int_equal(s.slot[1], 1);
	assert_int_equal(s.slot[io->n - 1], 1);
	assert_int_equal(s.slot[io->n], 2);
	assert_int_equal(s.count, 6);
	assert_int_equal(s.sum_ns, 100 * US + 1 + 2000 * MS + 1 + (UINT64_C(1) << 62));
	histogram_reset(&h);
	histogram_read(&h, io, &s);
	assert_int_equal(s.count, 0);
	assert_int_equal(s.sum_ns, 0);
}

static void test_quantile(void **state)
{
	struct histogram h;
	struct histogram_snapshot s;

	(void)state;
	memset(&h, 0, sizeof(h));
	histogram_read(&h, io, &s);
	assert_int_equal(histogram_quantile_ns(&s, io, 0.5), 0);

	/* 100 values in (100us, 250us]: interpolated across that bucket. */
	for (int i = 0; i < 100; i++)
		histogram_observe(&h, io, 200 * US);
	histogram_read(&h, io, &s);
	assert_int_equal(histogram_quantile_ns(&s, io, 0.5), 175 * US);
	assert_int_equal(histogram_quantile_ns(&s, io, 1.0), 250 * US);
	assert_int_equal(histogram_quantile_ns(&s, io, 0.0), 100 * US);
	/* Out of range clamps. */
	assert_int_equal(histogram_quantile_ns(&s, io, 7.0), 250 * US);

	/* One slow outlier in a hundred and one: p99 stays, p100 moves up. */
	histogram_observe(&h, io, 30 * MS);
	histogram_read(&h, io, &s);
	assert_true(histogram_quantile_ns(&s, io, 0.99) <= 250 * US);
	assert_true(histogram_quantile_ns(&s, io, 1.0) > 25 * MS);
	assert_true(histogram_quantile_ns(&s, io, 1.0) <= 50 * MS);

	/* Beyond the last bound, the last bound is all that can be said. */
	histogram_reset(&h);
	histogram_observe(&h, io, 5000 * MS);
	histogram_read(&h, io, &s);
	assert_int_equal(histogram_quantile_ns(&s, io, 0.5), 1000 * MS);
}

static void test_quantile_first_bucket(void **state)
{
	struct histogram h;
	struct histogram_snapshot s;

	(void)state;
	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 4; i++)
		histogram_observe(&h, io, 10 * US);
	histogram_read(&h, io, &s);
	/* The first bucket starts at 0. */
	assert_int_equal(histogram_quantile_ns(&s, io, 0.5), 25 * US);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds_ascending),
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_quantile),
		cmocka_unit_test(test_quantile_first_bucket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
