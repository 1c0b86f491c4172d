/*
 * Tests for quota.c: reservations, short grants, the exact limit, charges,
 * inode accounting, concurrent reservers never overshooting, and the mirror
 * of the counts (quota_set_mirror()) current after every change and, as
 * used plus reserved, never below what the disk holds.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "quota.h"

static struct quota *new_quota(uint64_t capacity, uint64_t inodes)
{
	struct quota *q = NULL;

	assert_int_equal(quota_new(capacity, inodes, &q), 0);
	assert_non_null(q);
	return q;
}

static void test_new_and_free(void **state)
{
	struct quota_usage u;
	struct quota *q;

	(void)state;
	q = new_quota(1 << 20, 100);
	quota_get(q, &u);
	assert_int_equal(u.capacity_bytes, 1 << 20);
	assert_int_equal(u.inode_limit, 100);
	assert_int_equal(u.used_bytes + u.reserved_bytes + u.used_inodes + u.reserved_inodes, 0);
	assert_int_equal(quota_free_bytes(q), 1 << 20);
	assert_null(quota_free(q));
	assert_null(quota_free(NULL));
}

static void test_reserve_all(void **state)
{
	struct quota *q = new_quota(1000, 0);
	struct quota_usage u;
	uint64_t granted = 0;

	(void)state;
	assert_int_equal(quota_reserve_bytes(q, 400, 0, 0, &granted), 0);
	assert_int_equal(granted, 400);
	quota_get(q, &u);
	assert_int_equal(u.reserved_bytes, 400);
	assert_int_equal(u.used_bytes, 0);
	assert_int_equal(quota_free_bytes(q), 600);

	/* min 0 means all of it: 700 does not fit in 600 and nothing is granted. */
	granted = 12345;
	assert_int_equal(quota_reserve_bytes(q, 700, 0, 0, &granted), -ENOSPC);
	assert_int_equal(granted, 12345);
	quota_get(q, &u);
	assert_int_equal(u.reserved_bytes, 400);

	/* Exactly what is left fits. */
	assert_int_equal(quota_reserve_bytes(q, 600, 0, 0, &granted), 0);
	assert_int_equal(granted, 600);
	assert_int_equal(quota_free_bytes(q), 0);
	quota_free(q);
}

static void test_reserve_partial(void **state)
{
	struct quota *q = new_quota(1000, 0);
	uint64_t granted = 0, held;

	(void)state;
	assert_int_equal(quota_reserve_bytes(q, 400, 0, 0, &held), 0);
	assert_int_equal(quota_reserve_bytes(q, 800, 1, 1, &granted), 0);
	assert_int_equal(granted, 600);
	assert_int_equal(quota_free_bytes(q), 0);
	quota_release_bytes(q, granted);
	quota_release_bytes(q, held);
	assert_int_equal(quota_free_bytes(q), 1000);
	quota_free(q);
}

static void test_reserve_unit_and_min(void **state)
{
	struct quota *q = new_quota(10000, 0);
	uint64_t granted = 7;

	(void)state;
	/* 10000 free: the largest multiple of 4096 is 8192. */
	assert_int_equal(quota_reserve_bytes(q, 20000, 1, 4096, &granted), 0);
	assert_int_equal(granted, 8192);
	quota_release_bytes(q, granted);

	/* A short grant below @min is refused. */
	granted = 7;
	assert_int_equal(quota_reserve_bytes(q, 20000, 9000, 4096, &granted), -ENOSPC);
	assert_int_equal(granted, 7);
	assert_int_equal(quota_free_bytes(q), 10000);

	/* @min equal to the grant is enough. */
	assert_int_equal(quota_reserve_bytes(q, 20000, 8192, 4096, &granted), 0);
	assert_int_equal(granted, 8192);

	/* 1808 left is less than one unit: nothing can be granted. */
	assert_int_equal(quota_free_bytes(q), 10000 - 8192);
	assert_int_equal(quota_reserve_bytes(q, 4096, 1, 4096, &granted), -ENOSPC);
	/* ...but a whole request that fits is granted whatever the unit. */
	assert_int_equal(quota_reserve_bytes(q, 1000, 1, 4096, &granted), 0);
	assert_int_equal(granted, 1000);

	/* A @min beyond @want means all of @want. */
	assert_int_equal(quota_reserve_bytes(q, 808, 5000, 0, &granted), 0);
	assert_int_equal(granted, 808);
	assert_int_equal(quota_free_bytes(q), 0);
	quota_free(q);
}

