/*
 * inode.c - the table of backing objects the kernel knows about, the cache
 * of their fds, and the bookkeeping of their share of the volume's quota.
 *
 * Identity. An entry is known by the file handle of its backing object
 * (name_to_handle_at on the fd a confined lookup found), so it costs memory
 * but no fd. Node ids come from a counter per volume (FUSE_ROOT_ID is the
 * root's) and are never given to another object on the same connection; the
 * generation of a node id never changes. The kernel treats a node id that
 * comes back with another generation or type as stale (fuse_iget), so a
 * successor daemon must keep both: inode_table_export/import carry them. A
 * second map keyed by the handle makes hard links share one entry and one
 * quota charge, and works for imported entries without opening anything.
 *
 * Fds. An operation borrows the O_PATH fd of an entry (inode_fd_get/put).
 * One not cached is reopened with open_by_handle_at() against the volume's
 * root fd (CAP_DAC_READ_SEARCH: the daemon is root), and the object must
 * still be of the entry's type, on the volume's filesystem and mount. The
 * cache is one LRU list for all volumes together, bounded by --fd-cache,
 * because the fd limit it protects is the process's: per volume bounds
 * would still add up to EMFILE with enough volumes. Volumes are served by
 * several loop threads, so the cache has a lock of its own, a leaf taken
 * for a few pointer moves; a borrowed fd is pinned and never closed by an
 * eviction, whichever thread evicts. Borrowing is synchronous within a
 * request: IO in flight on io_uring uses the open file's own fds (struct
 * handle), never a cached one. Roots are not cached: their fds stay open.
 *
 * Quota. An object's space comes back when the backing filesystem frees it:
 * when its last link is gone and the last fd to it is closed. Every link a
 * pod removes goes through the daemon, which gives the charge back then
 * (inode_unlinked) or, while a handle is open, when the last one closes
 * (inode_close). A cached O_PATH fd may keep the object a little longer,
 * but that is bookkeeping, not something a pod can use, so the quota does
 * not wait for it; and an object no fd holds any more is gone at once, so
 * reopening it fails with ESTALE, which counts as "no link left".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <xxhash.h>

#include "vfs.h"

#define INITIAL_BUCKETS 1024
/* Fds an eviction closes at most per call; the next call takes the rest. */
#define EVICT_BATCH 8

static struct {
	pthread_mutex_t lock;
	struct inode *mru, *lru; /* every cached fd, most recently borrowed first */
	size_t count, max;
} fd_cache = { .lock = PTHREAD_MUTEX_INITIALIZER, .max = VFS_FD_CACHE_DEFAULT };

