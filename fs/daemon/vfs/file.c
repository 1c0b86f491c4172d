/*
 * file.c - open files and their IO: read, write, fsync and fallocate are
 * submitted to the loop's io_uring and answered from the completion.
 *
 * Capacity. Before a write or fallocate is submitted, the bytes it may newly
 * allocate are reserved from the quota; after it completed, the file's real
 * st_blocks settle the charge and the reservation is given back. The
 * estimate is exact for the common cases and conservative otherwise:
 *  - a dense file (every block up to its size allocated): only the part of
 *    the range past the allocated end can allocate, so overwriting works on a
 *    full volume with no extra syscall;
 *  - otherwise every block the range touches is assumed new, and if that does
 *    not fit, the holes in the range are measured with SEEK_HOLE/SEEK_DATA.
 * A write that does not fit whole is shortened to what fits (as on a full
 * disk: the caller sees a short write, then ENOSPC). A written file settles
 * once more after its release, when its writeback is done, see
 * release_settle_start().
 *
 * Several writes to one file may be in flight at once (asynchronous direct
 * IO, and parallel direct writes, see vfs.c); everything here runs on the
 * volume's loop thread, so the estimate above holds for each of them, and
 * the reservations of a file's writes are given back as a pool, see
 * write_settle(). The kernel keeps extending writes exclusive.
 *
 * O_DIRECT: the backing file is opened O_DIRECT when the client asked for it;
 * requests that are not aligned for the backing device go through a second,
 * buffered fd instead of failing, and a backing filesystem that refuses
 * O_DIRECT (tmpfs on older kernels) is served buffered.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "fhmap.h"
#include "throttle.h"
#include "vfs.h"
#include "clock.h"

#define DIO_ALIGN 512u
#define PAGE_BYTES 4096u
/*
 * Up to this size a write's payload is copied out of the receive buffer
 * instead of holding on to the buffer until the IO completes. A receive
 * buffer is over 1 MiB: with many writes in flight the loop runs out of
 * cached ones, and a new one costs an mmap, page faults and an munmap,
 * far more than copying a few pages.
 */
#define WRITE_COPY_MAX_BYTES (64u * 1024)

struct file_io {
	struct uring_op op;
	fuse_req_t req;
	struct vfs *vfs;
	struct handle *h;
	struct inode *inode; /* a settle after release: the file's entry, held */
	void *buf;	    /* read: our buffer; write: ours, or the receive buffer we hold */
	bool rxbuf;	    /* buf is a receive buffer, given back with uring_rxbuf_put() */
	void *data;	    /* where the write payload starts in buf */
	uint64_t reserved;  /* quota bytes held until completion */
	off_t off;
	size_t len;
	int fd;
	enum throttle_dir dir;
	uint64_t queued_ns;
	uint64_t arrival_ns; /* reads and writes: when the request came in */
	struct file_io *qnext;
};

/* Requests of one direction held back by the limits, oldest first. */
struct io_queue {
	struct uring_op timer_op;
	struct __kernel_timespec ts;
	struct vfs *vfs;
	enum throttle_dir dir;
	struct file_io *head, **tail;
	bool timer_armed;
};

struct file_throttle {
	struct throttle *buckets;
	struct io_queue queues[2];
	bool released; /* the session is ending: nothing waits any more */
};

struct handle *file_handle_of(struct vfs *v, const struct fuse_file_info *fi)
{
	return fhmap_get(v->file_fhs, fi->fh);
}

static uint64_t round_down(uint64_t v, uint64_t a)
{
	return v - v % a;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return round_down(v + a - 1, a);
}

/* Reopens @fd (through /proc) with @flags: the same object, another open mode. */
static int reopen(int fd, int flags)
{
	char path[64];
	int r;

	inode_procpath(fd, path, sizeof(path));
	r = open(path, flags | O_CLOEXEC);
	return r < 0 ? -errno : r;
}

/* The flags of the backing open: the kernel supplies offsets, so no O_APPEND. */
static int backing_flags(int client_flags)
{
	return client_flags & (O_ACCMODE | O_DIRECT | O_SYNC | O_DSYNC | O_NOATIME);
}