static void test_enospc_exactly_at_limit(void **state)
{
	struct quota *q = new_quota(8192, 0);
	uint64_t granted;

	(void)state;
	assert_int_equal(quota_reserve_bytes(q, 8192, 0, 0, &granted), 0);
	quota_charge_bytes(q, (int64_t)granted);
	quota_release_bytes(q, granted);
	assert_int_equal(quota_free_bytes(q), 0);
	assert_int_equal(quota_reserve_bytes(q, 1, 0, 0, &granted), -ENOSPC);
	assert_int_equal(quota_reserve_bytes(q, 1, 1, 1, &granted), -ENOSPC);

	/* A want of 0 always succeeds, even on a full volume. */
	granted = 99;
	assert_int_equal(quota_reserve_bytes(q, 0, 0, 0, &granted), 0);
	assert_int_equal(granted, 0);

	/* Freeing one byte makes exactly one byte reservable. */
	quota_charge_bytes(q, -1);
	assert_int_equal(quota_reserve_bytes(q, 2, 0, 0, &granted), -ENOSPC);
	assert_int_equal(quota_reserve_bytes(q, 1, 0, 0, &granted), 0);
	assert_int_equal(granted, 1);
	quota_free(q);
}

static void test_release_and_charge(void **state)
{
	struct quota *q = new_quota(1000, 0);
	struct quota_usage u;
	uint64_t granted;

	(void)state;
	assert_int_equal(quota_reserve_bytes(q, 300, 0, 0, &granted), 0);
	quota_release_bytes(q, 100);
	quota_get(q, &u);
	assert_int_equal(u.reserved_bytes, 200);
	/* Releasing more than is reserved clamps at 0. */
	quota_release_bytes(q, 1000);
	quota_get(q, &u);
	assert_int_equal(u.reserved_bytes, 0);

	quota_charge_bytes(q, 500);
	quota_charge_bytes(q, -200);
	quota_get(q, &u);
	assert_int_equal(u.used_bytes, 300);
	/* A negative charge below 0 clamps at 0. */
	quota_charge_bytes(q, -301);
	quota_get(q, &u);
	assert_int_equal(u.used_bytes, 0);
	quota_charge_bytes(q, INT64_MIN);
	quota_get(q, &u);
	assert_int_equal(u.used_bytes, 0);

	/* Charges are never refused, even past the capacity. */
	quota_charge_bytes(q, 1500);
	quota_get(q, &u);
	assert_int_equal(u.used_bytes, 1500);
	assert_int_equal(quota_free_bytes(q), 0);
	assert_int_equal(quota_reserve_bytes(q, 1, 1, 1, &granted), -ENOSPC);
	quota_free(q);
}

static void test_limits_and_usage(void **state)
{
	struct quota *q = new_quota(1000, 10);
	struct quota_usage u;
	uint64_t granted;

	(void)state;
	quota_set_usage(q, 600, 4);
	quota_get(q, &u);
	assert_int_equal(u.used_bytes, 600);
	assert_int_equal(u.used_inodes, 4);
	assert_int_equal(quota_free_bytes(q), 400);

	/* Shrinking below usage keeps the usage and leaves nothing free. */
	quota_set_limits(q, 500, 3);
	quota_get(q, &u);
	assert_int_equal(u.capacity_bytes, 500);
	assert_int_equal(u.inode_limit, 3);
	assert_int_equal(u.used_bytes, 600);
	assert_int_equal(quota_free_bytes(q), 0);
	assert_int_equal(quota_reserve_inode(q), -ENOSPC);

	quota_set_limits(q, 2000, 0);
	assert_int_equal(quota_free_bytes(q), 1400);
	assert_int_equal(quota_reserve_bytes(q, 1400, 0, 0, &granted), 0);
	assert_int_equal(quota_reserve_inode(q), 0);
	quota_free(q);
}

