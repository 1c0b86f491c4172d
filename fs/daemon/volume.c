/*
 * volume.c - the volume manager; see volume.h.
 *
 * The pool's layout on disk is pool.c's.
 *
 * Durability: every verb saves the table before it answers. While the daemon
 * runs, every record is marked unclean, so after a crash the next start
 * walks each backing directory to recount usage instead of trusting numbers
 * from before the crash; a clean stop stores exact usage and marks them
 * clean again.
 *
 * Deletion order: unmount, drop the record (saved), move the backing
 * directory to a trash name, empty and remove it. A crash in between leaves
 * either an orphan directory (reported at start, never deleted silently) or
 * a trash directory (emptied at start).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libmount.h>

#include "keeperlink.h"
#include "log.h"
#include "quantity.h"
#include "vfs/handoff.h"
#include "vfs/vfs.h"
#include "volume.h"
#include "walk.h"
#include "wire.h"
#include "clock.h"
#include "fileio.h"

#define DEFAULT_ROOT_MODE 0755

enum volume_state { VOLUME_UNMOUNTED, VOLUME_MOUNTED, VOLUME_ERROR };

struct volume {
	char name[VOLNAME_MAX + 1];
	char mountpoint[PATH_MAX];
	enum volume_state state;
	char error[WIRE_MSG_MAX]; /* why, in state VOLUME_ERROR */
	struct vfs *vfs;	  /* NULL unless mounted */
	struct keeperlink *keeper; /* the manager's */
	int state_dir_fd;	   /* the manager's */
	struct volume *next;
};

struct volmgr {
	pthread_mutex_t lock; /* serialises every verb; taken before any vfs lock */
	struct pool *pool;
	/* The pool's, borrowed while it is open. */
	const char *pool_dir, *discovery_dir;
	int volumes_fd, discovery_fd;
	struct table *table;
	struct volume *volumes;
	struct uring_pool *loops;
	struct keeperlink *keeper; /* NULL: none */
	int state_dir_fd;	   /* the volumes' crash state (vfs.h); -1: none */
	/* Connections the keeper held for a crashed daemon, until taken back at start. */
	struct kept *kept;
	/*
	 * Set when the volumes went to a successor (handover.c): from then on
	 * this manager neither unmounts nor writes the table; they are the
	 * successor's.
	 */
	bool handed_over;
	bool adopting; /* volmgr_adopt(): the pool lock is not ours yet */
};

static struct volume *volume_find(struct volmgr *m, const char *name)
{
	for (struct volume *vol = m->volumes; vol; vol = vol->next)
		if (strcmp(vol->name, name) == 0)
			return vol;
	return NULL;
}

static const char *state_name(struct volume *vol)
{
	if (vol->state == VOLUME_MOUNTED && vol->vfs && vfs_ended(vol->vfs))
		return "unmounted"; /* someone unmounted it by hand */
	switch (vol->state) {
	case VOLUME_MOUNTED:
		return "mounted";
	case VOLUME_ERROR:
		return "error";
	default:
		return "unmounted";
	}
}

/*
 * Detaches a carvefs mount left at @path by a daemon that died (its
 * connection is gone, so every access fails with ENOTCONN). A mount of
 * anything else there is not ours to remove: -EBUSY.
 */
static int detach_stale_mount(const char *path)
{
	struct libmnt_table *tb;
	struct libmnt_fs *fs;
	int r = 0;

	for (int tries = 0; tries < 16; tries++) {
		const char *type;

		tb = mnt_new_table_from_file("/proc/self/mountinfo");
		if (!tb)
			return -errno ? -errno : -EIO;
		fs = mnt_table_find_target(tb, path, MNT_ITER_BACKWARD);
		type = fs ? mnt_fs_get_fstype(fs) : NULL;
		if (!fs || strcmp(mnt_fs_get_target(fs), path) != 0) {
			mnt_unref_table(tb);
			return r;
		}
		if (!type || strcmp(type, "fuse.carvefs") != 0) {
			mnt_unref_table(tb);
			return -EBUSY;
		}
		mnt_unref_table(tb);
		if (umount2(path, MNT_DETACH) < 0)
			return -errno;
		log_info("detached a stale carvefs mount at '%s'", path);
	}
	return -EBUSY;
}

/*
 * On the loop thread: the connection is the keeper's to hold from its start
 * on. Not on a kernel that cannot resend what a dead daemon had read: its
 * callers would wait for ever, where ENOTCONN at least ends their wait.
 */
static void volume_on_init(void *arg, int fuse_fd, const void *init, size_t init_len)
{
	static atomic_bool told;
	struct volume *vol = arg;
	int r;

	if (!vfs_init_offers_resend(init, init_len)) {
		if (!atomic_exchange(&told, true))
			log_warn("the kernel cannot resend requests to a restarted daemon "
				 "(FUSE_NOTIFY_RESEND, Linux 6.9): the keeper is not used, and a crash "
				 "of carvefs ends every mount");
		return;
	}
	r = keeperlink_keep(vol->keeper, vol->name, fuse_fd, init, init_len);
	if (r < 0)
		log_error_errno(r, "volume '%s': cannot hand its connection to the keeper: a crash "
				   "of carvefs would end its mount",
				vol->name);
}