/*
 * A handle over @fd, known to the kernel as @fh (0: a new id). Owns the fds
 * on success only.
 */
static int handle_add(struct vfs *v, uint64_t fh, struct inode *in, int fd, int fd_buffered,
		      int flags, bool client_direct, struct handle **ret)
{
	struct handle *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return -ENOMEM;
	r = fh ? fhmap_put_at(v->file_fhs, fh, h) : fhmap_put(v->file_fhs, h, &fh);
	if (r < 0) {
		free(h);
		return r;
	}
	h->fh = fh;
	h->cs_slot = CS_SLOT_NONE;
	h->next = v->files;
	if (v->files)
		v->files->prev = h;
	v->files = h;
	h->fd = fd;
	h->fd_buffered = fd_buffered;
	h->flags = flags;
	h->client_direct = client_direct;
	h->inode = in;
	in->opens++;
	*ret = h;
	return 0;
}

/* O_* flags never use the top bit. */
#define RECORD_CLIENT_DIRECT (1u << 31)

uint32_t file_record_flags(const struct handle *h)
{
	return (uint32_t)h->flags | (h->client_direct ? RECORD_CLIENT_DIRECT : 0);
}

static void handle_free(struct vfs *v, struct handle *h);

/* A new handle, recorded in the crash state before the kernel learns its fh. */
static int handle_new(struct vfs *v, struct inode *in, int fd, int flags, int client_flags,
		      struct handle **ret)
{
	struct handle *h;
	int r;

	r = handle_add(v, 0, in, fd, -1, flags, client_flags & O_DIRECT, &h);
	if (r < 0)
		return r;
	r = record_open_put(v, false, h->fh, in, file_record_flags(h), v->rq_unique, &h->cs_slot);
	if (r < 0) {
		h->fd = -1; /* the caller's on failure */
		handle_free(v, h);
		return r;
	}
	*ret = h;
	return 0;
}

/* The fd to use for an IO at (@addr, @off, @len): the direct one if aligned. */
static int handle_fd_for(struct handle *h, uintptr_t addr, uint64_t off, uint64_t len)
{
	if (!(h->flags & O_DIRECT) || ((addr | off | len) % DIO_ALIGN) == 0)
		return h->fd;
	if (h->fd_buffered < 0) {
		int fd = reopen(h->fd, h->flags & ~O_DIRECT);

		if (fd < 0)
			return fd;
		h->fd_buffered = fd;
	}
	return h->fd_buffered;
}

static int open_backing(struct vfs *v, struct inode *in, int client_flags, int *ret_flags)
{
	int flags = backing_flags(client_flags), pathfd, fd;

	pathfd = inode_fd_get(v, in);
	if (pathfd < 0)
		return pathfd;
	fd = reopen(pathfd, flags);
	if (fd == -EINVAL && (flags & O_DIRECT)) {
		flags &= ~O_DIRECT;
		fd = reopen(pathfd, flags);
	}
	inode_fd_put(v, in);
	if (fd >= 0)
		*ret_flags = flags;
	return fd;
}

static void handle_free(struct vfs *v, struct handle *h)
{
	record_release(v, &h->cs_slot);
	(void)fhmap_remove(v->file_fhs, h->fh);
	if (h->prev)
		h->prev->next = h->next;
	else
		v->files = h->next;
	if (h->next)
		h->next->prev = h->prev;
	if (h->fd >= 0)
		close(h->fd);
	if (h->fd_buffered >= 0)
		close(h->fd_buffered);
	inode_close(v, h->inode);
	free(h);
}

int file_adopt(struct vfs *v, uint64_t fh, struct inode *in, int fd, int fd_buffered, int flags,
	       bool client_direct, bool wrote)
{
	struct handle *h;
	int r;

	if (fh == 0)
		return -EINVAL;
	r = handle_add(v, fh, in, fd, fd_buffered, flags, client_direct, &h);
	if (r == 0)
		h->wrote = wrote;
	return r;
}

