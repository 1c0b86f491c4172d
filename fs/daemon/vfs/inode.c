/*
 * inode.c - the table of backing objects the kernel knows about, and the
 * bookkeeping of their share of the volume's quota.
 *
 * The FUSE node id of an inode is its address (the root's is FUSE_ROOT_ID).
 * The table is keyed by (st_dev, st_ino) so that hard links share one entry,
 * one O_PATH fd and one quota charge.
 *
 * An object's space comes back when the backing filesystem frees it: when its
 * last link is gone and the last fd to it is closed. Our O_PATH fd is such an
 * fd, so a tracked object is settled when its entry is destroyed (the kernel
 * forgot it and no handle is open): a final fstat tells whether it still has
 * a link (it stays, and stays counted) or not (its charge is given back).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "vfs.h"

#define INITIAL_BUCKETS 1024

static size_t bucket_of(const struct vfs *v, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;

	return (size_t)(h >> 17) & (v->nbuckets - 1);
}

void inode_procpath(int fd, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

int inode_stat(struct inode *in, struct stat *st)
{
	if (fstatat(in->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

/* statx with the mount id, as a struct stat for the kernel plus that id. */
static int stat_with_mount(int fd, struct stat *st, uint64_t *ret_mnt_id)
{
	struct statx x;

	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_MNT_ID,
		  &x) < 0)
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

static uint64_t allocated_bytes(const struct stat *st)
{
	return (uint64_t)st->st_blocks * 512;
}

static void itab_insert(struct vfs *v, struct inode *in)
{
	size_t b;

	if (v->ninodes >= v->nbuckets * 2) {
		size_t n = v->nbuckets * 4;
		struct inode **nb = calloc(n, sizeof(*nb));

		/* Growing is an optimisation: without memory, chains just get longer. */
		if (nb) {
			struct inode **old = v->buckets;
			size_t oldn = v->nbuckets;

			v->buckets = nb;
			v->nbuckets = n;
			for (size_t i = 0; i < oldn; i++) {
				struct inode *p = old[i], *next;

				for (; p; p = next) {
					next = p->hnext;
					b = bucket_of(v, p->dev, p->ino);
					p->hnext = v->buckets[b];
					v->buckets[b] = p;
				}
			}
			free(old);
		}
	}
	b = bucket_of(v, in->dev, in->ino);
	in->hnext = v->buckets[b];
	v->buckets[b] = in;
	v->ninodes++;
}

static void itab_remove(struct vfs *v, struct inode *in)
{
	struct inode **pp = &v->buckets[bucket_of(v, in->dev, in->ino)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == in) {
			*pp = in->hnext;
			v->ninodes--;
			return;
		}
	}
}

struct inode *inode_find(struct vfs *v, dev_t dev, ino_t ino)
{
	struct inode *in = v->buckets[bucket_of(v, dev, ino)];

	for (; in; in = in->hnext)
		if (in->dev == dev && in->ino == ino)
			return in;
	return NULL;
}

int inode_table_init(struct vfs *v, int root_fd)
{
	struct stat st;
	struct inode *root;
	int r;

	r = stat_with_mount(root_fd, &st, &v->mnt_id);
	if (r < 0)
		return r;
	v->buckets = calloc(INITIAL_BUCKETS, sizeof(*v->buckets));
	root = calloc(1, sizeof(*root));
	if (!v->buckets || !root) {
		free(v->buckets);
		v->buckets = NULL;
		free(root);
		return -ENOMEM;
	}
	v->nbuckets = INITIAL_BUCKETS;
	v->dev = st.st_dev;
	root->fd = root_fd;
	root->dev = st.st_dev;
	root->ino = st.st_ino;
	root->type = S_IFDIR;
	root->nlookup = 1; /* the mount's own reference, never forgotten */
	root->charged_bytes = allocated_bytes(&st);
	v->root = root;
	itab_insert(v, root);
	return 0;
}

void inode_table_fini(struct vfs *v)
{
	for (size_t i = 0; i < v->nbuckets; i++) {
		struct inode *in = v->buckets[i], *next;

		for (; in; in = next) {
			next = in->hnext;
			close(in->fd);
			free(in);
		}
	}
	free(v->buckets);
	v->buckets = NULL;
	v->root = NULL;
	v->ninodes = 0;
}

struct inode *inode_of(struct vfs *v, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return v->root;
	return (struct inode *)(uintptr_t)ino;
}

fuse_ino_t inode_nodeid(struct vfs *v, struct inode *in)
{
	return in == v->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)in;
}

