/*
 * handoff.c - a volume's state for its successor; see handoff.h.
 *
 * Blob layout (native byte order: both processes run on one machine),
 * every field a little record written and read by the put_ and get_
 * helpers below, in this order:
 *	magic "CARVEVS1"
 *	u64 used_bytes, used_inodes
 *	u64 read_ops, write_ops, read_bytes, write_bytes, throttled_ns
 *	2 x (HISTOGRAM_MAX_BOUNDS + 1 slots, sum_ns): read, write latency
 *	bytes INIT request
 *	bytes inode table (inode_table_export())
 *	u64 files; per file: u64 fh, u64 node id, u32 flags, u32 bits
 *	u64 dirs;  per dir:  u64 fh, u64 node id
 * where "bytes" is a u64 length and the bytes. A reader refuses any other
 * magic, so a changed layout gets a new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crashstate.h"
#include "handoff.h"

#define STATE_MAGIC "CARVEVS1"
#define FILE_CLIENT_DIRECT 1u
#define FILE_WROTE 2u
#define FILE_HAS_BUFFERED 4u
#define HIST_WORDS (HISTOGRAM_MAX_BOUNDS + 2)

struct writer {
	char *buf;
	size_t len, cap;
	int error;
};

static void put(struct writer *w, const void *p, size_t n)
{
	if (w->error || n == 0)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		char *nb;

		while (cap < w->len + n)
			cap *= 2;
		nb = realloc(w->buf, cap);
		if (!nb) {
			w->error = -ENOMEM;
			return;
		}
		w->buf = nb;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void put_u64(struct writer *w, uint64_t v)
{
	put(w, &v, sizeof(v));
}

static void put_bytes(struct writer *w, const void *p, size_t n)
{
	put_u64(w, n);
	put(w, p, n);
}

struct reader {
	const char *p;
	size_t left;
	int error;
};

static void get(struct reader *r, void *out, size_t n)
{
	if (r->error || n > r->left) {
		r->error = -EPROTO;
		memset(out, 0, n);
		return;
	}
	memcpy(out, r->p, n);
	r->p += n;
	r->left -= n;
}

static uint64_t get_u64(struct reader *r)
{
	uint64_t v;

	get(r, &v, sizeof(v));
	return v;
}

/* A pointer into the blob and the length of a "bytes" field. */
static const void *get_bytes(struct reader *r, size_t *ret_len)
{
	uint64_t n = get_u64(r);
	const void *p = r->p;

	if (r->error || n > r->left) {
		r->error = -EPROTO;
		*ret_len = 0;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	*ret_len = (size_t)n;
	return p;
}

static void put_histogram(struct writer *w, struct histogram *h)
{
	for (size_t i = 0; i <= HISTOGRAM_MAX_BOUNDS; i++)
		put_u64(w, atomic_load_explicit(&h->slot[i], memory_order_relaxed));
	put_u64(w, atomic_load_explicit(&h->sum_ns, memory_order_relaxed));
}

/* Slots, then the sum: as put_histogram() wrote them. */
static void put_histogram_words(struct histogram *h, const uint64_t *words)
{
	for (size_t i = 0; i <= HISTOGRAM_MAX_BOUNDS; i++)
		atomic_store_explicit(&h->slot[i], words[i], memory_order_relaxed);
	atomic_store_explicit(&h->sum_ns, words[HISTOGRAM_MAX_BOUNDS + 1], memory_order_relaxed);
}

static int add_fd(struct vfs_state *st, int fd)
{
	int dup_fd, *nfds;

	nfds = realloc(st->fds, (st->nfds + 1) * sizeof(*nfds));
	if (!nfds)
		return -ENOMEM;
	st->fds = nfds;
	dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dup_fd < 0)
		return -errno;
	st->fds[st->nfds++] = dup_fd;
	return 0;
}

struct dir_export {
	struct vfs *v;
	struct vfs_state *st;
	struct writer *w;
};

static int export_dir(void *arg, uint64_t fh, struct inode *in, int fd)
{
	struct dir_export *x = arg;

	put_u64(x->w, fh);
	put_u64(x->w, in->nodeid);
	return add_fd(x->st, fd);
}

struct export_call {
	struct vfs *vfs;
	struct vfs_state *state;
};

