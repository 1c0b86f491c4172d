/*
 * fileio.c - bounded whole-file reads, atomic replacement, mkdir -p; see
 * include/fileio.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

int fileio_read(int dirfd, const char *name, bool follow, size_t max_bytes, char **ret_buf,
		size_t *ret_len)
{
	char *buf = NULL, *bigger;
	size_t len = 0, cap;
	struct stat st;
	ssize_t n;
	int fd, r;

	fd = openat(dirfd, name,
		    O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -ENOTSUP;
		goto out;
	}
	if ((size_t)st.st_size > max_bytes) {
		r = -EFBIG;
		goto out;
	}
	/* One byte more than the size, to see the end without another round. */
	cap = (size_t)st.st_size + 1;
	buf = malloc(cap);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		/* The file may have grown since fstat(); the NUL needs a byte too. */
		if (len + 1 >= cap) {
			if (cap > max_bytes + 1) {
				r = -EFBIG;
				goto out;
			}
			cap *= 2;
			bigger = realloc(buf, cap);
			if (!bigger) {
				r = -ENOMEM;
				goto out;
			}
			buf = bigger;
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max_bytes) {
		r = -EFBIG;
		goto out;
	}
	buf[len] = '\0';
	*ret_buf = buf;
	*ret_len = len;
	buf = NULL;
	r = 0;
out:
	free(buf);
	close(fd);
	return r;
}

void fileio_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int fileio_list_names(int dirfd, size_t max_names, char ***ret_names, size_t *ret_n)
{
	char **names = NULL, **grown;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int fd, r = 0;
	DIR *d;

	/* A fresh open: its own offset, and readable even when @dirfd is O_PATH. */
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	while ((errno = 0, de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (max_names && n == max_names) {
			r = -E2BIG;
			goto out;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(names, cap * sizeof(*names));
			if (!grown) {
				r = -ENOMEM;
				goto out;
			}
			names = grown;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			r = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (errno)
		r = -errno;
out:
	closedir(d);
	if (r < 0) {
		fileio_names_free(names, n);
		return r;
	}
	*ret_names = names;
	*ret_n = n;
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		/* A regular file that takes nothing would make this loop forever. */
		if (n == 0)
			return -EIO;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int fileio_write_tmp(int dirfd, const char *tmp_name, const void *buf, size_t len, mode_t mode)
{
	int fd, r;

	if (unlinkat(dirfd, tmp_name, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(dirfd, tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	r = write_all(fd, buf, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	/* close() can report a delayed write error (NFS): it counts. */
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0)
		(void)unlinkat(dirfd, tmp_name, 0);
	return r;
}

/* rename(RENAME_NOREPLACE) where renameat2() is refused: link() never replaces. */
static int rename_noreplace(int dirfd, const char *from, const char *to)
{
	if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (linkat(dirfd, from, dirfd, to, 0) < 0)
		return -errno;
	(void)unlinkat(dirfd, from, 0);
	return 0;
}

int fileio_commit(int dirfd, const char *tmp_name, const char *name, unsigned rename_flags)
{
	int dfd, r;

	if (rename_flags & ~(unsigned)RENAME_NOREPLACE)
		return -EINVAL;
	/* Opened first: an fd for the fsync must not fail after the rename. */
	dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (rename_flags & RENAME_NOREPLACE)
		r = rename_noreplace(dirfd, tmp_name, name);
	else
		r = renameat(dirfd, tmp_name, dirfd, name) < 0 ? -errno : 0;
	if (r < 0) {
		(void)unlinkat(dirfd, tmp_name, 0);
		goto out;
	}
	r = fsync(dfd) < 0 ? -errno : 0;
out:
	close(dfd);
	return r;
}

/* mkdir() that accepts an existing directory, and only a directory. */
static int mkdir_one(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int fileio_mkdir_p(const char *path, mode_t mode)
{
	char *buf;
	size_t len;
	int r = 0;

	if (!path || path[0] == '\0')
		return -EINVAL;
	buf = strdup(path);
	if (!buf)
		return -ENOMEM;
	/* "a/b/" and "a/b" are the same directory. */
	for (len = strlen(buf); len > 1 && buf[len - 1] == '/'; len--)
		buf[len - 1] = '\0';
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		r = mkdir_one(buf, 0755);
		*p = '/';
		if (r < 0)
			goto out;
	}
	r = mkdir_one(buf, mode);
out:
	free(buf);
	return r;
}
