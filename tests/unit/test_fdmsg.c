/*
 * Typed messages with fds over a socketpair: payload (sent in parts) and fds
 * arrive intact,
 * and a wrong magic, an oversized payload, a lying fd count or a peer that
 * hangs up are told apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fdmsg.h"

#define MAGIC 0x54534554u

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void test_payload_and_fds_arrive(void **state)
{
	struct fdmsg m;
	int sv[2], p[2], fds[2];
	char c = 0;

	(void)state;
	pair(sv);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fds[0] = p[1];
	fds[1] = p[1];
	/* The payload's parts arrive as one. */
	assert_int_equal(fdmsg_send(sv[0], MAGIC, 7,
				    (struct iovec[]){ { "hel", 3 }, { "lo", 2 } }, 2, fds, 2, 1000),
			 0);
	assert_int_equal(fdmsg_recv(sv[1], MAGIC, 64, 1000, &m), 0);
	assert_int_equal(m.type, 7);
	assert_int_equal(m.len, 5);
	assert_string_equal(m.payload, "hello");
	assert_int_equal(m.nfds, 2);
	assert_true(fcntl(m.fds[0], F_GETFD) & FD_CLOEXEC);
	/* The fd received is the pipe's write end: what it writes comes out of p[0]. */
	assert_int_equal(write(m.fds[1], "x", 1), 1);
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(c, 'x');
	fdmsg_clear(&m);
	assert_int_equal(m.nfds, 0);

	assert_int_equal(fdmsg_send(sv[0], MAGIC, 8, NULL, 0, NULL, 0, 1000), 0);
	assert_int_equal(fdmsg_recv(sv[1], MAGIC, 64, 1000, &m), 0);
	assert_int_equal(m.type, 8);
	assert_null(m.payload);
	fdmsg_clear(&m);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

static void test_bad_messages_are_refused(void **state)
{
	struct fdmsg m;
	int sv[2];

	(void)state;
	pair(sv);
	assert_int_equal(fdmsg_send(sv[0], MAGIC + 1, 1, &(struct iovec){ "x", 1 }, 1, NULL, 0, 1000), 0);
	assert_int_equal(fdmsg_recv(sv[1], MAGIC, 64, 1000, &m), -EPROTO);
	close(sv[0]);
	close(sv[1]);

	pair(sv);
	assert_int_equal(fdmsg_send(sv[0], MAGIC, 1, &(struct iovec){ "too long", 8 }, 1, NULL, 0,
				    1000), 0);
	assert_int_equal(fdmsg_recv(sv[1], MAGIC, 4, 1000, &m), -EPROTO);
	close(sv[0]);
	close(sv[1]);

	/* A header whose fd count is not what came along is refused. */
	pair(sv);
	{
		struct { uint32_t magic, type; uint64_t len; uint32_t nfds, pad; } h = {
			.magic = MAGIC, .type = 1, .nfds = 3 };

		assert_int_equal(write(sv[0], &h, sizeof(h)), (ssize_t)sizeof(h));
	}
	assert_int_equal(fdmsg_recv(sv[1], MAGIC, 64, 1000, &m), -EPROTO);
	close(sv[0]);
	close(sv[1]);

	/* Hung up before a message, then in the middle of one. */
	pair(sv);
	close(sv[0]);
	assert_int_equal(fdmsg_recv(sv[1], MAGIC, 64, 1000, &m), -ECONNRESET);
	close(sv[1]);
	pair(sv);
	assert_int_equal(write(sv[0], "abc", 3), 3);
	close(sv[0]);
	assert_int_equal(fdmsg_recv(sv[1], MAGIC, 64, 1000, &m), -EPROTO);
	close(sv[1]);

	/* Nothing sent: the wait ends. */
	pair(sv);
	assert_int_equal(fdmsg_recv(sv[1], MAGIC, 64, 50, &m), -ETIMEDOUT);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_payload_and_fds_arrive),
		cmocka_unit_test(test_bad_messages_are_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