/* On the volume's loop thread, between requests (of which none runs: it is paused). */
static int export_on_loop(void *arg)
{
	struct export_call *c = arg;
	struct vfs *v = c->vfs;
	struct vfs_state *ret = c->state;
	struct vfs_state st = { 0 };
	struct writer w = { 0 };
	struct quota_usage u;
	void *itab = NULL;
	size_t itab_len = 0, n;
	int r;

	if (!v->init_buf)
		return -EPROTO;
	r = add_fd(&st, fuse_session_fd(v->se));
	if (r < 0)
		goto err;
	put(&w, STATE_MAGIC, 8);
	quota_get(v->quota, &u);
	put_u64(&w, u.used_bytes);
	put_u64(&w, u.used_inodes);
	put_u64(&w, atomic_load_explicit(&v->stats.read_ops, memory_order_relaxed));
	put_u64(&w, atomic_load_explicit(&v->stats.write_ops, memory_order_relaxed));
	put_u64(&w, atomic_load_explicit(&v->stats.read_bytes, memory_order_relaxed));
	put_u64(&w, atomic_load_explicit(&v->stats.write_bytes, memory_order_relaxed));
	put_u64(&w, atomic_load_explicit(&v->stats.throttled_ns, memory_order_relaxed));
	put_histogram(&w, &v->stats.read_latency);
	put_histogram(&w, &v->stats.write_latency);
	put_bytes(&w, v->init_buf, v->init_len);
	r = inode_table_export(v, &itab, &itab_len);
	if (r < 0)
		goto err;
	put_bytes(&w, itab, itab_len);
	free(itab);

	n = 0;
	for (struct handle *h = v->files; h; h = h->next)
		n++;
	put_u64(&w, n);
	for (struct handle *h = v->files; h; h = h->next) {
		uint32_t bits = (h->client_direct ? FILE_CLIENT_DIRECT : 0) |
				(h->wrote ? FILE_WROTE : 0) |
				(h->fd_buffered >= 0 ? FILE_HAS_BUFFERED : 0);
		uint32_t flags = (uint32_t)h->flags;

		put_u64(&w, h->fh);
		put_u64(&w, h->inode->nodeid);
		put(&w, &flags, sizeof(flags));
		put(&w, &bits, sizeof(bits));
		r = add_fd(&st, h->fd);
		if (r == 0 && h->fd_buffered >= 0)
			r = add_fd(&st, h->fd_buffered);
		if (r < 0)
			goto err;
	}
	put_u64(&w, dir_count(v));
	r = dir_for_each(v, export_dir, &(struct dir_export){ .v = v, .st = &st, .w = &w });
	if (r < 0)
		goto err;
	if (w.error) {
		r = w.error;
		goto err;
	}
	st.blob = w.buf;
	st.blob_len = w.len;
	*ret = st;
	return 0;
err:
	free(w.buf);
	vfs_state_clear(&st);
	return r;
}

int vfs_export(struct vfs *v, struct vfs_state *ret)
{
	struct export_call c = { .vfs = v, .state = ret };

	return uring_session_call(v->session, export_on_loop, &c);
}

static int record_dir(void *arg, uint64_t fh, struct inode *in, int fd)
{
	(void)fd;
	return dir_record(arg, fh, in);
}

/*
 * The crash state of the adopted volume, all of it written anew (record.c):
 * the predecessor's file stays the one in use until this process serves.
 */
static int stage_crash_state(struct vfs *v, int dir_fd)
{
	int r2;

	int r = record_state_open(v, dir_fd, true);

	if (r < 0 || !v->cs)
		return r;
	/* One write for the whole table: the volume is paused meanwhile. */
	crashstate_batch_begin(v->cs);
	for (size_t i = 0; i < v->nbuckets && r == 0; i++)
		for (struct inode *in = v->buckets[i]; in && r == 0; in = in->id_next)
			if (in != v->root)
				r = record_node_put(v, in, 0);
	for (struct handle *h = v->files; h && r == 0; h = h->next)
		r = record_open_put(v, false, h->fh, h->inode, file_record_flags(h), 0, &h->cs_slot);
	if (r == 0)
		r = dir_for_each(v, record_dir, v);
	r2 = crashstate_batch_end(v->cs);
	return r < 0 ? r : r2;
}

/* Takes fd number @i of @st; -1 (and -EPROTO in *r) past the end. */
static int take_fd(struct vfs_state *st, size_t *i, int *r)
{
	int fd;

	if (*i >= st->nfds) {
		*r = -EPROTO;
		return -1;
	}
	fd = st->fds[*i];
	st->fds[(*i)++] = -1;
	return fd;
}