static void test_inode_limit_exact(void **state)
{
	const uint64_t limit = 5;
	struct quota *q = new_quota(1000, limit);
	struct quota_usage u;

	(void)state;
	/* N creations, each reserved, charged and settled, fit... */
	for (uint64_t i = 0; i < limit; i++) {
		assert_int_equal(quota_reserve_inode(q), 0);
		quota_charge_inodes(q, 1);
		quota_release_inode(q);
	}
	quota_get(q, &u);
	assert_int_equal(u.used_inodes, limit);
	assert_int_equal(u.reserved_inodes, 0);
	/* ...the N+1th does not. */
	assert_int_equal(quota_reserve_inode(q), -ENOSPC);

	/* A delete makes room for exactly one. */
	quota_charge_inodes(q, -1);
	assert_int_equal(quota_reserve_inode(q), 0);
	assert_int_equal(quota_reserve_inode(q), -ENOSPC);
	quota_release_inode(q);

	/* Outstanding reservations count too. */
	quota_set_usage(q, 0, 0);
	for (uint64_t i = 0; i < limit; i++)
		assert_int_equal(quota_reserve_inode(q), 0);
	assert_int_equal(quota_reserve_inode(q), -ENOSPC);
	quota_get(q, &u);
	assert_int_equal(u.reserved_inodes, limit);

	/* Releasing more than reserved and charging below 0 clamp at 0. */
	for (uint64_t i = 0; i < limit + 3; i++)
		quota_release_inode(q);
	quota_charge_inodes(q, -10);
	quota_get(q, &u);
	assert_int_equal(u.reserved_inodes, 0);
	assert_int_equal(u.used_inodes, 0);
	quota_free(q);
}

static void test_inodes_unlimited(void **state)
{
	struct quota *q = new_quota(1000, 0);
	struct quota_usage u;

	(void)state;
	quota_set_usage(q, 0, UINT64_MAX / 2);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(quota_reserve_inode(q), 0);
	quota_get(q, &u);
	assert_int_equal(u.reserved_inodes, 10000);
	quota_free(q);
}

#define THREADS 4
#define CHUNK 4096
#define CAPACITY (CHUNK * 1000 + 123)

struct race {
	struct quota *q;
	pthread_barrier_t start;
	_Atomic uint64_t granted_total;
	uint64_t room; /* capacity - used during the churn */
	atomic_bool overshoot;
};

/* Fills the volume: reservations are kept, never released. */
static void *fill_thread(void *arg)
{
	struct race *race = arg;
	uint64_t granted;

	pthread_barrier_wait(&race->start);
	while (quota_reserve_bytes(race->q, CHUNK, 0, 0, &granted) == 0)
		atomic_fetch_add(&race->granted_total, granted);
	return NULL;
}

/*
 * Holds several reservations at once and gives them back in turn. The sum of
 * what all threads hold is counted before a grant is given back, so it may
 * only lag below the quota's reserved bytes: if it ever passes the free room,
 * two threads were granted the same bytes.
 */
static void *churn_thread(void *arg)
{
	struct race *race = arg;
	uint64_t held[4] = { 0 }, granted;
	unsigned int seed = (unsigned int)(uintptr_t)held;

	pthread_barrier_wait(&race->start);
	for (int i = 0; i < 50000; i++) {
		unsigned int slot = (unsigned int)i % 4;
		uint64_t want = 1 + (uint64_t)rand_r(&seed) % (64 * CHUNK);

		if (held[slot]) {
			atomic_fetch_sub(&race->granted_total, held[slot]);
			quota_release_bytes(race->q, held[slot]);
			held[slot] = 0;
		}
		if (quota_reserve_bytes(race->q, want, 1, 512, &granted) == 0) {
			if (atomic_fetch_add(&race->granted_total, granted) + granted > race->room)
				atomic_store(&race->overshoot, true);
			held[slot] = granted;
		}
	}
	for (unsigned int slot = 0; slot < 4; slot++) {
		atomic_fetch_sub(&race->granted_total, held[slot]);
		quota_release_bytes(race->q, held[slot]);
	}
	return NULL;
}