/* On a thread of the vfs: the walk after a crash made the volume's usage exact. */
static void volume_on_recounted(void *arg, const struct vfs_recount_result *res)
{
	struct volume *vol = arg;
	char used[32];

	if (res->error) {
		log_error_errno(res->error, "volume '%s': the recount after a crash failed; usage "
					    "stays the upper bound counted before it",
				vol->name);
		return;
	}
	quantity_format_human(res->bytes, used, sizeof(used));
	log_info("volume '%s': usage recounted while serving: %s in %llu inodes, %llu "
		 "directories listed (%.2f s)",
		 vol->name, used, (unsigned long long)res->inodes, (unsigned long long)res->dirs,
		 res->seconds);
}

static struct vfs_params volume_params(struct volume *vol, struct volume_record *rec)
{
	return (struct vfs_params){
		.name = vol->name,
		.mountpoint = vol->mountpoint,
		.capacity_bytes = rec->capacity_bytes,
		.inode_limit = rec->inode_limit,
		.limits = rec->limits,
		.usage_known = rec->clean,
		.used_bytes = rec->used_bytes,
		.used_inodes = rec->used_inodes,
		.on_init = vol->keeper ? volume_on_init : NULL,
		.on_recounted = volume_on_recounted,
		.on_init_arg = vol,
		.state_dir_fd = vol->state_dir_fd,
	};
}

