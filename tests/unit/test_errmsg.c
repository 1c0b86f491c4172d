/*
 * Tests for errmsg.c: the reason is formatted, cut to fit, kept on one
 * line, and the errno passes through; NULL means "not wanted".
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "errmsg.h"

static void test_formats_and_returns_r(void **state)
{
	struct errmsg m;

	(void)state;
	assert_int_equal(errmsg_set(&m, -EINVAL, "size '%s' is %d too large", "5Xi", 3), -EINVAL);
	assert_string_equal(m.text, "size '5Xi' is 3 too large");
	assert_int_equal(errmsg_set(NULL, -ENOENT, "%s", "nobody reads this"), -ENOENT);
}

static void test_one_line_cut_to_fit(void **state)
{
	char longer[ERRMSG_MAX * 2];
	struct errmsg m;

	(void)state;
	errmsg_set(&m, -EIO, "daemon said: %s", "first\nsecond\r\nthird");
	assert_string_equal(m.text, "daemon said: first second  third");

	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	errmsg_set(&m, -EIO, "%s", longer);
	assert_int_equal(strlen(m.text), ERRMSG_MAX - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formats_and_returns_r),
		cmocka_unit_test(test_one_line_cut_to_fit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
