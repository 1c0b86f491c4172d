/*
 * The crash state file: what is recorded comes back from a reopened file
 * (nodes before the opens that name them), freed slots are reused and do
 * not come back, a torn record reads as free, and the journal finds a
 * request by unique, begun or ended, until a later one takes its place.
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
				     .handle_type = 1, .handle_bytes = 8 };

	memcpy(n.handle, &id, sizeof(id));
	return n;
}

static void test_records_survive_a_reopen(void **state)
{
	char dir[64];
	int dfd = tmpdir_fd(dir);
	struct crashstate *cs;
	struct crashstate_node n2 = node(2), n3 = node(3), n4 = node(4);
	struct crashstate_open o = { .fh = 7, .nodeid = 3, .flags = O_RDWR };
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