int file_restore(struct vfs *v, uint64_t fh, struct inode *in, uint32_t flags, uint64_t unique,
		 uint32_t slot)
{
	int oflags = (int)(flags & ~RECORD_CLIENT_DIRECT), pathfd, fd, r;
	struct handle *h;

	if (fh == 0 || in->type != S_IFREG || oflags != backing_flags(oflags))
		return -EINVAL;
	pathfd = inode_fd_get(v, in);
	if (pathfd < 0)
		return pathfd;
	fd = reopen(pathfd, oflags);
	inode_fd_put(v, in);
	if (fd < 0)
		return fd;
	r = handle_add(v, fh, in, fd, -1, oflags, flags & RECORD_CLIENT_DIRECT, &h);
	if (r < 0) {
		close(fd);
		return r;
	}
	/* Whatever the dead daemon's handle wrote, its release settles. */
	h->wrote = true;
	h->cs_slot = slot;
	h->restored_unique = unique;
	return 0;
}

void file_drop_unanswered(struct vfs *v, uint64_t unique)
{
	struct handle *h = v->files, *next;

	for (; h; h = next) {
		next = h->next;
		if (unique && h->restored_unique == unique)
			handle_free(v, h);
	}
}

void file_close_all(struct vfs *v)
{
	while (v->files)
		handle_free(v, v->files);
}

static void reply_open(fuse_req_t req, struct vfs *v, struct handle *h,
		       struct fuse_file_info *fi, const struct fuse_entry_param *e)
{
	int r;

	fi->fh = h->fh;
	/*
	 * The client asked for no caching: FOPEN_DIRECT_IO says the same to
	 * the kernel and is what lets vfs.c grant parallel direct writes.
	 * Writes through it skip the kernel's clearing of setuid bits, which
	 * file_write_buf() does instead.
	 */
	fi->direct_io = h->client_direct;
	/* Only this daemon changes the backing files, so cached pages stay valid. */
	fi->keep_cache = !(h->flags & O_DIRECT);
	/* Nothing is ever cached here to flush: spare every close() a round trip. */
	fi->noflush = 1;
	r = e ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi);
	if (r == -ENOENT) {
		/* The opener was interrupted: no release will come for this handle. */
		handle_free(v, h);
	}
}

int file_truncate(struct vfs *v, struct inode *in, int fd, off_t size)
{
	/* Growing is sparse and allocates nothing; shrinking gives space back. */
	if (ftruncate(fd, size) < 0)
		return -errno;
	return inode_settle_fd(v, in, fd);
}

void file_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct inode *in = inode_of(v, ino);
	struct handle *h = NULL;
	int fd, flags, r;

	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (in->type != S_IFREG) {
		fuse_reply_err(req, in->type == S_IFDIR ? EISDIR : EINVAL);
		return;
	}
	fd = open_backing(v, in, fi->flags, &flags);
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	if (fi->flags & O_TRUNC) {
		r = file_truncate(v, in, fd, 0);
		if (r < 0)
			goto err;
	}
	r = handle_new(v, in, fd, flags, fi->flags, &h);
	if (r < 0)
		goto err;
	reply_open(req, v, h, fi, NULL);
	return;
err:
	close(fd);
	fuse_reply_err(req, -r);
}

