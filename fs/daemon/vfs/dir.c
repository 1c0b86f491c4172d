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

#include "vfs.h"

struct dir_handle {
	DIR *dp;
	off_t offset;	      /* position of dp, as the kernel last saw it */
	struct dirent *entry; /* read but not yet returned (did not fit) */
	struct inode *inode;
	struct dir_handle *prev, *next; /* in vfs->dirs */
};

static void dir_free(struct vfs *v, struct dir_handle *d)
{
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

static struct dir_handle *dir_of(struct fuse_file_info *fi)
{
	return (struct dir_handle *)(uintptr_t)fi->fh;
}

void dir_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct inode *in = NULL;
	struct dir_handle *d;
	int pathfd, fd;

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
	d->inode = in;
	in->opens++;
	d->next = v->dirs;
	if (v->dirs)
		v->dirs->prev = d;
	v->dirs = d;
	fi->fh = (uintptr_t)d;
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
	struct dir_handle *d = dir_of(fi);
	struct inode *dir = d->inode;
	char *buf, *p;
	size_t rem = size;
	int err = 0;

	(void)ino; /* the handle knows its directory */
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
	struct dir_handle *d = dir_of(fi);

	(void)ino;
	dir_free(v, d);
	fuse_reply_err(req, 0);
}

void dir_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct dir_handle *d = dir_of(fi);
	int fd = dirfd(d->dp), r;

	(void)ino;
	r = datasync ? fdatasync(fd) : fsync(fd);
	fuse_reply_err(req, r < 0 ? errno : 0);
}
