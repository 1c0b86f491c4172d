/*
 * fdmsg.h - typed messages with fds over a unix stream socket.
 *
 * A message is a fixed header {magic, type, payload length, fd count}, then
 * the payload. Its fds (SCM_RIGHTS) ride on the header's first byte, at most
 * FDMSG_FDS_MAX of them. The magic tells the protocol apart, so that a peer
 * speaking another protocol on the socket is refused rather than misread.
 * Library module: never logs.
 */
#ifndef CARVEFS_FDMSG_H
#define CARVEFS_FDMSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* SCM_MAX_FD (253) in the kernel: more fds in one message fail with EINVAL. */
#define FDMSG_FDS_MAX 253

struct fdmsg {
	uint32_t type;
	char *payload; /* malloc'd, NUL-terminated beyond len; NULL when len is 0 */
	size_t len;
	int fds[FDMSG_FDS_MAX];
	size_t nfds;
};

/*
 * Sends one message whose payload is the @nparts buffers of @parts, one
 * after the other; @fds are not closed. Waits at most @timeout_ms for room
 * in the socket. Returns 0 or -errno (-ETIMEDOUT, -EPIPE, ...).
 */
int fdmsg_send(int sock, uint32_t magic, uint32_t type, const struct iovec *parts,
	       size_t nparts, const int *fds, size_t nfds, int timeout_ms);
/*
 * Receives one message of at most @len_max payload bytes into *ret_msg
 * (fds O_CLOEXEC, owned by the message), waiting at most @timeout_ms for
 * each part (-1: for ever). Returns 0, -ECONNRESET when the peer closed
 * before a message, -EPROTO for a wrong magic or length, or -errno.
 */
int fdmsg_recv(int sock, uint32_t magic, size_t len_max, int timeout_ms, struct fdmsg *ret_msg);
/* Closes the fds still in @m (those not set to -1) and frees its payload. */
void fdmsg_clear(struct fdmsg *m);

#endif