void file_create(fuse_req_t req, fuse_ino_t parent_ino, const char *name, mode_t mode,
		 struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct inode *parent = NULL, *in = NULL;
	struct fuse_entry_param e;
	struct handle *h = NULL;
	bool created = true;
	/*
	 * A file this request makes is opened with the client's flags at once:
	 * the open that creates a file is not subject to its permission bits,
	 * and it spares a reopen. O_DIRECT is left to open_backing(), which
	 * copes with a backing filesystem that refuses it.
	 */
	int cflags = backing_flags(fi->flags) & ~O_DIRECT, fd = -1, flags = cflags, pfd, r;

	pfd = inode_borrow(v, parent_ino, &parent);
	if (pfd < 0) {
		fuse_reply_err(req, -pfd);
		return;
	}
	r = quota_reserve_inode(v->quota);
	if (r < 0)
		goto out;
	r = creds_enter(req);
	if (r < 0)
		goto out_inode;
	/*
	 * O_EXCL tells us whether this request made the file (and so costs an
	 * inode); O_NOFOLLOW keeps a symlink planted at the name from being
	 * followed out of the volume.
	 */
	fd = openat(pfd, name, O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | cflags,
		    mode & ~S_IFMT);
	if (fd < 0 && errno == EEXIST && !(fi->flags & O_EXCL)) {
		created = false;
		fd = openat(pfd, name, O_NOFOLLOW | O_CLOEXEC | O_RDONLY);
	}
	if (fd < 0)
		r = -errno;
	creds_leave();
	if (r < 0)
		goto out_inode;
	if (!created || (fi->flags & O_DIRECT)) {
		close(fd);
		fd = -1;
	}
	r = inode_lookup(v, parent, name, created, &e);
	if (r < 0)
		goto err;
	in = inode_of(v, e.ino);
	(void)inode_settle_fd(v, parent, pfd);
	if (created)
		recount_name_made(v, pfd, name);
	if (in->type != S_IFREG) {
		r = -EISDIR;
		goto err;
	}
	if (fd < 0) {
		fd = open_backing(v, in, fi->flags, &flags);
		if (fd < 0) {
			r = fd;
			goto err;
		}
	}
	if (!created && (fi->flags & O_TRUNC))
		r = file_truncate(v, in, fd, 0);
	if (r >= 0)
		r = handle_new(v, in, fd, flags, fi->flags, &h);
	if (r < 0)
		goto err;
	fd = -1; /* the handle owns it */
	goto out_fd;
err:
	/* A failed create leaves no file behind: the caller may well retry with O_EXCL. */
	if (created)
		inode_unmake(v, parent, name, in);
	else if (in)
		inode_forget(v, in, 1);
out_fd:
	if (fd >= 0)
		close(fd);
out_inode:
	quota_release_inode(v->quota);
out:
	inode_fd_put(v, parent);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		reply_open(req, v, h, fi, &e);
}

static void io_submit(struct file_io *io)
{
	struct io_uring_sqe *sqe = uring_sqe(&io->op);

	if (io->dir == THROTTLE_READ)
		io_uring_prep_read(sqe, io->fd, io->buf, (unsigned)io->len, (uint64_t)io->off);
	else
		io_uring_prep_write(sqe, io->fd, io->data, (unsigned)io->len, (uint64_t)io->off);
}

static void queue_arm(struct io_queue *q, uint64_t wait_ns)
{
	struct io_uring_sqe *sqe;

	if (q->timer_armed)
		return;
	q->ts.tv_sec = (long long)(wait_ns / 1000000000u);
	q->ts.tv_nsec = (long long)(wait_ns % 1000000000u);
	sqe = uring_sqe(&q->timer_op);
	io_uring_prep_timeout(sqe, &q->ts, 0, 0);
	q->timer_armed = true;
}

static void queue_pop_submit(struct io_queue *q, uint64_t now_ns)
{
	struct file_io *io = q->head;

	q->head = io->qnext;
	if (!q->head)
		q->tail = &q->head;
	atomic_fetch_sub_explicit(&q->vfs->stats.queue_depth, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&q->vfs->stats.throttled_ns, now_ns - io->queued_ns,
				  memory_order_relaxed);
	io_submit(io);
}

/* Starts what the buckets allow, in order; arms the timer for the rest. */
static void queue_dispatch(struct io_queue *q)
{
	struct file_throttle *ft = q->vfs->throttle;
	uint64_t now = clock_now_ns();

	while (q->head) {
		uint64_t wait = ft->released ?
					0 :
					throttle_admit(ft->buckets, q->dir, q->head->len, now);

		if (wait) {
			queue_arm(q, wait);
			return;
		}
		queue_pop_submit(q, now);
	}
}

static void queue_timer_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct io_queue *q = (struct io_queue *)op;

	(void)res;
	(void)cqe_flags;
	q->timer_armed = false;
	queue_dispatch(q);
}

static void queue_cancel_timer(struct io_queue *q)
{
	struct io_uring_sqe *sqe;

	if (!q->timer_armed)
		return;
	/* Its completion (-ECANCELED) dispatches again, under the new rules. */
	sqe = uring_sqe(NULL);
	io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)&q->timer_op, 0);
}

