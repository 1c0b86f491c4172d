/*
 * Tests for volname.c: every DNS-1123 label rule and its reason.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "volname.h"

static void expect_valid(const char *name)
{
	struct errmsg reason = { "untouched" };

	if (volname_validate(name, &reason) != 0)
		fail_msg("'%s' refused: %s", name, reason.text);
	assert_string_equal(reason.text, "untouched");
	assert_int_equal(volname_validate(name, NULL), 0);
}

/* @words: a part of the reason that names the rule broken. */
static void expect_invalid(const char *name, const char *words)
{
	struct errmsg reason = { "" };

	if (volname_validate(name, &reason) != -EINVAL)
		fail_msg("'%s' accepted", name ? name : "(null)");
	if (!strstr(reason.text, words))
		fail_msg("'%s': reason \"%s\" does not say \"%s\"", name ? name : "(null)",
			 reason.text, words);
	assert_int_equal(volname_validate(name, NULL), -EINVAL);
}

static void test_valid(void **state)
{
	(void)state;
	expect_valid("a");
	expect_valid("0");
	expect_valid("pvc-1");
	expect_valid("a-b-c");
	expect_valid("a--b");
	expect_valid("9lives");
	expect_valid("pvc-0b6e5b1c-3d5a-4f7e-9c4b-2f1e8d7a6c5b");
}

static void test_empty(void **state)
{
	(void)state;
	expect_invalid("", "empty");
	expect_invalid(NULL, "empty");
}

static void test_length_boundary(void **state)
{
	char name[VOLNAME_MAX + 2];

	(void)state;
	memset(name, 'a', sizeof(name));
	name[VOLNAME_MAX] = '\0';
	assert_int_equal(strlen(name), 63);
	expect_valid(name);
	name[VOLNAME_MAX] = 'a';
	name[VOLNAME_MAX + 1] = '\0';
	assert_int_equal(strlen(name), 64);
	expect_invalid(name, "at most 63");
	/* Length is reported before the characters. */
	name[10] = 'A';
	expect_invalid(name, "at most 63");
}

static void test_characters(void **state)
{
	static const char *const bad[] = {
		"A", "Data", "a_b", "a.b", "a/b", ".", "..", "a b", "a\tb", "caf\xc3\xa9", "a:b",
		"a@b", "a\\b", "a*", "\x7f",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_invalid(bad[i], "lowercase letters, digits and '-'");
}

static void test_ends(void **state)
{
	(void)state;
	expect_invalid("-", "start");
	expect_invalid("-a", "start");
	expect_invalid("-a-", "start");
	expect_invalid("a-", "end");
	expect_invalid("abc--", "end");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_length_boundary),
		cmocka_unit_test(test_characters),
		cmocka_unit_test(test_ends),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