int vfs_adopt(const struct vfs_params *p, struct vfs_state *st, struct vfs **ret_vfs)
{
	struct reader rd = { .p = st->blob, .left = st->blob_len };
	struct vfs_params q = *p;
	struct vfs *v = NULL;
	const void *init, *itab;
	size_t init_len, itab_len, fdi = 0;
	uint64_t nfiles, ndirs, counters[5], hist[2][HIST_WORDS];
	char magic[8];
	int fuse_fd, r = 0;

	get(&rd, magic, sizeof(magic));
	if (rd.error || memcmp(magic, STATE_MAGIC, sizeof(magic)) != 0) {
		close(p->root_fd);
		return -EPROTO;
	}
	q.usage_known = true;
	q.used_bytes = get_u64(&rd);
	q.used_inodes = get_u64(&rd);
	for (size_t i = 0; i < 5; i++)
		counters[i] = get_u64(&rd);
	fuse_fd = take_fd(st, &fdi, &r);
	if (rd.error || r < 0) {
		close(p->root_fd);
		return -EPROTO;
	}
	for (size_t h = 0; h < 2; h++)
		for (size_t i = 0; i < HIST_WORDS; i++)
			hist[h][i] = get_u64(&rd);
	init = get_bytes(&rd, &init_len);
	if (rd.error || !init) {
		close(fuse_fd);
		close(p->root_fd);
		return -EPROTO;
	}
	r = vfs_adopt_session(&q, fuse_fd, init, init_len, &v);
	if (r < 0)
		return r;
	put_histogram_words(&v->stats.read_latency, hist[0]);
	put_histogram_words(&v->stats.write_latency, hist[1]);
	atomic_store_explicit(&v->stats.read_ops, counters[0], memory_order_relaxed);
	atomic_store_explicit(&v->stats.write_ops, counters[1], memory_order_relaxed);
	atomic_store_explicit(&v->stats.read_bytes, counters[2], memory_order_relaxed);
	atomic_store_explicit(&v->stats.write_bytes, counters[3], memory_order_relaxed);
	atomic_store_explicit(&v->stats.throttled_ns, counters[4], memory_order_relaxed);

	itab = get_bytes(&rd, &itab_len);
	if (rd.error) {
		r = -EPROTO;
		goto err;
	}
	r = inode_table_import(v, itab, itab_len);
	if (r < 0)
		goto err;

	nfiles = get_u64(&rd);
	for (uint64_t i = 0; i < nfiles && !rd.error; i++) {
		uint64_t fh = get_u64(&rd), nodeid = get_u64(&rd);
		uint32_t flags, bits;
		struct inode *in;
		int fd, fd_buffered = -1;

		get(&rd, &flags, sizeof(flags));
		get(&rd, &bits, sizeof(bits));
		fd = take_fd(st, &fdi, &r);
		if (bits & FILE_HAS_BUFFERED)
			fd_buffered = take_fd(st, &fdi, &r);
		in = rd.error ? NULL : inode_of(v, nodeid);
		if (r == 0 && !in)
			r = -EPROTO;
		if (r == 0)
			r = file_adopt(v, fh, in, fd, fd_buffered, (int)flags,
				       bits & FILE_CLIENT_DIRECT, bits & FILE_WROTE);
		if (r < 0) {
			if (fd >= 0)
				close(fd);
			if (fd_buffered >= 0)
				close(fd_buffered);
			goto err;
		}
	}
	ndirs = get_u64(&rd);
	for (uint64_t i = 0; i < ndirs && !rd.error; i++) {
		uint64_t fh = get_u64(&rd), nodeid = get_u64(&rd);
		int fd = take_fd(st, &fdi, &r);
		struct inode *in = rd.error ? NULL : inode_of(v, nodeid);

		if (r == 0 && !in)
			r = -EPROTO;
		if (r == 0)
			r = dir_adopt(v, fh, in, fd);
		if (r < 0) {
			if (fd >= 0)
				close(fd);
			goto err;
		}
	}
	if (rd.error || rd.left != 0 || fdi != st->nfds) {
		r = -EPROTO;
		goto err;
	}
	r = stage_crash_state(v, p->state_dir_fd);
	if (r < 0)
		goto err;
	*ret_vfs = v;
	return 0;
err:
	/* Never served: freeing it touches neither the mount nor the predecessor's fds. */
	vfs_free(v);
	return r;
}

void vfs_state_clear(struct vfs_state *st)
{
	for (size_t i = 0; i < st->nfds; i++)
		if (st->fds[i] >= 0)
			close(st->fds[i]);
	free(st->fds);
	free(st->blob);
	memset(st, 0, sizeof(*st));
}
