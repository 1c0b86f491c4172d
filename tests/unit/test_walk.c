/*
 * Usage walk and wipe on real directories: counts match lstat, hard links
 * count once, symlinks are never followed, a bind mount inside the tree
 * (same filesystem, other mount) is neither counted nor wiped, and a tree
 * thousands of levels deep is walked and wiped under a file descriptor
 * limit of 32. The mount test runs in a mount namespace of its own, so
 * nothing it mounts is seen outside this process.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "walk.h"

static char *make_tmp(void)
{
	char *t = strdup("/tmp/carvefs-walk-XXXXXX");

	assert_non_null(t);
	assert_non_null(mkdtemp(t));
	return t;
}

static void rm_rf(const char *path)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

static uint64_t blocks_of(int dfd, const char *name)
{
	struct stat st;

	assert_int_equal(fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)),
			 0);
	return (uint64_t)st.st_blocks * 512;
}

static void write_file(int dfd, const char *name, size_t bytes)
{
	char buf[4096];
	int fd = openat(dfd, name, O_CREAT | O_WRONLY | O_TRUNC, 0644);

	assert_true(fd >= 0);
	memset(buf, 'x', sizeof(buf));
	for (size_t done = 0; done < bytes; done += sizeof(buf))
		assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

static void test_usage_matches_lstat_and_links_count_once(void **state)
{
	char *top = make_tmp(), outside[64];
	struct walk_usage u;
	uint64_t expect;
	int fd, sub;

	(void)state;
	fd = open(top, O_PATH | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(mkdirat(fd, "d", 0755), 0);
	sub = openat(fd, "d", O_PATH | O_DIRECTORY);
	write_file(fd, "a", 65536);
	write_file(sub, "b", 8192);
	assert_int_equal(linkat(fd, "a", sub, "a-link", 0), 0);
	assert_int_equal(symlinkat("/etc", fd, "escape"), 0);
	/* A symlink to a big directory elsewhere must not be followed. */
	snprintf(outside, sizeof(outside), "%s-out", top);
	assert_int_equal(mkdir(outside, 0755), 0);
	assert_int_equal(symlinkat(outside, sub, "out"), 0);

	expect = blocks_of(fd, "") + blocks_of(fd, "d") + blocks_of(fd, "a") + blocks_of(sub, "b") +
		 blocks_of(fd, "escape") + blocks_of(sub, "out");
	assert_int_equal(walk_usage(fd, &u), 0);
	assert_int_equal(u.bytes, expect);
	/* d, a (once for two links), b, escape, out */
	assert_int_equal(u.inodes, 5);
	assert_int_equal(u.skipped, 0);

	/* Wiping keeps the top and what symlinks point at. */
	{
		int ofd = open(outside, O_PATH | O_DIRECTORY);

		assert_true(ofd >= 0);
		write_file(ofd, "keep", 4096);
		close(ofd);
	}
	assert_int_equal(walk_wipe(fd, NULL), 0);
	assert_int_equal(walk_usage(fd, &u), 0);
	assert_int_equal(u.inodes, 0);
	assert_int_equal(access("/etc/passwd", F_OK), 0);
	{
		char keep[96];

		snprintf(keep, sizeof(keep), "%s/keep", outside);
		assert_int_equal(access(keep, F_OK), 0);
	}
	close(sub);
	close(fd);
	rm_rf(outside);
	rm_rf(top);
	free(top);
}

static void test_deep_tree_needs_no_fd_per_level(void **state)
{
	const int depth = 3000;
	char *top = make_tmp();
	struct rlimit saved, low;
	struct walk_usage u;
	int fd, cur;

	(void)state;
	fd = open(top, O_PATH | O_DIRECTORY);
	assert_true(fd >= 0);
	cur = dup(fd);
	for (int i = 0; i < depth; i++) {
		int next;

		assert_int_equal(mkdirat(cur, "d", 0755), 0);
		if (i % 100 == 0)
			write_file(cur, "f", 4096);
		next = openat(cur, "d", O_PATH | O_DIRECTORY);
		assert_true(next >= 0);
		close(cur);
		cur = next;
	}
	close(cur);

	/* Far fewer descriptors than levels. */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = 32;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(walk_usage(fd, &u), 0);
	assert_int_equal(u.inodes, depth + depth / 100);
	assert_int_equal(walk_wipe(fd, NULL), 0);
	assert_int_equal(walk_usage(fd, &u), 0);
	assert_int_equal(u.inodes, 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	close(fd);
	rm_rf(top);
	free(top);
}

static void test_bind_mount_inside_is_left_alone(void **state)
{
	char *top = make_tmp(), *outside = make_tmp();
	char mnt[256];
	struct walk_usage u;
	uint64_t skipped = 0;
	int fd, ofd;

	(void)state;
	if (unshare(CLONE_NEWNS) < 0)
		skip(); /* needs root (CAP_SYS_ADMIN): make check runs as root */
	/* Our namespace's mounts must not propagate back to the host's. */
	assert_int_equal(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);

	ofd = open(outside, O_PATH | O_DIRECTORY);
	assert_true(ofd >= 0);
	write_file(ofd, "precious", 8192);
	fd = open(top, O_PATH | O_DIRECTORY);
	assert_true(fd >= 0);
	write_file(fd, "mine", 4096);
	assert_int_equal(mkdirat(fd, "mnt", 0755), 0);
	snprintf(mnt, sizeof(mnt), "%s/mnt", top);
	/* The same filesystem: only the mount id tells it apart. */
	assert_int_equal(mount(outside, mnt, NULL, MS_BIND, NULL), 0);

	assert_int_equal(walk_usage(fd, &u), 0);
	assert_int_equal(u.inodes, 1); /* "mine"; not "mnt", not "precious" */
	assert_int_equal(u.skipped, 1);
	assert_int_equal(walk_wipe(fd, &skipped), 0);
	assert_int_equal(skipped, 1);
	assert_int_equal(faccessat(fd, "mine", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	assert_int_equal(faccessat(ofd, "precious", F_OK, AT_SYMLINK_NOFOLLOW), 0);

	assert_int_equal(umount2(mnt, MNT_DETACH), 0);
	close(fd);
	close(ofd);
	rm_rf(top);
	rm_rf(outside);
	free(top);
	free(outside);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage_matches_lstat_and_links_count_once),
		cmocka_unit_test(test_deep_tree_needs_no_fd_per_level),
		cmocka_unit_test(test_bind_mount_inside_is_left_alone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