/* Submits @io now if the limits allow it and nothing waits before it; else queues it. */
static void io_start(struct file_io *io)
{
	struct file_throttle *ft = io->vfs->throttle;
	struct io_queue *q = &ft->queues[io->dir];
	uint64_t now, wait;

	if (ft->released || (!q->head && throttle_unlimited(ft->buckets, io->dir))) {
		io_submit(io);
		return;
	}
	now = clock_now_ns();
	wait = q->head ? 1 : throttle_admit(ft->buckets, io->dir, io->len, now);
	if (!wait) {
		io_submit(io);
		return;
	}
	io->queued_ns = now;
	io->qnext = NULL;
	*q->tail = io;
	q->tail = &io->qnext;
	atomic_fetch_add_explicit(&io->vfs->stats.queue_depth, 1, memory_order_relaxed);
	if (q->head == io)
		queue_arm(q, wait);
}

int file_throttle_new(struct vfs *v, const struct io_limits *limits)
{
	struct file_throttle *ft = calloc(1, sizeof(*ft));
	int r;

	if (!ft)
		return -ENOMEM;
	r = throttle_new(&ft->buckets);
	if (r < 0) {
		free(ft);
		return r;
	}
	throttle_set_limits(ft->buckets, limits, clock_now_ns());
	for (int d = 0; d < 2; d++) {
		ft->queues[d].timer_op.complete = queue_timer_complete;
		ft->queues[d].vfs = v;
		ft->queues[d].dir = (enum throttle_dir)d;
		ft->queues[d].tail = &ft->queues[d].head;
	}
	v->throttle = ft;
	return 0;
}

void file_throttle_free(struct vfs *v)
{
	if (!v->throttle)
		return;
	throttle_free(v->throttle->buckets);
	free(v->throttle);
	v->throttle = NULL;
}

void file_throttle_set(struct vfs *v, const struct io_limits *limits)
{
	struct file_throttle *ft = v->throttle;

	throttle_set_limits(ft->buckets, limits, clock_now_ns());
	for (int d = 0; d < 2; d++) {
		if (ft->queues[d].timer_armed)
			queue_cancel_timer(&ft->queues[d]);
		else
			queue_dispatch(&ft->queues[d]);
	}
}

void file_throttle_release_all(struct vfs *v)
{
	struct file_throttle *ft = v->throttle;

	ft->released = true;
	for (int d = 0; d < 2; d++) {
		queue_dispatch(&ft->queues[d]);
		queue_cancel_timer(&ft->queues[d]);
	}
}

static void read_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct file_io *io = (struct file_io *)op;

	(void)cqe_flags;
	histogram_observe(&io->vfs->stats.read_latency, &histogram_io_bounds,
			  clock_now_ns() - io->arrival_ns);
	if (res < 0) {
		fuse_reply_err(io->req, -res);
	} else {
		atomic_fetch_add_explicit(&io->vfs->stats.read_ops, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&io->vfs->stats.read_bytes, (uint64_t)res,
					  memory_order_relaxed);
		fuse_reply_buf(io->req, io->buf, (size_t)res);
	}
	free(io->buf);
	free(io);
}

void file_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct handle *h = file_handle_of(v, fi);
	uint64_t arrival_ns = clock_now_ns();
	struct file_io *io;
	int fd;

	(void)ino;
	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	io = calloc(1, sizeof(*io));
	if (!io || posix_memalign(&io->buf, 4096, round_up(size ? size : 1, 4096)) != 0) {
		free(io);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fd = handle_fd_for(h, (uintptr_t)io->buf, (uint64_t)off, size);
	if (fd < 0) {
		free(io->buf);
		free(io);
		fuse_reply_err(req, -fd);
		return;
	}
	io->op.complete = read_complete;
	io->arrival_ns = arrival_ns;
	io->req = req;
	io->vfs = v;
	io->fd = fd;
	io->off = off;
	io->len = size;
	io->dir = THROTTLE_READ;
	io_start(io);
}

