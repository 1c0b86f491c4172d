/*
 * Tests for wire.c: the error-code mapping and the client against a peer on
 * a socketpair or a real listening socket, answering from a thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "wire.h"

static void test_codes(void **state)
{
	static const struct {
		int r;
		const char *code;
	} map[] = {
		{ -EINVAL, "invalid_argument" }, { -ENOENT, "not_found" },
		{ -EEXIST, "already_exists" },	 { -EBUSY, "busy" },
		{ -ENOSPC, "no_space" },	 { -EPERM, "permission_denied" },
		{ -EACCES, "permission_denied" }, { -EIO, "internal" },
		{ -ENOMEM, "internal" },	 { -EPROTO, "internal" },
		{ 0, "internal" },		 { EINVAL, "internal" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		const char *got = wire_code_for_errno(map[i].r);

		if (strcmp(got, map[i].code) != 0)
			fail_msg("%d: \"%s\", want \"%s\"", map[i].r, got, map[i].code);
	}
}

/* What the peer thread does with the request it reads. */
struct peer {
	int fd;
	const char *reply;   /* written in pieces of @chunk bytes, then kept open */
	size_t chunk;
	bool read_request;   /* read one line first, into @request */
	bool close_after;    /* close the connection after replying */
	char request[256];
	pthread_t thread;
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	size_t n = 0, len, off = 0;
	char c;

	if (p->read_request) {
		while (read(p->fd, &c, 1) == 1 && c != '\n') {
			if (n + 1 < sizeof(p->request))
				p->request[n++] = c;
		}
		p->request[n] = '\0';
	}
	len = p->reply ? strlen(p->reply) : 0;
	while (off < len) {
		size_t piece = len - off < p->chunk ? len - off : p->chunk;
		ssize_t w = send(p->fd, p->reply + off, piece, MSG_NOSIGNAL);

		if (w <= 0)
			break;
		off += (size_t)w;
		/* Let the client see a partial line before the rest arrives. */
		if (off < len)
			nanosleep(&(struct timespec){ .tv_nsec = 2 * 1000 * 1000 }, NULL);
	}
	if (p->close_after)
		close(p->fd);
	return NULL;
}

static void peer_start(struct peer *p, int fd)
{
	p->fd = fd;
	if (!p->chunk)
		p->chunk = SIZE_MAX;
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_join(struct peer *p)
{
	assert_int_equal(pthread_join(p->thread, NULL), 0);
	if (!p->close_after)
		close(p->fd);
}

static void make_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static uint64_t elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)((now.tv_sec - start->tv_sec) * 1000000000 + now.tv_nsec - start->tv_nsec) /
	       1000000;
}

static void test_call_round_trip(void **state)
{
	struct peer p = {
		.reply = "{\"ok\":true,\"volumes\":[]}\n",
		.chunk = 5,
		.read_request = true,
	};
	char *reply = NULL;
	int sv[2];

	(void)state;
	make_pair(sv);
	peer_start(&p, sv[1]);
	assert_int_equal(wire_call(sv[0], "{\"verb\":\"list\"}", 5000, &reply), 0);
	peer_join(&p);
	assert_string_equal(p.request, "{\"verb\":\"list\"}");
	assert_string_equal(reply, "{\"ok\":true,\"volumes\":[]}");
	free(reply);
	close(sv[0]);
}

static void test_call_keeps_next_reply(void **state)
{
	struct peer p = { .reply = "{\"n\":1}\n{\"n\":2}\n", .read_request = true };
	char *first = NULL, *second = NULL;
	int sv[2];

	(void)state;
	make_pair(sv);
	peer_start(&p, sv[1]);
	assert_int_equal(wire_call(sv[0], "{\"verb\":\"ping\"}", 5000, &first), 0);
	peer_join(&p);
	/* The second line was already queued; it is the next call's reply. */
	assert_int_equal(wire_call(sv[0], "{\"verb\":\"ping\"}", 5000, &second), 0);
	assert_string_equal(first, "{\"n\":1}");
	assert_string_equal(second, "{\"n\":2}");
	free(first);
	free(second);
	close(sv[0]);
}

