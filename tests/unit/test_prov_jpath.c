/*
 * Tests for jpath.c: walking nested objects, and the walk ending with NULL
 * at a missing key, a non-object on the way, or a non-string at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jpath.h"

static void test_walk(void **state)
{
	json_t *pv = json_loads("{\"metadata\": {\"name\": \"pv-1\", \"annotations\": "
				"{\"a/b\": \"x\", \"n\": 3}, \"labels\": null},"
				" \"spec\": {\"local\": {\"path\": \"/mnt/v\"}, \"list\": [1]}}",
				0, NULL);

	(void)state;
	assert_non_null(pv);
	assert_string_equal(jpath_str(pv, "metadata", "name"), "pv-1");
	assert_string_equal(jpath_str(pv, "metadata", "annotations", "a/b"), "x");
	assert_string_equal(jpath_str(pv, "spec", "local", "path"), "/mnt/v");
	assert_ptr_equal(jpath_get(pv, "spec"), json_object_get(pv, "spec"));
	assert_true(json_is_integer(jpath_get(pv, "metadata", "annotations", "n")));
	assert_true(json_is_null(jpath_get(pv, "metadata", "labels")));

	/* Missing on the way or at the end. */
	assert_null(jpath_get(pv, "status", "phase"));
	assert_null(jpath_str(pv, "metadata", "uid"));
	/* Not an object on the way: null, a list, a string. */
	assert_null(jpath_get(pv, "metadata", "labels", "x"));
	assert_null(jpath_get(pv, "spec", "list", "0"));
	assert_null(jpath_get(pv, "metadata", "name", "x"));
	/* Not a string at the end. */
	assert_null(jpath_str(pv, "metadata", "annotations", "n"));
	assert_null(jpath_str(pv, "metadata"));
	/* No object at all. */
	assert_null(jpath_get(NULL, "metadata"));
	assert_null(jpath_str(NULL, "metadata", "name"));
	json_decref(pv);
}

static void test_find(void **state)
{
	json_t *items = json_loads("[{\"name\": \"v1\"},"
				   " {\"metadata\": {\"name\": \"a\", \"uid\": \"u1\"}},"
				   " 7, null, {\"metadata\": {\"name\": 3, \"uid\": \"u2\"}},"
				   " {\"metadata\": {\"name\": \"a\", \"uid\": \"u3\"}}]",
				   0, NULL);

	(void)state;
	assert_non_null(items);
	/* The first match, past items that are not objects or lack the field. */
	assert_ptr_equal(jpath_find(items, "a", "metadata", "name"), json_array_get(items, 1));
	assert_ptr_equal(jpath_find(items, "u3", "metadata", "uid"), json_array_get(items, 5));
	assert_ptr_equal(jpath_find(items, "v1", "name"), json_array_get(items, 0));
	/* Only strings match, whole. */
	assert_null(jpath_find(items, "3", "metadata", "name"));
	assert_null(jpath_find(items, "u", "metadata", "uid"));
	assert_null(jpath_find(items, "v1", "metadata", "name"));
	/* Not an array. */
	assert_null(jpath_find(json_array_get(items, 1), "a", "name"));
	assert_null(jpath_find(NULL, "a", "name"));
	json_decref(items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walk),
		cmocka_unit_test(test_find),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