/* Bytes of holes in [start, end) of @fd, measured with SEEK_HOLE/SEEK_DATA. */
static uint64_t hole_bytes(int fd, uint64_t start, uint64_t end, uint64_t file_size)
{
	uint64_t holes = 0, pos = start;

	if (end > file_size) {
		holes += end - (start > file_size ? start : file_size);
		end = start > file_size ? start : file_size;
	}
	while (pos < end) {
		off_t hole = lseek(fd, (off_t)pos, SEEK_HOLE), data;

		if (hole < 0)
			return holes + (end - pos); /* cannot tell: assume the worst */
		if ((uint64_t)hole >= end)
			break;
		data = lseek(fd, hole, SEEK_DATA);
		if (data < 0 || (uint64_t)data >= end) {
			holes += end - (uint64_t)hole;
			break;
		}
		holes += (uint64_t)data - (uint64_t)hole;
		pos = (uint64_t)data;
	}
	return holes;
}

/*
 * Reserves what writing [off, off + len) may allocate and returns how many of
 * the @len bytes may be written (0 < n <= len), or -ENOSPC.
 */
static int64_t write_reserve(struct vfs *v, struct handle *h, uint64_t off, uint64_t len,
			     uint64_t *ret_reserved)
{
	struct inode *in = h->inode;
	uint64_t bs = v->block_bytes;
	uint64_t first = round_down(off, bs), last = round_up(off + len, bs);
	uint64_t alloc_end = round_up(in->size, bs), start, want, granted;
	int r;

	if (in->charged_bytes >= alloc_end) {
		/* Dense: only blocks past the allocated end can be new. */
		start = first > alloc_end ? first : alloc_end;
		want = last > start ? last - start : 0;
	} else {
		start = first;
		want = last - first;
	}
	r = quota_reserve_bytes(v->quota, want, 0, 0, &granted);
	if (r == 0) {
		*ret_reserved = granted;
		return (int64_t)len;
	}
	/* Not all of it fits: count the real holes before shortening the write. */
	want = hole_bytes(h->fd, first, last, in->size);
	r = quota_reserve_bytes(v->quota, want, 0, 0, &granted);
	if (r == 0) {
		*ret_reserved = granted;
		return (int64_t)len;
	}
	/*
	 * The kernel turns a short answer to an asynchronous direct write into
	 * EIO, so direct writes are all or nothing: ENOSPC is the honest answer.
	 */
	if (h->client_direct)
		return -ENOSPC;
	r = quota_reserve_bytes(v->quota, want, bs, bs, &granted);
	if (r < 0)
		return r;
	*ret_reserved = granted;
	/* Assume the allocation happens front to back from the first hole. */
	if (start + granted <= off) {
		quota_release_bytes(v->quota, granted);
		return -ENOSPC;
	}
	return (int64_t)(start + granted - off < len ? start + granted - off : len);
}

/*
 * A direct-IO file's writes bypass the kernel's file_remove_privs(): the
 * kernel asks with FUSE_WRITE_KILL_SUIDGID when the writer lacks
 * CAP_FSETID, and our own write to the backing file, made as root, would
 * keep the bits. The kernel's rule: setuid always, setgid only with group
 * execute (without it the bit means mandatory locking, not privilege).
 */
