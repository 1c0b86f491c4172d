/*
 * vfs.c - mounting a volume and ending its session; see vfs.h.
 *
 * The daemon mounts with mount(2) itself rather than through fusermount:
 * it runs as root, and owning the call keeps the options exact (nosuid,
 * nodev, allow_other, default_permissions, the fsname "carvefs:<name>" and
 * the type "fuse.carvefs", so findmnt and df show each volume as a
 * filesystem of its own) and keeps libfuse from ever unmounting a path
 * behind our back.
 *
 * The session reads and writes /dev/fuse through our own functions
 * (fuse_session_custom_io), for what libfuse 3.14 cannot express. A file
 * the client opened with O_DIRECT is answered FOPEN_DIRECT_IO (file.c), and
 * we add FOPEN_PARALLEL_DIRECT_WRITES (only libfuse 3.15 can ask for it).
 * Without that flag the kernel takes the inode lock exclusively for every
 * direct write to a file, while it hands the write to us and, for a
 * synchronous one, until we answer. With it, writes inside the file's size
 * share the lock; extending and O_APPEND writes, and any while the inode is
 * in cached mode (another open without O_DIRECT, a shared mmap), stay
 * exclusive (fuse_dio_wr_exclusive_lock in the kernel's fs/fuse/file.c).
 * The daemon already serves a volume's requests on one thread, and the
 * quota's reserve-then-settle does not assume one write per file at a time
 * (file.c). Splicing stays off: requests land in our offset buffers
 * (uring.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "vfs.h"
#include "walk.h"

#define MAX_READ_BYTES (1024 * 1024)
#define CACHE_TIMEOUT_S 1.0
/* Protocol 7.39; older <linux/fuse.h> lack it. A flags2 bit once shifted. */
#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
#endif
/* Protocol 7.40 (Linux 6.9): newer than Debian 12's <linux/fuse.h>. */
#ifndef FUSE_HAS_RESEND
#define FUSE_HAS_RESEND (1ULL << 39)
#endif
#define NOTIFY_RESEND 7 /* enum fuse_notify_code's FUSE_NOTIFY_RESEND */

/*
 * The kernel sends INIT once per connection: a successor that takes the
 * connection over (handoff.c) replays these very bytes into its own session.
 */
static void vfs_note_init(struct vfs *v, int fuse_fd, const void *buf, size_t len)
{
	const struct fuse_init_in *ii = (const void *)((const struct fuse_in_header *)buf + 1);
	void *copy;

	if (len < sizeof(struct fuse_in_header) + sizeof(struct fuse_init_in))
		return;
	v->kernel_dio_mmap = (ii->flags & FUSE_INIT_EXT) &&
			     (ii->flags2 & (uint32_t)(FUSE_DIRECT_IO_ALLOW_MMAP >> 32));
	/*
	 * A connection taken over comes here too: the keeper may hold it for
	 * the predecessor already, and this process owns it now.
	 */
	if (v->on_init)
		v->on_init(v->on_init_arg, fuse_fd, buf, len);
	copy = malloc(len);
	if (!copy)
		return; /* only a hand-over needs it, and it refuses without */
	memcpy(copy, buf, len);
	free(v->init_buf);
	v->init_buf = copy;
	v->init_len = len;
}

/*
 * libfuse calls this on the loop thread, just before it processes what it
 * read, so the header noted here is the request whose handler runs next.
 */