static void test_call_timeout(void **state)
{
	struct peer p = { .read_request = true };
	struct timespec start;
	char *reply = (char *)&p;
	uint64_t ms;
	int sv[2];

	(void)state;
	make_pair(sv);
	peer_start(&p, sv[1]);
	clock_gettime(CLOCK_MONOTONIC, &start);
	assert_int_equal(wire_call(sv[0], "{\"verb\":\"ping\"}", 150, &reply), -ETIMEDOUT);
	ms = elapsed_ms(&start);
	assert_true(ms >= 150);
	assert_true(ms < 5000);
	assert_ptr_equal(reply, &p);
	/* A partial line does not stop the clock either. */
	assert_int_equal(send(sv[1], "{\"ok\":", 6, 0), 6);
	assert_int_equal(wire_call(sv[0], "{}", 50, &reply), -ETIMEDOUT);
	peer_join(&p);
	close(sv[0]);
}

static void test_call_send_timeout(void **state)
{
	int sv[2], small = 4096;
	struct timespec start;
	char *request, *reply = NULL;
	uint64_t ms;

	(void)state;
	make_pair(sv);
	/* Nobody reads, and the request is far bigger than the socket buffer. */
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	request = malloc(WIRE_LINE_MAX);
	assert_non_null(request);
	memset(request, 'x', WIRE_LINE_MAX - 1);
	request[WIRE_LINE_MAX - 1] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &start);
	assert_int_equal(wire_call(sv[0], request, 100, &reply), -ETIMEDOUT);
	ms = elapsed_ms(&start);
	assert_true(ms >= 100 && ms < 5000);
	assert_null(reply);
	free(request);
	close(sv[0]);
	close(sv[1]);
}

static void test_call_eof(void **state)
{
	struct peer partial = { .reply = "{\"ok\":tr", .read_request = true, .close_after = true };
	struct peer silent = { .read_request = true, .close_after = true };
	char *reply = NULL;
	int sv[2];

	(void)state;
	make_pair(sv);
	peer_start(&partial, sv[1]);
	assert_int_equal(wire_call(sv[0], "{\"verb\":\"ping\"}", 5000, &reply), -EPROTO);
	peer_join(&partial);
	assert_null(reply);
	close(sv[0]);

	make_pair(sv);
	peer_start(&silent, sv[1]);
	assert_int_equal(wire_call(sv[0], "{\"verb\":\"ping\"}", 5000, &reply), -EPROTO);
	peer_join(&silent);
	assert_null(reply);
	close(sv[0]);
}

/* A daemon that refuses a client answers and closes without reading. */
static void test_call_reply_after_peer_closed(void **state)
{
	static const char refusal[] =
		"{\"error\":{\"code\":\"permission_denied\",\"message\":\"root only\"}}\n";
	char *reply = NULL;
	int sv[2];

	(void)state;
	make_pair(sv);
	assert_int_equal(send(sv[1], refusal, strlen(refusal), 0), (ssize_t)strlen(refusal));
	close(sv[1]);
	assert_int_equal(wire_call(sv[0], "{\"verb\":\"list\"}", 5000, &reply), 0);
	assert_memory_equal(reply, refusal, strlen(refusal) - 1);
	assert_int_equal(strlen(reply), strlen(refusal) - 1);
	free(reply);
	close(sv[0]);

	/* Closed without a word: the failed send is what is reported. */
	make_pair(sv);
	close(sv[1]);
	assert_int_equal(wire_call(sv[0], "{\"verb\":\"list\"}", 5000, &reply), -EPIPE);
	close(sv[0]);
}

