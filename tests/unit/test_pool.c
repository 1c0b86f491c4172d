/*
 * Tests for pool.c: the room check's arithmetic and sentence, and a pool
 * on a temporary directory: created on first open, locked against a
 * second daemon, its table kept across a save and a reopen, trash emptied
 * and orphans left alone at open.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pool.h"
#include "wire.h"

#define MIB (UINT64_C(1) << 20)

static void test_room_without_overcommit_is_not_checked(void **state)
{
	struct pool_info info = { .free_bytes = 0, .committed_bytes = 100 * MIB };
	struct errmsg msg = { "" };

	(void)state;
	assert_int_equal(pool_check_room(&info, "v", 1000 * MIB, 0, 0, &msg), 0);
	assert_string_equal(msg.text, "");
}

static void test_room_counts_what_volumes_may_still_write(void **state)
{
	struct pool_info info = { .free_bytes = 100 * MIB, .committed_bytes = 60 * MIB };
	struct errmsg msg = { "" };

	(void)state;
	/* 60 committed + 40 unwritten = 100: exactly fits at 1.0. */
	assert_int_equal(pool_check_room(&info, "v", 50 * MIB, 10 * MIB, 1.0, &msg), 0);
	assert_int_equal(pool_check_room(&info, "v", 41 * MIB, 0, 1.0, &msg), -ENOSPC);
	assert_string_equal(msg.text, "not enough room in the pool for volume 'v': it needs 41M, 40M "
				 "are left (free space 100M x overcommit 1.00, minus 60M the "
				 "other volumes may still write)");
	/* Twice the free space to promise. */
	assert_int_equal(pool_check_room(&info, "v", 140 * MIB, 0, 2.0, NULL), 0);
	/* A volume fuller than its capacity needs nothing more. */
	info.committed_bytes = 200 * MIB;
	assert_int_equal(pool_check_room(&info, "v", 10 * MIB, 20 * MIB, 1.0, &msg), -ENOSPC);
	assert_non_null(strstr(msg.text, "it needs 0, 0 are left"));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void test_open_lock_save_reopen(void **state)
{
	char base[] = "/tmp/carvefs-test-pool-XXXXXX", pool_dir[256], disc[256], path[512];
	struct volume_record rec = { .name = "pvc-1", .capacity_bytes = 8 * MIB };
	struct pool *p = NULL, *second = NULL;
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(base));
	snprintf(pool_dir, sizeof(pool_dir), "%s/pool", base);
	snprintf(disc, sizeof(disc), "%s/mnt/carvefs", base);

	assert_int_equal(pool_open(pool_dir, disc, &p), 0);
	assert_int_equal(stat(pool_dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(pool_open(pool_dir, disc, &second), -EBUSY);
	assert_null(second);
	assert_int_equal(table_count(pool_table(p)), 0);
	assert_int_equal(table_add(pool_table(p), &rec), 0);
	assert_int_equal(pool_save(p), 0);
	assert_int_equal(mkdirat(pool_volumes_fd(p), "pvc-1", 0700), 0);
	/* Trash of a delete cut short, and a directory nobody recorded. */
	assert_int_equal(mkdirat(pool_volumes_fd(p), POOL_TRASH_PREFIX "old-1", 0700), 0);
	snprintf(path, sizeof(path), "%s/volumes/%sold-1/file", pool_dir, POOL_TRASH_PREFIX);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mkdirat(pool_volumes_fd(p), "orphan", 0700), 0);
	p = pool_close(p);
	assert_null(p);

	assert_int_equal(pool_open(pool_dir, disc, &p), 0);
	assert_int_equal(table_count(pool_table(p)), 1);
	assert_string_equal(table_at(pool_table(p), 0)->name, "pvc-1");
	assert_int_equal(table_at(pool_table(p), 0)->capacity_bytes, 8 * MIB);
	assert_int_equal(fstatat(pool_volumes_fd(p), POOL_TRASH_PREFIX "old-1", &st, 0), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(fstatat(pool_volumes_fd(p), "orphan", &st, 0), 0);
	assert_non_null(realpath(disc, path));
	assert_string_equal(pool_discovery_dir(p), path);
	p = pool_close(p);
	assert_int_equal(nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_room_without_overcommit_is_not_checked),
		cmocka_unit_test(test_room_counts_what_volumes_may_still_write),
		cmocka_unit_test(test_open_lock_save_reopen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
