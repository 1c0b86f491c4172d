/*
 * Token-bucket arithmetic with a fake clock: long-run rates are exact, the
 * burst is bounded, the stricter knob wins, iops_size normalises, and
 * changing limits keeps debt.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "throttle.h"

#define SEC 1000000000ull

/* Issues requests of @bytes back to back for @seconds, as a queue would. */
static uint64_t run(struct throttle *t, enum throttle_dir dir, uint64_t bytes, uint64_t start_ns,
		    uint64_t seconds, uint64_t *ret_end_ns)
{
	uint64_t now = start_ns, end = start_ns + seconds * SEC, done = 0;

	while (now < end) {
		uint64_t wait = throttle_admit(t, dir, bytes, now);

		if (wait) {
			now += wait;
			continue;
		}
		done++;
	}
	if (ret_end_ns)
		*ret_end_ns = now;
	return done;
}

static void test_unlimited_admits_everything(void **state)
{
	struct throttle *t;
	struct io_limits l = { 0 };

	(void)state;
	assert_int_equal(throttle_new(&t), 0);
	throttle_set_limits(t, &l, 0);
	assert_true(throttle_unlimited(t, THROTTLE_READ));
	for (int i = 0; i < 100000; i++)
		assert_int_equal(throttle_admit(t, THROTTLE_READ, 1 << 20, 0), 0);
	throttle_free(t);
}

static void test_iops_rate_is_exact_after_burst(void **state)
{
	static const uint64_t rates[] = { 100, 500, 2000, 20000 };

	(void)state;
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		struct io_limits l = { .riops = rates[i] };
		struct throttle *t;
		uint64_t burst, steady, now;

		assert_int_equal(throttle_new(&t), 0);
		throttle_set_limits(t, &l, 0);
		/* The first 0.1 s worth of ops pass at once, then one more into debt. */
		burst = run(t, THROTTLE_READ, 4096, 0, 0, NULL);
		assert_int_equal(burst, 0);
		now = 0;
		burst = 0;
		while (throttle_admit(t, THROTTLE_READ, 4096, now) == 0)
			burst++;
		assert_in_range(burst, rates[i] / 10, rates[i] / 10 + 1);
		steady = run(t, THROTTLE_READ, 4096, now, 10, NULL);
		/* Within 1 %: the target of the accuracy benchmark is 3 %. */
		assert_in_range(steady, rates[i] * 10 * 99 / 100, rates[i] * 10 * 101 / 100);
		throttle_free(t);
	}
}

static void test_bandwidth_and_stricter_knob(void **state)
{
	struct io_limits l = { .wbps = 20 << 20, .wiops = 1000 };
	struct throttle *t;
	uint64_t n;

	(void)state;
	assert_int_equal(throttle_new(&t), 0);
	throttle_set_limits(t, &l, 0);
	/* 1 MiB writes: bandwidth allows 20/s, IOPS 1000/s: bandwidth wins. */
	n = run(t, THROTTLE_WRITE, 1 << 20, 0, 10, NULL);
	assert_in_range(n, 200 - 2, 200 + 4);
	/* Reads are not limited by write knobs. */
	assert_true(throttle_unlimited(t, THROTTLE_READ));
	assert_int_equal(throttle_admit(t, THROTTLE_READ, 1 << 30, 11 * SEC), 0);
	throttle_free(t);
}

static void test_large_request_passes_and_is_paid_for(void **state)
{
	struct io_limits l = { .rbps = 1 << 20 }; /* bucket holds 0.1 MiB */
	struct throttle *t;
	uint64_t wait;

	(void)state;
	assert_int_equal(throttle_new(&t), 0);
	throttle_set_limits(t, &l, 0);
	assert_int_equal(throttle_admit(t, THROTTLE_READ, 4 << 20, 0), 0);
	wait = throttle_admit(t, THROTTLE_READ, 4096, 0);
	/* 4 MiB - 0.1 MiB of debt at 1 MiB/s. */
	assert_in_range(wait, 3890 * 1000000ull, 3910 * 1000000ull);
	throttle_free(t);
}

static void test_iops_size_normalises(void **state)
{
	struct io_limits l = { .riops = 100, .iops_size_bytes = 4096 };
	struct throttle *t;
	uint64_t n;

	(void)state;
	assert_int_equal(throttle_new(&t), 0);
	throttle_set_limits(t, &l, 0);
	/* A 64 KiB read counts as 16 ops: 100 ops/s allow about 6 per second. */
	n = run(t, THROTTLE_READ, 65536, SEC, 10, NULL);
	assert_in_range(n, 60, 64);
	throttle_free(t);
}

static void test_idle_volume_bursts_no_more_than_burst(void **state)
{
	struct io_limits l = { .wiops = 1000, .burst_ms = 500 };
	struct throttle *t;
	uint64_t now = 100 * SEC, n = 0;

	(void)state;
	assert_int_equal(throttle_new(&t), 0);
	throttle_set_limits(t, &l, 0);
	/* After 100 s idle, only 0.5 s of the rate is saved up. */
	while (throttle_admit(t, THROTTLE_WRITE, 4096, now) == 0)
		n++;
	assert_in_range(n, 500, 501);
	throttle_free(t);
}

static void test_lowering_keeps_debt(void **state)
{
	struct io_limits l = { .rbps = 1 << 20 };
	struct throttle *t;
	uint64_t before, after;

	(void)state;
	assert_int_equal(throttle_new(&t), 0);
	throttle_set_limits(t, &l, 0);
	assert_int_equal(throttle_admit(t, THROTTLE_READ, 8 << 20, 0), 0);
	before = throttle_admit(t, THROTTLE_READ, 1, 0);
	throttle_set_limits(t, &l, 0);
	after = throttle_admit(t, THROTTLE_READ, 1, 0);
	assert_true(before > 0);
	assert_int_equal(before, after);
	/* A higher limit pays the same debt off sooner. */
	l.rbps = 2 << 20;
	throttle_set_limits(t, &l, 0);
	after = throttle_admit(t, THROTTLE_READ, 1, 0);
	assert_in_range(after, before / 2 - 1000, before / 2 + 1000);
	/* Lifting the limit ends the wait. */
	l.rbps = 0;
	throttle_set_limits(t, &l, 0);
	assert_int_equal(throttle_admit(t, THROTTLE_READ, 1, 0), 0);
	throttle_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unlimited_admits_everything),
		cmocka_unit_test(test_iops_rate_is_exact_after_burst),
		cmocka_unit_test(test_bandwidth_and_stricter_knob),
		cmocka_unit_test(test_large_request_passes_and_is_paid_for),
		cmocka_unit_test(test_iops_size_normalises),
		cmocka_unit_test(test_idle_volume_bursts_no_more_than_burst),
		cmocka_unit_test(test_lowering_keeps_debt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
