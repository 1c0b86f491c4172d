/*
 * Tests for promtext.c: label and HELP escaping, seconds without trailing
 * zeros, optional labels left out, cumulative histogram buckets with
 * +Inf equal to _count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "promtext.h"

#define US UINT64_C(1000)
#define MS UINT64_C(1000000)

static char *finish(struct promtext *p)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(promtext_finish(p, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

static void test_escape_label(void **state)
{
	char buf[32];

	(void)state;
	assert_int_equal(promtext_escape_label("plain", buf, sizeof(buf)), 5);
	assert_string_equal(buf, "plain");
	assert_int_equal(promtext_escape_label("a\"b\\c\nd", buf, sizeof(buf)), 10);
	assert_string_equal(buf, "a\\\"b\\\\c\\nd");
	assert_int_equal(promtext_escape_label("", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	/* Cut short, still terminated; the full length is returned. */
	assert_int_equal(promtext_escape_label("a\"b", buf, 3), 4);
	assert_string_equal(buf, "a\\");
	assert_int_equal(promtext_escape_label("x\n", NULL, 0), 3);
}

static void test_format_seconds(void **state)
{
	char buf[32];

	(void)state;
	promtext_format_seconds(0, buf, sizeof(buf));
	assert_string_equal(buf, "0");
	promtext_format_seconds(50 * US, buf, sizeof(buf));
	assert_string_equal(buf, "0.00005");
	promtext_format_seconds(2500 * MS, buf, sizeof(buf));
	assert_string_equal(buf, "2.5");
	promtext_format_seconds(1000 * MS, buf, sizeof(buf));
	assert_string_equal(buf, "1");
	promtext_format_seconds(1, buf, sizeof(buf));
	assert_string_equal(buf, "0.000000001");
	assert_int_equal(promtext_format_seconds(12345678901, buf, sizeof(buf)), 12);
	assert_string_equal(buf, "12.345678901");
}

static void test_samples(void **state)
{
	struct promtext p = { 0 };
	struct promtext_label l[] = { { "volume", "a\"b" }, { "storage_class", NULL },
				      { "op", "read" } };
	char *text;

	(void)state;
	promtext_family(&p, "m_total", "counter", "Help with a \\ and\na newline \"kept\".");
	promtext_u64(&p, "m_total", l, 3, 18446744073709551615u);
	promtext_u64(&p, "m_total", NULL, 0, 0);
	promtext_seconds(&p, "m_seconds", l, 1, 1500 * MS);
	text = finish(&p);
	assert_string_equal(text,
			    "# HELP m_total Help with a \\\\ and\\na newline \"kept\".\n"
			    "# TYPE m_total counter\n"
			    "m_total{volume=\"a\\\"b\",op=\"read\"} 18446744073709551615\n"
			    "m_total 0\n"
			    "m_seconds{volume=\"a\\\"b\"} 1.500000000\n");
	free(text);
	/* Finishing empties it: it can be used again. */
	assert_null(p.data);
	assert_int_equal(p.len, 0);
}

static void test_histogram(void **state)
{
	static const uint64_t le[] = { 1 * MS, 10 * MS };
	const struct histogram_bounds b = { le, 2 };
	struct histogram_snapshot s = { .slot = { 2, 0, 3 }, .count = 5, .sum_ns = 3 * MS + 1 };
	struct promtext_label l = { "op", "write" };
	struct promtext p = { 0 };
	char *text;

	(void)state;
	promtext_histogram(&p, "d_seconds", &l, 1, &b, &s);
	promtext_histogram(&p, "e_seconds", NULL, 0, &b, &s);
	text = finish(&p);
	assert_string_equal(text, "d_seconds_bucket{op=\"write\",le=\"0.001\"} 2\n"
				  "d_seconds_bucket{op=\"write\",le=\"0.01\"} 2\n"
				  "d_seconds_bucket{op=\"write\",le=\"+Inf\"} 5\n"
				  "d_seconds_sum{op=\"write\"} 0.003000001\n"
				  "d_seconds_count{op=\"write\"} 5\n"
				  "e_seconds_bucket{le=\"0.001\"} 2\n"
				  "e_seconds_bucket{le=\"0.01\"} 2\n"
				  "e_seconds_bucket{le=\"+Inf\"} 5\n"
				  "e_seconds_sum 0.003000001\n"
				  "e_seconds_count 5\n");
	free(text);
}

static void test_grows(void **state)
{
	struct promtext p = { 0 };
	char name[64], *text;
	size_t lines = 0;

	(void)state;
	/* Well past the first allocation. */
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "metric_%d", i);
		promtext_u64(&p, name, NULL, 0, (uint64_t)i);
	}
	text = finish(&p);
	for (const char *c = text; *c; c++)
		lines += *c == '\n';
	assert_int_equal(lines, 2000);
	assert_non_null(strstr(text, "\nmetric_1999 1999\n"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_label),   cmocka_unit_test(test_format_seconds),
		cmocka_unit_test(test_samples),	       cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_grows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
