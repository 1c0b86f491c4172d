/*
 * meta.c - metadata requests: lookup, attributes, names, links, xattrs,
 * statfs.
 *
 * Every handler works on O_PATH fds of the inodes involved, borrowed from
 * the fd cache for the length of the request (vfs.h, inode.c), and
 * settles the quota from the backing filesystem's own st_blocks. Creating
 * requests (mknod, mkdir, symlink) reserve their inode first, so a volume at
 * its inode limit refuses the (limit + 1)th object with ENOSPC, and run with
 * the caller's fsuid/fsgid (creds.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "vfs.h"

/* Directories and long symlinks take a block; refuse them on a full volume. */
#define NEW_OBJECT_BLOCKS 1

static struct vfs *req_vfs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

void meta_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/*
	 * Splicing would hand us the request in a pipe: we want it in our own,
	 * offset buffer (uring.c). The writeback cache would accept writes
	 * into the page cache that the quota must refuse later; the kernel's
	 * own clearing of suid/sgid bits is what we rely on (no KILLPRIV).
	 * Without DONT_MASK and POSIX ACLs the kernel applies the caller's
	 * umask to the modes it sends, which is why the daemon runs with
	 * umask 0 (main.c).
	 */
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
			FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_POSIX_ACL |
			FUSE_CAP_DONT_MASK | FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_POSIX_LOCKS);
	conn->want |= conn->capable & (FUSE_CAP_ASYNC_READ | FUSE_CAP_ATOMIC_O_TRUNC |
				       FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ASYNC_DIO |
				       FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO |
				       FUSE_CAP_CACHE_SYMLINKS);
	conn->max_write = 1024 * 1024;
	conn->max_readahead = 1024 * 1024;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

void meta_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vfs *v = req_vfs(req);
	struct inode *dir = inode_of(v, parent);
	struct fuse_entry_param e;
	int r;

	r = dir ? inode_lookup(v, dir, name, false, &e) : -ESTALE;
	if (r == -ENOENT) {
		/* A negative entry, cached like a positive one: saves repeated misses. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = v->entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_entry(req, &e);
}

void meta_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct vfs *v = req_vfs(req);

	inode_forget(v, inode_of(v, ino), nlookup);
	fuse_reply_none(req);
}

void meta_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct vfs *v = req_vfs(req);

	for (size_t i = 0; i < count; i++)
		inode_forget(v, inode_of(v, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

void meta_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = req_vfs(req);
	struct inode *in = inode_of(v, ino);
	struct stat st;
	int r;

	(void)fi;
	r = in ? inode_stat(v, in, &st) : -ESTALE;
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, v->attr_timeout);
}

static int setattr_mode(struct inode *in, int fd, struct handle *h, mode_t mode)
{
	char path[64];

	if (h)
		return fchmod(h->fd, mode) < 0 ? -errno : 0;
	if (in->type == S_IFLNK)
		return -EOPNOTSUPP;
	/* fchmod() refuses O_PATH fds; the /proc link reaches the same object. */
	inode_procpath(fd, path, sizeof(path));
	return chmod(path, mode) < 0 ? -errno : 0;
}

static int setattr_times(int fd, struct handle *h, const struct stat *attr, int to_set)
{
	struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;
	if (h)
		return futimens(h->fd, tv) < 0 ? -errno : 0;
	return utimensat(fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int setattr_size(struct vfs *v, struct inode *in, int path_fd, struct handle *h,
			off_t size)
{
	char path[64];
	int fd, r;

	if (h)
		return file_truncate(v, in, h->fd, size);
	if (in->type != S_IFREG)
		return in->type == S_IFDIR ? -EISDIR : -EINVAL;
	inode_procpath(path_fd, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = file_truncate(v, in, fd, size);
	close(fd);
	return r;
}

void meta_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		  struct fuse_file_info *fi)
{
	struct vfs *v = req_vfs(req);
	struct inode *in = NULL;
	/* Set for ftruncate() and an open with O_TRUNC: the file's own handle. */
	struct handle *h = fi ? file_handle_of(v, fi) : NULL;
	struct stat st;
	int fd, r = 0;

	if (fi && !h) {
		fuse_reply_err(req, EBADF);
		return;
	}
	fd = inode_borrow(v, ino, &in);
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		r = setattr_mode(in, fd, h, attr->st_mode);
		if (r < 0)
			goto out;
	}
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			goto out;
		}
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		r = setattr_size(v, in, fd, h, attr->st_size);
		if (r < 0)
			goto out;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
		      FUSE_SET_ATTR_MTIME_NOW)) {
		r = setattr_times(fd, h, attr, to_set);
		if (r < 0)
			goto out;
	}
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
out:
	inode_fd_put(v, in);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, v->attr_timeout);
}

