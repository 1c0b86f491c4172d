/*
 * journal.c - the requests that make, link, remove or rename names,
 * journalled in the volume's crash state (crashstate.h) around their
 * execution, so that one the kernel delivers again to a daemon started
 * after a crash (its unique then carries UNIQUE_RESEND) is answered as its
 * first execution was: not executed twice, with no spurious EEXIST or
 * ENOENT (crashstate_resend_rule() has the rule).
 *
 * The entry is begun before the request's handler runs and ended with the
 * answer, just before it goes to the kernel (journal_answered(), from
 * vfs.c's writev): these handlers all answer before they return. Without
 * a crash state the handlers run as they are.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <linux/fuse.h>

#include "crashstate.h"
#include "vfs.h"

#define UNIQUE_RESEND VFS_UNIQUE_RESEND

enum journal_step {
	JOURNAL_EXECUTE,  /* run the handler; the journal has the entry */
	JOURNAL_ANSWERED, /* already answered */
	JOURNAL_DONE,	  /* the first execution did it: answer its success */
};

/* The names a request works on: the one it makes or removes, a rename's source. */
struct journal_names {
	fuse_ino_t parent;
	const char *name;
	fuse_ino_t src_parent; /* rename only: 0 otherwise */
	const char *src_name;
	unsigned flags; /* rename's */
};

/*
 * CARVEFS_TEST_CRASH=begun:NAME or ended:NAME: the daemon kills itself
 * (SIGKILL) once a journalled request on the name NAME has run, just before
 * its answer goes out, with its journal entry begun or ended: the moments a
 * crash can leave a request the kernel then delivers again, for the tests.
 */
#define TEST_CRASH_ENV "CARVEFS_TEST_CRASH"

enum test_crash { TEST_CRASH_NONE, TEST_CRASH_BEGUN, TEST_CRASH_ENDED };

static enum test_crash test_crash_at(const struct journal_names *n)
{
	const char *at = getenv(TEST_CRASH_ENV), *name;
	enum test_crash when;

	if (!at)
		return TEST_CRASH_NONE;
	if (strncmp(at, "begun:", 6) == 0)
		when = TEST_CRASH_BEGUN;
	else if (strncmp(at, "ended:", 6) == 0)
		when = TEST_CRASH_ENDED;
	else
		return TEST_CRASH_NONE;
	name = at + 6;
	return strcmp(name, n->name) == 0 || (n->src_name && strcmp(name, n->src_name) == 0) ?
		       when :
		       TEST_CRASH_NONE;
}

/* Whether @name below node @parent exists now, and its inode number. */
static int name_now(struct vfs *v, fuse_ino_t parent, const char *name, bool *ret_exists,
		    uint64_t *ret_ino)
{
	struct inode *in;
	struct stat st;
	int fd, r = 0;

	fd = inode_borrow(v, parent, &in);
	if (fd < 0)
		return fd;
	*ret_exists = false;
	*ret_ino = 0;
	if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		*ret_exists = true;
		*ret_ino = st.st_ino;
	} else if (errno != ENOENT) {
		r = -errno;
	}
	inode_fd_put(v, in);
	return r;
}

static enum journal_step journal_begin(fuse_req_t req, struct vfs *v,
				       const struct journal_names *n)
{
	uint64_t unique = v->rq_unique, first = unique & ~UNIQUE_RESEND, src_ino = 0;
	struct crashstate_op op = { .unique = first, .opcode = v->rq_opcode, .flags = n->flags };
	struct crashstate_now now = { 0 };
	int error = 0, r;

	v->journal_unique = 0;
	v->journal_crash = TEST_CRASH_NONE;
	if (!v->cs || first == 0)
		return JOURNAL_EXECUTE;
	/*
	 * A parent we cannot look into makes the handler fail the same way;
	 * nothing is done, so there is nothing to journal.
	 */
	if (name_now(v, n->parent, n->name, &now.name_exists, &now.name_ino) < 0)
		return JOURNAL_EXECUTE;
	if (n->src_name &&
	    name_now(v, n->src_parent, n->src_name, &now.source_exists, &src_ino) < 0)
		return JOURNAL_EXECUTE;
	if (unique & UNIQUE_RESEND) {
		struct crashstate_op prev;
		bool known = crashstate_op_find(v->cs, first, &prev) == 0 && prev.opcode == op.opcode;

		switch (crashstate_resend_rule(known ? &prev : NULL, &now, &error)) {
		case CRASHSTATE_ANSWER_ERROR:
			fuse_reply_err(req, error);
			return JOURNAL_ANSWERED;
		case CRASHSTATE_ANSWER_DONE:
			v->journal_unique = unique;
			return JOURNAL_DONE;
		case CRASHSTATE_EXECUTE:
			break;
		}
	}
	op.existed = now.name_exists;
	op.ino = src_ino;
	r = crashstate_op_begin(v->cs, &op);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return JOURNAL_ANSWERED;
	}
	v->journal_unique = unique;
	v->journal_crash = test_crash_at(n);
	return JOURNAL_EXECUTE;
}

