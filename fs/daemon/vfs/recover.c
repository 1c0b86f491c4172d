/*
 * recover.c - a volume taken back after a crash of the daemon that served
 * it: the connection from the keeper (keeper.h), the node ids and open
 * files from the volume's crash state (record.c), usage from the dead
 * daemon's count, made exact by a walk while the volume is served
 * (recount.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "crashstate.h"
#include "vfs.h"

struct restore {
	struct vfs *v;
	struct vfs_recovery *counts;
};

static int restore_node(void *arg, const struct crashstate_node *n, uint32_t slot)
{
	struct restore *c = arg;
	int r = record_node_restore(c->v, n, slot);

	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		/* Not a node this volume can have given out: nothing refers to it. */
		(void)crashstate_release(c->v->cs, slot);
		c->counts->dropped++;
		return 0;
	}
	c->counts->nodes++;
	return 0;
}

static int restore_open(void *arg, enum crashstate_kind kind, const struct crashstate_open *o,
			uint32_t slot)
{
	struct restore *c = arg;
	struct inode *in = inode_of(c->v, o->nodeid);
	int r = -ESTALE;

	if (in)
		r = kind == CRASHSTATE_DIR ?
			    dir_restore(c->v, o->fh, in, o->unique, slot) :
			    file_restore(c->v, o->fh, in, o->flags, o->unique, slot);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		/*
		 * Typically a file unlinked while open: the dead daemon's fd was
		 * its last link, so it is gone. The kernel's requests for this
		 * fh get EBADF (ESTALE first, when the kernel asks for the
		 * node's attributes).
		 */
		(void)crashstate_release(c->v->cs, slot);
		c->counts->lost_opens++;
		return 0;
	}
	c->counts->opens++;
	return 0;
}

int vfs_recover(const struct vfs_params *p, int fuse_fd, const void *init, size_t init_len,
		struct vfs_recovery *ret_counts, struct vfs **ret_vfs)
{
	struct vfs_params q = *p;
	struct vfs *v = NULL;
	struct restore c = { .counts = ret_counts };
	struct crashstate *cs = NULL;
	struct quota_mirror *m;
	int r;

	memset(ret_counts, 0, sizeof(*ret_counts));
	/* Without its file the kernel's node ids mean nothing here: let the connection go. */
	if (p->state_dir_fd < 0)
		r = -ENOENT;
	else if (faccessat(p->state_dir_fd, p->name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	else
		r = crashstate_open(p->state_dir_fd, p->name, false, &cs);
	if (r == 0)
		r = crashstate_map_usage(cs, &m);
	if (r < 0) {
		crashstate_close(cs, false);
		close(fuse_fd);
		close(p->root_fd);
		return r;
	}
	/*
	 * The dead daemon's count, writes in flight reserved: an upper bound,
	 * so served against it at once it never lets usage pass the capacity,
	 * and vfs_recount_start() makes it exact. Without one (a file of an
	 * older build) the volume is walked before it serves.
	 */
	ret_counts->usage_bound = atomic_load(&m->attached);
	q.usage_known = ret_counts->usage_bound;
	q.used_bytes = atomic_load(&m->used_bytes) + atomic_load(&m->reserved_bytes);
	q.used_inodes = atomic_load(&m->used_inodes) + atomic_load(&m->reserved_inodes);
	r = vfs_adopt_session(&q, fuse_fd, init, init_len, &v);
	if (r < 0) {
		crashstate_close(cs, false);
		return r;
	}
	v->cs = cs;
	c.v = v;
	r = crashstate_load(v->cs, restore_node, restore_open, &c);
	if (r < 0)
		goto err;
	/* Each node's share of the usage is what it holds now. */
	inode_table_recount(v);
	if (ret_counts->usage_bound) {
		r = recount_prepare(v);
		if (r < 0)
			goto err;
	}
	quota_set_mirror(v->quota, m);
	*ret_vfs = v;
	return 0;
err:
	/* Never served: the file stays as the dead daemon left it, for another try. */
	v->cs = crashstate_close(v->cs, false);
	vfs_free(v);
	return r;
}

struct step {
	struct vfs *v;
	struct vfs_recount_result res; /* once over */
};

static int step_on_loop(void *arg)
{
	struct step *c = arg;

	return recount_step(c->v, &c->res) ? 1 : 0;
}

static void *recount_thread(void *arg)
{
	struct vfs *v = arg;
	struct step c = { .v = v };
	uint64_t t0 = clock_now_ns();
	int done = 0;

	while (!done && !atomic_load(&v->recount_stop) && !vfs_ended(v))
		done = uring_session_call(v->session, step_on_loop, &c);
	/* Not when a wipe replaced the count: its figures are of nothing. */
	if (done == 1 && c.res.error != -ECANCELED && v->on_recounted) {
		c.res.seconds = (double)(clock_now_ns() - t0) / 1e9;
		v->on_recounted(v->on_init_arg, &c.res);
	}
	atomic_store(&v->recount_running, false);
	return NULL;
}

int vfs_recount_wait(struct vfs *v, uint64_t timeout_ns)
{
	uint64_t deadline = clock_now_ns() + timeout_ns;

	while (atomic_load(&v->recount_running)) {
		if (clock_now_ns() >= deadline)
			return -ETIMEDOUT;
		usleep(10000);
	}
	return 0;
}

int vfs_recount_start(struct vfs *v)
{
	int r;

	if (!v->recount || v->recount_started)
		return 0;
	atomic_store(&v->recount_running, true);
	r = -pthread_create(&v->recount_thread, NULL, recount_thread, v);
	if (r == 0)
		v->recount_started = true;
	else
		atomic_store(&v->recount_running, false);
	return r;
}

void vfs_recount_stop(struct vfs *v)
{
	if (v->recount_started) {
		atomic_store(&v->recount_stop, true);
		pthread_join(v->recount_thread, NULL);
		v->recount_started = false;
	}
	recount_free(v);
}