static void run_threads(struct race *race, void *(*fn)(void *))
{
	pthread_t th[THREADS];

	assert_int_equal(pthread_barrier_init(&race->start, NULL, THREADS), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, fn, race), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	pthread_barrier_destroy(&race->start);
}

static void test_concurrent_never_overshoot(void **state)
{
	struct race race = { .q = new_quota(CAPACITY, 0) };
	struct quota_usage u;

	(void)state;
	run_threads(&race, fill_thread);
	/* Every whole chunk was granted once, and the odd 123 bytes never. */
	assert_int_equal(atomic_load(&race.granted_total), CAPACITY - 123);
	quota_get(race.q, &u);
	assert_int_equal(u.reserved_bytes, CAPACITY - 123);
	assert_int_equal(quota_free_bytes(race.q), 123);

	quota_release_bytes(race.q, u.reserved_bytes);
	atomic_store(&race.granted_total, 0);
	quota_set_usage(race.q, 777, 0);
	race.room = CAPACITY - 777;
	run_threads(&race, churn_thread);
	assert_false(atomic_load(&race.overshoot));
	assert_int_equal(atomic_load(&race.granted_total), 0);
	quota_get(race.q, &u);
	assert_int_equal(u.reserved_bytes, 0);
	assert_int_equal(u.used_bytes, 777);
	quota_free(race.q);
}

/* The mirror holds what quota_get() says, after every call that changes it. */
static void expect_mirrored(struct quota *q, const struct quota_mirror *m)
{
	struct quota_usage u;

	quota_get(q, &u);
	assert_int_equal(atomic_load(&m->used_bytes), u.used_bytes);
	assert_int_equal(atomic_load(&m->used_inodes), u.used_inodes);
	assert_int_equal(atomic_load(&m->reserved_bytes), u.reserved_bytes);
	assert_int_equal(atomic_load(&m->reserved_inodes), u.reserved_inodes);
	assert_int_equal(atomic_load(&m->attached), 1);
}

/* What a crash at this moment would leave as the bound: used plus reserved. */
static uint64_t bound_bytes(const struct quota_mirror *m)
{
	return atomic_load(&m->used_bytes) + atomic_load(&m->reserved_bytes);
}

static uint64_t bound_inodes(const struct quota_mirror *m)
{
	return atomic_load(&m->used_inodes) + atomic_load(&m->reserved_inodes);
}

static void test_mirror_follows_every_change(void **state)
{
	struct quota *q = new_quota(1 << 20, 10);
	struct quota_mirror m = { 0 };
	uint64_t granted, used_bytes, used_inodes;

	(void)state;
	quota_set_usage(q, 5000, 3);
	assert_int_equal(atomic_load(&m.attached), 0);
	/* Attached: the counts of now, before any further change. */
	quota_set_mirror(q, &m);
	expect_mirrored(q, &m);
	assert_int_equal(atomic_load(&m.used_bytes), 5000);
	assert_int_equal(quota_reserve_bytes(q, 4096, 0, 0, &granted), 0);
	expect_mirrored(q, &m);
	assert_int_equal(atomic_load(&m.reserved_bytes), 4096);
	quota_charge_bytes(q, 4096);
	expect_mirrored(q, &m);
	quota_release_bytes(q, 4096);
	expect_mirrored(q, &m);
	assert_int_equal(quota_reserve_inode(q), 0);
	expect_mirrored(q, &m);
	assert_int_equal(atomic_load(&m.reserved_inodes), 1);
	quota_charge_inodes(q, 1);
	expect_mirrored(q, &m);
	quota_release_inode(q);
	expect_mirrored(q, &m);
	quota_charge_bytes(q, -9096);
	expect_mirrored(q, &m);
	assert_int_equal(atomic_load(&m.used_bytes), 0);
	quota_charge_inodes(q, -2);
	expect_mirrored(q, &m);
	quota_set_limits(q, 1 << 21, 0);
	expect_mirrored(q, &m);
	quota_set_usage(q, 777, 7);
	expect_mirrored(q, &m);
	/* A refused reservation changes nothing, and the mirror says so. */
	assert_int_equal(quota_reserve_bytes(q, 1ull << 40, 0, 0, &granted), -ENOSPC);
	expect_mirrored(q, &m);

	/* Detached: the page keeps the last counts, whatever the quota does next. */
	quota_set_mirror(q, NULL);
	used_bytes = atomic_load(&m.used_bytes);
	used_inodes = atomic_load(&m.used_inodes);
	assert_int_equal(quota_reserve_bytes(q, 100, 0, 0, &granted), 0);
	quota_charge_bytes(q, 100);
	quota_charge_inodes(q, 1);
	quota_set_usage(q, 1, 1);
	assert_int_equal(quota_reserve_inode(q), 0);
	assert_int_equal(atomic_load(&m.used_bytes), used_bytes);
	assert_int_equal(atomic_load(&m.used_inodes), used_inodes);
	assert_int_equal(atomic_load(&m.reserved_bytes), 0);
	assert_int_equal(atomic_load(&m.reserved_inodes), 0);
	quota_free(q);
}

