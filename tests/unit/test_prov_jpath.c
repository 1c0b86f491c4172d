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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
