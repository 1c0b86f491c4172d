/*
 * dir.c - directory handles: opendir, readdir(plus), releasedir, fsyncdir.
 *
 * A handle owns a real directory fd, opened from the inode's (borrowed) O_PATH fd, and
 * a DIR stream over it; offsets are the backing filesystem's telldir cookies,
 * which is what lets a kernel resume a listing at any entry.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fhmap.h"
#include "vfs.h"

struct dir_handle {
	DIR *dp;
	off_t offset;	      /* position of dp, as the kernel last saw it */
	struct dirent *entry; /* read but not yet returned (did not fit) */
	struct inode *inode;
	uint64_t fh; /* the kernel's name for it, in vfs->dir_fhs */
	uint32_t cs_slot; /* its record in the crash state (CS_SLOT_NONE: none) */
	uint64_t restored_unique; /* restored: the request that opened it (0: unknown, or not) */
	struct dir_handle *prev, *next; /* in vfs->dirs */
};

static void dir_free(struct vfs *v, struct dir_handle *d)
{
	record_release(v, &d->cs_slot);
	(void)fhmap_remove(v->dir_fhs, d->fh);
	if (d->prev)
		d->prev->next = d->next;
	else
		v->dirs = d->next;
	if (d->next)
		d->next->prev = d->prev;
	closedir(d->dp);
	inode_close(v, d->inode);
	free(d);
}

void dir_close_all(struct vfs *v)
{
	while (v->dirs)
		dir_free(v, v->dirs);
}

/* Files an open handle of @in in v->dirs. */
static void dir_link(struct vfs *v, struct dir_handle *d, struct inode *in)
{
	d->cs_slot = CS_SLOT_NONE;
	d->inode = in;
	in->opens++;
	d->next = v->dirs;
	if (v->dirs)
		v->dirs->prev = d;
	v->dirs = d;
}

size_t dir_count(struct vfs *v)
{
	return fhmap_count(v->dir_fhs);
}

int dir_for_each(struct vfs *v, int (*fn)(void *arg, uint64_t fh, struct inode *in, int fd),
		 void *arg)
{
	for (struct dir_handle *d = v->dirs; d; d = d->next) {
		int r = fn(arg, d->fh, d->inode, dirfd(d->dp));

		if (r < 0)
			return r;
	}
	return 0;
}

int dir_adopt(struct vfs *v, uint64_t fh, struct inode *in, int fd)
{
	struct dir_handle *d = calloc(1, sizeof(*d));
	int r;

	if (!d)
		return -ENOMEM;
	r = fhmap_put_at(v->dir_fhs, fh, d);
	if (r < 0) {
		free(d);
		return r;
	}
	/* Owns @fd from here on; the caller keeps it on failure. */
	d->dp = fdopendir(fd);
	if (!d->dp) {
		r = -errno;
		(void)fhmap_remove(v->dir_fhs, fh);
		free(d);
		return r;
	}
	d->fh = fh;
	/*
	 * The stream's buffer stayed with the predecessor: an offset no
	 * listing has makes the next readdir seek to where the kernel is.
	 */
	d->offset = -1;
	dir_link(v, d, in);
	return 0;
}

int dir_record(struct vfs *v, uint64_t fh, struct inode *in)
{
	struct dir_handle *d = fhmap_get(v->dir_fhs, fh);

	if (!d)
		return -ENOENT;
	return record_open_put(v, true, fh, in, 0, 0, &d->cs_slot);
}