/* The fd a vfs serves a volume's backing directory from, or -errno. */
static int volume_open_root(struct volmgr *m, const struct volume *vol)
{
	int fd = openat(m->volumes_fd, vol->name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* @at_start: mounting what the table held, so an unclean record means a crash. */
static int volume_mount(struct volmgr *m, struct volume *vol, struct volume_record *rec,
			bool at_start)
{
	struct vfs_params p = volume_params(vol, rec);
	uint64_t t0 = clock_now_ns();
	int r;

	if (mkdirat(m->discovery_fd, vol->name, 0755) < 0 && errno != EEXIST)
		return -errno;
	r = detach_stale_mount(vol->mountpoint);
	if (r < 0)
		return r;
	p.root_fd = volume_open_root(m, vol);
	if (p.root_fd < 0)
		return p.root_fd;
	r = vfs_mount(&p, m->loops, &vol->vfs);
	if (r < 0)
		return r;
	vol->state = VOLUME_MOUNTED;
	if (at_start && !rec->clean) {
		struct quota_usage u;
		char used[32];

		vfs_usage(vol->vfs, &u);
		quantity_format_human(u.used_bytes, used, sizeof(used));
		log_info("volume '%s': usage recounted after an unclean stop: %s in %llu inodes (%.2f s)",
			 vol->name, used, (unsigned long long)u.used_inodes,
			 (double)(clock_now_ns() - t0) / 1e9);
	}
	return 0;
}

/*
 * Unmounts and records the final usage in the table (not saved). The usage
 * recorded is recounted from the disk, which nothing can change any more:
 * the running count settles from st_blocks as IO completes and can end a
 * block away from what delayed allocation finally did, and a clean start
 * trusts this number.
 */
static int volume_unmount(struct volmgr *m, struct volume *vol, bool lazy)
{
	struct volume_record *rec = table_find(m->table, vol->name);
	struct walk_usage walked;
	struct quota_usage u;
	int r;

	if (!vol->vfs)
		return 0;
	r = vfs_unmount(vol->vfs, vol->mountpoint, lazy);
	if (r < 0)
		return r;
	vfs_usage(vol->vfs, &u);
	if (vfs_count_usage(vol->vfs, &walked) == 0) {
		if (walked.bytes != u.used_bytes || walked.inodes != u.used_inodes)
			log_info("volume '%s': running usage %llu bytes in %llu inodes, disk holds "
				  "%llu in %llu; recording the disk's",
				  vol->name, (unsigned long long)u.used_bytes,
				  (unsigned long long)u.used_inodes, (unsigned long long)walked.bytes,
				  (unsigned long long)walked.inodes);
		u.used_bytes = walked.bytes;
		u.used_inodes = walked.inodes;
	}
	if (rec) {
		rec->used_bytes = u.used_bytes;
		rec->used_inodes = u.used_inodes;
	}
	vol->vfs = vfs_free(vol->vfs);
	vol->state = VOLUME_UNMOUNTED;
	/* Unmounted for good: the kernel ended the connection, which nobody needs to hold. */
	if (vol->keeper)
		keeperlink_drop(vol->keeper, vol->name);
	return 0;
}

static int volume_add(struct volmgr *m, const char *name, struct volume **ret)
{
	struct volume *vol = calloc(1, sizeof(*vol));

	if (!vol)
		return -ENOMEM;
	snprintf(vol->name, sizeof(vol->name), "%s", name);
	if ((size_t)snprintf(vol->mountpoint, sizeof(vol->mountpoint), "%s/%s", m->discovery_dir,
			     name) >= sizeof(vol->mountpoint)) {
		free(vol);
		return -ENAMETOOLONG;
	}
	vol->keeper = m->keeper;
	vol->state_dir_fd = m->state_dir_fd;
	vol->next = m->volumes;
	m->volumes = vol;
	*ret = vol;
	return 0;
}

static void volume_remove(struct volmgr *m, struct volume *vol)
{
	for (struct volume **pp = &m->volumes; *pp; pp = &(*pp)->next) {
		if (*pp == vol) {
			*pp = vol->next;
			break;
		}
	}
	free(vol);
}

static int save_table(struct volmgr *m, struct errmsg *ret_msg)
{
	int r;

	if (m->handed_over) {
		/* The table is the successor's: a verb that waited through the hand-over fails. */
		return errmsg_set(ret_msg, -EAGAIN,
				  "the volumes were handed over to a new carvefs; ask it");
	}
	r = pool_save(m->pool);

	if (r < 0) {
		errmsg_set(ret_msg, r, "cannot save the volume table in '%s': %s", m->pool_dir,
			strerror(-r));
	}
	return r;
}

/* A connection the keeper held for a daemon that crashed. */
struct kept {
	char name[VOLNAME_MAX + 1];
	int fuse_fd; /* -1 once taken */
	void *init;
	size_t init_len;
	struct kept *next;
};

/* For keeperlink_take() at start, with the pool locked: the dead daemon's connections. */
static int volume_kept(void *arg, const char *name, int fuse_fd, const void *init,
		       size_t init_len)
{
	struct volmgr *m = arg;
	const char *why = strerror(ENOMEM);
	struct kept *k = NULL;

	if (strlen(name) > VOLNAME_MAX) {
		why = "not a volume name";
	} else if ((k = calloc(1, sizeof(*k))) && (k->init = malloc(init_len))) {
		snprintf(k->name, sizeof(k->name), "%s", name);
		memcpy(k->init, init, init_len);
		k->init_len = init_len;
		k->fuse_fd = fuse_fd;
		k->next = m->kept;
		m->kept = k;
		return 0;
	}
	free(k);
	close(fuse_fd);
	keeperlink_drop(m->keeper, name);
	log_error("volume '%s': cannot take back the connection the keeper held: %s; it ends",
		  name, why);
	return 0;
}

static struct kept *kept_find(struct volmgr *m, const char *name)
{
	for (struct kept *k = m->kept; k; k = k->next)
		if (k->fuse_fd >= 0 && strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* Lets go of the connections not taken back: the kernel ends each, and its waiting callers fail. */
static void kept_free_all(struct volmgr *m)
{
	while (m->kept) {
		struct kept *k = m->kept;

		m->kept = k->next;
		if (k->fuse_fd >= 0) {
			close(k->fuse_fd);
			keeperlink_drop(m->keeper, k->name);
			log_warn("volume '%s': the keeper held its connection, but the volume is not in "
				 "the table; the connection ends",
				 k->name);
		}
		free(k->init);
		free(k);
	}
}

/*
 * Takes back volume @vol's connection from a crashed daemon (vfs_recover())
 * and serves it; the kernel then delivers again what the dead daemon had
 * read. On failure the connection is let go of (its waiting callers fail
 * with ENOTCONN) and the caller mounts the volume afresh.
 */
static int volume_recover(struct volmgr *m, struct volume *vol, struct volume_record *rec,
			  struct kept *k)
{
	struct vfs_params p = volume_params(vol, rec);
	struct vfs_recovery c;
	struct quota_usage u;
	uint64_t t0 = clock_now_ns();
	char used[32];
	int fuse_fd = k->fuse_fd, r;

	k->fuse_fd = -1;
	p.root_fd = volume_open_root(m, vol);
	if (p.root_fd < 0) {
		close(fuse_fd);
		r = p.root_fd;
		goto err;
	}
	r = vfs_recover(&p, fuse_fd, k->init, k->init_len, &c, &vol->vfs);
	if (r < 0)
		goto err;
	r = vfs_serve(vol->vfs, m->loops);
	if (r < 0) {
		vol->vfs = vfs_free(vol->vfs);
		goto err;
	}
	vol->state = VOLUME_MOUNTED;
	r = vfs_ask_resend(vol->vfs);
	if (r < 0)
		log_error_errno(r, "volume '%s': the kernel would not deliver again the requests the "
				   "crashed daemon had read: their callers wait until interrupted",
				vol->name);
	vfs_usage(vol->vfs, &u);
	quantity_format_human(u.used_bytes, used, sizeof(used));
	log_info("volume '%s': taken back after a crash in %.3f s: %llu node(s), %llu open "
		 "file(s) and dir(s)%s; usage %s %s in %llu inodes",
		 vol->name, (double)(clock_now_ns() - t0) / 1e9, (unsigned long long)c.nodes,
		 (unsigned long long)c.opens, c.lost_opens ? " (some gone, see below)" : "",
		 c.usage_bound ? "at most" : "recounted:", used, (unsigned long long)u.used_inodes);
	if (c.usage_bound) {
		r = vfs_recount_start(vol->vfs);
		if (r < 0)
			log_error_errno(r, "volume '%s': cannot recount its usage; it stays the upper "
					   "bound counted before the crash",
					vol->name);
	}
	if (c.lost_opens)
		log_warn("volume '%s': %llu file(s) open at the crash are gone (unlinked while open): "
			 "their readers and writers get ESTALE or EBADF",
			 vol->name, (unsigned long long)c.lost_opens);
	return 0;
err:
	keeperlink_drop(m->keeper, vol->name);
	log_error_errno(r, "volume '%s': cannot take back the connection the keeper held from "
			   "before a crash; it ends, and the volume is mounted afresh",
			vol->name);
	return r;
}

/*
 * The directory of the crash state files, made if missing. The files hold
 * file handles a daemon opens after a crash: only root may write there.
 */
static int state_dir_open(const char *path, int *ret_fd)
{
	struct stat st;
	int fd, r;

	r = fileio_mkdir_p(path, 0700);
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 0077)) {
		close(fd);
		return -EPERM;
	}
	*ret_fd = fd;
	return 0;
}

/* The pool and its table; with @adopting, without the pool's lock. */
static int volmgr_open(const struct volmgr_config *cfg, bool adopting, struct volmgr **ret_mgr)
{
	struct volmgr *m;
	int r;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	m->loops = cfg->loops;
	m->keeper = cfg->keeper;
	m->state_dir_fd = -1;
	m->adopting = adopting;
	r = adopting ? pool_open_unlocked(cfg->pool_dir, cfg->discovery_dir, &m->pool) :
		       pool_open(cfg->pool_dir, cfg->discovery_dir, &m->pool);
	if (r < 0) {
		volmgr_stop(m);
		return r;
	}
	m->pool_dir = pool_path(m->pool);
	m->discovery_dir = pool_discovery_dir(m->pool);
	m->volumes_fd = pool_volumes_fd(m->pool);
	m->discovery_fd = pool_discovery_fd(m->pool);
	m->table = pool_table(m->pool);
	if (cfg->state_dir) {
		r = state_dir_open(cfg->state_dir, &m->state_dir_fd);
		if (r < 0)
			log_error_errno(r, "cannot use '%s' for the volumes' crash state: a crash of "
					   "carvefs will end every mount",
					cfg->state_dir);
	}
	*ret_mgr = m;
	return 0;
}

int volmgr_start(const struct volmgr_config *cfg, struct volmgr **ret_mgr)
{
	struct volmgr *m;
	size_t n;
	int r;

	r = volmgr_open(cfg, false, &m);
	if (r < 0)
		return r;
	/* Only now: the pool's lock says the daemon they were held for is dead. */
	if (m->keeper) {
		r = keeperlink_take(m->keeper, volume_kept, m);
		if (r < 0)
			log_warn_errno(r, "cannot learn what the keeper holds");
	}

	n = table_count(m->table);
	for (size_t i = 0; i < n; i++) {
		struct volume_record *rec = table_at(m->table, i);
		struct volume *vol;

		struct kept *k;

		r = volume_add(m, rec->name, &vol);
		if (r < 0)
			goto err;
		k = kept_find(m, rec->name);
		r = k ? volume_recover(m, vol, rec, k) : -ENOENT;
		if (r < 0)
			r = volume_mount(m, vol, rec, true);
		if (r < 0) {
			vol->state = VOLUME_ERROR;
			snprintf(vol->error, sizeof(vol->error), "mount failed: %s", strerror(-r));
			log_error_errno(r, "volume '%s': cannot mount at '%s'", vol->name,
					vol->mountpoint);
		}
	}
	kept_free_all(m);
	/* From now on the numbers in the table are stale until a clean stop. */
	for (size_t i = 0; i < n; i++)
		table_at(m->table, i)->clean = false;
	r = save_table(m, NULL);
	if (r < 0)
		goto err;
	log_info("serving %zu volume(s) of pool '%s' under '%s'", n, m->pool_dir,
		 m->discovery_dir);
	*ret_mgr = m;
	return 0;
err:
	volmgr_stop(m);
	return r;
}

struct volmgr *volmgr_stop(struct volmgr *m)
{
	if (!m)
		return NULL;
	pthread_mutex_lock(&m->lock);
	while (m->volumes) {
		struct volume *vol = m->volumes;
		struct volume_record *rec = table_find(m->table, vol->name);

		if (vol->vfs && m->adopting) {
			/* Never served: the mount is the other daemon's. */
			vol->vfs = vfs_free(vol->vfs);
		} else if (vol->vfs) {
			int r = volume_unmount(m, vol, true);

			if (r < 0) {
				log_error_errno(r, "volume '%s': unmount failed", vol->name);
			} else {
				if (rec)
					rec->clean = true;
				/*
				 * An empty directory left at the mountpoint would be taken
				 * for the volume by whoever comes first after a restart
				 * (the kubelet bind-mounting a local PV), and their writes
				 * would land on the host's disk. Without it, they wait
				 * for the next start to mount the volume.
				 */
				if (unlinkat(m->discovery_fd, vol->name, AT_REMOVEDIR) < 0 &&
				    errno != ENOENT)
					log_warn_errno(-errno,
						       "volume '%s': cannot remove its mountpoint "
						       "'%s'",
						       vol->name, vol->mountpoint);
			}
		}
		volume_remove(m, vol);
	}
	if (m->pool && !m->adopting && !m->handed_over && save_table(m, NULL) == 0)
		log_info("volume table saved; usage recorded for a clean start");
	pthread_mutex_unlock(&m->lock);
	m->pool = pool_close(m->pool);
	kept_free_all(m);
	if (m->state_dir_fd >= 0)
		close(m->state_dir_fd);
	pthread_mutex_destroy(&m->lock);
	free(m);
	return NULL;
}

/*
 * What the volume holds now: its quota's count (with what writes in flight
 * reserved) while it is served, else what the table recorded. @vol and
 * @rec may each be NULL.
 */
static void volume_usage(const struct volume *vol, const struct volume_record *rec,
			 struct quota_usage *ret_usage)
{
	memset(ret_usage, 0, sizeof(*ret_usage));
	if (vol && vol->vfs) {
		vfs_usage(vol->vfs, ret_usage);
	} else if (rec) {
		ret_usage->used_bytes = rec->used_bytes;
		ret_usage->used_inodes = rec->used_inodes;
	}
}

static uint64_t volume_used_bytes(struct volmgr *m, const struct volume_record *rec)
{
	struct quota_usage u;

	volume_usage(volume_find(m, rec->name), rec, &u);
	return u.used_bytes + u.reserved_bytes;
}

/*
 * The pool's room, with the volume @except (may be NULL) left out of the
 * sums. Called with m->lock held.
 */
static int pool_room(struct volmgr *m, const char *except, struct pool_info *ret_info)
{
	struct pool_info info = { 0 };
	int r;

	r = pool_space(m->pool, &info.size_bytes, &info.free_bytes);
	if (r < 0)
		return r;
	for (size_t i = 0; i < table_count(m->table); i++) {
		struct volume_record *rec = table_at(m->table, i);
		uint64_t used;

		if (except && strcmp(rec->name, except) == 0)
			continue;
		used = volume_used_bytes(m, rec);
		info.allocated_bytes += rec->capacity_bytes;
		if (rec->capacity_bytes > used)
			info.committed_bytes += rec->capacity_bytes - used;
		info.volumes++;
	}
	*ret_info = info;
	return 0;
}

/*
 * With @overcommit > 0, refuses (-ENOSPC) a volume of @capacity holding
 * @used bytes if what every volume may still write would exceed the pool's
 * free space times @overcommit. Each volume's unwritten capacity is counted
 * as taken, so at 1.0 no volume can meet a full pool before its own limit;
 * and the check runs under m->lock, so two requests racing for the last room
 * cannot both pass.
 */
static int check_room(struct volmgr *m, const char *name, uint64_t capacity, uint64_t used,
		      double overcommit, struct errmsg *ret_msg)
{
	struct pool_info info;
	int r;

	if (overcommit <= 0)
		return 0;
	r = pool_room(m, name, &info);
	if (r < 0) {
		errmsg_set(ret_msg, r, "cannot measure the pool's free space: %s", strerror(-r));
		return r;
	}
	return pool_check_room(&info, name, capacity, used, overcommit, ret_msg);
}

int volmgr_pool_info(struct volmgr *m, struct pool_info *ret_info)
{
	int r;

	pthread_mutex_lock(&m->lock);
	r = pool_room(m, NULL, ret_info);
	pthread_mutex_unlock(&m->lock);
	return r;
}

const char *volmgr_pool_dir(const struct volmgr *m)
{
	return m->pool_dir;
}

const char *volmgr_discovery_dir(const struct volmgr *m)
{
	return m->discovery_dir;
}

static int validate_name(const char *name, struct errmsg *ret_msg)
{
	struct errmsg why;

	if (volname_validate(name, &why) < 0)
		return errmsg_set(ret_msg, -EINVAL, "volume name '%s' is invalid: %s", name,
				  why.text);
	return 0;
}

int volmgr_create(struct volmgr *m, const struct volume_spec *spec, struct errmsg *ret_msg)
{
	struct volume_record rec = { 0 };
	struct volume *vol = NULL;
	bool dir_made = false, recorded = false;
	int r;

	r = validate_name(spec->name, ret_msg);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	if (table_find(m->table, spec->name)) {
		r = errmsg_set(ret_msg, -EEXIST, "volume '%s' already exists", spec->name);
		goto out;
	}
	r = pool_check_capacity(m->pool, spec->name, spec->capacity_bytes, ret_msg);
	if (r < 0)
		goto out;
	r = check_room(m, spec->name, spec->capacity_bytes, 0, spec->overcommit, ret_msg);
	if (r < 0)
		goto out;

	if (mkdirat(m->volumes_fd, spec->name, 0700) < 0) {
		r = -errno;
		if (r == -EEXIST)
			errmsg_set(ret_msg, r, "backing directory '%s/volumes/%s' already exists without a "
					 "volume record; move it away first (nothing was changed)",
				m->pool_dir, spec->name);
		else
			errmsg_set(ret_msg, r, "cannot create '%s/volumes/%s': %s", m->pool_dir,
				spec->name, strerror(-r));
		goto out;
	}
	dir_made = true;
	snprintf(rec.name, sizeof(rec.name), "%s", spec->name);
	rec.capacity_bytes = spec->capacity_bytes;
	rec.inode_limit = spec->inode_limit;
	rec.limits = spec->limits;
	rec.uid = spec->has_owner ? spec->uid : 0;
	rec.gid = spec->has_owner ? spec->gid : 0;
	rec.mode = spec->has_owner ? spec->mode & 07777 : DEFAULT_ROOT_MODE;
	snprintf(rec.storage_class, sizeof(rec.storage_class), "%s", spec->storage_class);
	snprintf(rec.labels, sizeof(rec.labels), "%s", spec->labels);
	rec.created_unix = (int64_t)time(NULL);
	rec.clean = false;
	if (fchownat(m->volumes_fd, spec->name, rec.uid, rec.gid, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fchmodat(m->volumes_fd, spec->name, rec.mode, 0) < 0) {
		r = -errno;
		errmsg_set(ret_msg, r, "cannot set the owner and mode of volume '%s': %s", spec->name,
			strerror(-r));
		goto out;
	}
	r = table_add(m->table, &rec);
	if (r < 0) {
		errmsg_set(ret_msg, r, "cannot record volume '%s': %s", spec->name, strerror(-r));
		goto out;
	}
	recorded = true;
	r = save_table(m, ret_msg);
	if (r < 0)
		goto out;
	r = volume_add(m, spec->name, &vol);
	if (r < 0)
		goto out;
	r = volume_mount(m, vol, table_find(m->table, spec->name), false);
	if (r < 0) {
		errmsg_set(ret_msg, r, "cannot mount volume '%s' at '%s': %s", spec->name, vol->mountpoint,
			strerror(-r));
		goto out;
	}
	log_info("volume '%s' created: %llu bytes at '%s'", spec->name,
		 (unsigned long long)spec->capacity_bytes, vol->mountpoint);
out:
	if (r < 0) {
		/* Undo everything: a failed create leaves no trace. */
		if (vol)
			volume_remove(m, vol);
		if (recorded) {
			(void)table_remove(m->table, spec->name);
			(void)save_table(m, NULL);
		}
		if (dir_made)
			(void)unlinkat(m->volumes_fd, spec->name, AT_REMOVEDIR);
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

static struct volume *find_or_msg(struct volmgr *m, const char *name, struct errmsg *ret_msg)
{
	struct volume *vol = volume_find(m, name);

	if (!vol)
		errmsg_set(ret_msg, -ENOENT, "volume '%s' does not exist", name);
	return vol;
}

int volmgr_delete(struct volmgr *m, const char *name, bool force, struct errmsg *ret_msg)
{
	char trash[VOLNAME_MAX + 64];
	struct volume *vol;
	int r;

	pthread_mutex_lock(&m->lock);
	vol = find_or_msg(m, name, ret_msg);
	if (!vol) {
		r = -ENOENT;
		goto out;
	}
	r = volume_unmount(m, vol, force);
	if (r == -EBUSY) {
		errmsg_set(ret_msg, r, "volume '%s' is in use at '%s'; stop what uses it or delete with "
				 "--force",
			name, vol->mountpoint);
		goto out;
	}
	if (r < 0) {
		errmsg_set(ret_msg, r, "cannot unmount volume '%s': %s", name, strerror(-r));
		goto out;
	}
	(void)unlinkat(m->discovery_fd, name, AT_REMOVEDIR);
	r = table_remove(m->table, name);
	if (r == 0)
		r = save_table(m, ret_msg);
	if (r < 0)
		goto out;
	volume_remove(m, vol);
	snprintf(trash, sizeof(trash), "%s%s-%llu", POOL_TRASH_PREFIX, name,
		 (unsigned long long)clock_now_ns());
	if (renameat(m->volumes_fd, name, m->volumes_fd, trash) < 0) {
		log_warn_errno(-errno, "volume '%s' deleted, but its data could not be moved away",
			       name);
	} else {
		int r2 = pool_remove_tree(m->pool, trash);

		if (r2 < 0)
			log_warn_errno(r2, "volume '%s' deleted; its data will be removed at the next "
					   "start",
				       name);
	}
	log_info("volume '%s' deleted%s", name, force ? " (forced)" : "");
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

int volmgr_resize(struct volmgr *m, const char *name, uint64_t capacity_bytes, double overcommit,
		  struct errmsg *ret_msg)
{
	struct volume_record *rec;
	struct volume *vol;
	struct quota_usage u;
	uint64_t old;
	int r;

	pthread_mutex_lock(&m->lock);
	vol = find_or_msg(m, name, ret_msg);
	if (!vol) {
		r = -ENOENT;
		goto out;
	}
	rec = table_find(m->table, name);
	r = pool_check_capacity(m->pool, name, capacity_bytes, ret_msg);
	if (r < 0)
		goto out;
	volume_usage(vol, rec, &u);
	if (capacity_bytes < u.used_bytes + u.reserved_bytes) {
		char want[32], used[32];

		quantity_format_human(capacity_bytes, want, sizeof(want));
		quantity_format_human(u.used_bytes, used, sizeof(used));
		r = errmsg_set(ret_msg, -EINVAL, "cannot shrink volume '%s' to %s: %s are in use",
			       name, want, used);
		goto out;
	}
	/* Growing commits more of the pool; shrinking or staying never needs room. */
	if (capacity_bytes > rec->capacity_bytes) {
		r = check_room(m, name, capacity_bytes, u.used_bytes + u.reserved_bytes, overcommit,
			       ret_msg);
		if (r < 0)
			goto out;
	}
	old = rec->capacity_bytes;
	rec->capacity_bytes = capacity_bytes;
	r = save_table(m, ret_msg);
	if (r < 0) {
		rec->capacity_bytes = old;
		goto out;
	}
	if (vol->vfs)
		vfs_set_capacity(vol->vfs, capacity_bytes, rec->inode_limit);
	log_info("volume '%s' resized to %llu bytes", name, (unsigned long long)capacity_bytes);
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

int volmgr_set_limits(struct volmgr *m, const char *name, const struct io_limits *limits,
		      struct errmsg *ret_msg)
{
	struct volume_record *rec;
	struct io_limits old;
	struct volume *vol;
	int r;

	pthread_mutex_lock(&m->lock);
	vol = find_or_msg(m, name, ret_msg);
	if (!vol) {
		r = -ENOENT;
		goto out;
	}
	rec = table_find(m->table, name);
	old = rec->limits;
	rec->limits = *limits;
	r = save_table(m, ret_msg);
	if (r < 0) {
		rec->limits = old;
		goto out;
	}
	if (vol->vfs && !vfs_ended(vol->vfs))
		r = vfs_set_limits(vol->vfs, limits);
	log_info("volume '%s': limits riops=%llu wiops=%llu rbps=%llu wbps=%llu burst=%llums", name,
		 (unsigned long long)limits->riops, (unsigned long long)limits->wiops,
		 (unsigned long long)limits->rbps, (unsigned long long)limits->wbps,
		 (unsigned long long)(limits->burst_ms ? limits->burst_ms : 100));
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

int volmgr_wipe(struct volmgr *m, const char *name, struct errmsg *ret_msg)
{
	struct volume *vol;
	uint64_t skipped = 0;
	int r;

	pthread_mutex_lock(&m->lock);
	vol = find_or_msg(m, name, ret_msg);
	if (!vol) {
		r = -ENOENT;
		goto out;
	}
	if (vol->vfs) {
		r = vfs_wipe(vol->vfs, &skipped);
	} else {
		int fd = openat(m->volumes_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		r = fd < 0 ? -errno : walk_wipe(fd, &skipped);
		if (fd >= 0)
			close(fd);
	}
	if (r < 0) {
		errmsg_set(ret_msg, r, "wiping volume '%s' failed: %s", name, strerror(-r));
		goto out;
	}
	if (skipped)
		log_warn("volume '%s': %llu entries on other filesystems were left alone by the wipe",
			 name, (unsigned long long)skipped);
	log_info("volume '%s' wiped", name);
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* Called with m->lock held: the record and the vfs stay put meanwhile. */
static void volume_fill_stats(struct volmgr *m, struct volume *vol, struct volume_stats *s)
{
	struct volume_record *rec = table_find(m->table, vol->name);
	struct quota_usage u;

	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", vol->name);
	snprintf(s->mountpoint, sizeof(s->mountpoint), "%s", vol->mountpoint);
	s->state = state_name(vol);
	if (vol->state == VOLUME_ERROR)
		snprintf(s->error, sizeof(s->error), "%s", vol->error);
	volume_usage(vol, rec, &u);
	s->used_bytes = u.used_bytes;
	s->used_inodes = u.used_inodes;
	if (rec) {
		snprintf(s->storage_class, sizeof(s->storage_class), "%s", rec->storage_class);
		s->capacity_bytes = rec->capacity_bytes;
		s->inode_limit = rec->inode_limit;
		s->recorded = true;
		s->limits = rec->limits;
		s->uid = rec->uid;
		s->gid = rec->gid;
		s->mode = rec->mode;
		s->created_unix = rec->created_unix;
		snprintf(s->labels, sizeof(s->labels), "%s", rec->labels);
	}
	if (vol->vfs) {
		struct vfs_counters io;

		vfs_stats_read(vol->vfs, &io);
		s->served = true;
		s->read_ops = io.read_ops;
		s->write_ops = io.write_ops;
		s->read_bytes = io.read_bytes;
		s->write_bytes = io.write_bytes;
		s->throttled_ns = io.throttled_ns;
		s->queue_depth = io.queue_depth;
		s->read_latency = io.read_latency;
		s->write_latency = io.write_latency;
	}
}

int volmgr_stats(struct volmgr *m, const char *name, struct volume_stats *ret_stats,
		 struct errmsg *ret_msg)
{
	struct volume *vol;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	vol = find_or_msg(m, name, ret_msg);
	if (!vol)
		r = -ENOENT;
	else
		volume_fill_stats(m, vol, ret_stats);
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* Every volume's numbers, in table order (creation order). Called with m->lock held. */
static int collect_stats(struct volmgr *m, struct volume_stats **ret_stats, size_t *ret_n)
{
	size_t n = 0, count = table_count(m->table);
	struct volume_stats *stats;

	stats = calloc(count ? count : 1, sizeof(*stats));
	if (!stats)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++) {
		struct volume *vol = volume_find(m, table_at(m->table, i)->name);

		if (vol)
			volume_fill_stats(m, vol, &stats[n++]);
	}
	*ret_stats = stats;
	*ret_n = n;
	return 0;
}

int volmgr_list(struct volmgr *m, struct volume_stats **ret_stats, size_t *ret_n)
{
	int r;

	pthread_mutex_lock(&m->lock);
	r = collect_stats(m, ret_stats, ret_n);
	pthread_mutex_unlock(&m->lock);
	return r;
}

int volmgr_snapshot(struct volmgr *m, uint64_t wait_ns, struct volume_stats **ret_stats,
		    size_t *ret_n)
{
	/* The monotonic clock: a step of the wall clock must not stretch the wait. */
	struct timespec deadline = uring_deadline(wait_ns);
	int r;

	r = pthread_mutex_clocklock(&m->lock, CLOCK_MONOTONIC, &deadline);
	if (r != 0)
		return -r;
	r = collect_stats(m, ret_stats, ret_n);
	pthread_mutex_unlock(&m->lock);
	return r;
}

/*
 * Hand-over (handover.c). The old daemon's side: pause, export, then
 * resume or release; the successor's side: adopt, then commit or abandon.
 */

int volmgr_handover_pause(struct volmgr *m, uint64_t timeout_ns, struct errmsg *ret_msg)
{
	struct volume *vol;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	for (vol = m->volumes; vol; vol = vol->next) {
		if (!vol->vfs || vfs_ended(vol->vfs))
			continue;
		/* The successor takes usage as exact: not the bound served during a recount. */
		r = vfs_recount_wait(vol->vfs, timeout_ns);
		if (r < 0) {
			errmsg_set(ret_msg, r, "volume '%s' was still recounting its usage after a crash "
				   "after %.1f s",
				   vol->name, (double)timeout_ns / 1e9);
			break;
		}
		r = vfs_pause(vol->vfs, timeout_ns);
		if (r == -ENODEV) {
			r = 0; /* unmounted by hand meanwhile: nothing to pass on */
			continue;
		}
		if (r < 0) {
			errmsg_set(ret_msg, r, "volume '%s' still had requests in flight after %.1f s",
				vol->name, (double)timeout_ns / 1e9);
			/* A timed-out pause leaves the volume paused: resumed below. */
			vol = vol->next;
			break;
		}
	}
	if (r < 0) {
		for (struct volume *v2 = m->volumes; v2 != vol; v2 = v2->next)
			if (v2->vfs && !vfs_ended(v2->vfs))
				vfs_resume(v2->vfs);
		pthread_mutex_unlock(&m->lock);
	}
	return r;
}

int volmgr_handover_export(struct volmgr *m, size_t i, char *ret_name, struct vfs_state *ret_state)
{
	for (struct volume *vol = m->volumes; vol; vol = vol->next) {
		if (!vol->vfs || vfs_ended(vol->vfs) || i-- > 0)
			continue;
		snprintf(ret_name, VOLNAME_MAX + 1, "%s", vol->name);
		return vfs_export(vol->vfs, ret_state);
	}
	return -ENOENT;
}

int volmgr_lock_pool(struct volmgr *m, bool locked)
{
	return pool_lock(m->pool, locked);
}

void volmgr_handover_end(struct volmgr *m, bool resume)
{
	if (resume) {
		for (struct volume *vol = m->volumes; vol; vol = vol->next)
			if (vol->vfs && !vfs_ended(vol->vfs))
				vfs_resume(vol->vfs);
		pthread_mutex_unlock(&m->lock);
		return;
	}
	/*
	 * Forget every volume, so that a verb that waited for the lock finds
	 * none to unmount, wipe or delete, and fails; save_table() refuses too.
	 */
	while (m->volumes) {
		struct volume *vol = m->volumes;

		if (vol->vfs) {
			if (!vfs_ended(vol->vfs))
				vfs_release(vol->vfs);
			vol->vfs = vfs_free(vol->vfs);
		}
		volume_remove(m, vol);
	}
	m->handed_over = true;
	pthread_mutex_unlock(&m->lock);
}

int volmgr_adopt(const struct volmgr_config *cfg, const char *const *names,
		 struct vfs_state *states, size_t n, struct volmgr **ret_mgr)
{
	struct volmgr *m;
	int r;

	r = volmgr_open(cfg, true, &m);
	if (r < 0)
		return r;
	for (size_t i = 0; i < table_count(m->table); i++) {
		struct volume_record *rec = table_at(m->table, i);
		struct volume *vol;
		struct vfs_params p;

		r = volume_add(m, rec->name, &vol);
		if (r < 0)
			goto err;
		for (size_t j = 0; j < n; j++) {
			if (strcmp(names[j], rec->name) != 0)
				continue;
			p = volume_params(vol, rec);
			p.root_fd = volume_open_root(m, vol);
			if (p.root_fd < 0) {
				r = log_error_errno(p.root_fd, "volume '%s': cannot open its backing "
							       "directory",
						    vol->name);
				goto err;
			}
			r = vfs_adopt(&p, &states[j], &vol->vfs);
			if (r < 0) {
				log_error_errno(r, "volume '%s': cannot take over its session",
						vol->name);
				goto err;
			}
			vol->state = VOLUME_MOUNTED;
			break;
		}
	}
	for (size_t j = 0; j < n; j++) {
		if (!table_find(m->table, names[j])) {
			log_error("volume '%s' was handed over but is not in the volume table",
				  names[j]);
			r = -EPROTO;
			goto err;
		}
	}
	*ret_mgr = m;
	return 0;
err:
	volmgr_stop(m);
	return r;
}

int volmgr_adopt_commit(struct volmgr *m)
{
	size_t n = table_count(m->table);
	int r;

	pthread_mutex_lock(&m->lock);
	m->adopting = false;
	for (struct volume *vol = m->volumes; vol; vol = vol->next) {
		struct volume_record *rec = table_find(m->table, vol->name);

		r = vol->vfs ? vfs_serve(vol->vfs, m->loops) : volume_mount(m, vol, rec, true);
		if (r < 0) {
			if (vol->vfs) {
				/* The mount stays: it is the pod's; only we cannot serve it. */
				vol->vfs = vfs_free(vol->vfs);
			}
			vol->state = VOLUME_ERROR;
			snprintf(vol->error, sizeof(vol->error), "mount failed: %s", strerror(-r));
			log_error_errno(r, "volume '%s': cannot serve '%s'", vol->name, vol->mountpoint);
		}
	}
	pool_sweep(m->pool);
	for (size_t i = 0; i < n; i++)
		table_at(m->table, i)->clean = false;
	r = save_table(m, NULL);
	pthread_mutex_unlock(&m->lock);
	if (r == 0)
		log_info("serving %zu volume(s) of pool '%s' under '%s', taken over", n,
			 m->pool_dir, m->discovery_dir);
	return r;
}