static void test_call_line_limits(void **state)
{
	char *big, *reply = NULL;
	struct peer exact = { .read_request = true };
	struct peer over = { .read_request = true, .close_after = true };
	int sv[2];

	(void)state;
	big = malloc(WIRE_REPLY_MAX + 2);
	assert_non_null(big);

	/* A reply of exactly WIRE_REPLY_MAX bytes with its newline is fine. */
	memset(big, 'a', WIRE_REPLY_MAX - 1);
	big[WIRE_REPLY_MAX - 1] = '\n';
	big[WIRE_REPLY_MAX] = '\0';
	exact.reply = big;
	exact.chunk = 1 << 20;
	make_pair(sv);
	peer_start(&exact, sv[1]);
	assert_int_equal(wire_call(sv[0], "{}", 5000, &reply), 0);
	peer_join(&exact);
	assert_int_equal(strlen(reply), WIRE_REPLY_MAX - 1);
	free(reply);
	reply = NULL;
	close(sv[0]);

	/* One byte more is refused. */
	big[WIRE_REPLY_MAX - 1] = 'a';
	big[WIRE_REPLY_MAX] = '\n';
	big[WIRE_REPLY_MAX + 1] = '\0';
	over.reply = big;
	make_pair(sv);
	peer_start(&over, sv[1]);
	assert_int_equal(wire_call(sv[0], "{}", 5000, &reply), -EMSGSIZE);
	assert_null(reply);
	/* Closing our end unblocks a peer still writing. */
	close(sv[0]);
	peer_join(&over);

	/* Requests: no newline inside, and the same size limit. */
	make_pair(sv);
	assert_int_equal(wire_call(sv[0], "{}\n{}", 5000, &reply), -EINVAL);
	big[WIRE_LINE_MAX] = '\0';
	big[WIRE_LINE_MAX - 1] = 'a';
	assert_int_equal(wire_call(sv[0], big, 5000, &reply), -EMSGSIZE);
	assert_null(reply);
	/* Nothing of either was sent. */
	assert_int_equal(recv(sv[1], big, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	close(sv[0]);
	close(sv[1]);
	free(big);
}

struct listener {
	int fd;
	pthread_t thread;
};

static void *accept_main(void *arg)
{
	struct listener *l = arg;
	struct peer p = { .reply = "{\"ok\":true}\n", .chunk = 3, .read_request = true };

	p.fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (p.fd >= 0) {
		peer_main(&p);
		close(p.fd);
	}
	return NULL;
}

static void test_connect(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/carvefs-wire-XXXXXX", path[sizeof(sa.sun_path) + 16];
	struct listener l;
	char *reply = NULL;
	int fd, stale;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/carvefs.sock", dir);
	assert_int_equal(wire_connect(path), -ENOENT);
	assert_int_equal(wire_connect(""), -EINVAL);

	/* sun_path holds 107 characters and the NUL. */
	memset(path, 'p', sizeof(sa.sun_path));
	path[0] = '/';
	path[sizeof(sa.sun_path)] = '\0';
	assert_int_equal(wire_connect(path), -ENAMETOOLONG);
	path[sizeof(sa.sun_path) - 1] = '\0';
	assert_int_equal(wire_connect(path), -ENOENT);

	/* A socket file nobody listens on, as a dead daemon leaves behind. */
	snprintf(path, sizeof(path), "%s/carvefs.sock", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	stale = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(stale >= 0);
	assert_int_equal(bind(stale, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(stale);
	assert_int_equal(wire_connect(path), -ECONNREFUSED);
	assert_int_equal(unlink(path), 0);

	l.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l.fd >= 0);
	assert_int_equal(bind(l.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l.fd, 4), 0);
	assert_int_equal(pthread_create(&l.thread, NULL, accept_main, &l), 0);
	fd = wire_connect(path);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(wire_call(fd, "{\"verb\":\"ping\"}", 5000, &reply), 0);
	assert_string_equal(reply, "{\"ok\":true}");
	free(reply);
	assert_int_equal(pthread_join(l.thread, NULL), 0);
	close(fd);
	close(l.fd);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codes),
		cmocka_unit_test(test_call_round_trip),
		cmocka_unit_test(test_call_keeps_next_reply),
		cmocka_unit_test(test_call_timeout),
		cmocka_unit_test(test_call_send_timeout),
		cmocka_unit_test(test_call_eof),
		cmocka_unit_test(test_call_reply_after_peer_closed),
		cmocka_unit_test(test_call_line_limits),
		cmocka_unit_test(test_connect),
	};

	/* A client that hangs is a failure, not a stuck test run. */
	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