void meta_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vfs *v = req_vfs(req);
	struct inode *in = NULL;
	char buf[PATH_MAX + 1];
	ssize_t n;
	int fd;

	fd = inode_borrow(v, ino, &in);
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	n = readlinkat(fd, "", buf, sizeof(buf));
	if (n < 0)
		n = -errno;
	inode_fd_put(v, in);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	if ((size_t)n >= sizeof(buf)) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

enum make_kind { MAKE_NODE, MAKE_DIR, MAKE_SYMLINK };

/*
 * The common path of mknod, mkdir and symlink: reserve an inode (and a block
 * where the new object needs one), create it as the caller, look it up, and
 * settle the parent directory, which may have grown.
 */
static void make_object(fuse_req_t req, fuse_ino_t parent_ino, const char *name,
			enum make_kind kind, mode_t mode, const char *target)
{
	struct vfs *v = req_vfs(req);
	struct inode *parent = NULL;
	uint64_t reserved = 0, want = 0;
	struct fuse_entry_param e;
	int pfd, r;

	if (kind == MAKE_NODE && !S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode)) {
		/* Device nodes: a pod must not carry them onto the host's disk. */
		fuse_reply_err(req, EPERM);
		return;
	}
	pfd = inode_borrow(v, parent_ino, &parent);
	if (pfd < 0) {
		fuse_reply_err(req, -pfd);
		return;
	}
	r = quota_reserve_inode(v->quota);
	if (r < 0)
		goto out;
	if (kind == MAKE_DIR || (kind == MAKE_SYMLINK && strlen(target) >= 60))
		want = NEW_OBJECT_BLOCKS * v->block_bytes;
	r = quota_reserve_bytes(v->quota, want, 0, 0, &reserved);
	if (r < 0)
		goto out_inode;

	r = creds_enter(req);
	if (r < 0)
		goto out_bytes;
	switch (kind) {
	case MAKE_NODE:
		r = mknodat(pfd, name, mode, 0) < 0 ? -errno : 0;
		break;
	case MAKE_DIR:
		r = mkdirat(pfd, name, mode) < 0 ? -errno : 0;
		break;
	case MAKE_SYMLINK:
		r = symlinkat(target, pfd, name) < 0 ? -errno : 0;
		break;
	}
	creds_leave();
	if (r < 0)
		goto out_bytes;

	r = inode_lookup(v, parent, name, true, &e);
	if (r < 0) {
		inode_unmake(v, parent, name, NULL);
	} else {
		(void)inode_settle_fd(v, parent, pfd);
		recount_name_made(v, pfd, name);
	}
out_bytes:
	quota_release_bytes(v->quota, reserved);
out_inode:
	quota_release_inode(v->quota);
out:
	inode_fd_put(v, parent);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_entry(req, &e);
}

void meta_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)rdev;
	make_object(req, parent, name, MAKE_NODE, mode, NULL);
}

void meta_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_object(req, parent, name, MAKE_DIR, mode, NULL);
}

void meta_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	make_object(req, parent, name, MAKE_SYMLINK, 0, link);
}

/* Two nodes' fds borrowed together (the same node twice is fine). */
struct borrowed_pair {
	struct inode *a, *b;
	int fd_a, fd_b;
};

/* Borrows both or, returning -errno, neither. */
static int borrow_pair(struct vfs *v, fuse_ino_t a, fuse_ino_t b, struct borrowed_pair *ret)
{
	ret->fd_a = inode_borrow(v, a, &ret->a);
	if (ret->fd_a < 0)
		return ret->fd_a;
	ret->fd_b = inode_borrow(v, b, &ret->b);
	if (ret->fd_b < 0) {
		inode_fd_put(v, ret->a);
		return ret->fd_b;
	}
	return 0;
}

static void put_pair(struct vfs *v, struct borrowed_pair *p)
{
	inode_fd_put(v, p->b);
	inode_fd_put(v, p->a);
}

