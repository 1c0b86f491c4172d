/*
 * Tests for fhmap.c: ids are handed out once, found until removed, carried
 * over to a successor's map with their values, and never collide with the
 * ids that map hands out next.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "vfs/fhmap.h"

static void test_put_get_remove(void **state)
{
	struct fhmap *m = NULL;
	int a, b;
	uint64_t fa, fb;

	(void)state;
	assert_int_equal(fhmap_new(&m), 0);
	assert_int_equal(fhmap_put(m, &a, &fa), 0);
	assert_int_equal(fhmap_put(m, &b, &fb), 0);
	assert_int_not_equal(fa, 0);
	assert_int_not_equal(fa, fb);
	assert_ptr_equal(fhmap_get(m, fa), &a);
	assert_ptr_equal(fhmap_get(m, fb), &b);
	assert_int_equal(fhmap_count(m), 2);
	assert_ptr_equal(fhmap_remove(m, fa), &a);
	assert_null(fhmap_get(m, fa));
	assert_null(fhmap_remove(m, fa));
	/* An id is never handed out twice, even once its handle is gone. */
	assert_int_equal(fhmap_put(m, &a, &fa), 0);
	assert_true(fa > fb);
	assert_null(fhmap_get(m, 0));
	assert_null(fhmap_get(m, 987654321));
	assert_null(fhmap_free(m));
}

static void test_many_grow(void **state)
{
	enum { N = 10000 };
	struct fhmap *m = NULL;
	uint64_t *ids = calloc(N, sizeof(*ids));

	(void)state;
	assert_non_null(ids);
	assert_int_equal(fhmap_new(&m), 0);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(fhmap_put(m, (void *)(uintptr_t)(i + 1), &ids[i]), 0);
	for (size_t i = 0; i < N; i++)
		assert_ptr_equal(fhmap_get(m, ids[i]), (void *)(uintptr_t)(i + 1));
	for (size_t i = 0; i < N; i += 2)
		assert_ptr_equal(fhmap_remove(m, ids[i]), (void *)(uintptr_t)(i + 1));
	assert_int_equal(fhmap_count(m), N / 2);
	for (size_t i = 1; i < N; i += 2)
		assert_ptr_equal(fhmap_get(m, ids[i]), (void *)(uintptr_t)(i + 1));
	fhmap_free(m);
	free(ids);
}

static void test_put_at_successor(void **state)
{
	struct fhmap *m = NULL;
	int a, b, c;
	uint64_t fc;

	(void)state;
	assert_int_equal(fhmap_new(&m), 0);
	assert_int_equal(fhmap_put_at(m, 41, &a), 0);
	assert_int_equal(fhmap_put_at(m, 7, &b), 0);
	assert_int_equal(fhmap_put_at(m, 41, &c), -EEXIST);
	assert_int_equal(fhmap_put_at(m, 0, &c), -EINVAL);
	assert_ptr_equal(fhmap_get(m, 41), &a);
	assert_ptr_equal(fhmap_get(m, 7), &b);
	/* New ids continue past every id a predecessor handed out. */
	assert_int_equal(fhmap_next(m), 42);
	assert_int_equal(fhmap_put(m, &c, &fc), 0);
	assert_int_equal(fc, 42);
	fhmap_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_remove),
		cmocka_unit_test(test_many_grow),
		cmocka_unit_test(test_put_at_successor),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