/* A struct file_handle with room for the largest handle. */
union handle_buf {
	struct file_handle fh;
	unsigned char bytes[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};

void vfs_set_fd_cache(size_t max_fds)
{
	pthread_mutex_lock(&fd_cache.lock);
	fd_cache.max = max_fds < VFS_FD_CACHE_MIN ? VFS_FD_CACHE_MIN : max_fds;
	pthread_mutex_unlock(&fd_cache.lock);
}

void inode_procpath(int fd, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/* statx with the mount id, as a struct stat for the kernel plus that id. */
int inode_stat_at(int dir_fd, const char *name, struct stat *st, uint64_t *ret_mnt_id)
{
	struct statx x;

	if (statx(dir_fd, name, (*name ? 0 : AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW,
		  STATX_BASIC_STATS | STATX_MNT_ID, &x) < 0)
		return -errno;
	memset(st, 0, sizeof(*st));
	st->st_dev = makedev(x.stx_dev_major, x.stx_dev_minor);
	st->st_ino = x.stx_ino;
	st->st_mode = x.stx_mode;
	st->st_nlink = x.stx_nlink;
	st->st_uid = x.stx_uid;
	st->st_gid = x.stx_gid;
	st->st_rdev = makedev(x.stx_rdev_major, x.stx_rdev_minor);
	st->st_size = (off_t)x.stx_size;
	st->st_blksize = x.stx_blksize;
	st->st_blocks = (blkcnt_t)x.stx_blocks;
	st->st_atim.tv_sec = x.stx_atime.tv_sec;
	st->st_atim.tv_nsec = x.stx_atime.tv_nsec;
	st->st_mtim.tv_sec = x.stx_mtime.tv_sec;
	st->st_mtim.tv_nsec = x.stx_mtime.tv_nsec;
	st->st_ctim.tv_sec = x.stx_ctime.tv_sec;
	st->st_ctim.tv_nsec = x.stx_ctime.tv_nsec;
	*ret_mnt_id = (x.stx_mask & STATX_MNT_ID) ? x.stx_mnt_id : 0;
	return 0;
}

static int stat_with_mount(int fd, struct stat *st, uint64_t *ret_mnt_id)
{
	return inode_stat_at(fd, "", st, ret_mnt_id);
}

int inode_check_confined(struct vfs *v, int fd, struct stat *st)
{
	uint64_t mnt_id;
	int r = stat_with_mount(fd, st, &mnt_id);

	if (r < 0)
		return r;
	/* A mount planted inside the backing directory (a bind mount too): not ours. */
	if (st->st_dev != v->dev || mnt_id != v->mnt_id)
		return -EXDEV;
	return 0;
}

static uint64_t allocated_bytes(const struct stat *st)
{
	return (uint64_t)st->st_blocks * 512;
}

/* The fd cache; everything below with _locked holds fd_cache.lock. */

static void lru_unlink_locked(struct inode *in)
{
	if (in->lru_prev)
		in->lru_prev->lru_next = in->lru_next;
	else
		fd_cache.mru = in->lru_next;
	if (in->lru_next)
		in->lru_next->lru_prev = in->lru_prev;
	else
		fd_cache.lru = in->lru_prev;
	in->lru_prev = in->lru_next = NULL;
}

static void lru_push_locked(struct inode *in)
{
	in->lru_prev = NULL;
	in->lru_next = fd_cache.mru;
	if (fd_cache.mru)
		fd_cache.mru->lru_prev = in;
	else
		fd_cache.lru = in;
	fd_cache.mru = in;
}

/*
 * Takes the least recently borrowed fds out of the cache while it holds
 * more than its bound, skipping borrowed ones; they are closed by the
 * caller, outside the lock (closing an unlinked object's last fd frees it,
 * which may take a while). Returns how many went into @victims.
 */
static size_t trim_locked(int *victims)
{
	struct inode *in = fd_cache.lru, *prev;
	size_t n = 0;

	for (; in && fd_cache.count > fd_cache.max && n < EVICT_BATCH; in = prev) {
		prev = in->lru_prev;
		if (in->pins)
			continue;
		lru_unlink_locked(in);
		victims[n++] = in->fd;
		in->fd = -1;
		fd_cache.count--;
	}
	return n;
}

static void close_all(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/*
 * Caches @fd as @in's (owned by the cache from now on), borrowed once if
 * @pin, unless @in has one cached already: then returns false and @fd stays
 * the caller's. Only the loop thread owning @in ever caches its fd, so one
 * that saw none cached, and borrowed nothing, always succeeds.
 */
static bool cache_adopt(struct inode *in, int fd, bool pin)
{
	int victims[EVICT_BATCH];
	size_t n;

	pthread_mutex_lock(&fd_cache.lock);
	if (in->fd >= 0) {
		pthread_mutex_unlock(&fd_cache.lock);
		return false;
	}
	in->fd = fd;
	if (pin)
		in->pins++;
	lru_push_locked(in);
	fd_cache.count++;
	n = trim_locked(victims);
	pthread_mutex_unlock(&fd_cache.lock);
	close_all(victims, n);
	return true;
}

/* Takes @in's fd out of the cache and closes it; @in must not be borrowed. */
static void cache_drop(struct inode *in)
{
	int fd;

	pthread_mutex_lock(&fd_cache.lock);
	fd = in->fd;
	if (fd >= 0) {
		lru_unlink_locked(in);
		in->fd = -1;
		fd_cache.count--;
	}
	pthread_mutex_unlock(&fd_cache.lock);
	if (fd >= 0)
		close(fd);
}

/* Opens @in's object again from its handle, and checks it is still what we served. */
static int inode_reopen(struct vfs *v, struct inode *in)
{
	union handle_buf h;
	struct stat st;
	int fd, r;

	h.fh.handle_bytes = in->handle_bytes;
	h.fh.handle_type = in->handle_type;
	memcpy(h.fh.f_handle, in->handle, in->handle_bytes);
	fd = open_by_handle_at(v->handle_fd, &h.fh, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = inode_check_confined(v, fd, &st);
	if (r == 0 && (st.st_mode & S_IFMT) != in->type)
		r = -ESTALE;
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

int inode_fd_get(struct vfs *v, struct inode *in)
{
	int fd;

	if (in == v->root)
		return in->fd;
	pthread_mutex_lock(&fd_cache.lock);
	fd = in->fd;
	if (fd >= 0) {
		in->pins++;
		lru_unlink_locked(in);
		lru_push_locked(in);
	}
	pthread_mutex_unlock(&fd_cache.lock);
	if (fd >= 0)
		return fd;
	fd = inode_reopen(v, in);
	if (fd >= 0)
		(void)cache_adopt(in, fd, true);
	return fd;
}

void inode_fd_put(struct vfs *v, struct inode *in)
{
	int victims[EVICT_BATCH];
	size_t n = 0;

	if (in == v->root)
		return;
	pthread_mutex_lock(&fd_cache.lock);
	if (in->pins)
		in->pins--;
	/* Everything may have been borrowed when the bound was passed: trim now. */
	if (fd_cache.count > fd_cache.max)
		n = trim_locked(victims);
	pthread_mutex_unlock(&fd_cache.lock);
	close_all(victims, n);
}

int inode_borrow(struct vfs *v, fuse_ino_t ino, struct inode **ret_in)
{
	struct inode *in = inode_of(v, ino);
	int fd;

	if (!in)
		return -ESTALE;
	fd = inode_fd_get(v, in);
	if (fd >= 0)
		*ret_in = in;
	return fd;
}

int inode_stat(struct vfs *v, struct inode *in, struct stat *st)
{
	int fd = inode_fd_get(v, in), r = 0;

	if (fd < 0)
		return fd;
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	inode_fd_put(v, in);
	return r;
}

/* The two maps: by node id (what the kernel sends) and by handle (hard links). */

static size_t id_bucket(const struct vfs *v, uint64_t nodeid)
{
	return (size_t)((nodeid * 0x9e3779b97f4a7c15ull) >> 17) & (v->nbuckets - 1);
}

static size_t handle_bucket(const struct vfs *v, int type, unsigned bytes,
			    const unsigned char *data)
{
	uint64_t h = XXH3_64bits(data, bytes) ^ ((uint64_t)(unsigned)type * 0x9e3779b97f4a7c15ull);

	return (size_t)(h >> 17) & (v->nbuckets - 1);
}

static void itab_link(struct vfs *v, struct inode *in)
{
	size_t b = id_bucket(v, in->nodeid);

	in->id_next = v->buckets[b];
	v->buckets[b] = in;
	b = handle_bucket(v, in->handle_type, in->handle_bytes, in->handle);
	in->handle_next = v->hbuckets[b];
	v->hbuckets[b] = in;
}

static void itab_insert(struct vfs *v, struct inode *in)
{
	if (v->ninodes >= v->nbuckets * 2) {
		size_t n = v->nbuckets * 4;
		struct inode **nb = calloc(n, sizeof(*nb)), **nh = calloc(n, sizeof(*nh));

		/* Growing is an optimisation: without memory, chains just get longer. */
		if (nb && nh) {
			struct inode **old = v->buckets;
			size_t oldn = v->nbuckets;

			free(v->hbuckets);
			v->buckets = nb;
			v->hbuckets = nh;
			v->nbuckets = n;
			for (size_t i = 0; i < oldn; i++) {
				struct inode *p = old[i], *next;

				for (; p; p = next) {
					next = p->id_next;
					itab_link(v, p);
				}
			}
			free(old);
		} else {
			free(nb);
			free(nh);
		}
	}
	itab_link(v, in);
	v->ninodes++;
}

static void itab_remove(struct vfs *v, struct inode *in)
{
	struct inode **pp = &v->buckets[id_bucket(v, in->nodeid)];

	for (; *pp; pp = &(*pp)->id_next) {
		if (*pp == in) {
			*pp = in->id_next;
			break;
		}
	}
	pp = &v->hbuckets[handle_bucket(v, in->handle_type, in->handle_bytes, in->handle)];
	for (; *pp; pp = &(*pp)->handle_next) {
		if (*pp == in) {
			*pp = in->handle_next;
			break;
		}
	}
	v->ninodes--;
}

static struct inode *inode_find(struct vfs *v, int type, unsigned bytes, const unsigned char *data)
{
	struct inode *in = v->hbuckets[handle_bucket(v, type, bytes, data)];

	for (; in; in = in->handle_next)
		if (in->handle_type == type && in->handle_bytes == bytes &&
		    memcmp(in->handle, data, bytes) == 0)
			return in;
	return NULL;
}

struct inode *inode_of_key(struct vfs *v, const struct inode_key *key)
{
	return inode_find(v, key->type, key->bytes, key->data);
}

struct inode *inode_of(struct vfs *v, fuse_ino_t ino)
{
	struct inode *in = v->buckets[id_bucket(v, ino)];

	for (; in; in = in->id_next)
		if (in->nodeid == ino)
			return in;
	return NULL;
}

static struct inode *inode_new(int type, unsigned bytes, const unsigned char *data)
{
	struct inode *in = calloc(1, sizeof(*in) + bytes);

	if (!in)
		return NULL;
	in->fd = -1;
	in->cs_slot = CS_SLOT_NONE;
	in->handle_type = type;
	in->handle_bytes = bytes;
	memcpy(in->handle, data, bytes);
	return in;
}

static int key_of(int dir_fd, const char *name, int flags, struct inode_key *ret_key)
{
	union handle_buf h;
	int mnt_id;

	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(dir_fd, name, &h.fh, &mnt_id, flags) < 0)
		return -errno;
	ret_key->type = h.fh.handle_type;
	ret_key->bytes = h.fh.handle_bytes;
	memcpy(ret_key->data, h.fh.f_handle, h.fh.handle_bytes);
	return 0;
}

int inode_key_at(int dir_fd, const char *name, struct inode_key *ret_key)
{
	/* Without AT_SYMLINK_FOLLOW a symlink is not followed. */
	return key_of(dir_fd, name, 0, ret_key);
}

int inode_table_init(struct vfs *v, int root_fd)
{
	struct inode_key key;
	struct stat st;
	struct inode *root = NULL;
	int r;

	r = stat_with_mount(root_fd, &st, &v->mnt_id);
	if (r < 0)
		return r;
	/* A backing filesystem without file handles cannot be served. */
	r = key_of(root_fd, "", AT_EMPTY_PATH, &key);
	if (r < 0)
		return r;
	v->handle_fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (v->handle_fd < 0)
		return -errno;
	v->buckets = calloc(INITIAL_BUCKETS, sizeof(*v->buckets));
	v->hbuckets = calloc(INITIAL_BUCKETS, sizeof(*v->hbuckets));
	root = inode_new(key.type, key.bytes, key.data);
	if (!v->buckets || !v->hbuckets || !root) {
		free(v->buckets);
		free(v->hbuckets);
		v->buckets = v->hbuckets = NULL;
		free(root);
		close(v->handle_fd);
		v->handle_fd = -1;
		return -ENOMEM;
	}
	v->nbuckets = INITIAL_BUCKETS;
	v->dev = st.st_dev;
	v->next_nodeid = FUSE_ROOT_ID + 1;
	root->nodeid = FUSE_ROOT_ID;
	root->generation = 0; /* what the kernel gives the root it makes itself */
	root->fd = root_fd;
	root->type = S_IFDIR;
	root->nlookup = 1; /* the mount's own reference, never forgotten */
	root->charged_bytes = allocated_bytes(&st);
	root->size = (uint64_t)st.st_size;
	root->ino = st.st_ino;
	v->root = root;
	itab_insert(v, root);
	return 0;
}

static void inode_free(struct vfs *v, struct inode *in)
{
	if (in == v->root)
		close(in->fd);
	else
		cache_drop(in);
	free(in);
}

void inode_table_fini(struct vfs *v)
{
	for (size_t i = 0; i < v->nbuckets; i++) {
		struct inode *in = v->buckets[i], *next;

		for (; in; in = next) {
			next = in->id_next;
			inode_free(v, in);
		}
	}
	free(v->buckets);
	free(v->hbuckets);
	v->buckets = v->hbuckets = NULL;
	v->root = NULL;
	v->ninodes = 0;
	close(v->handle_fd);
	v->handle_fd = -1;
}

/* Every change of usage that has an object: the quota's, and a recount's in progress. */
static void usage_charge(struct vfs *v, uint64_t ino, int64_t bytes, int64_t inodes)
{
	if (bytes)
		quota_charge_bytes(v->quota, bytes);
	if (inodes)
		quota_charge_inodes(v->quota, inodes);
	recount_charge(v, ino, bytes, inodes);
}

void inode_settle(struct vfs *v, struct inode *in, const struct stat *st)
{
	uint64_t now = allocated_bytes(st);

	in->ino = st->st_ino;
	if (now != in->charged_bytes) {
		usage_charge(v, in->ino, (int64_t)(now - in->charged_bytes), 0);
		in->charged_bytes = now;
	}
	in->size = (uint64_t)st->st_size;
}

int inode_settle_fd(struct vfs *v, struct inode *in, int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	inode_settle(v, in, &st);
	return 0;
}

int inode_settle_self(struct vfs *v, struct inode *in)
{
	struct stat st;
	int r = inode_stat(v, in, &st);

	if (r == 0)
		inode_settle(v, in, &st);
	return r;
}

/*
 * Gives an object's space and inode back as soon as nothing can reach it any
 * more: no link left and no handle open. A cached fd may still pin it, but
 * that is bookkeeping, not something a pod can use, so the quota does not
 * wait for it. An object that cannot be reopened (ESTALE) was freed.
 */
static void inode_release_if_orphan(struct vfs *v, struct inode *in)
{
	struct stat st;
	int r;

	if (in->uncounted || in->opens || in == v->root)
		return;
	r = inode_stat(v, in, &st);
	if (r < 0 ? r != -ESTALE : st.st_nlink != 0)
		return;
	usage_charge(v, r == 0 ? st.st_ino : in->ino, -(int64_t)in->charged_bytes, -1);
	in->charged_bytes = 0;
	in->uncounted = true;
}

void inode_unlinked(struct vfs *v, const struct stat *before, const struct inode_key *key)
{
	struct inode *in = inode_find(v, key->type, key->bytes, key->data);

	if (in) {
		inode_release_if_orphan(v, in);
		return;
	}
	if (S_ISDIR(before->st_mode) || before->st_nlink <= 1)
		usage_charge(v, before->st_ino, -(int64_t)allocated_bytes(before), -1);
}

/*
 * No settling here: every way an object loses its last link goes through
 * inode_unlinked() or, while open, inode_close(), which already gave its
 * charge back. That spares reopening each forgotten object just to stat it.
 */
static void inode_maybe_destroy(struct vfs *v, struct inode *in)
{
	if (in == v->root || in->nlookup || in->lookups_unknown || in->opens || in->settles)
		return;
	record_release(v, &in->cs_slot);
	itab_remove(v, in);
	inode_free(v, in);
}

void inode_forget(struct vfs *v, struct inode *in, uint64_t nlookup)
{
	/* Unknown: a FORGET for a node a predecessor knew and forgot. */
	if (!in)
		return;
	/* The kernel forgets all it holds at once: more than we counted is the last. */
	if (in->lookups_unknown && nlookup > in->nlookup)
		in->lookups_unknown = false;
	in->nlookup = nlookup > in->nlookup ? 0 : in->nlookup - nlookup;
	inode_maybe_destroy(v, in);
}

void inode_unmake(struct vfs *v, struct inode *parent, const char *name, struct inode *in)
{
	struct stat st;
	int pfd = inode_fd_get(v, parent);

	/*
	 * A volume's requests run one at a time on its loop thread, so the
	 * name is still the object this request made.
	 */
	if (pfd >= 0) {
		if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			(void)unlinkat(pfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
		(void)inode_settle_fd(v, parent, pfd);
		inode_fd_put(v, parent);
	}
	if (in) {
		/* No link left: the charge inode_lookup() made goes back now. */
		inode_release_if_orphan(v, in);
		inode_forget(v, in, 1);
	}
}

void inode_close(struct vfs *v, struct inode *in)
{
	if (in->opens)
		in->opens--;
	/* An unlinked file's space comes back when its last handle closes. */
	inode_release_if_orphan(v, in);
	inode_maybe_destroy(v, in);
}

void inode_settle_done(struct vfs *v, struct inode *in)
{
	in->settles--;
	inode_maybe_destroy(v, in);
}

int inode_lookup(struct vfs *v, struct inode *parent, const char *name, bool created,
		 struct fuse_entry_param *e)
{
	struct inode_key key;
	struct inode *in;
	struct stat st;
	int64_t new_bytes = 0;
	int pfd, fd, r;

	memset(e, 0, sizeof(*e));
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		/* The kernel resolves these itself; ".." of the root would leave the volume. */
		return -EINVAL;
	}
	pfd = inode_fd_get(v, parent);
	if (pfd < 0)
		return pfd;
	fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	r = fd < 0 ? -errno : 0;
	inode_fd_put(v, parent);
	if (r < 0)
		return r;
	r = inode_check_confined(v, fd, &st);
	if (r < 0)
		goto err;
	r = key_of(fd, "", AT_EMPTY_PATH, &key);
	if (r < 0)
		goto err;
	in = inode_find(v, key.type, key.bytes, key.data);
	if (in) {
		/* Keep the fd just opened if the entry has none cached. */
		if (in == v->root || !cache_adopt(in, fd, false))
			close(fd);
	} else {
		in = inode_new(key.type, key.bytes, key.data);
		if (!in) {
			r = -ENOMEM;
			goto err;
		}
		in->nodeid = v->next_nodeid;
		in->generation = 1;
		in->type = st.st_mode & S_IFMT;
		in->charged_bytes = allocated_bytes(&st);
		in->size = (uint64_t)st.st_size;
		in->ino = st.st_ino;
		/* Before the kernel learns the node id, or a crash would make it meaningless. */
		r = record_node_put(v, in, v->rq_unique);
		if (r < 0) {
			free(in);
			goto err;
		}
		v->next_nodeid++;
		itab_insert(v, in);
		(void)cache_adopt(in, fd, false);
		new_bytes = (int64_t)in->charged_bytes;
	}
	if (created)
		usage_charge(v, st.st_ino, new_bytes, 1);
	in->nlookup++;
	e->ino = in->nodeid;
	e->generation = in->generation;
	e->attr = st;
	e->attr_timeout = v->attr_timeout;
	e->entry_timeout = v->entry_timeout;
	return 0;
err:
	close(fd);
	return r;
}

void inode_table_recount(struct vfs *v)
{
	for (size_t i = 0; i < v->nbuckets; i++) {
		for (struct inode *in = v->buckets[i]; in; in = in->id_next) {
			struct stat st;

			if (inode_stat(v, in, &st) < 0 || st.st_nlink == 0) {
				/* Gone from the tree: a walk does not count it, so neither may we. */
				in->charged_bytes = 0;
				in->uncounted = true;
			} else {
				in->charged_bytes = allocated_bytes(&st);
				in->size = (uint64_t)st.st_size;
				in->ino = st.st_ino;
			}
		}
	}
}

/*
 * The exported table, in host byte order (a hand-over never leaves the
 * machine):
 *   header  magic[8] "CARVEINO", u32 version (1), u32 flags (0),
 *           u64 count of entries, u64 next node id;
 *   entry   u64 nodeid, u64 generation, u64 nlookup, u64 charged_bytes,
 *           u64 size, u32 S_IFMT type, i32 handle type, u16 handle bytes,
 *           u8 bits (ITAB_UNCOUNTED, ITAB_LOOKUPS_UNKNOWN), u8 reserved (0),
 *           then the handle bytes.
 * The root is one of the entries (node id FUSE_ROOT_ID), so an import can
 * check that the blob is of the volume it is given to.
 */
#define ITAB_MAGIC "CARVEINO"
#define ITAB_VERSION 1u
#define ITAB_HEADER_BYTES 32u
#define ITAB_ENTRY_BYTES 52u
#define ITAB_UNCOUNTED 1u
#define ITAB_LOOKUPS_UNKNOWN 2u
#define ITAB_BITS (ITAB_UNCOUNTED | ITAB_LOOKUPS_UNKNOWN)

static unsigned char *put_bytes(unsigned char *p, const void *src, size_t n)
{
	memcpy(p, src, n);
	return p + n;
}

#define PUT(p, x) ((p) = put_bytes((p), &(x), sizeof(x)))

int inode_table_export(struct vfs *v, void **ret_buf, size_t *ret_len)
{
	size_t len = ITAB_HEADER_BYTES;
	unsigned char *buf, *p;
	uint64_t count = v->ninodes;
	uint32_t version = ITAB_VERSION, flags = 0;

	for (size_t i = 0; i < v->nbuckets; i++)
		for (struct inode *in = v->buckets[i]; in; in = in->id_next)
			len += ITAB_ENTRY_BYTES + in->handle_bytes;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	p = put_bytes(buf, ITAB_MAGIC, 8);
	PUT(p, version);
	PUT(p, flags);
	PUT(p, count);
	PUT(p, v->next_nodeid);
	for (size_t i = 0; i < v->nbuckets; i++) {
		for (struct inode *in = v->buckets[i]; in; in = in->id_next) {
			uint32_t type = in->type;
			int32_t htype = in->handle_type;
			uint16_t hbytes = (uint16_t)in->handle_bytes;
			uint8_t bits = (in->uncounted ? ITAB_UNCOUNTED : 0) |
				       (in->lookups_unknown ? ITAB_LOOKUPS_UNKNOWN : 0),
				reserved = 0;

			PUT(p, in->nodeid);
			PUT(p, in->generation);
			PUT(p, in->nlookup);
			PUT(p, in->charged_bytes);
			PUT(p, in->size);
			PUT(p, type);
			PUT(p, htype);
			PUT(p, hbytes);
			PUT(p, bits);
			PUT(p, reserved);
			p = put_bytes(p, in->handle, in->handle_bytes);
		}
	}
	*ret_buf = buf;
	*ret_len = len;
	return 0;
}

struct itab_entry {
	uint64_t nodeid, generation, nlookup, charged_bytes, size;
	uint32_t type;
	int32_t handle_type;
	uint16_t handle_bytes;
	uint8_t bits, reserved; /* ITAB_* */
	const unsigned char *handle;
};

static const unsigned char *get_bytes(const unsigned char *p, void *dst, size_t n)
{
	memcpy(dst, p, n);
	return p + n;
}

#define GET(p, x) ((p) = get_bytes((p), &(x), sizeof(x)))

/* Reads the entry at *@pos of @buf, checking it fits and makes sense. */
static int itab_entry_read(const unsigned char *buf, size_t len, size_t *pos,
			   uint64_t next_nodeid, struct itab_entry *ret)
{
	const unsigned char *p = buf + *pos;

	if (len - *pos < ITAB_ENTRY_BYTES)
		return -EINVAL;
	GET(p, ret->nodeid);
	GET(p, ret->generation);
	GET(p, ret->nlookup);
	GET(p, ret->charged_bytes);
	GET(p, ret->size);
	GET(p, ret->type);
	GET(p, ret->handle_type);
	GET(p, ret->handle_bytes);
	GET(p, ret->bits);
	GET(p, ret->reserved);
	*pos += ITAB_ENTRY_BYTES;
	if (ret->handle_bytes == 0 || ret->handle_bytes > MAX_HANDLE_SZ ||
	    len - *pos < ret->handle_bytes)
		return -EINVAL;
	ret->handle = buf + *pos;
	*pos += ret->handle_bytes;
	if (ret->nodeid < FUSE_ROOT_ID || ret->nodeid >= next_nodeid || (ret->bits & ~ITAB_BITS) ||
	    ret->reserved != 0)
		return -EINVAL;
	switch (ret->type) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFIFO:
	case S_IFSOCK:
		return 0;
	default:
		/* Device nodes are never created in a volume, nor anything else. */
		return -EINVAL;
	}
}

/* Removes every entry but the root: the table as inode_table_init() left it. */
static void itab_clear_to_root(struct vfs *v)
{
	for (size_t i = 0; i < v->nbuckets; i++) {
		struct inode *in = v->buckets[i], *next;

		for (; in; in = next) {
			next = in->id_next;
			if (in != v->root) {
				itab_remove(v, in);
				inode_free(v, in);
			}
		}
	}
}

int inode_table_import(struct vfs *v, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	struct inode *root = v->root;
	uint64_t saved_gen = root->generation, saved_nlookup = root->nlookup;
	uint64_t saved_charged = root->charged_bytes, saved_size = root->size;
	uint64_t count, next_nodeid, n = 0;
	uint32_t version, flags;
	size_t pos = ITAB_HEADER_BYTES;
	bool saw_root = false;
	int r = 0;

	if (v->ninodes != 1)
		return -EBUSY; /* not fresh: only the root may be there */
	if (len < ITAB_HEADER_BYTES || memcmp(p, ITAB_MAGIC, 8) != 0)
		return -EINVAL;
	p += 8;
	GET(p, version);
	GET(p, flags);
	GET(p, count);
	GET(p, next_nodeid);
	if (version != ITAB_VERSION || flags != 0 || next_nodeid <= FUSE_ROOT_ID ||
	    count > (len - ITAB_HEADER_BYTES) / ITAB_ENTRY_BYTES)
		return -EINVAL;
	for (; n < count; n++) {
		struct itab_entry e;
		struct inode *in;

		r = itab_entry_read(buf, len, &pos, next_nodeid, &e);
		if (r < 0)
			goto err;
		if (e.nodeid == FUSE_ROOT_ID) {
			/* The root of another volume, or two roots: not this volume's table. */
			if (saw_root || e.type != S_IFDIR || e.handle_type != root->handle_type ||
			    e.handle_bytes != root->handle_bytes ||
			    memcmp(e.handle, root->handle, e.handle_bytes) != 0) {
				r = -EINVAL;
				goto err;
			}
			saw_root = true;
			root->generation = e.generation;
			root->nlookup = e.nlookup ? e.nlookup : 1;
			root->charged_bytes = e.charged_bytes;
			root->size = e.size;
			continue;
		}
		/* Each node id and each object once. */
		if (inode_of(v, e.nodeid) || inode_find(v, e.handle_type, e.handle_bytes, e.handle)) {
			r = -EINVAL;
			goto err;
		}
		in = inode_new(e.handle_type, e.handle_bytes, e.handle);
		if (!in) {
			r = -ENOMEM;
			goto err;
		}
		in->nodeid = e.nodeid;
		in->generation = e.generation;
		in->type = e.type;
		in->nlookup = e.nlookup;
		in->charged_bytes = e.charged_bytes;
		in->size = e.size;
		in->uncounted = e.bits & ITAB_UNCOUNTED;
		in->lookups_unknown = e.bits & ITAB_LOOKUPS_UNKNOWN;
		itab_insert(v, in);
	}
	if (pos != len || !saw_root) {
		r = -EINVAL;
		goto err;
	}
	v->next_nodeid = next_nodeid;
	return 0;
err:
	itab_clear_to_root(v);
	root->generation = saved_gen;
	root->nlookup = saved_nlookup;
	root->charged_bytes = saved_charged;
	root->size = saved_size;
	return r;
}

int inode_restore(struct vfs *v, const struct inode_record *rec)
{
	struct inode *in;

	if (rec->nodeid <= FUSE_ROOT_ID || rec->handle_bytes == 0 ||
	    rec->handle_bytes > MAX_HANDLE_SZ)
		return -EINVAL;
	switch (rec->type) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFIFO:
	case S_IFSOCK:
		break;
	default:
		return -EINVAL;
	}
	if (inode_of(v, rec->nodeid) ||
	    inode_find(v, rec->handle_type, rec->handle_bytes, rec->handle))
		return -EEXIST;
	in = inode_new(rec->handle_type, rec->handle_bytes, rec->handle);
	if (!in)
		return -ENOMEM;
	in->nodeid = rec->nodeid;
	in->generation = rec->generation;
	in->type = rec->type;
	in->lookups_unknown = true;
	in->restored_unique = rec->unique;
	in->cs_slot = rec->slot;
	/* Its charge is set by inode_table_recount() once usage was counted. */
	itab_insert(v, in);
	if (v->next_nodeid <= rec->nodeid)
		v->next_nodeid = rec->nodeid + 1;
	return 0;
}

void inode_resent_creation(struct vfs *v, uint64_t unique)
{
	if (!unique)
		return;
	for (size_t i = 0; i < v->nbuckets; i++)
		for (struct inode *in = v->buckets[i]; in; in = in->id_next)
			if (in->lookups_unknown && in->restored_unique == unique)
				in->lookups_unknown = false;
}