void meta_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct vfs *v = req_vfs(req);
	struct borrowed_pair p;
	struct fuse_entry_param e;
	int r;

	r = borrow_pair(v, ino, newparent, &p);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	/* A hard link costs no inode: it is the same object under a second name. */
	if (linkat(p.fd_a, "", p.fd_b, newname, AT_EMPTY_PATH) < 0) {
		r = -errno;
		goto out;
	}
	r = inode_lookup(v, p.b, newname, false, &e);
	if (r < 0) {
		inode_unmake(v, p.b, newname, NULL);
	} else {
		(void)inode_settle_fd(v, p.b, p.fd_b);
		recount_name_made(v, p.fd_b, newname);
	}
out:
	put_pair(v, &p);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_entry(req, &e);
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent_ino, const char *name, int flags)
{
	struct vfs *v = req_vfs(req);
	struct inode *parent = NULL;
	struct inode_key key;
	struct stat before;
	int pfd, r = 0;

	pfd = inode_borrow(v, parent_ino, &parent);
	if (pfd < 0) {
		fuse_reply_err(req, -pfd);
		return;
	}
	if (fstatat(pfd, name, &before, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		goto out;
	}
	/* Which tracked object loses the link, known before the name is gone. */
	r = inode_key_at(pfd, name, &key);
	if (r < 0)
		goto out;
	if (unlinkat(pfd, name, flags) < 0) {
		r = -errno;
		goto out;
	}
	inode_unlinked(v, &before, &key);
	(void)inode_settle_fd(v, parent, pfd);
out:
	inode_fd_put(v, parent);
	fuse_reply_err(req, -r);
}

void meta_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, 0);
}

void meta_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, AT_REMOVEDIR);
}

void meta_rename(fuse_req_t req, fuse_ino_t parent_ino, const char *name, fuse_ino_t newparent_ino,
		 const char *newname, unsigned int flags)
{
	struct vfs *v = req_vfs(req);
	struct borrowed_pair p;
	struct inode_key victim_key;
	struct stat victim;
	bool replaced = false;
	int pfd, npfd, r;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	r = borrow_pair(v, parent_ino, newparent_ino, &p);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	pfd = p.fd_a;
	npfd = p.fd_b;
	if (!(flags & RENAME_EXCHANGE) &&
	    fstatat(npfd, newname, &victim, AT_SYMLINK_NOFOLLOW) == 0) {
		r = inode_key_at(npfd, newname, &victim_key);
		if (r < 0)
			goto out;
		replaced = true;
	}
	if (renameat2(pfd, name, npfd, newname, flags) < 0) {
		r = -errno;
		goto out;
	}
	if (replaced) {
		struct stat now;

		/* The name may have pointed at the renamed object itself (a no-op rename). */
		if (fstatat(npfd, newname, &now, AT_SYMLINK_NOFOLLOW) != 0 ||
		    now.st_ino != victim.st_ino || now.st_dev != victim.st_dev)
			inode_unlinked(v, &victim, &victim_key);
	}
	(void)inode_settle_fd(v, p.a, pfd);
	if (p.b != p.a)
		(void)inode_settle_fd(v, p.b, npfd);
	/* Moved into a directory a recount listed already, it is counted now. */
	recount_name_made(v, npfd, newname);
	if (flags & RENAME_EXCHANGE)
		recount_name_made(v, pfd, name);
out:
	put_pair(v, &p);
	fuse_reply_err(req, -r);
}

void meta_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vfs *v = req_vfs(req);
	struct quota_usage u;
	struct statvfs backing, st = { 0 };
	uint64_t free_bytes;

	(void)ino;
	quota_get(v->quota, &u);
	if (fstatvfs(v->root->fd, &backing) < 0)
		memset(&backing, 0, sizeof(backing));
	free_bytes = u.used_bytes + u.reserved_bytes >= u.capacity_bytes ?
			     0 : u.capacity_bytes - u.used_bytes - u.reserved_bytes;
	st.f_bsize = v->block_bytes;
	st.f_frsize = v->block_bytes;
	st.f_blocks = u.capacity_bytes / v->block_bytes;
	st.f_bfree = free_bytes / v->block_bytes;
	st.f_bavail = st.f_bfree;
	if (u.inode_limit) {
		st.f_files = u.inode_limit;
		st.f_ffree = u.used_inodes >= u.inode_limit ? 0 : u.inode_limit - u.used_inodes;
	} else {
		/* Unlimited: the backing filesystem's own figures are the real bound. */
		st.f_files = backing.f_files;
		st.f_ffree = backing.f_ffree;
	}
	st.f_favail = st.f_ffree;
	st.f_namemax = backing.f_namemax ? backing.f_namemax : 255;
	fuse_reply_statfs(req, &st);
}