static ssize_t vfs_io_read(int fd, void *buf, size_t len, void *userdata)
{
	struct vfs *v = userdata;
	const struct fuse_in_header *ih = buf;
	ssize_t n = read(fd, buf, len);

	if (n < (ssize_t)sizeof(*ih))
		return n;
	v->rq_unique = ih->unique;
	v->rq_opcode = ih->opcode;
	v->rq_write_flags = 0;
	/* Delivered again after a crash: what its first execution opened, the kernel never knew. */
	if ((ih->unique & VFS_UNIQUE_RESEND) && (ih->opcode == FUSE_OPEN || ih->opcode == FUSE_CREATE))
		file_drop_unanswered(v, ih->unique & ~VFS_UNIQUE_RESEND);
	else if ((ih->unique & VFS_UNIQUE_RESEND) && ih->opcode == FUSE_OPENDIR)
		dir_drop_unanswered(v, ih->unique & ~VFS_UNIQUE_RESEND);
	if ((ih->unique & VFS_UNIQUE_RESEND) &&
	    (ih->opcode == FUSE_CREATE || ih->opcode == FUSE_MKDIR || ih->opcode == FUSE_MKNOD ||
	     ih->opcode == FUSE_SYMLINK))
		inode_resent_creation(v, ih->unique & ~VFS_UNIQUE_RESEND);
	if (ih->opcode == FUSE_WRITE && (size_t)n >= sizeof(*ih) + sizeof(struct fuse_write_in)) {
		const struct fuse_write_in *wi = (const void *)(ih + 1);

		v->rq_write_flags = wi->write_flags;
	} else if (ih->opcode == FUSE_INIT) {
		vfs_note_init(v, fd, buf, (size_t)n);
	}
	return n;
}

bool vfs_init_offers_resend(const void *init, size_t init_len)
{
	const struct fuse_in_header *ih = init;
	const struct fuse_init_in *ii = (const void *)(ih + 1);

	if (init_len < sizeof(*ih) + sizeof(*ii) || ih->opcode != FUSE_INIT)
		return false;
	return ii->major == 7 && ii->minor >= 40 && (ii->flags & FUSE_INIT_EXT) &&
	       (ii->flags2 & (uint32_t)(FUSE_HAS_RESEND >> 32));
}

int vfs_ask_resend(struct vfs *v)
{
	return vfs_kernel_resend(fuse_session_fd(v->se));
}

int vfs_kernel_resend(int fuse_fd)
{
	struct fuse_out_header oh = { .len = sizeof(oh), .error = NOTIFY_RESEND, .unique = 0 };
	ssize_t n;

	do
		n = write(fuse_fd, &oh, sizeof(oh));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == sizeof(oh) ? 0 : -EIO;
}

/*
 * Amends the successful answer to the request being processed, in the
 * buffer libfuse is about to send:
 *  - OPEN and CREATE (fuse_open_out last in the answer): a direct-IO file
 *    gets parallel direct writes;
 *  - INIT: shared mmaps of direct-IO files stay allowed, as they were for
 *    O_DIRECT files before those were answered FOPEN_DIRECT_IO; the kernel
 *    then keeps them coherent by switching the inode to cached mode.
 */
static void vfs_amend_reply(struct vfs *v, struct iovec *arg)
{
	if ((v->rq_opcode == FUSE_OPEN || v->rq_opcode == FUSE_CREATE) &&
	    arg->iov_len >= sizeof(struct fuse_open_out)) {
		struct fuse_open_out *oo = (void *)((char *)arg->iov_base + arg->iov_len -
						    sizeof(struct fuse_open_out));

		if (oo->open_flags & FOPEN_DIRECT_IO)
			oo->open_flags |= FOPEN_PARALLEL_DIRECT_WRITES;
	} else if (v->rq_opcode == FUSE_INIT && v->kernel_dio_mmap &&
		   arg->iov_len >= offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t)) {
		struct fuse_init_out *io = arg->iov_base;

		io->flags |= FUSE_INIT_EXT;
		io->flags2 |= (uint32_t)(FUSE_DIRECT_IO_ALLOW_MMAP >> 32);
	}
}

static ssize_t vfs_io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct vfs *v = userdata;
	const struct fuse_out_header *oh = iov[0].iov_base;

	if (v->replaying) {
		/* The kernel got its answer to INIT from our predecessor. */
		ssize_t total = 0;

		if (iov[0].iov_len >= sizeof(*oh) && oh->error != 0)
			v->replay_error = oh->error;
		for (int i = 0; i < count; i++)
			total += (ssize_t)iov[i].iov_len;
		return total;
	}
	/* Notifications have unique 0; errors carry no argument to amend. */
	if (count >= 2 && iov[0].iov_len == sizeof(*oh) && oh->error == 0 && oh->unique != 0 &&
	    oh->unique == v->rq_unique)
		vfs_amend_reply(v, &iov[1]);
	if (v->journal_unique && iov[0].iov_len >= sizeof(*oh) && oh->unique == v->journal_unique)
		journal_answered(v, oh, count >= 2 ? &iov[1] : NULL);
	return writev(fd, iov, count);
}

