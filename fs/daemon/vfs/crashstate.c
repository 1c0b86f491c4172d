/*
 * crashstate.c - a volume's node ids, open files and recent non-idempotent
 * requests in a file that outlives the daemon; see crashstate.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fuse.h>
#include <xxhash.h>

#include "crashstate.h"

#define MAGIC 0x53435643u /* "CVCS" */
#define VERSION 1u
#define HEADER_BYTES 4096u
/* Where in the header page the usage is (struct quota_mirror). */
#define USAGE_OFF 64u

struct header {
	uint32_t magic, version, journal_len, slot_bytes;
};

struct slot {
	uint32_t kind; /* enum crashstate_kind */
	uint32_t handle_bytes;
	int32_t handle_type;
	uint32_t flags; /* a node's type, an open's flags */
	uint64_t nodeid, generation, fh; /* a node's fh, an open's generation: its request's unique */
	unsigned char handle[CRASHSTATE_HANDLE_MAX];
	uint64_t sum; /* XXH3 of everything above */
};

struct jentry {
	struct crashstate_op op;
	uint64_t sum;
};

#define JOURNAL_OFF ((off_t)HEADER_BYTES)
#define SLOTS_OFF (JOURNAL_OFF + (off_t)(CRASHSTATE_JOURNAL_LEN * sizeof(struct jentry)))

struct crashstate {
	int dir_fd, fd;
	void *usage_page; /* the first page, mapped (crashstate_map_usage()); NULL until then */
	/* crashstate_batch_begin(): new slots gathered here, from slot batch_first on */
	struct slot *batch;
	size_t nbatch, batch_cap;
	uint32_t batch_first;
	bool batching;
	char *name;
	uint32_t nslots;    /* slots the file has room for so far */
	uint32_t *free;	    /* free slots below nslots, a stack */
	size_t nfree, free_cap;
	struct crashstate_op journal[CRASHSTATE_JOURNAL_LEN];
};

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset(p, 0, len); /* past the end: free */
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static uint32_t journal_index(uint64_t unique)
{
	/* The kernel counts uniques up in steps of 2. */
	return (uint32_t)((unique >> 1) % CRASHSTATE_JOURNAL_LEN);
}

int crashstate_open(int dir_fd, const char *name, bool fresh, struct crashstate **ret_cs)
{
	struct header h = { .magic = MAGIC, .version = VERSION,
			    .journal_len = CRASHSTATE_JOURNAL_LEN,
			    .slot_bytes = sizeof(struct slot) };
	struct crashstate *cs = calloc(1, sizeof(*cs));
	struct header got;
	int r;

	if (!cs)
		return -ENOMEM;
	cs->fd = -1;
	cs->dir_fd = dir_fd;
	cs->name = strdup(name);
	if (!cs->name) {
		r = -ENOMEM;
		goto err;
	}
	cs->fd = openat(dir_fd, name,
			O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (fresh ? O_TRUNC : 0), 0600);
	if (cs->fd < 0) {
		r = -errno;
		goto err;
	}
	r = pread_all(cs->fd, &got, sizeof(got), 0);
	if (r < 0)
		goto err;
	if (got.magic == 0 && got.version == 0) {
		r = pwrite_all(cs->fd, &h, sizeof(h), 0);
		/* The whole first page exists, for crashstate_map_usage(). */
		if (r == 0 && ftruncate(cs->fd, HEADER_BYTES) < 0)
			r = -errno;
		if (r < 0)
			goto err;
	} else if (memcmp(&got, &h, sizeof(h)) != 0) {
		r = -EPROTO; /* another layout: of no use to this build */
		goto err;
	}
	*ret_cs = cs;
	return 0;
err:
	crashstate_close(cs, false);
	return r;
}

int crashstate_map_usage(struct crashstate *cs, struct quota_mirror **ret_usage)
{
	void *page;

	if (!cs->usage_page) {
		page = mmap(NULL, HEADER_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, cs->fd, 0);
		if (page == MAP_FAILED)
			return -errno;
		cs->usage_page = page;
	}
	*ret_usage = (struct quota_mirror *)((char *)cs->usage_page + USAGE_OFF);
	return 0;
}

struct crashstate *crashstate_close(struct crashstate *cs, bool remove)
{
	if (!cs)
		return NULL;
	if (cs->usage_page)
		munmap(cs->usage_page, HEADER_BYTES);
	if (cs->fd >= 0)
		close(cs->fd);
	if (remove && cs->name)
		(void)unlinkat(cs->dir_fd, cs->name, 0);
	free(cs->name);
	free(cs->free);
	free(cs->batch);
	free(cs);
	return NULL;
}

int crashstate_rename(struct crashstate *cs, const char *name)
{
	char *copy = strdup(name);

	if (!copy)
		return -ENOMEM;
	if (renameat(cs->dir_fd, cs->name, cs->dir_fd, name) < 0) {
		int r = -errno;

		free(copy);
		return r;
	}
	free(cs->name);
	cs->name = copy;
	return 0;
}

static uint64_t slot_sum(const struct slot *s)
{
	return XXH3_64bits(s, offsetof(struct slot, sum));
}

