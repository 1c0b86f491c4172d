/*
 * Tests for duration.c: Go's duration grammar, overflow, the printer, and
 * plain seconds in milliseconds.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "duration.h"

#define NS UINT64_C(1)
#define US (1000 * NS)
#define MS (1000 * US)
#define SEC (1000 * MS)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

static const uint64_t SENTINEL = UINT64_C(0xdeadbeefcafe);

static void expect_ns(const char *s, uint64_t want)
{
	uint64_t got = SENTINEL;
	int r = duration_parse(s, &got);

	if (r != 0 || got != want)
		fail_msg("\"%s\": r=%d got=%llu want=%llu", s, r, (unsigned long long)got,
			 (unsigned long long)want);
}

static void expect_error(const char *s, int want)
{
	uint64_t got = SENTINEL;
	int r = duration_parse(s, &got);

	if (r != want)
		fail_msg("\"%s\": r=%d want %d", s, r, want);
	assert_int_equal(got, SENTINEL);
}

static void test_units(void **state)
{
	(void)state;
	expect_ns("10s", 10 * SEC);
	expect_ns("500ms", 500 * MS);
	expect_ns("2h", 2 * HOUR);
	expect_ns("1m", MIN);
	expect_ns("7ns", 7);
	expect_ns("3us", 3 * US);
	expect_ns("3\xc2\xb5s", 3 * US); /* micro sign */
	expect_ns("3\xce\xbcs", 3 * US); /* Greek mu */
	expect_ns("0", 0);
	expect_ns("0s", 0);
	expect_ns("+5s", 5 * SEC);
	expect_ns("-0", 0);
	expect_ns("-0s", 0);
}

static void test_sequences_and_fractions(void **state)
{
	(void)state;
	expect_ns("1m30s", 90 * SEC);
	expect_ns("2h45m", 2 * HOUR + 45 * MIN);
	expect_ns("1h1m1s1ms1us1ns", HOUR + MIN + SEC + MS + US + 1);
	expect_ns("1.5h", 90 * MIN);
	expect_ns("1.5s", 1500 * MS);
	expect_ns(".5s", 500 * MS);
	expect_ns("5.s", 5 * SEC);
	expect_ns("0.000000001s", 1);
	/* digits below a nanosecond are dropped, not rounded */
	expect_ns("0.0000000019s", 1);
	expect_ns("1s1s", 2 * SEC); /* Go allows repeats */
	expect_ns("300ms1h", HOUR + 300 * MS);
	expect_ns("18446744073709551615ns", UINT64_MAX);
	expect_ns("5124095h34m33.709551615s", UINT64_MAX);
}

static void test_rejects(void **state)
{
	(void)state;
	expect_error("", -EINVAL);
	expect_error("10", -EINVAL);
	expect_error("s", -EINVAL);
	expect_error(".s", -EINVAL);
	expect_error("1d", -EINVAL);
	expect_error("1S", -EINVAL);
	expect_error("1 s", -EINVAL);
	expect_error(" 1s", -EINVAL);
	expect_error("1s ", -EINVAL);
	expect_error("1h-2m", -EINVAL);
	expect_error("1.2.3s", -EINVAL);
	expect_error("+", -EINVAL);
	expect_error("-", -EINVAL);
	expect_error("1ss", -EINVAL);
	expect_error("-1s", -ERANGE);
	expect_error("18446744073709551616ns", -ERANGE);
	expect_error("5124096h", -ERANGE);
	expect_error("99999999999999999999999999999999999999999h", -ERANGE);
	assert_int_equal(duration_parse(NULL, &(uint64_t){ 0 }), -EINVAL);
}

static void expect_format(uint64_t ns, const char *want)
{
	char buf[32];
	int r = duration_format(ns, buf, sizeof(buf));

	if (r != (int)strlen(want) || strcmp(buf, want) != 0)
		fail_msg("%llu: r=%d got \"%s\" want \"%s\"", (unsigned long long)ns, r, buf, want);
}