static int write_kill_suidgid(int fd)
{
	struct stat st;
	mode_t kill = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_mode & S_ISUID)
		kill |= S_ISUID;
	if ((st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		kill |= S_ISGID;
	if (kill && fchmod(fd, st.st_mode & 07777 & ~kill) < 0)
		return -errno;
	return 0;
}

/*
 * Settles the file after a write and gives back the reservation it no
 * longer needs. Writes to one file may be in flight together (direct IO
 * takes parallel writes), and the file's st_blocks after one of them
 * already holds the blocks the others allocated so far: those are charged
 * now, so as much of the reservation held for the file's writes is spent.
 * What stays held never exceeds what the writes still in flight reserved,
 * which bounds what they can still allocate.
 */
static void write_settle(struct vfs *v, struct file_io *io)
{
	struct inode *in = io->h->inode;
	uint64_t before = in->charged_bytes, spent = 0, excess = 0;

	if (io->reserved || (uint64_t)io->off + io->len > in->size) {
		(void)inode_settle_fd(v, in, io->fd);
		if (in->charged_bytes > before)
			spent = in->charged_bytes - before;
	}
	if (spent > in->write_held_bytes)
		spent = in->write_held_bytes;
	in->write_held_bytes -= spent;
	in->write_claimed_bytes -= io->reserved;
	if (in->write_held_bytes > in->write_claimed_bytes)
		excess = in->write_held_bytes - in->write_claimed_bytes;
	in->write_held_bytes -= excess;
	quota_release_bytes(v->quota, spent + excess);
}

static void write_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct file_io *io = (struct file_io *)op;
	struct vfs *v = io->vfs;

	(void)cqe_flags;
	write_settle(v, io);
	if (io->rxbuf)
		uring_rxbuf_put(io->buf);
	else
		free(io->buf);
	histogram_observe(&v->stats.write_latency, &histogram_io_bounds,
			  clock_now_ns() - io->arrival_ns);
	if (res < 0) {
		fuse_reply_err(io->req, -res);
	} else {
		atomic_fetch_add_explicit(&v->stats.write_ops, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&v->stats.write_bytes, (uint64_t)res, memory_order_relaxed);
		fuse_reply_write(io->req, (size_t)res);
	}
	free(io);
}

void file_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
		    struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct handle *h = file_handle_of(v, fi);
	uint64_t arrival_ns = clock_now_ns();
	struct file_io *io;
	uint64_t reserved = 0;
	size_t len = fuse_buf_size(bufv);
	int64_t n;
	void *data;
	int fd, r;

	(void)ino;
	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	/* Our receive buffers are memory, never pipes: the payload is one piece. */
	if (bufv->count != 1 || (bufv->buf[0].flags & FUSE_BUF_IS_FD)) {
		fuse_reply_err(req, EIO);
		return;
	}
	data = (char *)bufv->buf[0].mem + bufv->off;
	if (len == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	if (h->client_direct && (v->rq_write_flags & FUSE_WRITE_KILL_SUIDGID)) {
		r = write_kill_suidgid(h->fd);
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
	}
	n = write_reserve(v, h, (uint64_t)off, len, &reserved);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	io = calloc(1, sizeof(*io));
	if (!io) {
		r = -ENOMEM;
		goto err;
	}
	if ((size_t)n > WRITE_COPY_MAX_BYTES) {
		io->buf = uring_rxbuf_take();
		io->rxbuf = true;
	} else if (posix_memalign(&io->buf, PAGE_BYTES, round_up((uint64_t)n, PAGE_BYTES)) == 0) {
		memcpy(io->buf, data, (size_t)n);
		data = io->buf;
	} else {
		r = -ENOMEM;
		goto err;
	}
	fd = handle_fd_for(h, (uintptr_t)data, (uint64_t)off, (uint64_t)n);
	if (fd < 0) {
		r = fd;
		goto err;
	}
	h->wrote = true;
	h->inode->write_claimed_bytes += reserved;
	h->inode->write_held_bytes += reserved;
	io->op.complete = write_complete;
	io->arrival_ns = arrival_ns;
	io->req = req;
	io->vfs = v;
	io->h = h;
	io->reserved = reserved;
	io->off = off;
	io->len = (size_t)n;
	io->fd = fd;
	io->data = data;
	io->dir = THROTTLE_WRITE;
	io_start(io);
	return;
err:
	quota_release_bytes(v->quota, reserved);
	if (io && io->rxbuf)
		uring_rxbuf_put(io->buf);
	else if (io)
		free(io->buf);
	free(io);
	fuse_reply_err(req, -r);
}

void file_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	/* Writes are never cached here: by the time close() flushes, they are done. */
	fuse_reply_err(req, 0);
}

/* A released file's data are written back: its allocation is final now. */
static void release_settle_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct file_io *io = (struct file_io *)op;

	(void)res;
	(void)cqe_flags;
	/* An object unlinked meanwhile gave its charge back when its last handle closed. */
	if (!io->inode->uncounted)
		(void)inode_settle_fd(io->vfs, io->inode, io->fd);
	close(io->fd);
	inode_settle_done(io->vfs, io->inode);
	free(io);
}

