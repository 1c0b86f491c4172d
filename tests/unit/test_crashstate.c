/*
 * The crash state file: what is recorded comes back from a reopened file
 * (nodes before the opens that name them), freed slots are reused and do
 * not come back, a torn record reads as free, and the journal finds a
 * request by unique, begun or ended, until a later one takes its place.
 * The usage page mapped shared is in the file at once, a file staged under
 * a temporary name replaces the one in use, and a record dropped while the
 * file is loaded is gone and its slot reused.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/fuse.h>

#include "vfs/crashstate.h"

struct seen {
	struct crashstate_node nodes[16];
	struct crashstate_open opens[16];
	enum crashstate_kind kinds[16];
	size_t nnodes, nopens;
};

static int on_node(void *arg, const struct crashstate_node *n, uint32_t slot)
{
	struct seen *s = arg;

	(void)slot;
	assert_int_equal(s->nopens, 0); /* nodes come first */
	s->nodes[s->nnodes++] = *n;
	return 0;
}

static int on_open(void *arg, enum crashstate_kind kind, const struct crashstate_open *o,
		   uint32_t slot)
{
	struct seen *s = arg;

	(void)slot;
	s->kinds[s->nopens] = kind;
	s->opens[s->nopens++] = *o;
	return 0;
}

static int tmpdir_fd(char *path)
{
	int fd;

	strcpy(path, "/tmp/carvefs-crashstate-XXXXXX");
	assert_non_null(mkdtemp(path));
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static struct crashstate_node node(uint64_t id)
{
	struct crashstate_node n = { .nodeid = id, .generation = id * 10, .type = S_IFREG,
				     .handle_type = 1, .handle_bytes = 8, .unique = id * 2 };

	memcpy(n.handle, &id, sizeof(id));
	return n;
}

static void test_records_survive_a_reopen(void **state)
{
	char dir[64];
	int dfd = tmpdir_fd(dir);
	struct crashstate *cs;
	struct crashstate_node n2 = node(2), n3 = node(3), n4 = node(4);
	struct crashstate_open o = { .fh = 7, .nodeid = 3, .flags = O_RDWR, .unique = 1234 };
	struct seen seen = { 0 };
	uint32_t s2, s3, s4, so, again;

	(void)state;
	assert_int_equal(crashstate_open(dfd, "vol", true, &cs), 0);
	assert_int_equal(crashstate_load(cs, on_node, on_open, &seen), 0);
	assert_int_equal(seen.nnodes, 0);
	assert_int_equal(crashstate_put_open(cs, CRASHSTATE_FILE, &o, &so), 0);
	assert_int_equal(crashstate_put_node(cs, &n2, &s2), 0);
	assert_int_equal(crashstate_put_node(cs, &n3, &s3), 0);
	assert_int_equal(crashstate_put_node(cs, &n4, &s4), 0);
	/* n2 forgotten: its slot goes to the next record. */
	assert_int_equal(crashstate_release(cs, s2), 0);
	n4.generation = 99;
	assert_int_equal(crashstate_put_node(cs, &n4, &again), 0);
	assert_int_equal(again, s2);
	assert_int_equal(crashstate_release(cs, s4), 0);
	assert_int_equal(crashstate_release(cs, 1000), -EINVAL);
	cs = crashstate_close(cs, false);

	/* As after a crash: not fresh. */
	assert_int_equal(crashstate_open(dfd, "vol", false, &cs), 0);
	assert_int_equal(crashstate_load(cs, on_node, on_open, &seen), 0);
	assert_int_equal(seen.nnodes, 2);
	assert_int_equal(seen.nopens, 1);
	for (size_t i = 0; i < seen.nnodes; i++) {
		if (seen.nodes[i].nodeid == 3) {
			assert_memory_equal(&seen.nodes[i], &n3, sizeof(n3));
		} else {
			assert_int_equal(seen.nodes[i].nodeid, 4);
			assert_int_equal(seen.nodes[i].generation, 99);
		}
	}
	assert_int_equal(seen.kinds[0], CRASHSTATE_FILE);
	assert_int_equal(seen.opens[0].fh, 7);
	assert_int_equal(seen.opens[0].nodeid, 3);
	assert_int_equal(seen.opens[0].flags, O_RDWR);
	assert_int_equal(seen.opens[0].unique, 1234);
	/* The freed slot is reused after a reload too. */
	assert_int_equal(crashstate_put_node(cs, &n2, &again), 0);
	assert_int_equal(again, s4);
	cs = crashstate_close(cs, true);
	assert_int_equal(faccessat(dfd, "vol", F_OK, 0), -1);
	close(dfd);
	rmdir(dir);
}

static void test_torn_records_read_as_free(void **state)
{
	char dir[64];
	int dfd = tmpdir_fd(dir), fd;
	struct crashstate *cs;
	struct crashstate_node n = node(5);
	struct seen seen = { 0 };
	uint32_t slot;
	struct stat st;

	(void)state;
	assert_int_equal(crashstate_open(dfd, "vol", true, &cs), 0);
	assert_int_equal(crashstate_load(cs, on_node, on_open, &seen), 0);
	assert_int_equal(crashstate_put_node(cs, &n, &slot), 0);
	cs = crashstate_close(cs, false);
	/* A crash in the middle of writing the record: its last byte never made it. */
	fd = openat(dfd, "vol", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pwrite(fd, "\xff", 1, st.st_size - 1), 1);
	close(fd);
	assert_int_equal(crashstate_open(dfd, "vol", false, &cs), 0);
	assert_int_equal(crashstate_load(cs, on_node, on_open, &seen), 0);
	assert_int_equal(seen.nnodes, 0);
	assert_int_equal(crashstate_put_node(cs, &n, &slot), 0);
	assert_int_equal(slot, 0);
	cs = crashstate_close(cs, false);
	/* A file of another layout is refused, not misread. */
	fd = openat(dfd, "vol", O_RDWR | O_CLOEXEC);
	assert_int_equal(pwrite(fd, "XXXX", 4, 0), 4);
	close(fd);
	assert_int_equal(crashstate_open(dfd, "vol", false, &cs), -EPROTO);
	assert_int_equal(crashstate_open(dfd, "vol", true, &cs), 0);
	cs = crashstate_close(cs, true);
	close(dfd);
	rmdir(dir);
}

static void test_journal(void **state)
{
	char dir[64];
	int dfd = tmpdir_fd(dir);
	struct crashstate *cs;
	struct crashstate_op op;
	struct seen seen = { 0 };
	uint64_t far = 10 + 2 * CRASHSTATE_JOURNAL_LEN;

	(void)state;
	assert_int_equal(crashstate_open(dfd, "vol", true, &cs), 0);
	assert_int_equal(crashstate_load(cs, on_node, on_open, &seen), 0);
	assert_int_equal(crashstate_op_find(cs, 10, &op), -ENOENT);
	assert_int_equal(crashstate_op_begin(cs, &(struct crashstate_op){ .unique = 10,
									  .opcode = FUSE_MKDIR }),
			 0);
	assert_int_equal(crashstate_op_begin(cs, &(struct crashstate_op){ .unique = 12,
									  .opcode = FUSE_UNLINK,
									  .existed = 1 }),
			 0);
	assert_int_equal(crashstate_op_end(cs, 10, 0, 42), 0);
	assert_int_equal(crashstate_op_end(cs, 14, 0, 0), -ENOENT);
	cs = crashstate_close(cs, false);

	assert_int_equal(crashstate_open(dfd, "vol", false, &cs), 0);
	assert_int_equal(crashstate_load(cs, on_node, on_open, &seen), 0);
	assert_int_equal(crashstate_op_find(cs, 10, &op), 0);
	assert_int_equal(op.opcode, FUSE_MKDIR);
	assert_int_equal(op.state, CRASHSTATE_OP_ENDED);
	assert_int_equal(op.error, 0);
	assert_int_equal(op.nodeid, 42);
	assert_int_equal(op.existed, 0);
	assert_int_equal(crashstate_op_find(cs, 12, &op), 0);
	assert_int_equal(op.state, CRASHSTATE_OP_BEGUN);
	assert_int_equal(op.existed, 1);
	/* A unique a whole ring later takes the entry's place. */
	assert_int_equal(crashstate_op_begin(cs, &(struct crashstate_op){ .unique = far,
									  .opcode = FUSE_MKDIR }),
			 0);
	assert_int_equal(crashstate_op_find(cs, 10, &op), -ENOENT);
	assert_int_equal(crashstate_op_find(cs, far, &op), 0);
	cs = crashstate_close(cs, true);
	close(dfd);
	rmdir(dir);
}

/* What a volume's quota stores through the mapping is in the file for the next daemon. */
static void test_usage_mapping(void **state)
{
	char dir[64];
	int dfd = tmpdir_fd(dir);
	struct crashstate *cs;
	struct quota_mirror *m, *again;
	struct seen seen = { 0 };
	struct stat st;

	(void)state;
	assert_int_equal(crashstate_open(dfd, "vol", true, &cs), 0);
	/* The whole mapped page is in the file: a store past its end would be a SIGBUS. */
	assert_int_equal(fstatat(dfd, "vol", &st, 0), 0);
	assert_true(st.st_size >= 4096);
	assert_int_equal(crashstate_map_usage(cs, &m), 0);
	assert_int_equal(atomic_load(&m->attached), 0);
	assert_int_equal(atomic_load(&m->used_bytes), 0);
	assert_int_equal(atomic_load(&m->used_inodes), 0);
	assert_int_equal(atomic_load(&m->reserved_bytes), 0);
	assert_int_equal(atomic_load(&m->reserved_inodes), 0);
	/* Mapped once: a second call gives the same place. */
	assert_int_equal(crashstate_map_usage(cs, &again), 0);
	assert_ptr_equal(again, m);
	atomic_store(&m->used_bytes, 123456789);
	atomic_store(&m->used_inodes, 321);
	atomic_store(&m->reserved_bytes, 8192);
	atomic_store(&m->reserved_inodes, 2);
	atomic_store(&m->attached, 1);
	/* Records written beside it leave it alone, and it leaves them. */
	{
		struct crashstate_node n = node(9);
		uint32_t slot;

		assert_int_equal(crashstate_load(cs, on_node, on_open, &seen), 0);
		assert_int_equal(crashstate_put_node(cs, &n, &slot), 0);
	}
	/* No close, no msync: as after a SIGKILL, the next open sees the stores. */
	{
		struct crashstate *cs2;

		assert_int_equal(crashstate_open(dfd, "vol", false, &cs2), 0);
		assert_int_equal(crashstate_map_usage(cs2, &again), 0);
		assert_int_equal(atomic_load(&again->used_bytes), 123456789);
		assert_int_equal(atomic_load(&again->used_inodes), 321);
		assert_int_equal(atomic_load(&again->reserved_bytes), 8192);
		assert_int_equal(atomic_load(&again->reserved_inodes), 2);
		assert_int_equal(atomic_load(&again->attached), 1);
		memset(&seen, 0, sizeof(seen));
		assert_int_equal(crashstate_load(cs2, on_node, on_open, &seen), 0);
		assert_int_equal(seen.nnodes, 1);
		assert_int_equal(seen.nodes[0].nodeid, 9);
		cs2 = crashstate_close(cs2, false);
	}
	cs = crashstate_close(cs, false);
	assert_int_equal(crashstate_open(dfd, "vol", false, &cs), 0);
	assert_int_equal(crashstate_map_usage(cs, &m), 0);
	assert_int_equal(atomic_load(&m->used_bytes), 123456789);
	cs = crashstate_close(cs, false);
	/* A volume mounted anew: nothing counted, nothing attached. */
	assert_int_equal(crashstate_open(dfd, "vol", true, &cs), 0);
	assert_int_equal(crashstate_map_usage(cs, &m), 0);
	assert_int_equal(atomic_load(&m->attached), 0);
	assert_int_equal(atomic_load(&m->used_bytes), 0);
	assert_int_equal(atomic_load(&m->reserved_inodes), 0);
	cs = crashstate_close(cs, true);
	close(dfd);
	rmdir(dir);
}

static int count_files(int dfd)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
	DIR *d = fdopendir(fd);
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* A file written under a temporary name takes the place of the one in use. */
static void test_rename(void **state)
{
	char dir[64];
	int dfd = tmpdir_fd(dir), fd;
	struct crashstate *old, *staged;
	struct stat replaced, st, now;
	struct crashstate_node n2 = node(2), n3 = node(3);
	struct crashstate_open o = { .fh = 11, .nodeid = 3, .flags = O_RDONLY };
	struct quota_mirror *m;
	struct seen seen = { 0 };
	uint32_t slot;

	(void)state;
	assert_int_equal(crashstate_open(dfd, "vol", true, &old), 0);
	assert_int_equal(crashstate_load(old, on_node, on_open, &seen), 0);
	assert_int_equal(crashstate_put_node(old, &n2, &slot), 0);
	assert_int_equal(crashstate_open(dfd, "vol.new", true, &staged), 0);
	assert_int_equal(crashstate_load(staged, on_node, on_open, &seen), 0);
	assert_int_equal(crashstate_put_node(staged, &n3, &slot), 0);
	assert_int_equal(crashstate_map_usage(staged, &m), 0);
	atomic_store(&m->used_bytes, 4096);
	atomic_store(&m->attached, 1);
	assert_int_equal(fstatat(dfd, "vol", &replaced, 0), 0);
	assert_int_equal(fstatat(dfd, "vol.new", &st, 0), 0);
	assert_int_equal(crashstate_rename(staged, "vol"), 0);
	assert_int_equal(faccessat(dfd, "vol.new", F_OK, 0), -1);
	/* The name is the staged file's now; the replaced one has no name left. */
	assert_int_equal(fstatat(dfd, "vol", &now, 0), 0);
	assert_int_equal(now.st_ino, st.st_ino);
	assert_true(now.st_ino != replaced.st_ino);
	assert_int_equal(count_files(dfd), 1);
	/* Written after the rename: still the same file, now under the new name. */
	assert_int_equal(crashstate_put_open(staged, CRASHSTATE_FILE, &o, &slot), 0);
	atomic_store(&m->used_inodes, 1);
	/* The replaced file goes away with the last reference to it, name and all. */
	old = crashstate_close(old, false);
	assert_int_equal(faccessat(dfd, "vol", F_OK, 0), 0);

	assert_int_equal(crashstate_open(dfd, "vol", false, &old), 0);
	assert_int_equal(crashstate_load(old, on_node, on_open, &seen), 0);
	assert_int_equal(seen.nnodes, 1);
	assert_memory_equal(&seen.nodes[0], &n3, sizeof(n3));
	assert_int_equal(seen.nopens, 1);
	assert_int_equal(seen.opens[0].fh, 11);
	assert_int_equal(crashstate_map_usage(old, &m), 0);
	assert_int_equal(atomic_load(&m->used_bytes), 4096);
	assert_int_equal(atomic_load(&m->used_inodes), 1);
	assert_int_equal(atomic_load(&m->attached), 1);
	old = crashstate_close(old, false);
	/* A rename that cannot be done keeps the name the file had. */
	assert_int_equal(mkdirat(dfd, "busy", 0700), 0);
	fd = openat(dfd, "busy/x", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_true(crashstate_rename(staged, "busy") < 0);
	/* Removal on close takes the name it has now. */
	staged = crashstate_close(staged, true);
	assert_int_equal(faccessat(dfd, "vol", F_OK, 0), -1);
	assert_int_equal(unlinkat(dfd, "busy/x", 0), 0);
	assert_int_equal(unlinkat(dfd, "busy", AT_REMOVEDIR), 0);
	close(dfd);
	rmdir(dir);
}

struct drop {
	struct crashstate *cs;
	uint64_t nodeid; /* the node whose record the load drops, as recover.c does */
	int released;
	size_t nnodes;
};

static int drop_node(void *arg, const struct crashstate_node *n, uint32_t slot)
{
	struct drop *d = arg;

	d->nnodes++;
	if (n->nodeid == d->nodeid)
		d->released = crashstate_release(d->cs, slot);
	return 0;
}

static int drop_open(void *arg, enum crashstate_kind kind, const struct crashstate_open *o,
		     uint32_t slot)
{
	struct drop *d = arg;

	(void)kind;
	(void)o;
	d->released = crashstate_release(d->cs, slot);
	return 0;
}

/*
 * A record the loader finds of no use is released from within the load
 * (recover.c): it goes, and its slot serves the next record.
 */
static void test_release_while_loading(void **state)
{
	char dir[64];
	int dfd = tmpdir_fd(dir);
	struct crashstate *cs;
	struct crashstate_node n2 = node(2), n3 = node(3), n4 = node(4);
	struct crashstate_open o = { .fh = 5, .nodeid = 4, .flags = O_RDONLY };
	struct seen seen = { 0 };
	struct drop d = { .nodeid = 3, .released = 1 };
	uint32_t s2, s3, s4, so, again;

	(void)state;
	assert_int_equal(crashstate_open(dfd, "vol", true, &cs), 0);
	assert_int_equal(crashstate_load(cs, on_node, on_open, &seen), 0);
	assert_int_equal(crashstate_put_node(cs, &n2, &s2), 0);
	assert_int_equal(crashstate_put_node(cs, &n3, &s3), 0);
	assert_int_equal(crashstate_put_node(cs, &n4, &s4), 0);
	assert_int_equal(crashstate_put_open(cs, CRASHSTATE_FILE, &o, &so), 0);
	cs = crashstate_close(cs, false);

	assert_int_equal(crashstate_open(dfd, "vol", false, &cs), 0);
	d.cs = cs;
	assert_int_equal(crashstate_load(cs, drop_node, drop_open, &d), 0);
	assert_int_equal(d.nnodes, 3);
	assert_int_equal(d.released, 0);
	/* Both dropped slots are free again: the next records take them, no new one. */
	assert_int_equal(crashstate_put_node(cs, &n3, &again), 0);
	assert_true(again == s3 || again == so);
	assert_int_equal(crashstate_put_node(cs, &n3, &again), 0);
	assert_true(again == s3 || again == so);
	cs = crashstate_close(cs, false);

	/* And what was dropped does not come back after the next crash. */
	assert_int_equal(crashstate_open(dfd, "vol", false, &cs), 0);
	memset(&d, 0, sizeof(d));
	d.cs = cs;
	d.released = 1;
	assert_int_equal(crashstate_load(cs, drop_node, drop_open, &d), 0);
	assert_int_equal(d.nnodes, 4); /* n2, n4 and the two n3 written since */
	assert_int_equal(d.released, 1); /* no open left to drop */
	cs = crashstate_close(cs, true);
	close(dfd);
	rmdir(dir);
}

static enum crashstate_resend rule(uint32_t opcode, uint32_t state, int error, bool existed,
				   bool name_exists, bool source_exists)
{
	struct crashstate_op op = { .unique = 2, .opcode = opcode, .state = state, .error = error,
				    .existed = existed, .ino = 77 };
	struct crashstate_now now = { .name_exists = name_exists, .source_exists = source_exists,
				      .name_ino = name_exists ? 77 : 0 };
	int e = 0;
	enum crashstate_resend r = crashstate_resend_rule(&op, &now, &e);

	if (r == CRASHSTATE_ANSWER_ERROR)
		assert_int_equal(e, error);
	return r;
}

static void test_resend_rule(void **state)
{
	const enum crashstate_op_state B = CRASHSTATE_OP_BEGUN, E = CRASHSTATE_OP_ENDED;
	struct crashstate_op swap = { .unique = 4, .opcode = FUSE_RENAME2, .state = B,
				      .ino = 5, .flags = RENAME_EXCHANGE };
	int e = 0;

	(void)state;
	/* Never begun: run it. */
	assert_int_equal(crashstate_resend_rule(NULL, NULL, &e), CRASHSTATE_EXECUTE);
	/* Ended: the same answer again, whatever the names hold now. */
	assert_int_equal(rule(FUSE_MKDIR, E, EEXIST, true, true, false), CRASHSTATE_ANSWER_ERROR);
	assert_int_equal(rule(FUSE_MKDIR, E, 0, false, true, false), CRASHSTATE_ANSWER_DONE);
	assert_int_equal(rule(FUSE_UNLINK, E, 0, true, false, false), CRASHSTATE_ANSWER_DONE);
	assert_int_equal(rule(FUSE_RENAME, E, ENOENT, false, false, false),
			 CRASHSTATE_ANSWER_ERROR);
	/* Begun: a name made by it, or one that was there already (EEXIST again). */
	for (uint32_t op = FUSE_MKNOD; op <= FUSE_LINK; op++) {
		if (op == FUSE_UNLINK || op == FUSE_RMDIR || op == FUSE_RENAME)
			continue;
		assert_int_equal(rule(op, B, 0, false, true, false), CRASHSTATE_ANSWER_DONE);
		assert_int_equal(rule(op, B, 0, true, true, false), CRASHSTATE_EXECUTE);
		assert_int_equal(rule(op, B, 0, false, false, false), CRASHSTATE_EXECUTE);
	}
	assert_int_equal(rule(FUSE_CREATE, B, 0, false, true, false), CRASHSTATE_ANSWER_DONE);
	/* Removals: gone by its hand, or never there (ENOENT again). */
	assert_int_equal(rule(FUSE_UNLINK, B, 0, true, false, false), CRASHSTATE_ANSWER_DONE);
	assert_int_equal(rule(FUSE_RMDIR, B, 0, true, true, false), CRASHSTATE_EXECUTE);
	assert_int_equal(rule(FUSE_UNLINK, B, 0, false, false, false), CRASHSTATE_EXECUTE);
	/* Renames: the source's inode moved to the target, or not yet. */
	assert_int_equal(rule(FUSE_RENAME, B, 0, false, true, false), CRASHSTATE_ANSWER_DONE);
	assert_int_equal(rule(FUSE_RENAME2, B, 0, false, true, true), CRASHSTATE_EXECUTE);
	assert_int_equal(rule(FUSE_RENAME, B, 0, false, false, false), CRASHSTATE_EXECUTE);
	assert_int_equal(crashstate_resend_rule(&swap, &(struct crashstate_now){
							       .name_exists = true,
							       .source_exists = true,
							       .name_ino = 5 },
						&e),
			 CRASHSTATE_ANSWER_DONE);
	assert_int_equal(crashstate_resend_rule(&swap, &(struct crashstate_now){
							       .name_exists = true,
							       .source_exists = true,
							       .name_ino = 6 },
						&e),
			 CRASHSTATE_EXECUTE);
	/* Absolute values: setting them again is the first execution's result. */
	assert_int_equal(rule(FUSE_SETATTR, B, 0, false, false, false), CRASHSTATE_EXECUTE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_records_survive_a_reopen),
		cmocka_unit_test(test_torn_records_read_as_free),
		cmocka_unit_test(test_journal),
		cmocka_unit_test(test_resend_rule),
		cmocka_unit_test(test_usage_mapping),
		cmocka_unit_test(test_rename),
		cmocka_unit_test(test_release_while_loading),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
