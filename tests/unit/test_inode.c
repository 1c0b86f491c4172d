/*
 * The inode table on a real directory: node ids are stable and never
 * reused, hard links share an entry, unknown node ids give NULL, the fd
 * cache stays within its bound and reopens evicted fds from their handles,
 * and a table exported and imported into a fresh one of the same volume
 * keeps every node id and generation (and refuses malformed blobs).
 * open_by_handle_at() needs CAP_DAC_READ_SEARCH, as the daemon has it.
 */
#include <dirent.h>
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

#include "vfs/vfs.h"

#define NFILES 100

struct fixture {
	char *dir;
	struct vfs *v;
};

static void rm_rf(const char *path)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

static struct vfs *itab_new(const char *dir)
{
	struct vfs *v = calloc(1, sizeof(*v));
	int fd;

	assert_non_null(v);
	assert_int_equal(quota_new(1ull << 30, 0, &v->quota), 0);
	fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(inode_table_init(v, fd), 0);
	return v;
}

static void itab_free(struct vfs *v)
{
	inode_table_fini(v);
	quota_free(v->quota);
	free(v);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char name[32];
	int dfd;

	if (geteuid() != 0) {
		/* The daemon runs as root; without CAP_DAC_READ_SEARCH handles cannot be opened. */
		print_message("test_inode needs root (open_by_handle_at)\n");
		return -1;
	}
	f->dir = strdup("/tmp/carvefs-inode-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	dfd = open(f->dir, O_PATH | O_DIRECTORY);
	assert_true(dfd >= 0);
	for (int i = 0; i < NFILES; i++) {
		int fd;

		snprintf(name, sizeof(name), "f%d", i);
		fd = openat(dfd, name, O_CREAT | O_WRONLY, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "x", 1), 1);
		close(fd);
	}
	assert_int_equal(linkat(dfd, "f0", dfd, "hardlink", 0), 0);
	assert_int_equal(mkdirat(dfd, "d", 0755), 0);
	assert_int_equal(symlinkat("/etc/passwd", dfd, "s"), 0);
	close(dfd);
	vfs_set_fd_cache(VFS_FD_CACHE_MIN);
	f->v = itab_new(f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	itab_free(f->v);
	rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static fuse_ino_t lookup(struct vfs *v, const char *name)
{
	struct fuse_entry_param e;

	assert_int_equal(inode_lookup(v, v->root, name, false, &e), 0);
	assert_true(e.ino > FUSE_ROOT_ID);
	return e.ino;
}

static void test_node_ids(void **state)
{
	struct fixture *f = *state;
	struct vfs *v = f->v;
	fuse_ino_t a = lookup(v, "f0"), b = lookup(v, "f1"), link = lookup(v, "hardlink");
	struct inode *in;

	assert_true(a != b);
	assert_int_equal(link, a);
	assert_int_equal(inode_of(v, a)->nlookup, 2);
	assert_ptr_equal(inode_of(v, FUSE_ROOT_ID), v->root);
	assert_null(inode_of(v, 0));
	assert_null(inode_of(v, 987654321));
	/* A FORGET of an unknown node id, and one of too many, change nothing else. */
	inode_forget(v, inode_of(v, 987654321), 5);
	inode_forget(v, inode_of(v, b), 7);
	assert_null(inode_of(v, b));
	/* Forgotten and looked up again: a new node id, never the old one. */
	assert_true(lookup(v, "f1") > b);
	in = inode_of(v, a);
	assert_int_equal(in->type, S_IFREG);
	assert_int_equal(in->generation, inode_of(v, lookup(v, "f0"))->generation);
}

static void test_fd_cache_bound(void **state)
{
	struct fixture *f = *state;
	struct vfs *v = f->v;
	fuse_ino_t ids[NFILES];
	int before = open_fds();
	char name[32];

	for (int i = 0; i < NFILES; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		ids[i] = lookup(v, name);
	}
	assert_true(open_fds() <= before + VFS_FD_CACHE_MIN);
	/* Evicted long ago, reopened from its handle. */
	for (int i = 0; i < NFILES; i += 7) {
		struct inode *in = inode_of(v, ids[i]);
		struct stat st;
		int fd = inode_fd_get(v, in);

		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_size, 1);
		inode_fd_put(v, in);
	}
	assert_true(open_fds() <= before + VFS_FD_CACHE_MIN);
}

static void test_borrowed_fd_survives_eviction(void **state)
{
	struct fixture *f = *state;
	struct vfs *v = f->v;
	struct inode *held = inode_of(v, lookup(v, "d"));
	int fd = inode_fd_get(v, held);
	char name[32];
	struct stat st;

	assert_true(fd >= 0);
	for (int i = 0; i < NFILES; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		(void)lookup(v, name);
	}
	/* Every other fd was cycled through the cache; the borrowed one stays open. */
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	inode_fd_put(v, held);
}

static void test_export_import(void **state)
{
	struct fixture *f = *state;
	struct vfs *v = f->v, *v2;
	fuse_ino_t file = lookup(v, "f3"), dir = lookup(v, "d"), sym = lookup(v, "s");
	struct inode *in, *in2;
	void *blob;
	size_t len;
	int fd;

	(void)lookup(v, "d");
	inode_of(v, file)->uncounted = true;
	assert_int_equal(inode_table_export(v, &blob, &len), 0);

	v2 = itab_new(f->dir);
	assert_int_equal(inode_table_import(v2, blob, len), 0);
	assert_int_equal(v2->ninodes, v->ninodes);
	assert_int_equal(v2->next_nodeid, v->next_nodeid);
	for (size_t i = 0; i < v->nbuckets; i++) {
		for (in = v->buckets[i]; in; in = in->id_next) {
			in2 = inode_of(v2, in->nodeid);
			assert_non_null(in2);
			assert_int_equal(in2->generation, in->generation);
			assert_int_equal(in2->type, in->type);
			assert_int_equal(in2->nlookup, in->nlookup);
			assert_int_equal(in2->charged_bytes, in->charged_bytes);
			assert_int_equal(in2->size, in->size);
			assert_int_equal(in2->uncounted, in->uncounted);
			/* Nothing opened by the import. */
			assert_true(in2 == v2->root || in2->fd < 0);
		}
	}
	assert_int_equal(inode_of(v2, dir)->nlookup, 2);
	assert_true(inode_of(v2, file)->uncounted);
	/* A lookup in the new table finds the imported entry by its handle. */
	assert_int_equal(lookup(v2, "d"), dir);
	assert_int_equal(inode_of(v2, dir)->nlookup, 3);
	/* Opened lazily, from the handle. */
	in2 = inode_of(v2, sym);
	fd = inode_fd_get(v2, in2);
	assert_true(fd >= 0);
	{
		char target[64];
		ssize_t n = readlinkat(fd, "", target, sizeof(target));

		assert_int_equal(n, 11);
		assert_memory_equal(target, "/etc/passwd", 11);
	}
	inode_fd_put(v2, in2);
	/* New node ids continue after the imported ones. */
	assert_true(lookup(v2, "f50") >= v->next_nodeid);
	itab_free(v2);
	free(blob);
}

/* Imports @blob into a fresh table of @dir and checks it is refused, leaving the table fresh. */
static void expect_refused(const char *dir, const void *blob, size_t len)
{
	struct vfs *v = itab_new(dir);

	assert_int_equal(inode_table_import(v, blob, len), -EINVAL);
	assert_int_equal(v->ninodes, 1);
	assert_int_equal(v->next_nodeid, FUSE_ROOT_ID + 1);
	itab_free(v);
}

static void test_import_refuses_bad_blobs(void **state)
{
	struct fixture *f = *state;
	struct vfs *v = f->v;
	unsigned char *blob, *bad;
	char other[] = "/tmp/carvefs-inode-other-XXXXXX";
	size_t len;
	uint16_t big = MAX_HANDLE_SZ + 1;
	uint32_t version = 2;

	(void)lookup(v, "f7");
	(void)lookup(v, "d");
	assert_int_equal(inode_table_export(v, (void **)&blob, &len), 0);
	bad = malloc(len + 1);
	assert_non_null(bad);

	memcpy(bad, blob, len);
	bad[0] ^= 1;
	expect_refused(f->dir, bad, len);

	memcpy(bad, blob, len);
	memcpy(bad + 8, &version, sizeof(version));
	expect_refused(f->dir, bad, len);

	expect_refused(f->dir, blob, len - 1);
	expect_refused(f->dir, blob, 31);
	memcpy(bad, blob, len);
	bad[len] = 0;
	expect_refused(f->dir, bad, len + 1);

	/* The first entry's handle length (after 32 bytes of header, 48 of numbers and type). */
	memcpy(bad, blob, len);
	memcpy(bad + 32 + 48, &big, sizeof(big));
	expect_refused(f->dir, bad, len);

	/* Another volume's table: its root is not this one. */
	assert_non_null(mkdtemp(other));
	expect_refused(other, blob, len);
	rm_rf(other);

	free(bad);
	free(blob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_node_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_cache_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_borrowed_fd_survives_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_import, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_refuses_bad_blobs, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