static const struct fuse_custom_io vfs_custom_io = {
	.read = vfs_io_read,
	.writev = vfs_io_writev,
};

static void vfs_session_ending(void *arg)
{
	file_throttle_release_all(arg);
}

static void vfs_session_ended(void *arg)
{
	struct vfs *v = arg;

	/* On the loop thread, with nothing of this session in flight. */
	record_state_close(v, !atomic_load(&v->released));
	fuse_session_destroy(v->se);
	v->se = NULL;
	pthread_mutex_lock(&v->end_lock);
	v->ended = true;
	pthread_cond_broadcast(&v->end_cond);
	pthread_mutex_unlock(&v->end_lock);
}

static int vfs_new(const struct vfs_params *p, struct vfs **ret_vfs)
{
	struct vfs *v;
	struct statvfs sv;
	int r;

	v = calloc(1, sizeof(*v));
	if (!v) {
		close(p->root_fd);
		return -ENOMEM;
	}
	pthread_mutex_init(&v->end_lock, NULL);
	pthread_cond_init(&v->end_cond, NULL);
	v->ended = true; /* until a session runs */
	snprintf(v->name, sizeof(v->name), "%s", p->name);
	v->on_init = p->on_init;
	v->on_init_arg = p->on_init_arg;
	v->on_recounted = p->on_recounted;
	v->entry_timeout = CACHE_TIMEOUT_S;
	v->attr_timeout = CACHE_TIMEOUT_S;
	r = fhmap_new(&v->file_fhs);
	if (r < 0) {
		close(p->root_fd);
		goto err;
	}
	r = fhmap_new(&v->dir_fhs);
	if (r < 0) {
		close(p->root_fd);
		goto err;
	}
	r = inode_table_init(v, p->root_fd);
	if (r < 0) {
		close(p->root_fd);
		goto err;
	}
	if (fstatvfs(p->root_fd, &sv) < 0) {
		r = -errno;
		goto err;
	}
	v->block_bytes = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
	if (v->block_bytes == 0)
		v->block_bytes = 4096;
	r = quota_new(p->capacity_bytes, p->inode_limit, &v->quota);
	if (r < 0)
		goto err;
	r = file_throttle_new(v, &p->limits);
	if (r < 0)
		goto err;
	if (p->usage_known) {
		quota_set_usage(v->quota, p->used_bytes, p->used_inodes);
	} else {
		struct walk_usage u;

		r = walk_usage(p->root_fd, &u);
		if (r < 0)
			goto err;
		quota_set_usage(v->quota, u.bytes, u.inodes);
	}
	*ret_vfs = v;
	return 0;
err:
	vfs_free(v);
	return r;
}