/*
 * The write and create paths as file.c and meta.c take them, with what the
 * disk holds alongside: at every step, used plus reserved in the mirror (a
 * crash's bound) is at least what is on disk.
 */
static void test_mirror_is_an_upper_bound(void **state)
{
	struct quota *q = new_quota(1 << 20, 0);
	struct quota_mirror m = { 0 };
	uint64_t disk = 8192, inodes = 2, g1, g2;

	(void)state;
	quota_set_usage(q, disk, inodes);
	quota_set_mirror(q, &m);
#define BOUND_HOLDS()                                  \
	do {                                           \
		assert_true(bound_bytes(&m) >= disk);    \
		assert_true(bound_inodes(&m) >= inodes); \
	} while (0)
	BOUND_HOLDS();
	/* Two writes in flight to one file: each reserved before its IO. */
	assert_int_equal(quota_reserve_bytes(q, 65536, 0, 0, &g1), 0);
	BOUND_HOLDS();
	assert_int_equal(quota_reserve_bytes(q, 16384, 0, 0, &g2), 0);
	BOUND_HOLDS();
	disk += 65536; /* both IOs reach the disk */
	BOUND_HOLDS();
	disk += 12288;
	BOUND_HOLDS();
	/* The first completes: its settle charges what both allocated... */
	quota_charge_bytes(q, 65536 + 12288);
	BOUND_HOLDS();
	/* ...and gives back both reservations, the second's being spent. */
	quota_release_bytes(q, g1);
	BOUND_HOLDS();
	quota_release_bytes(q, g2);
	BOUND_HOLDS();
	assert_int_equal(bound_bytes(&m), disk);
	/* A create: the inode reserved, made, charged, then the reservation given back. */
	assert_int_equal(quota_reserve_inode(q), 0);
	BOUND_HOLDS();
	inodes++;
	BOUND_HOLDS();
	quota_charge_inodes(q, 1);
	BOUND_HOLDS();
	quota_release_inode(q);
	BOUND_HOLDS();
	/* Space given back: the disk shrinks first, the charge follows. */
	disk -= 65536;
	BOUND_HOLDS();
	quota_charge_bytes(q, -65536);
	BOUND_HOLDS();
	inodes--;
	quota_charge_inodes(q, -1);
	BOUND_HOLDS();
	assert_int_equal(bound_bytes(&m), disk);
	assert_int_equal(bound_inodes(&m), inodes);
#undef BOUND_HOLDS
	quota_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_and_free),
		cmocka_unit_test(test_reserve_all),
		cmocka_unit_test(test_reserve_partial),
		cmocka_unit_test(test_reserve_unit_and_min),
		cmocka_unit_test(test_enospc_exactly_at_limit),
		cmocka_unit_test(test_release_and_charge),
		cmocka_unit_test(test_limits_and_usage),
		cmocka_unit_test(test_inode_limit_exact),
		cmocka_unit_test(test_inodes_unlimited),
		cmocka_unit_test(test_concurrent_never_overshoot),
		cmocka_unit_test(test_mirror_follows_every_change),
		cmocka_unit_test(test_mirror_is_an_upper_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
