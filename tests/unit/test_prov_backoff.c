/*
 * Tests for backoff.c: every delay within [d/2, d] of its nominal value,
 * the cap, reset, jitter actually spreading, and extreme parameters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "backoff.h"

#define MS UINT64_C(1000000)

static void check_bounds(uint64_t base, uint64_t cap, uint64_t seed, unsigned n)
{
	struct backoff b;
	uint64_t nominal = base;

	backoff_init(&b, base, cap, seed);
	for (unsigned i = 0; i < n; i++) {
		uint64_t d = backoff_next(&b);

		if (d < nominal / 2 || d > nominal)
			fail_msg("attempt %u: %llu not in [%llu, %llu]", i, (unsigned long long)d,
				 (unsigned long long)(nominal / 2), (unsigned long long)nominal);
		nominal = nominal > cap / 2 ? cap : nominal * 2;
	}
}

static void test_bounds(void **state)
{
	(void)state;
	for (uint64_t seed = 0; seed < 50; seed++) {
		check_bounds(100 * MS, 10000 * MS, seed, 40);
		check_bounds(1, 1000, seed, 20);
		check_bounds(3 * MS, 7 * MS, seed, 10);
	}
	/* near the top of the range: no overflow */
	check_bounds(UINT64_MAX / 3, UINT64_MAX, 7, 10);
	check_bounds(UINT64_MAX, UINT64_MAX, 7, 3);
}

static void test_cap_and_reset(void **state)
{
	struct backoff b;
	uint64_t d;

	(void)state;
	backoff_init(&b, 100 * MS, 1000 * MS, 42);
	for (int i = 0; i < 100; i++)
		d = backoff_next(&b);
	assert_true(d >= 500 * MS && d <= 1000 * MS);
	backoff_reset(&b);
	d = backoff_next(&b);
	assert_true(d >= 50 * MS && d <= 100 * MS);

	/* a cap below the base is raised to it; a zero base is one */
	backoff_init(&b, 10 * MS, 1 * MS, 1);
	for (int i = 0; i < 5; i++) {
		d = backoff_next(&b);
		assert_true(d >= 5 * MS && d <= 10 * MS);
	}
	backoff_init(&b, 0, 0, 1);
	for (int i = 0; i < 5; i++)
		assert_true(backoff_next(&b) <= 1);
}

static void test_jitter_spreads(void **state)
{
	struct backoff a, b;
	unsigned differ = 0, low = 0, high = 0;

	(void)state;
	for (uint64_t seed = 1; seed <= 200; seed++) {
		uint64_t da, db;

		backoff_init(&a, 1000 * MS, 1000 * MS, seed);
		backoff_init(&b, 1000 * MS, 1000 * MS, seed + 1000);
		da = backoff_next(&a);
		db = backoff_next(&b);
		differ += da != db;
		low += da < 750 * MS;
		high += da >= 750 * MS;
	}
	assert_true(differ > 190);
	/* both halves of the range are used */
	assert_true(low > 50 && high > 50);

	/* the same seed gives the same sequence */
	backoff_init(&a, 5 * MS, 500 * MS, 99);
	backoff_init(&b, 5 * MS, 500 * MS, 99);
	for (int i = 0; i < 20; i++)
		assert_int_equal(backoff_next(&a), backoff_next(&b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_cap_and_reset),
		cmocka_unit_test(test_jitter_spreads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