/*
 * Extended attributes in the user and security namespaces only: trusted.*
 * and system.* mean something to the host (overlayfs, ACLs) and file
 * capabilities (security.capability) would travel with the file onto the
 * host's disk, so none of those may be set from inside a volume.
 */
static int xattr_allowed(const char *name, bool for_write)
{
	if (strncmp(name, "user.", 5) == 0)
		return 0;
	if (strncmp(name, "security.", 9) == 0) {
		if (for_write && strcmp(name, "security.capability") == 0)
			return -EPERM;
		return 0;
	}
	return -EOPNOTSUPP;
}

/*
 * Borrows the fd of @ino and puts the /proc link reaching its object into
 * @buf; the caller puts *ret_in back. Symlinks and nodes carry no user xattrs.
 */
static int xattr_path(struct vfs *v, fuse_ino_t ino, char *buf, size_t len,
		      struct inode **ret_in)
{
	struct inode *in = inode_of(v, ino);
	int fd;

	if (!in)
		return -ESTALE;
	if (in->type != S_IFREG && in->type != S_IFDIR)
		return -EPERM;
	fd = inode_fd_get(v, in);
	if (fd < 0)
		return fd;
	inode_procpath(fd, buf, len);
	*ret_in = in;
	return 0;
}

/* The path to change @name of @ino through, if that name may be changed; as xattr_path(). */
static int xattr_target(struct vfs *v, fuse_ino_t ino, const char *name, bool for_write,
			char *path, size_t len, struct inode **ret_in)
{
	int r = xattr_allowed(name, for_write);

	if (r == 0)
		r = xattr_path(v, ino, path, len, ret_in);
	return r;
}

void meta_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		   size_t size, int flags)
{
	struct vfs *v = req_vfs(req);
	struct inode *in = NULL;
	char path[64];
	int r;

	r = xattr_target(v, ino, name, true, path, sizeof(path), &in);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (setxattr(path, name, value, size, flags) < 0)
		r = -errno;
	inode_fd_put(v, in);
	fuse_reply_err(req, -r);
}

void meta_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct vfs *v = req_vfs(req);
	struct inode *in = NULL;
	char path[64];
	char *buf = NULL;
	ssize_t n;
	int r;

	r = xattr_target(v, ino, name, false, path, sizeof(path), &in);
	if (r < 0) {
		fuse_reply_err(req, r == -EOPNOTSUPP || r == -EPERM ? ENODATA : -r);
		return;
	}
	if (size == 0) {
		n = getxattr(path, name, NULL, 0);
		if (n < 0)
			fuse_reply_err(req, errno);
		else
			fuse_reply_xattr(req, (size_t)n);
		goto out;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		goto out;
	}
	n = getxattr(path, name, buf, size);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
out:
	inode_fd_put(v, in);
}

void meta_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct vfs *v = req_vfs(req);
	struct inode *in = NULL;
	char path[64];
	char *all = NULL, *out = NULL;
	ssize_t n;
	size_t used = 0;
	int r;

	r = xattr_path(v, ino, path, sizeof(path), &in);
	if (r == -EPERM) {
		if (size == 0)
			fuse_reply_xattr(req, 0);
		else
			fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	n = listxattr(path, NULL, 0);
	if (n < 0) {
		fuse_reply_err(req, errno);
		goto out;
	}
	all = malloc((size_t)n + 1);
	out = malloc((size_t)n + 1);
	if (!all || !out) {
		fuse_reply_err(req, ENOMEM);
		goto out;
	}
	n = listxattr(path, all, (size_t)n);
	if (n < 0) {
		fuse_reply_err(req, errno);
		goto out;
	}
	/* Show only the names a pod could have set or may read. */
	for (ssize_t i = 0; i < n;) {
		size_t len = strlen(all + i) + 1;

		if (xattr_allowed(all + i, false) == 0) {
			memcpy(out + used, all + i, len);
			used += len;
		}
		i += (ssize_t)len;
	}
	if (size == 0)
		fuse_reply_xattr(req, used);
	else if (used > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, out, used);
out:
	free(all);
	free(out);
	inode_fd_put(v, in);
}

void meta_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct vfs *v = req_vfs(req);
	struct inode *in = NULL;
	char path[64];
	int r;

	r = xattr_target(v, ino, name, true, path, sizeof(path), &in);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (removexattr(path, name) < 0)
		r = -errno;
	inode_fd_put(v, in);
	fuse_reply_err(req, -r);
}
