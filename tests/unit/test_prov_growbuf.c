/*
 * Tests for growbuf.c: appending across many reallocations keeps every
 * byte and the NUL, the bound refuses without changing anything, and
 * sizes near SIZE_MAX do not wrap.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "growbuf.h"

static void test_append(void **state)
{
	struct growbuf b = { 0 };
	char chunk[1000];

	(void)state;
	assert_int_equal(growbuf_append(&b, "", 0), 0);
	assert_non_null(b.data);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	/* Many appends of odd sizes: several reallocations, nothing lost. */
	for (int i = 0; i < 100; i++) {
		memset(chunk, 'a' + i % 26, sizeof(chunk));
		assert_int_equal(growbuf_append(&b, chunk, 333 + (size_t)i), 0);
	}
	assert_true(b.cap > b.len);
	assert_int_equal(b.data[b.len], '\0');
	for (size_t i = 0, off = 0; i < 100; off += 333 + i, i++)
		for (size_t j = 0; j < 333 + i; j++)
			if (b.data[off + j] != (char)('a' + i % 26))
				fail_msg("byte %zu of append %zu is wrong", j, i);
	free(b.data);
}

static void test_bound(void **state)
{
	struct growbuf b = { .max = 10 };

	(void)state;
	assert_int_equal(growbuf_append(&b, "hello", 5), 0);
	assert_int_equal(growbuf_append(&b, "world!", 6), -EFBIG);
	assert_int_equal(b.len, 5);
	assert_string_equal(b.data, "hello");
	assert_int_equal(growbuf_append(&b, "world", 5), 0);
	assert_string_equal(b.data, "helloworld");
	assert_int_equal(growbuf_append(&b, "", 0), 0);
	assert_int_equal(growbuf_append(&b, "x", 1), -EFBIG);
	assert_int_equal(b.len, 10);
	free(b.data);
}

static void test_no_wrap(void **state)
{
	struct growbuf b = { 0 };

	(void)state;
	assert_int_equal(growbuf_append(&b, "abc", 3), 0);
	/* A length that would wrap len + n + 1 is refused, not truncated. */
	assert_int_equal(growbuf_append(&b, "x", SIZE_MAX - 2), -EFBIG);
	assert_int_equal(growbuf_append(&b, "x", SIZE_MAX), -EFBIG);
	assert_int_equal(b.len, 3);
	assert_string_equal(b.data, "abc");
	free(b.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_no_wrap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