static int vfs_kernel_mount(struct vfs *v, const char *mountpoint, int *ret_fd)
{
	char source[96], opts[160];
	int fd;

	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(source, sizeof(source), "carvefs:%s", v->name);
	snprintf(opts, sizeof(opts),
		 "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,max_read=%u",
		 fd, MAX_READ_BYTES);
	if (mount(source, mountpoint, "fuse.carvefs", MS_NOSUID | MS_NODEV, opts) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/* A libfuse session of @v over the /dev/fuse @fd, which it owns from then on, even on failure. */
static int vfs_session_new(struct vfs *v, int fd)
{
	char *argv[] = { (char *)"carvefs", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(1, argv);
	int r;

	v->se = fuse_session_new(&args, &vfs_ops, sizeof(vfs_ops), v);
	/* libfuse may have copied the arguments into memory of its own. */
	fuse_opt_free_args(&args);
	if (!v->se) {
		close(fd);
		return -ENOMEM;
	}
	r = fuse_session_custom_io(v->se, &vfs_custom_io, fd);
	if (r < 0) {
		close(fd);
		fuse_session_destroy(v->se);
		v->se = NULL;
	}
	return r;
}

int vfs_serve(struct vfs *v, struct uring_pool *loops)
{
	int r;

	/* From now on this process answers the kernel: its state file is the one. */
	if (record_state_commit(v) < 0)
		record_state_close(v, true);
	v->ended = false;
	r = uring_session_attach(loops, v->se, vfs_session_ending, vfs_session_ended, v,
				 &v->session);
	if (r < 0)
		v->ended = true;
	return r;
}

int vfs_mount(const struct vfs_params *p, struct uring_pool *loops, struct vfs **ret_vfs)
{
	struct vfs *v = NULL;
	int fd = -1, r;

	r = vfs_new(p, &v);
	if (r < 0)
		return r;
	r = record_state_open(v, p->state_dir_fd, false);
	if (r < 0)
		goto err;
	r = vfs_kernel_mount(v, p->mountpoint, &fd);
	if (r < 0)
		goto err;
	r = vfs_session_new(v, fd);
	if (r < 0)
		goto err_umount;
	r = vfs_serve(v, loops);
	if (r < 0)
		goto err_umount;
	*ret_vfs = v;
	return 0;
err_umount:
	(void)umount2(p->mountpoint, MNT_DETACH);
err:
	vfs_free(v);
	return r;
}

int vfs_adopt_session(const struct vfs_params *p, int fuse_fd, const void *init, size_t init_len,
		      struct vfs **ret_vfs)
{
	struct fuse_buf fbuf = { 0 };
	struct vfs *v = NULL;
	int r;

	r = vfs_new(p, &v);
	if (r < 0) {
		close(fuse_fd);
		return r;
	}
	r = vfs_session_new(v, fuse_fd);
	if (r < 0)
		goto err;
	/*
	 * libfuse answers every request EIO until it has seen INIT, and the
	 * kernel sends INIT once per connection: feed it the INIT our
	 * predecessor got, and keep its answer from the kernel (vfs_io_writev),
	 * which has long had the predecessor's, made from the same code.
	 */
	fbuf.mem = malloc(init_len);
	if (!fbuf.mem) {
		r = -ENOMEM;
		goto err;
	}
	memcpy(fbuf.mem, init, init_len);
	fbuf.size = init_len;
	vfs_note_init(v, fuse_fd, init, init_len);
	v->replaying = true;
	fuse_session_process_buf(v->se, &fbuf);
	v->replaying = false;
	free(fbuf.mem);
	if (v->replay_error) {
		r = v->replay_error;
		goto err;
	}
	*ret_vfs = v;
	return 0;
err:
	vfs_free(v);
	return r;
}

int vfs_pause(struct vfs *v, uint64_t timeout_ns)
{
	return uring_session_pause(v->session, timeout_ns);
}

void vfs_resume(struct vfs *v)
{
	uring_session_resume(v->session);
}

static void vfs_wait_end(struct vfs *v);

void vfs_release(struct vfs *v)
{
	/* Ends the session and closes our /dev/fuse fd: the mount is the successor's. */
	atomic_store(&v->released, true);
	if (!vfs_ended(v))
		uring_session_kill(v->session);
	vfs_wait_end(v);
}

static void vfs_wait_end(struct vfs *v)
{
	pthread_mutex_lock(&v->end_lock);
	while (!v->ended)
		pthread_cond_wait(&v->end_cond, &v->end_lock);
	pthread_mutex_unlock(&v->end_lock);
}

bool vfs_ended(struct vfs *v)
{
	bool ended;

	pthread_mutex_lock(&v->end_lock);
	ended = v->ended;
	pthread_mutex_unlock(&v->end_lock);
	return ended;
}

int vfs_unmount(struct vfs *v, const char *mountpoint, bool lazy)
{
	if (!vfs_ended(v)) {
		if (umount2(mountpoint, lazy ? MNT_DETACH : 0) < 0) {
			/* EINVAL: not mounted any more, someone unmounted it by hand. */
			if (errno != EINVAL && errno != ENOENT && (errno != EBUSY || !lazy))
				return -errno;
		}
		/*
		 * A plain umount aborts the connection and the loop sees ENODEV; a
		 * detached mount lives on while anyone uses it, so end it now.
		 */
		if (lazy)
			uring_session_kill(v->session);
	}
	vfs_wait_end(v);
	return 0;
}

struct vfs *vfs_free(struct vfs *v)
{
	if (!v)
		return NULL;
	vfs_recount_stop(v);
	/*
	 * Still open: the session never ran. A staged file was never in use;
	 * any other is a crashed daemon's, left for another try.
	 */
	record_state_close(v, v->cs_staged);
	v->session = uring_session_free(v->session);
	/* A session that ran was destroyed when it ended; this one never ran. */
	if (v->se) {
		fuse_session_destroy(v->se);
		v->se = NULL;
	}
	if (v->buckets) {
		file_close_all(v);
		dir_close_all(v);
		inode_table_fini(v);
	}
	v->file_fhs = fhmap_free(v->file_fhs);
	v->dir_fhs = fhmap_free(v->dir_fhs);
	quota_free(v->quota);
	file_throttle_free(v);
	free(v->init_buf);
	pthread_cond_destroy(&v->end_cond);
	pthread_mutex_destroy(&v->end_lock);
	free(v);
	return NULL;
}

struct wipe_call {
	struct vfs *v;
	uint64_t skipped;
};

static int vfs_wipe_on_loop(void *arg)
{
	struct wipe_call *c = arg;
	struct vfs *v = c->v;
	struct walk_usage u;
	int r, r2;

	/* The walk below replaces the count; a recount in progress would undo it. */
	recount_abandon(v);
	r = walk_wipe(v->root->fd, &c->skipped);
	r2 = walk_usage(v->root->fd, &u);
	if (r2 == 0) {
		quota_set_usage(v->quota, u.bytes, u.inodes);
		inode_table_recount(v);
	}
	return r < 0 ? r : r2;
}

int vfs_wipe(struct vfs *v, uint64_t *ret_skipped)
{
	struct wipe_call c = { .v = v };
	int r;

	if (vfs_ended(v)) {
		/* Not served: no request can race with us. */
		r = vfs_wipe_on_loop(&c);
	} else {
		r = uring_session_call(v->session, vfs_wipe_on_loop, &c);
	}
	if (ret_skipped)
		*ret_skipped = c.skipped;
	return r;
}

struct limits_call {
	struct vfs *v;
	const struct io_limits *limits;
};

static int vfs_set_limits_on_loop(void *arg)
{
	struct limits_call *c = arg;

	file_throttle_set(c->v, c->limits);
	return 0;
}

int vfs_set_limits(struct vfs *v, const struct io_limits *limits)
{
	struct limits_call c = { .v = v, .limits = limits };

	return uring_session_call(v->session, vfs_set_limits_on_loop, &c);
}

void vfs_stats_read(struct vfs *v, struct vfs_counters *ret_counters)
{
	struct vfs_stats *io = &v->stats;
	struct vfs_counters c;

	/* Monitoring numbers: each counter on its own, no ordering among them. */
	c.read_ops = atomic_load_explicit(&io->read_ops, memory_order_relaxed);
	c.write_ops = atomic_load_explicit(&io->write_ops, memory_order_relaxed);
	c.read_bytes = atomic_load_explicit(&io->read_bytes, memory_order_relaxed);
	c.write_bytes = atomic_load_explicit(&io->write_bytes, memory_order_relaxed);
	c.throttled_ns = atomic_load_explicit(&io->throttled_ns, memory_order_relaxed);
	c.queue_depth = atomic_load_explicit(&io->queue_depth, memory_order_relaxed);
	histogram_read(&io->read_latency, &histogram_io_bounds, &c.read_latency);
	histogram_read(&io->write_latency, &histogram_io_bounds, &c.write_latency);
	*ret_counters = c;
}

void vfs_usage(struct vfs *v, struct quota_usage *ret_usage)
{
	quota_get(v->quota, ret_usage);
}

int vfs_count_usage(struct vfs *v, struct walk_usage *ret_usage)
{
	return walk_usage(v->root->fd, ret_usage);
}

void vfs_set_capacity(struct vfs *v, uint64_t capacity_bytes, uint64_t inode_limit)
{
	quota_set_limits(v->quota, capacity_bytes, inode_limit);
}