/*
 * st_blocks is not final until the data are written back: with delayed
 * allocation, ext4 counts the data blocks at write time but allocates the
 * blocks of a file's extent tree (one leaf once it has more than four
 * extents) only at writeback, and may free it again when extents merge as
 * written-back ranges are converted. Nothing settles a closed file
 * afterwards, so a written file is written back once released and settled
 * then. The handle is gone at once for everything else (an unlinked file's
 * space comes back as before); only a duplicate of its fd and the inode
 * entry stay for the settle.
 */
static void release_settle_start(struct vfs *v, struct handle *h)
{
	struct io_uring_sqe *sqe;
	struct file_io *io = calloc(1, sizeof(*io));
	int fd = io ? fcntl(h->fd, F_DUPFD_CLOEXEC, 0) : -1;

	if (fd < 0) {
		/* Without the means to wait, the settle at release is the last. */
		free(io);
		return;
	}
	h->inode->settles++;
	io->op.complete = release_settle_complete;
	io->vfs = v;
	io->inode = h->inode;
	io->fd = fd;
	sqe = uring_sqe(&io->op);
	io_uring_prep_sync_file_range(sqe, fd, 0, 0,
				      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					      SYNC_FILE_RANGE_WAIT_AFTER);
}

void file_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct handle *h = file_handle_of(v, fi);

	(void)ino;
	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (h->wrote) {
		(void)inode_settle_fd(v, h->inode, h->fd);
		release_settle_start(v, h);
	}
	handle_free(v, h);
	fuse_reply_err(req, 0);
}

static void sync_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct file_io *io = (struct file_io *)op;

	(void)cqe_flags;
	fuse_reply_err(io->req, res < 0 ? -res : 0);
	free(io);
}

void file_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct handle *h = file_handle_of(v, fi);
	struct io_uring_sqe *sqe;
	struct file_io *io;

	(void)ino;
	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	/* Unaligned writes of an O_DIRECT file went through the buffered fd. */
	if (h->fd_buffered >= 0 && (datasync ? fdatasync(h->fd_buffered) : fsync(h->fd_buffered)) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	io = calloc(1, sizeof(*io));
	if (!io) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	io->op.complete = sync_complete;
	io->req = req;
	sqe = uring_sqe(&io->op);
	io_uring_prep_fsync(sqe, h->fd, datasync ? IORING_FSYNC_DATASYNC : 0);
}

static void fallocate_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct file_io *io = (struct file_io *)op;

	(void)cqe_flags;
	(void)inode_settle_fd(io->vfs, io->h->inode, io->h->fd);
	quota_release_bytes(io->vfs->quota, io->reserved);
	fuse_reply_err(io->req, res < 0 ? -res : 0);
	free(io);
}

void file_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
		    struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct handle *h = file_handle_of(v, fi);
	struct io_uring_sqe *sqe;
	struct file_io *io;
	uint64_t want = 0, reserved = 0;
	int r;

	(void)ino;
	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (offset < 0 || length <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		/* Collapse and insert shift data around: not worth their quota corner cases. */
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (!(mode & FALLOC_FL_PUNCH_HOLE)) {
		uint64_t bs = v->block_bytes;

		/* All or nothing: a failed fallocate leaves nothing allocated. */
		want = hole_bytes(h->fd, round_down((uint64_t)offset, bs),
				  round_up((uint64_t)offset + (uint64_t)length, bs), h->inode->size);
		r = quota_reserve_bytes(v->quota, want, want, 0, &reserved);
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
	}
	io = calloc(1, sizeof(*io));
	if (!io) {
		quota_release_bytes(v->quota, reserved);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->wrote = true;
	io->op.complete = fallocate_complete;
	io->req = req;
	io->vfs = v;
	io->h = h;
	io->reserved = reserved;
	sqe = uring_sqe(&io->op);
	io_uring_prep_fallocate(sqe, h->fd, mode, (uint64_t)offset, (uint64_t)length);
}

void file_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct handle *h = file_handle_of(v, fi);
	off_t r;

	(void)ino;
	if (!h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	r = lseek(h->fd, off, whence);
	if (r < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, r);
}