static uint64_t jentry_sum(const struct jentry *e)
{
	return XXH3_64bits(&e->op, sizeof(e->op));
}

static int free_push(struct crashstate *cs, uint32_t slot)
{
	if (cs->nfree == cs->free_cap) {
		size_t cap = cs->free_cap ? cs->free_cap * 2 : 64;
		uint32_t *f = realloc(cs->free, cap * sizeof(*f));

		if (!f)
			return -ENOMEM;
		cs->free = f;
		cs->free_cap = cap;
	}
	cs->free[cs->nfree++] = slot;
	return 0;
}

int crashstate_load(struct crashstate *cs,
		    int (*on_node)(void *arg, const struct crashstate_node *n, uint32_t slot),
		    int (*on_open)(void *arg, enum crashstate_kind kind,
				   const struct crashstate_open *o, uint32_t slot),
		    void *arg)
{
	struct stat st;
	uint32_t nslots;
	int r;

	for (uint32_t i = 0; i < CRASHSTATE_JOURNAL_LEN; i++) {
		struct jentry e;

		r = pread_all(cs->fd, &e, sizeof(e), JOURNAL_OFF + (off_t)(i * sizeof(e)));
		if (r < 0)
			return r;
		if (e.op.unique && e.sum == jentry_sum(&e) && journal_index(e.op.unique) == i)
			cs->journal[i] = e.op;
	}
	if (fstat(cs->fd, &st) < 0)
		return -errno;
	nslots = st.st_size > SLOTS_OFF ?
			 (uint32_t)((st.st_size - SLOTS_OFF + sizeof(struct slot) - 1) /
				    sizeof(struct slot)) :
			 0;
	/* Before the callbacks: a record they find of no use is released at once. */
	cs->nslots = nslots;
	/* Two passes: every node before any open that names it. */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < nslots; i++) {
			struct slot s;
			bool valid;

			r = pread_all(cs->fd, &s, sizeof(s), SLOTS_OFF + (off_t)i * (off_t)sizeof(s));
			if (r < 0)
				return r;
			valid = s.kind != CRASHSTATE_FREE && s.sum == slot_sum(&s) &&
				s.handle_bytes <= CRASHSTATE_HANDLE_MAX;
			if (pass == 0 && !valid) {
				r = free_push(cs, i);
			} else if (pass == 0 && s.kind == CRASHSTATE_NODE) {
				struct crashstate_node n = { .nodeid = s.nodeid,
							     .generation = s.generation,
							     .type = s.flags,
							     .handle_type = s.handle_type,
							     .handle_bytes = s.handle_bytes,
							     .unique = s.fh };

				memcpy(n.handle, s.handle, s.handle_bytes);
				r = on_node(arg, &n, i);
			} else if (pass == 1 && valid &&
				   (s.kind == CRASHSTATE_FILE || s.kind == CRASHSTATE_DIR)) {
				struct crashstate_open o = { .fh = s.fh, .nodeid = s.nodeid,
							     .flags = s.flags,
							     .unique = s.generation };

				r = on_open(arg, (enum crashstate_kind)s.kind, &o, i);
			} else if (pass == 0 && s.kind != CRASHSTATE_FILE && s.kind != CRASHSTATE_DIR) {
				r = -EPROTO; /* a kind this build does not know */
			}
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int slot_write(struct crashstate *cs, struct slot *s, uint32_t *ret_slot)
{
	uint32_t i;
	int r;

	s->sum = slot_sum(s);
	if (cs->batching) {
		if (cs->nslots == UINT32_MAX)
			return -ENOSPC;
		if (cs->nbatch == cs->batch_cap) {
			size_t cap = cs->batch_cap ? cs->batch_cap * 2 : 256;
			struct slot *b = realloc(cs->batch, cap * sizeof(*b));

			if (!b)
				return -ENOMEM;
			cs->batch = b;
			cs->batch_cap = cap;
		}
		cs->batch[cs->nbatch++] = *s;
		*ret_slot = cs->nslots++;
		return 0;
	}
	if (cs->nfree) {
		i = cs->free[--cs->nfree];
	} else {
		if (cs->nslots == UINT32_MAX)
			return -ENOSPC;
		i = cs->nslots;
	}
	r = pwrite_all(cs->fd, s, sizeof(*s), SLOTS_OFF + (off_t)i * (off_t)sizeof(*s));
	if (r < 0) {
		if (i < cs->nslots)
			cs->nfree++; /* still free */
		return r;
	}
	if (i == cs->nslots)
		cs->nslots++;
	*ret_slot = i;
	return 0;
}

int crashstate_put_node(struct crashstate *cs, const struct crashstate_node *n, uint32_t *ret_slot)
{
	struct slot s = { .kind = CRASHSTATE_NODE, .handle_bytes = n->handle_bytes,
			  .handle_type = n->handle_type, .flags = n->type, .nodeid = n->nodeid,
			  .generation = n->generation, .fh = n->unique };

	if (n->handle_bytes > CRASHSTATE_HANDLE_MAX)
		return -EINVAL;
	memcpy(s.handle, n->handle, n->handle_bytes);
	return slot_write(cs, &s, ret_slot);
}

int crashstate_put_open(struct crashstate *cs, enum crashstate_kind kind,
			const struct crashstate_open *o, uint32_t *ret_slot)
{
	struct slot s = { .kind = kind, .flags = o->flags, .nodeid = o->nodeid, .fh = o->fh,
			  .generation = o->unique };

	if (kind != CRASHSTATE_FILE && kind != CRASHSTATE_DIR)
		return -EINVAL;
	return slot_write(cs, &s, ret_slot);
}

void crashstate_batch_begin(struct crashstate *cs)
{
	cs->batching = true;
	cs->nbatch = 0;
	cs->batch_first = cs->nslots;
}

int crashstate_batch_end(struct crashstate *cs)
{
	int r = 0;

	cs->batching = false;
	if (cs->nbatch)
		r = pwrite_all(cs->fd, cs->batch, cs->nbatch * sizeof(*cs->batch),
			       SLOTS_OFF + (off_t)cs->batch_first * (off_t)sizeof(*cs->batch));
	if (r < 0)
		cs->nslots = cs->batch_first; /* none of them is on file */
	free(cs->batch);
	cs->batch = NULL;
	cs->nbatch = cs->batch_cap = 0;
	return r;
}

int crashstate_release(struct crashstate *cs, uint32_t slot)
{
	struct slot s = { .kind = CRASHSTATE_FREE };
	int r;

	if (slot >= cs->nslots)
		return -EINVAL;
	/* Reserve the stack entry first, so that a slot freed on disk is always reusable. */
	r = free_push(cs, slot);
	if (r < 0)
		return r;
	cs->nfree--;
	r = pwrite_all(cs->fd, &s, offsetof(struct slot, handle),
		       SLOTS_OFF + (off_t)slot * (off_t)sizeof(s));
	if (r < 0)
		return r;
	cs->nfree++;
	return 0;
}

static int journal_write(struct crashstate *cs, const struct crashstate_op *op)
{
	uint32_t i = journal_index(op->unique);
	struct jentry e = { .op = *op };
	int r;

	e.sum = jentry_sum(&e);
	r = pwrite_all(cs->fd, &e, sizeof(e), JOURNAL_OFF + (off_t)(i * sizeof(e)));
	if (r == 0)
		cs->journal[i] = *op;
	return r;
}

int crashstate_op_begin(struct crashstate *cs, const struct crashstate_op *op)
{
	struct crashstate_op begun = *op;

	begun.state = CRASHSTATE_OP_BEGUN;
	begun.error = 0;
	begun.nodeid = 0;
	begun.pad = 0;
	return op->unique ? journal_write(cs, &begun) : -EINVAL;
}

int crashstate_op_end(struct crashstate *cs, uint64_t unique, int error, uint64_t nodeid)
{
	struct crashstate_op op = cs->journal[journal_index(unique)];

	if (!unique || op.unique != unique)
		return -ENOENT; /* pushed out meanwhile */
	op.state = CRASHSTATE_OP_ENDED;
	op.error = error;
	op.nodeid = nodeid;
	return journal_write(cs, &op);
}

int crashstate_op_find(struct crashstate *cs, uint64_t unique, struct crashstate_op *ret_op)
{
	const struct crashstate_op *op = &cs->journal[journal_index(unique)];

	if (!unique || op->unique != unique)
		return -ENOENT;
	*ret_op = *op;
	return 0;
}

enum crashstate_resend crashstate_resend_rule(const struct crashstate_op *op,
					      const struct crashstate_now *now, int *ret_error)
{
	if (!op)
		return CRASHSTATE_EXECUTE;
	if (op->state == CRASHSTATE_OP_ENDED) {
		if (op->error) {
			*ret_error = op->error;
			return CRASHSTATE_ANSWER_ERROR;
		}
		return CRASHSTATE_ANSWER_DONE;
	}
	switch (op->opcode) {
	case FUSE_MKDIR:
	case FUSE_MKNOD:
	case FUSE_SYMLINK:
	case FUSE_CREATE:
	case FUSE_LINK:
		/* A name that existed before makes it fail again, as it did. */
		return !op->existed && now->name_exists ? CRASHSTATE_ANSWER_DONE :
							  CRASHSTATE_EXECUTE;
	case FUSE_UNLINK:
	case FUSE_RMDIR:
		return op->existed && !now->name_exists ? CRASHSTATE_ANSWER_DONE :
							  CRASHSTATE_EXECUTE;
	case FUSE_RENAME:
	case FUSE_RENAME2:
		if (op->flags & RENAME_EXCHANGE)
			return now->name_exists && op->ino && now->name_ino == op->ino ?
				       CRASHSTATE_ANSWER_DONE :
				       CRASHSTATE_EXECUTE;
		return op->ino && !now->source_exists && now->name_exists &&
				       now->name_ino == op->ino ?
			       CRASHSTATE_ANSWER_DONE :
			       CRASHSTATE_EXECUTE;
	default:
		return CRASHSTATE_EXECUTE;
	}
}