void journal_answered(struct vfs *v, const struct fuse_out_header *oh, const struct iovec *arg)
{
	uint64_t nodeid = 0;

	/* Every journalled request that makes a name answers with its entry first. */
	if (oh->error == 0 && arg && arg->iov_len >= sizeof(struct fuse_entry_out))
		nodeid = ((const struct fuse_entry_out *)arg->iov_base)->nodeid;
	if (v->journal_crash == TEST_CRASH_BEGUN)
		raise(SIGKILL);
	if (v->cs)
		(void)crashstate_op_end(v->cs, oh->unique & ~UNIQUE_RESEND, -oh->error, nodeid);
	if (v->journal_crash == TEST_CRASH_ENDED)
		raise(SIGKILL);
	v->journal_unique = 0;
}

/* The first execution made @name below @parent: answer with its entry, as it would have. */
static void answer_entry(fuse_req_t req, struct vfs *v, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	struct inode *in = inode_of(v, parent);
	int r = in ? inode_lookup(v, in, name, false, &e) : -ESTALE;

	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_entry(req, &e);
}

static void journalled_make(fuse_req_t req, fuse_ino_t parent, const char *name,
			    void (*execute)(void *arg), void *arg)
{
	struct vfs *v = fuse_req_userdata(req);

	switch (journal_begin(req, v, &(struct journal_names){ .parent = parent, .name = name })) {
	case JOURNAL_EXECUTE:
		execute(arg);
		break;
	case JOURNAL_DONE:
		answer_entry(req, v, parent, name);
		break;
	case JOURNAL_ANSWERED:
		break;
	}
	v->journal_unique = 0;
}

struct make_args {
	fuse_req_t req;
	fuse_ino_t parent, ino;
	const char *name, *link;
	mode_t mode;
	dev_t rdev;
};

static void do_mknod(void *arg)
{
	struct make_args *a = arg;

	meta_mknod(a->req, a->parent, a->name, a->mode, a->rdev);
}

static void do_mkdir(void *arg)
{
	struct make_args *a = arg;

	meta_mkdir(a->req, a->parent, a->name, a->mode);
}

static void do_symlink(void *arg)
{
	struct make_args *a = arg;

	meta_symlink(a->req, a->link, a->parent, a->name);
}

static void do_link(void *arg)
{
	struct make_args *a = arg;

	meta_link(a->req, a->ino, a->parent, a->name);
}

void journal_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct make_args a = { .req = req, .parent = parent, .name = name, .mode = mode, .rdev = rdev };

	journalled_make(req, parent, name, do_mknod, &a);
}

void journal_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct make_args a = { .req = req, .parent = parent, .name = name, .mode = mode };

	journalled_make(req, parent, name, do_mkdir, &a);
}

void journal_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct make_args a = { .req = req, .parent = parent, .name = name, .link = link };

	journalled_make(req, parent, name, do_symlink, &a);
}

void journal_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct make_args a = { .req = req, .parent = newparent, .name = newname, .ino = ino };

	journalled_make(req, newparent, newname, do_link, &a);
}

void journal_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		    struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);

	switch (journal_begin(req, v, &(struct journal_names){ .parent = parent, .name = name })) {
	case JOURNAL_DONE:
		/* The file is the first execution's: open it as a create without O_EXCL does. */
		fi->flags &= ~(O_EXCL | O_TRUNC);
		/* fallthrough */
	case JOURNAL_EXECUTE:
		file_create(req, parent, name, mode, fi);
		break;
	case JOURNAL_ANSWERED:
		break;
	}
	v->journal_unique = 0;
}

static void journalled_remove(fuse_req_t req, const struct journal_names *n,
			      void (*execute)(fuse_req_t req, const struct journal_names *n))
{
	struct vfs *v = fuse_req_userdata(req);

	switch (journal_begin(req, v, n)) {
	case JOURNAL_EXECUTE:
		execute(req, n);
		break;
	case JOURNAL_DONE:
		fuse_reply_err(req, 0);
		break;
	case JOURNAL_ANSWERED:
		break;
	}
	v->journal_unique = 0;
}

static void do_unlink(fuse_req_t req, const struct journal_names *n)
{
	meta_unlink(req, n->parent, n->name);
}

static void do_rmdir(fuse_req_t req, const struct journal_names *n)
{
	meta_rmdir(req, n->parent, n->name);
}

static void do_rename(fuse_req_t req, const struct journal_names *n)
{
	meta_rename(req, n->src_parent, n->src_name, n->parent, n->name, n->flags);
}

void journal_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	journalled_remove(req, &(struct journal_names){ .parent = parent, .name = name }, do_unlink);
}

void journal_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	journalled_remove(req, &(struct journal_names){ .parent = parent, .name = name }, do_rmdir);
}

void journal_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		    const char *newname, unsigned int flags)
{
	struct journal_names n = { .parent = newparent,
				   .name = newname,
				   .src_parent = parent,
				   .src_name = name,
				   .flags = flags };

	journalled_remove(req, &n, do_rename);
}
