/*
 * Tests for retryset.c: when a failed key is due again, how its delays grow
 * and start over (success, another version), what a sweep forgets, memos,
 * and keys failing together spreading out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "retryset.h"

#define S UINT64_C(1000000000)
#define BASE (2 * S)
#define CAP (60 * S)

static struct retryset *set(size_t memo_bytes)
{
	struct retryset *rs = NULL;

	assert_int_equal(retryset_new(BASE, CAP, memo_bytes, 42, &rs), 0);
	assert_non_null(rs);
	return rs;
}

static void assert_within(uint64_t d, uint64_t lo, uint64_t hi)
{
	if (d < lo || d > hi)
		fail_msg("%llu not in [%llu, %llu]", (unsigned long long)d, (unsigned long long)lo,
			 (unsigned long long)hi);
}

static void test_due_after_backoff(void **state)
{
	struct retryset *rs = set(0);
	uint64_t now = 1000 * S, d, nominal = BASE;

	(void)state;
	assert_true(retryset_due(rs, "a", NULL, now));
	assert_int_equal(retryset_size(rs), 0);
	for (int i = 0; i < 8; i++) {
		d = retryset_failed(rs, "a", NULL, now);
		assert_within(d, nominal / 2, nominal);
		assert_false(retryset_due(rs, "a", NULL, now));
		assert_false(retryset_due(rs, "a", NULL, now + d - 1));
		/* Another key is not held back by this one. */
		assert_true(retryset_due(rs, "b", NULL, now));
		now += d;
		assert_true(retryset_due(rs, "a", NULL, now));
		nominal = nominal * 2 > CAP ? CAP : nominal * 2;
	}
	assert_int_equal(nominal, CAP);
	assert_int_equal(retryset_size(rs), 1);

	/* Success: due at once, and the next failure starts from the first delay. */
	retryset_succeeded(rs, "a");
	assert_true(retryset_due(rs, "a", NULL, now));
	assert_within(retryset_failed(rs, "a", NULL, now), BASE / 2, BASE);
	retryset_succeeded(rs, "unknown");
	retryset_free(rs);
}

static void test_versions(void **state)
{
	struct retryset *rs = set(0);
	uint64_t now = 5 * S, d;

	(void)state;
	retryset_failed(rs, "uid", "10", now);
	d = retryset_failed(rs, "uid", "10", now);
	assert_within(d, BASE, 2 * BASE);
	assert_false(retryset_due(rs, "uid", "10", now));
	/* Without a version, the pending failure holds. */
	assert_false(retryset_due(rs, "uid", NULL, now));
	/* The object changed: that may be the fix, so it is due at once... */
	assert_true(retryset_due(rs, "uid", "11", now));
	/* ...and a failure of the new version is a new failure, from the first delay. */
	d = retryset_failed(rs, "uid", "11", now);
	assert_within(d, BASE / 2, BASE);
	assert_false(retryset_due(rs, "uid", "11", now));
	assert_true(retryset_due(rs, "uid", "10", now));
	/* A failure without a version keeps counting. */
	d = retryset_failed(rs, "uid", NULL, now);
	assert_within(d, BASE, 2 * BASE);
	assert_false(retryset_due(rs, "uid", "12", now));
	retryset_free(rs);
}

static void test_sweep(void **state)
{
	struct retryset *rs = set(0);

	(void)state;
	retryset_failed(rs, "gone", NULL, 0);
	retryset_failed(rs, "kept", NULL, 0);
	retryset_failed(rs, "fixed", NULL, 0);
	retryset_sweep(rs);
	assert_int_equal(retryset_size(rs), 3); /* all three were looked at */

	/* The next pass looks at two of them. */
	assert_false(retryset_due(rs, "kept", NULL, 0));
	retryset_due(rs, "fixed", NULL, 0);
	retryset_succeeded(rs, "fixed");
	retryset_sweep(rs);
	assert_int_equal(retryset_size(rs), 2);
	/* "gone" is forgotten: due, and backs off from the start again. */
	assert_true(retryset_due(rs, "gone", NULL, 0));
	assert_within(retryset_failed(rs, "gone", NULL, 0), BASE / 2, BASE);

	/* A pass that looks at nothing forgets everything. */
	retryset_sweep(rs);
	retryset_sweep(rs);
	assert_int_equal(retryset_size(rs), 0);
	assert_true(retryset_due(rs, "kept", NULL, 0));
	retryset_free(rs);
}

struct memo {
	uint64_t seen_bytes;
	bool said;
};

static void test_memo(void **state)
{
	struct retryset *rs = set(sizeof(struct memo)), *plain = set(0);
	struct memo *m, *again;

	(void)state;
	assert_null(retryset_memo(plain, "a"));
	m = retryset_memo(rs, "a");
	assert_non_null(m);
	assert_int_equal(m->seen_bytes, 0);
	assert_false(m->said);
	m->seen_bytes = 4096;
	m->said = true;
	/* The memo and a failure belong to the same key. */
	retryset_failed(rs, "a", "1", 0);
	assert_int_equal(retryset_size(rs), 1);
	retryset_sweep(rs);

	again = retryset_memo(rs, "a");
	assert_ptr_equal(again, m);
	assert_int_equal(again->seen_bytes, 4096);
	assert_false(retryset_due(rs, "a", "1", 0));
	/* A success keeps the memo. */
	retryset_succeeded(rs, "a");
	assert_true(again->said);
	retryset_sweep(rs);
	retryset_sweep(rs);

	/* Forgotten by a pass that did not ask: a new memo is zeroed. */
	m = retryset_memo(rs, "a");
	assert_non_null(m);
	assert_int_equal(m->seen_bytes, 0);
	assert_false(m->said);
	assert_true(retryset_due(rs, "a", "1", 0));
	retryset_free(rs);
	retryset_free(plain);
}

static void test_jitter(void **state)
{
	struct retryset *rs = set(0);
	uint64_t first, d;
	bool spread = false;
	char key[16];

	(void)state;
	/* Many keys failing at once do not come back at the same instant. */
	first = retryset_failed(rs, "k0", NULL, 0);
	for (int i = 1; i < 32; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		d = retryset_failed(rs, key, NULL, 0);
		assert_within(d, BASE / 2, BASE);
		if (d != first)
			spread = true;
	}
	assert_true(spread);
	assert_int_equal(retryset_size(rs), 32);
	assert_null(retryset_free(rs));
	assert_null(retryset_free(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_due_after_backoff),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_memo),
		cmocka_unit_test(test_jitter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
