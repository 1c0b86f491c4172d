/*
 * Tests for fileio.c's writing half: atomic replacement (temporary file,
 * rename, with and without RENAME_NOREPLACE, planted symlinks) and mkdir -p
 * (modes, existing entries, trailing slashes).
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fileio.h"

static char base[64];
static int base_fd = -1;

static int setup(void **state)
{
	(void)state;
	umask(022);
	snprintf(base, sizeof(base), "/tmp/test_fileio.XXXXXX");
	if (!mkdtemp(base))
		return -1;
	base_fd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return base_fd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	close(base_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	return system(cmd) == 0 ? 0 : -1;
}

static void expect_content(const char *name, const char *text)
{
	char *buf = NULL;
	size_t len = 0;

	assert_int_equal(fileio_read(base_fd, name, false, 1 << 20, &buf, &len), 0);
	assert_int_equal(len, strlen(text));
	assert_string_equal(buf, text);
	free(buf);
}

static bool exists(const char *name)
{
	struct stat st;

	return fstatat(base_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void test_replace_writes_then_renames(void **state)
{
	struct stat st;

	(void)state;
	assert_int_equal(fileio_write_tmp(base_fd, "f.tmp", "one", 3, 0600), 0);
	assert_false(exists("f"));
	assert_int_equal(fileio_commit(base_fd, "f.tmp", "f", 0), 0);
	expect_content("f", "one");
	assert_false(exists("f.tmp"));
	assert_int_equal(fstatat(base_fd, "f", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	/* A second write replaces the first whole. */
	assert_int_equal(fileio_write_tmp(base_fd, "f.tmp", "two, longer", 11, 0600), 0);
	expect_content("f", "one");
	assert_int_equal(fileio_commit(base_fd, "f.tmp", "f", 0), 0);
	expect_content("f", "two, longer");
}

static void test_planted_symlink_is_not_followed(void **state)
{
	char target[128];

	(void)state;
	snprintf(target, sizeof(target), "%s/victim", base);
	assert_int_equal(symlinkat(target, base_fd, "s.tmp"), 0);
	assert_int_equal(fileio_write_tmp(base_fd, "s.tmp", "data", 4, 0644), 0);
	/* The link was replaced, not written through. */
	assert_false(exists("victim"));
	expect_content("s.tmp", "data");
	assert_int_equal(fileio_commit(base_fd, "s.tmp", "s", 0), 0);
	expect_content("s", "data");
}

static void test_noreplace_keeps_the_existing_file(void **state)
{
	(void)state;
	assert_int_equal(fileio_write_tmp(base_fd, "n.tmp", "first", 5, 0644), 0);
	assert_int_equal(fileio_commit(base_fd, "n.tmp", "n", RENAME_NOREPLACE), 0);
	assert_int_equal(fileio_write_tmp(base_fd, "n.tmp", "second", 6, 0644), 0);
	assert_int_equal(fileio_commit(base_fd, "n.tmp", "n", RENAME_NOREPLACE), -EEXIST);
	expect_content("n", "first");
	/* A failed commit leaves no temporary file behind. */
	assert_false(exists("n.tmp"));
	assert_int_equal(fileio_commit(base_fd, "n.tmp", "n", 0), -ENOENT);
	assert_int_equal(fileio_commit(base_fd, "n.tmp", "n", 0x80), -EINVAL);
}

static void test_write_tmp_fails_cleanly(void **state)
{
	(void)state;
	/* A directory in the way cannot be unlinked: an error, nothing written. */
	assert_int_equal(mkdirat(base_fd, "d.tmp", 0755), 0);
	assert_int_equal(fileio_write_tmp(base_fd, "d.tmp", "x", 1, 0644), -EISDIR);
	assert_int_equal(fileio_write_tmp(base_fd, "no/such/dir.tmp", "x", 1, 0644), -ENOENT);
}

static mode_t mode_of(const char *rel)
{
	char p[256];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	return st.st_mode & 07777;
}

static void test_mkdir_p_modes(void **state)
{
	char p[256];

	(void)state;
	snprintf(p, sizeof(p), "%s/a/b/c", base);
	assert_int_equal(fileio_mkdir_p(p, 0700), 0);
	assert_int_equal(mode_of("a"), 0755);
	assert_int_equal(mode_of("a/b"), 0755);
	assert_int_equal(mode_of("a/b/c"), 0700);
	/* Again: existing directories are fine and keep their mode. */
	assert_int_equal(chmod(p, 0711), 0);
	assert_int_equal(fileio_mkdir_p(p, 0700), 0);
	assert_int_equal(mode_of("a/b/c"), 0711);

	snprintf(p, sizeof(p), "%s//x//y/", base);
	assert_int_equal(fileio_mkdir_p(p, 0750), 0);
	assert_int_equal(mode_of("x"), 0755);
	assert_int_equal(mode_of("x/y"), 0750);
}

static void test_mkdir_p_refuses_what_is_not_a_directory(void **state)
{
	char p[256];
	int fd;

	(void)state;
	fd = openat(base_fd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/file", base);
	assert_int_equal(fileio_mkdir_p(p, 0755), -ENOTDIR);
	snprintf(p, sizeof(p), "%s/file/below", base);
	assert_int_equal(fileio_mkdir_p(p, 0755), -ENOTDIR);
	assert_int_equal(fileio_mkdir_p("", 0755), -EINVAL);
	assert_int_equal(fileio_mkdir_p(NULL, 0755), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replace_writes_then_renames),
		cmocka_unit_test(test_planted_symlink_is_not_followed),
		cmocka_unit_test(test_noreplace_keeps_the_existing_file),
		cmocka_unit_test(test_write_tmp_fails_cleanly),
		cmocka_unit_test(test_mkdir_p_modes),
		cmocka_unit_test(test_mkdir_p_refuses_what_is_not_a_directory),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
