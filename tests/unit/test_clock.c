/*
 * Tests for clock.c: it is CLOCK_MONOTONIC in nanoseconds, and it moves
 * forward by the time slept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "clock.h"

static uint64_t mono_ns(void)
{
	struct timespec ts;

	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_is_the_monotonic_clock(void **state)
{
	uint64_t before, now, after;

	(void)state;
	before = mono_ns();
	now = clock_now_ns();
	after = mono_ns();
	assert_true(before <= now);
	assert_true(now <= after);
}

static void test_advances_by_the_time_slept(void **state)
{
	struct timespec ms20 = { .tv_sec = 0, .tv_nsec = 20 * 1000 * 1000 };
	uint64_t start, end;

	(void)state;
	start = clock_now_ns();
	assert_int_equal(nanosleep(&ms20, NULL), 0);
	end = clock_now_ns();
	assert_true(end - start >= 20 * CLOCK_NS_PER_MS);
	/* Not seconds or microseconds by mistake: well under a second here. */
	assert_true(end - start < CLOCK_NS_PER_SEC * 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_is_the_monotonic_clock),
		cmocka_unit_test(test_advances_by_the_time_slept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