void inode_settle(struct vfs *v, struct inode *in, const struct stat *st)
{
	uint64_t now = allocated_bytes(st);

	if (now != in->charged_bytes) {
		quota_charge_bytes(v->quota, (int64_t)(now - in->charged_bytes));
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

/*
 * Gives an object's space and inode back as soon as nothing can reach it any
 * more: no link left and no handle open. Our O_PATH fd still pins it until
 * the kernel forgets the node, but that is bookkeeping, not something a pod
 * can use, so the quota does not wait for it.
 */
static void inode_release_if_orphan(struct vfs *v, struct inode *in)
{
	struct stat st;

	if (in->uncounted || in->opens || in == v->root)
		return;
	if (inode_stat(in, &st) < 0 || st.st_nlink != 0)
		return;
	quota_charge_bytes(v->quota, -(int64_t)in->charged_bytes);
	quota_charge_inodes(v->quota, -1);
	in->charged_bytes = 0;
	in->uncounted = true;
}

void inode_unlinked(struct vfs *v, const struct stat *before)
{
	struct inode *in = inode_find(v, before->st_dev, before->st_ino);

	if (in) {
		inode_release_if_orphan(v, in);
		return;
	}
	if (S_ISDIR(before->st_mode) || before->st_nlink <= 1) {
		quota_charge_bytes(v->quota, -(int64_t)allocated_bytes(before));
		quota_charge_inodes(v->quota, -1);
	}
}

static void inode_destroy(struct vfs *v, struct inode *in)
{
	itab_remove(v, in);
	inode_release_if_orphan(v, in);
	close(in->fd);
	free(in);
}

static void inode_maybe_destroy(struct vfs *v, struct inode *in)
{
	if (in != v->root && in->nlookup == 0 && in->opens == 0)
		inode_destroy(v, in);
}

void inode_forget(struct vfs *v, struct inode *in, uint64_t nlookup)
{
	in->nlookup = nlookup > in->nlookup ? 0 : in->nlookup - nlookup;
	inode_maybe_destroy(v, in);
}

void inode_unmake(struct vfs *v, struct inode *parent, const char *name, struct inode *in)
{
	struct stat st;

	/*
	 * A volume's requests run one at a time on its loop thread, so the
	 * name is still the object this request made. Without a fd to spare
	 * (the usual reason to get here), fstatat() and unlinkat() still work.
	 */
	if (fstatat(parent->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		(void)unlinkat(parent->fd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
	/* No link left: the charge inode_lookup() made goes back with the entry. */
	if (in)
		inode_forget(v, in, 1);
	(void)inode_settle_fd(v, parent, parent->fd);
}

void inode_close(struct vfs *v, struct inode *in)
{
	if (in->opens)
		in->opens--;
	/* An unlinked file's space comes back when its last handle closes. */
	inode_release_if_orphan(v, in);
	inode_maybe_destroy(v, in);
}

int inode_lookup(struct vfs *v, struct inode *parent, const char *name, bool created,
		 struct fuse_entry_param *e)
{
	struct inode *in;
	struct stat st;
	uint64_t mnt_id;
	int fd, r;

	memset(e, 0, sizeof(*e));
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		/* The kernel resolves these itself; ".." of the root would leave the volume. */
		return -EINVAL;
	}
	fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = stat_with_mount(fd, &st, &mnt_id);
	if (r < 0)
		goto err;
	if (st.st_dev != v->dev || mnt_id != v->mnt_id) {
		/* A mount planted inside the backing directory (a bind mount too): not ours. */
		r = -EXDEV;
		goto err;
	}
	in = inode_find(v, st.st_dev, st.st_ino);
	if (in) {
		close(fd);
	} else {
		in = calloc(1, sizeof(*in));
		if (!in) {
			r = -ENOMEM;
			goto err;
		}
		in->fd = fd;
		in->dev = st.st_dev;
		in->ino = st.st_ino;
		in->type = st.st_mode & S_IFMT;
		in->charged_bytes = allocated_bytes(&st);
		in->size = (uint64_t)st.st_size;
		itab_insert(v, in);
		if (created)
			quota_charge_bytes(v->quota, (int64_t)in->charged_bytes);
	}
	if (created)
		quota_charge_inodes(v->quota, 1);
	in->nlookup++;
	e->ino = inode_nodeid(v, in);
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
		for (struct inode *in = v->buckets[i]; in; in = in->hnext) {
			struct stat st;

			if (inode_stat(in, &st) < 0 || st.st_nlink == 0) {
				/* Gone from the tree: a walk does not count it, so neither may we. */
				in->charged_bytes = 0;
				in->uncounted = true;
			} else {
				in->charged_bytes = allocated_bytes(&st);
				in->size = (uint64_t)st.st_size;
			}
		}
	}
}
