/*
 * fdmsg.c - typed messages with fds over a unix stream socket; see fdmsg.h.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdmsg.h"

struct fdmsg_header {
	uint32_t magic;
	uint32_t type;
	uint64_t len;
	uint32_t nfds;
	uint32_t pad;
};

/* Waits until @fd is ready for @events, at most @timeout_ms: 0 or -ETIMEDOUT. */
static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

static int write_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			int r = wait_fd(fd, POLLOUT, timeout_ms);

			if (r < 0)
				return r;
			continue;
		}
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly @len bytes; -ECONNRESET if the peer closed before the first. */
static int read_all(int fd, void *buf, size_t len, int timeout_ms)
{
	char *p = buf;

	while (len) {
		ssize_t n;
		int r = wait_fd(fd, POLLIN, timeout_ms);

		if (r < 0)
			return r;
		n = recv(fd, p, len, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return p == (char *)buf ? -ECONNRESET : -EPROTO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fdmsg_send(int sock, uint32_t magic, uint32_t type, const struct iovec *parts,
	       size_t nparts, const int *fds, size_t nfds, int timeout_ms)
{
	struct fdmsg_header h = { .magic = magic, .type = type, .nfds = (uint32_t)nfds };
	union {
		char buf[CMSG_SPACE(sizeof(int) * FDMSG_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;
	int r;

	if (nfds > FDMSG_FDS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < nparts; i++)
		h.len += parts[i].iov_len;
	if (nfds) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	for (;;) {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		r = wait_fd(sock, POLLOUT, timeout_ms);
		if (r < 0)
			return r;
	}
	/* The fds went with the first byte; the rest of the header follows plainly. */
	if ((size_t)n < sizeof(h)) {
		r = write_all(sock, (char *)&h + n, sizeof(h) - (size_t)n, timeout_ms);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < nparts; i++) {
		r = write_all(sock, parts[i].iov_base, parts[i].iov_len, timeout_ms);
		if (r < 0)
			return r;
	}
	return 0;
}

int fdmsg_recv(int sock, uint32_t magic, size_t len_max, int timeout_ms, struct fdmsg *ret_msg)
{
	struct fdmsg m = { 0 };
	struct fdmsg_header h;
	union {
		char buf[CMSG_SPACE(sizeof(int) * FDMSG_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	ssize_t n;
	int r;

	for (;;) {
		r = wait_fd(sock, POLLIN, timeout_ms);
		if (r < 0)
			return r;
		n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= 0)
			break;
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
	}
	if (n == 0)
		return -ECONNRESET;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (m.nfds < FDMSG_FDS_MAX)
				m.fds[m.nfds++] = fd;
			else
				close(fd);
		}
	}
	if ((mh.msg_flags & MSG_CTRUNC)) {
		r = -EPROTO;
		goto err;
	}
	if ((size_t)n < sizeof(h)) {
		r = read_all(sock, (char *)&h + n, sizeof(h) - (size_t)n, timeout_ms);
		if (r < 0)
			goto err;
	}
	if (h.magic != magic || h.len > len_max || h.nfds != m.nfds) {
		r = -EPROTO;
		goto err;
	}
	m.type = h.type;
	m.len = (size_t)h.len;
	if (m.len) {
		m.payload = malloc(m.len + 1);
		if (!m.payload) {
			r = -ENOMEM;
			goto err;
		}
		r = read_all(sock, m.payload, m.len, timeout_ms);
		if (r < 0)
			goto err;
		m.payload[m.len] = '\0';
	}
	*ret_msg = m;
	return 0;
err:
	if (r == -ECONNRESET)
		r = -EPROTO; /* the header had begun */
	fdmsg_clear(&m);
	return r;
}

void fdmsg_clear(struct fdmsg *m)
{
	for (size_t i = 0; i < m->nfds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	free(m->payload);
	memset(m, 0, sizeof(*m));
}