int dir_restore(struct vfs *v, uint64_t fh, struct inode *in, uint64_t unique, uint32_t slot)
{
	struct dir_handle *d;
	int pathfd, fd, r;

	if (fh == 0 || in->type != S_IFDIR)
		return -EINVAL;
	pathfd = inode_fd_get(v, in);
	if (pathfd < 0)
		return pathfd;
	fd = openat(pathfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	inode_fd_put(v, in);
	if (fd < 0)
		return fd;
	r = dir_adopt(v, fh, in, fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	d = fhmap_get(v->dir_fhs, fh);
	d->cs_slot = slot;
	d->restored_unique = unique;
	return 0;
}

void dir_drop_unanswered(struct vfs *v, uint64_t unique)
{
	struct dir_handle *d = v->dirs, *next;

	for (; d; d = next) {
		next = d->next;
		if (unique && d->restored_unique == unique)
			dir_free(v, d);
	}
}

static struct dir_handle *dir_of(struct vfs *v, struct fuse_file_info *fi)
{
	return fhmap_get(v->dir_fhs, fi->fh);
}

void dir_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct inode *in = NULL;
	struct dir_handle *d;
	int pathfd, fd, r;

	d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pathfd = inode_borrow(v, ino, &in);
	if (pathfd < 0) {
		fuse_reply_err(req, -pathfd);
		free(d);
		return;
	}
	fd = openat(pathfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	inode_fd_put(v, in);
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		free(d);
		return;
	}
	d->dp = fdopendir(fd);
	if (!d->dp) {
		fuse_reply_err(req, errno);
		close(fd);
		free(d);
		return;
	}
	if (fhmap_put(v->dir_fhs, d, &d->fh) < 0) {
		fuse_reply_err(req, ENOMEM);
		closedir(d->dp);
		free(d);
		return;
	}
	dir_link(v, d, in);
	r = record_open_put(v, true, d->fh, in, 0, v->rq_unique, &d->cs_slot);
	if (r < 0) {
		fuse_reply_err(req, -r);
		dir_free(v, d);
		return;
	}
	fi->fh = d->fh;
	fi->cache_readdir = 1;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* The opener was interrupted; nobody will release this handle. */
		dir_free(v, d);
	}
}

static bool is_dot(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct vfs *v = fuse_req_userdata(req);
	struct dir_handle *d = dir_of(v, fi);
	struct inode *dir = d ? d->inode : NULL;
	char *buf, *p;
	size_t rem = size;
	int err = 0;

	(void)ino; /* the handle knows its directory */
	if (!d) {
		fuse_reply_err(req, EBADF);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off != d->offset) {
		seekdir(d->dp, off);
		d->entry = NULL;
		d->offset = off;
	}
	p = buf;
	for (;;) {
		struct fuse_entry_param e = { 0 };
		size_t n;
		off_t next;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno; /* 0 at the end of the directory */
				break;
			}
		}
		next = d->entry->d_off;
		if (plus) {
			if (is_dot(d->entry->d_name)) {
				/* No lookup (and no reference) for "." and "..": only the type. */
				e.attr.st_ino = d->entry->d_ino;
				e.attr.st_mode = (mode_t)d->entry->d_type << 12;
			} else {
				int r = inode_lookup(v, dir, d->entry->d_name, false, &e);

				if (r < 0) {
					/* Vanished since readdir, or not ours: skip it. */
					d->entry = NULL;
					d->offset = next;
					continue;
				}
			}
			n = fuse_add_direntry_plus(req, p, rem, d->entry->d_name, &e, next);
			if (n > rem) {
				if (!is_dot(d->entry->d_name))
					inode_forget(v, inode_of(v, e.ino), 1);
				break;
			}
		} else {
			struct stat st = { .st_ino = d->entry->d_ino,
					   .st_mode = (mode_t)d->entry->d_type << 12 };

			n = fuse_add_direntry(req, p, rem, d->entry->d_name, &st, next);
			if (n > rem)
				break;
		}
		p += n;
		rem -= n;
		d->entry = NULL;
		d->offset = next;
	}
	/* An error after some entries is reported on the next call, as readdir(3) would. */
	if (err && rem == size)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

void dir_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

void dir_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

void dir_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct dir_handle *d = dir_of(v, fi);

	(void)ino;
	if (!d) {
		fuse_reply_err(req, EBADF);
		return;
	}
	dir_free(v, d);
	fuse_reply_err(req, 0);
}

void dir_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct dir_handle *d = dir_of(v, fi);
	int r;

	(void)ino;
	if (!d) {
		fuse_reply_err(req, EBADF);
		return;
	}
	r = datasync ? fdatasync(dirfd(d->dp)) : fsync(dirfd(d->dp));
	fuse_reply_err(req, r < 0 ? errno : 0);
}
