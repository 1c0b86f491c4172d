/*
 * Tests for yamlscalar.c: the YAML 1.2 core schema's types for plain
 * scalars, quoted ones always strings, and the values of ints, floats and
 * bools, with their edges.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "yamlscalar.h"

static enum yamlscalar_type plain(const char *s)
{
	return yamlscalar_type(s, strlen(s), true);
}

static void test_types(void **state)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
	static const char *const bools[] = { "true", "True", "TRUE", "false", "False", "FALSE" };
	static const char *const ints[] = { "0", "7", "-12", "+12", "010", "0x1F", "0xff",
					    "0o17", "99999999999999999999" };
	static const char *const floats[] = { "1.5", "-1.5", "+.5", ".5", "5.", "1e3", "1E-3",
					      "2.5e+10", ".inf", "-.Inf", "+.INF", ".nan",
					      ".NaN", ".NAN", "1e400" };
	static const char *const strings[] = { "nULL", "yes", "no", "on", "off", "y", "tRUE",
					       "1_000", "0b1", "1:20", "0x", "0o", "0o8", "0xg",
					       "-0x1", "0x+1", "0x 1", "0o-1", "1e", "1e+", ".",
					       "-", "+", "inf", "-inf", "nan", ".infinity",
					       "-.nan", "1.2.3", " 1", "1 ", "0x1p3", "e3",
					       "abc" };

	(void)state;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(*nulls); i++)
		assert_int_equal(plain(nulls[i]), YAMLSCALAR_NULL);
	for (size_t i = 0; i < sizeof(bools) / sizeof(*bools); i++)
		assert_int_equal(plain(bools[i]), YAMLSCALAR_BOOL);
	for (size_t i = 0; i < sizeof(ints) / sizeof(*ints); i++)
		assert_int_equal(plain(ints[i]), YAMLSCALAR_INT);
	for (size_t i = 0; i < sizeof(floats) / sizeof(*floats); i++)
		if (plain(floats[i]) != YAMLSCALAR_FLOAT)
			fail_msg("\"%s\" is not a float", floats[i]);
	for (size_t i = 0; i < sizeof(strings) / sizeof(*strings); i++)
		if (plain(strings[i]) != YAMLSCALAR_STR)
			fail_msg("\"%s\" is not a string", strings[i]);

	/* Quoted, every one of them is a string. */
	assert_int_equal(yamlscalar_type("", 0, false), YAMLSCALAR_STR);
	assert_int_equal(yamlscalar_type("true", 4, false), YAMLSCALAR_STR);
	assert_int_equal(yamlscalar_type("12", 2, false), YAMLSCALAR_STR);
	assert_int_equal(yamlscalar_type(".inf", 4, false), YAMLSCALAR_STR);
	/* A NUL inside is no null, number or word. */
	assert_int_equal(yamlscalar_type("1\0002", 3, true), YAMLSCALAR_STR);
	assert_int_equal(yamlscalar_type("\0", 1, true), YAMLSCALAR_STR);
}

static void test_bool(void **state)
{
	bool b = false;

	(void)state;
	assert_int_equal(yamlscalar_bool("True", &b), 0);
	assert_true(b);
	assert_int_equal(yamlscalar_bool("FALSE", &b), 0);
	assert_false(b);
	b = true;
	assert_int_equal(yamlscalar_bool("yes", &b), -EINVAL);
	assert_int_equal(yamlscalar_bool("", &b), -EINVAL);
	assert_true(b);
}

static void test_int(void **state)
{
	int64_t v = 5;

	(void)state;
	assert_int_equal(yamlscalar_int("0x1F", &v), 0);
	assert_int_equal(v, 31);
	assert_int_equal(yamlscalar_int("0o17", &v), 0);
	assert_int_equal(v, 15);
	assert_int_equal(yamlscalar_int("010", &v), 0);
	assert_int_equal(v, 10); /* decimal in YAML 1.2, not octal */
	assert_int_equal(yamlscalar_int("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(yamlscalar_int("+9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	v = 5;
	assert_int_equal(yamlscalar_int("9223372036854775808", &v), -ERANGE);
	assert_int_equal(yamlscalar_int("0x10000000000000000", &v), -ERANGE);
	assert_int_equal(yamlscalar_int("0x+1", &v), -EINVAL);
	assert_int_equal(yamlscalar_int("1.0", &v), -EINVAL);
	assert_int_equal(yamlscalar_int("", &v), -EINVAL);
	assert_int_equal(v, 5);
}

static void test_float(void **state)
{
	double d = 5;

	(void)state;
	assert_int_equal(yamlscalar_float("1.5", &d), 0);
	assert_true(d == 1.5);
	assert_int_equal(yamlscalar_float("-.5e1", &d), 0);
	assert_true(d == -5);
	assert_int_equal(yamlscalar_float("0x10", &d), 0);
	assert_true(d == 16);
	assert_int_equal(yamlscalar_float("0o10", &d), 0);
	assert_true(d == 8);
	assert_int_equal(yamlscalar_float("3", &d), 0);
	assert_true(d == 3);
	assert_int_equal(yamlscalar_float("99999999999999999999", &d), 0);
	assert_true(d == 1e20);
	assert_int_equal(yamlscalar_float(".Inf", &d), 0);
	assert_true(isinf(d) && d > 0);
	assert_int_equal(yamlscalar_float("-.inf", &d), 0);
	assert_true(isinf(d) && d < 0);
	assert_int_equal(yamlscalar_float(".NaN", &d), 0);
	assert_true(isnan(d));
	assert_int_equal(yamlscalar_float("1e-400", &d), 0);
	assert_true(d >= 0 && d < 1e-300);
	d = 5;
	assert_int_equal(yamlscalar_float("1e400", &d), -ERANGE);
	assert_int_equal(yamlscalar_float("0x10000000000000000", &d), -ERANGE);
	assert_int_equal(yamlscalar_float("inf", &d), -EINVAL);
	assert_int_equal(yamlscalar_float("nan", &d), -EINVAL);
	assert_int_equal(yamlscalar_float("0x1p3", &d), -EINVAL);
	assert_int_equal(yamlscalar_float("true", &d), -EINVAL);
	assert_int_equal(yamlscalar_float("", &d), -EINVAL);
	assert_true(d == 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_float),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