static void test_format(void **state)
{
	char small[4];

	(void)state;
	expect_format(0, "0s");
	expect_format(1, "1ns");
	expect_format(999, "999ns");
	expect_format(1500, "1.5\xc2\xb5s");
	expect_format(500 * MS, "500ms");
	expect_format(1500 * MS, "1.5s");
	expect_format(10 * SEC, "10s");
	expect_format(90 * SEC, "1m30s");
	expect_format(2 * HOUR, "2h0m0s");
	expect_format(HOUR + 1, "1h0m0.000000001s");
	expect_format(UINT64_MAX, "5124095h34m33.709551615s");
	assert_int_equal(duration_format(90 * SEC, small, sizeof(small)), -ENOSPC);
}

static void test_round_trip(void **state)
{
	static const uint64_t values[] = { 1, 999, 1000, 1500, MS, 1234567 * NS, SEC,
					   90 * SEC, HOUR + 1, 5 * MIN, UINT64_MAX };
	char buf[32];
	uint64_t back;

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		assert_true(duration_format(values[i], buf, sizeof(buf)) > 0);
		assert_int_equal(duration_parse(buf, &back), 0);
		assert_int_equal(back, values[i]);
	}
}

static void expect_ms(const char *s, uint64_t want)
{
	uint64_t got = SENTINEL;
	struct errmsg m = { "untouched" };
	int r = duration_parse_seconds_ms(s, &got, &m);

	if (r != 0 || got != want)
		fail_msg("\"%s\": r=%d (%s) got=%llu want=%llu ms", s, r, m.text,
			 (unsigned long long)got, (unsigned long long)want);
	assert_string_equal(m.text, "untouched");
}

static void expect_ms_error(const char *s, int want, const char *words)
{
	uint64_t got = SENTINEL;
	struct errmsg m = { "" };
	int r = duration_parse_seconds_ms(s, &got, &m);

	if (r != want || !strstr(m.text, words))
		fail_msg("\"%s\": r=%d \"%s\", want %d \"%s\"", s ? s : "(null)", r, m.text, want,
			 words);
	assert_int_equal(got, SENTINEL);
	assert_int_equal(duration_parse_seconds_ms(s, &got, NULL), want);
}

/* The one grammar of --burst-seconds and burstSeconds. */
static void test_seconds_ms(void **state)
{
	(void)state;
	expect_ms("0", 0);
	expect_ms("2", 2000);
	expect_ms("0.5", 500);
	expect_ms("0.25", 250);
	expect_ms("1.5", 1500);
	expect_ms("0.001", 1);
	/* Either side of the point may be empty, as in a duration ("1.s", ".5s"). */
	expect_ms(".5", 500);
	expect_ms("1.", 1000);
	/* Trailing zeros change nothing. */
	expect_ms("0.1000", 100);
	expect_ms("0.500000000000000000000000", 500);
	expect_ms("007", 7000);
	expect_ms("86400", 86400000);
	expect_ms("86400.000", 86400000);

	expect_ms_error(NULL, -EINVAL, "not a number of seconds");
	expect_ms_error("", -EINVAL, "not a number of seconds");
	expect_ms_error(".", -EINVAL, "not a number of seconds");
	expect_ms_error("-1", -EINVAL, "not a number of seconds");
	expect_ms_error("+1", -EINVAL, "not a number of seconds");
	expect_ms_error("1s", -EINVAL, "not a number of seconds");
	expect_ms_error("1e3", -EINVAL, "not a number of seconds");
	expect_ms_error(" 1", -EINVAL, "not a number of seconds");
	expect_ms_error("1 ", -EINVAL, "not a number of seconds");
	expect_ms_error("1.2.3", -EINVAL, "not a number of seconds");
	expect_ms_error("1,5", -EINVAL, "not a number of seconds");
	/* Finer than a millisecond is refused, never rounded away. */
	expect_ms_error("0.0005", -EDOM, "finer than a millisecond");
	expect_ms_error("1.2345", -EDOM, "finer than a millisecond");
	expect_ms_error("0.0000000000000000000001", -EDOM, "finer than a millisecond");
	expect_ms_error("86400.001", -ERANGE, "more than 86400 seconds");
	expect_ms_error("86401", -ERANGE, "more than 86400 seconds");
	expect_ms_error("99999999999999999999999", -ERANGE, "more than 86400 seconds");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_units),
		cmocka_unit_test(test_sequences_and_fractions),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_seconds_ms),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
