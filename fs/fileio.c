/*
 * fileio.c - bounded whole-file reads; see include/fileio.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
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
