/*
 * wire.c - the control socket protocol, client side; see include/wire.h.
 *
 * The client never blocks in the kernel: every send and receive is
 * non-blocking and waits in poll() for what is left of one deadline, so a
 * daemon that stops reading or never answers cannot hang carvectl or the
 * provisioner past @timeout_ms.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"
#include "clock.h"

const char *wire_code_for_errno(int r)
{
	switch (r) {
	case -EINVAL:
		return WIRE_E_INVALID;
	case -ENOENT:
		return WIRE_E_NOT_FOUND;
	case -EEXIST:
		return WIRE_E_EXISTS;
	case -EBUSY:
		return WIRE_E_BUSY;
	case -ENOSPC:
		return WIRE_E_NO_SPACE;
	case -EPERM:
	case -EACCES:
		return WIRE_E_PERMISSION;
	default:
		return WIRE_E_INTERNAL;
	}
}

int wire_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	int fd, r;

	if (len == 0)
		return -EINVAL;
	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int wire_wait_fd(int fd, short events, uint64_t deadline_ns)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	uint64_t now, left_ms;
	int timeout, n;

	for (;;) {
		if (deadline_ns == UINT64_MAX) {
			timeout = -1;
		} else {
			now = clock_now_ns();
			if (now >= deadline_ns)
				return -ETIMEDOUT;
			left_ms = (deadline_ns - now + 999999) / 1000000;
			timeout = left_ms > INT32_MAX ? INT32_MAX : (int)left_ms;
		}
		n = poll(&pfd, 1, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		/* POLLHUP and POLLERR too: the next send or recv reports them. */
		if (n > 0)
			return 0;
	}
}

int wire_send_all(int fd, const void *data, size_t len, uint64_t deadline_ns)
{
	const char *buf = data;
	ssize_t n;
	int r;

	while (len > 0) {
		/* MSG_NOSIGNAL: a daemon that went away is -EPIPE, not SIGPIPE. */
		n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			r = wire_wait_fd(fd, POLLOUT, deadline_ns);
			if (r < 0)
				return r;
			continue;
		}
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Reads one line into a malloc'd string without its newline. Peeks first and
 * takes no byte past the newline, so a reply that arrives with the next one
 * leaves that one in the socket for the next call.
 */
static int recv_line(int fd, uint64_t deadline_ns, char **ret_line)
{
	size_t len = 0, cap = WIRE_LINE_MAX, take;
	char *buf, *nl;
	ssize_t n;
	int r;

	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len == cap) {
			char *bigger;

			/* Most replies are short: grow only for long lists. */
			if (cap == WIRE_REPLY_MAX) {
				r = -EMSGSIZE;
				goto out;
			}
			cap = cap * 4 > WIRE_REPLY_MAX ? WIRE_REPLY_MAX : cap * 4;
			bigger = realloc(buf, cap);
			if (!bigger) {
				r = -ENOMEM;
				goto out;
			}
			buf = bigger;
		}
		n = recv(fd, buf + len, cap - len, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			r = wire_wait_fd(fd, POLLIN, deadline_ns);
			if (r < 0)
				goto out;
			continue;
		}
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0) {
			r = -EPROTO;
			goto out;
		}
		nl = memchr(buf + len, '\n', (size_t)n);
		take = nl ? (size_t)(nl - (buf + len)) + 1 : (size_t)n;
		/* What was peeked is queued: this cannot block or come up short. */
		n = recv(fd, buf + len, take, MSG_DONTWAIT);
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if ((size_t)n != take) {
			r = -EPROTO;
			goto out;
		}
		len += take;
		if (nl)
			break;
	}
	buf[len - 1] = '\0';
	*ret_line = buf;
	buf = NULL;
	r = 0;
out:
	free(buf);
	return r;
}

/*
 * A line, newline included, is at most WIRE_LINE_MAX bytes, in both
 * directions. A request must not contain a newline: it would reach the
 * daemon as two requests. A negative @timeout_ms waits forever, as poll()
 * does. After -ETIMEDOUT or -EMSGSIZE the rest of a reply may still be on
 * its way, so the connection is only fit to be closed.
 */
int wire_call(int fd, const char *request, int timeout_ms, char **ret_reply)
{
	uint64_t deadline_ns =
		timeout_ms < 0 ? UINT64_MAX : clock_now_ns() + (uint64_t)timeout_ms * 1000000;
	size_t len = strlen(request);
	int r, r_send;

	if (memchr(request, '\n', len))
		return -EINVAL;
	if (len + 1 > WIRE_LINE_MAX)
		return -EMSGSIZE;
	r_send = wire_send_all(fd, request, len, deadline_ns);
	if (r_send == 0)
		r_send = wire_send_all(fd, "\n", 1, deadline_ns);
	/*
	 * A daemon that refuses a client (permission_denied) answers and
	 * closes without reading; its answer is still worth more than -EPIPE.
	 */
	if (r_send < 0 && r_send != -EPIPE && r_send != -ECONNRESET)
		return r_send;
	r = recv_line(fd, deadline_ns, ret_reply);
	if (r == -EPROTO && r_send < 0)
		return r_send;
	return r;
}
