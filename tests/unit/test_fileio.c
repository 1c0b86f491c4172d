/*
 * Tests for fileio.c's writing half: atomic replacement (temporary file,
 * rename, with and without RENAME_NOREPLACE, planted symlinks).
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replace_writes_then_renames),
		cmocka_unit_test(test_planted_symlink_is_not_followed),
		cmocka_unit_test(test_noreplace_keeps_the_existing_file),
		cmocka_unit_test(test_write_tmp_fails_cleanly),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
