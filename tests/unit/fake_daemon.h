/*
 * fake_daemon.h - a one-connection stand-in for the carvefs daemon's control
 * socket, for the unit tests of its clients (ctlclient, the cleaner).
 *
 * fake_daemon_start() listens on @sock and serves one connection in a
 * thread: it reads one request line into f->request, waits f->hold_ms,
 * answers f->reply (NULL: hangs up without a word) and closes.
 * fake_daemon_stop() waits for that and closes the socket. Include after
 * <cmocka.h>.
 */
#ifndef CARVEFS_TEST_FAKE_DAEMON_H
#define CARVEFS_TEST_FAKE_DAEMON_H

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct fake_daemon {
	const char *reply;
	int hold_ms;
	char request[512];
	int listen_fd;
	pthread_t thread;
};

static void *fake_daemon_serve(void *arg)
{
	struct fake_daemon *f = arg;
	size_t n = 0;
	int c;

	c = accept(f->listen_fd, NULL, NULL);
	if (c < 0)
		return NULL;
	while (n < sizeof(f->request) - 1) {
		ssize_t k = read(c, f->request + n, 1);

		if (k <= 0 || f->request[n] == '\n')
			break;
		n++;
	}
	f->request[n] = '\0';
	if (f->hold_ms)
		usleep((useconds_t)f->hold_ms * 1000);
	/* The client may have given up and gone: no SIGPIPE for that. */
	if (f->reply)
		(void)send(c, f->reply, strlen(f->reply), MSG_NOSIGNAL);
	close(c);
	return NULL;
}

static inline void fake_daemon_start(struct fake_daemon *f, const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	unlink(sock);
	assert_true(strlen(sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->listen_fd >= 0);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->listen_fd, 1), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_daemon_serve, f), 0);
}

static inline void fake_daemon_stop(struct fake_daemon *f)
{
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
}

#endif
