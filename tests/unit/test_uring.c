/*
 * The event loops' pause and kill of a session when a request comes in
 * just as the session's poll is being removed.
 *
 * The session is a libfuse session over the read end of a pipe (its own
 * read and writev functions, so no mount): a byte written to the pipe wakes
 * the session's poll as a FUSE request would. Writing that byte with an SQE
 * queued in the same submission as the poll's removal makes the kernel's
 * wake-up hold the poll while the removal runs: the removal fails with
 * -EALREADY and the poll stays armed. Pause and kill must still finish.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <fuse_lowlevel.h>

#include "uring.h"

#define NS_PER_MS 1000000ull
#define WAIT_NS (5000 * NS_PER_MS)
/* Long enough for a started thread to have posted its command to the loop. */
#define POST_DELAY_MS 100

struct fixture {
	int pipe[2];
	struct fuse_session *se;
	struct uring_pool *pool;
	struct uring_session *s;
	/* The loop blocks in block_on_loop() until go. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool blocking, go, ended;
	/* The write of one byte into the pipe, submitted on the loop. */
	struct uring_op write_op;
	int write_res;
	bool written;
};

static ssize_t pipe_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

static ssize_t pipe_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	ssize_t n = 0;

	(void)fd;
	(void)userdata;
	/* Answers go nowhere: nothing here reads them. */
	for (int i = 0; i < count; i++)
		n += (ssize_t)iov[i].iov_len;
	return n;
}

static const struct fuse_custom_io pipe_io = {
	.read = pipe_read,
	.writev = pipe_writev,
};

static void on_end(void *arg)
{
	struct fixture *f = arg;

	pthread_mutex_lock(&f->lock);
	f->ended = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static int setup(void **state)
{
	static const struct fuse_lowlevel_ops ops;
	char *argv[] = { (char *)"test_uring", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(1, argv);
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	assert_int_equal(pipe2(f->pipe, O_CLOEXEC), 0);
	f->se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	fuse_opt_free_args(&args);
	assert_non_null(f->se);
	/* The session owns the read end from here on. */
	assert_int_equal(fuse_session_custom_io(f->se, &pipe_io, f->pipe[0]), 0);
	assert_int_equal(uring_pool_start(1, &f->pool), 0);
	assert_int_equal(uring_session_attach(f->pool, f->se, NULL, on_end, f, &f->s), 0);
	*state = f;
	return 0;
}

static bool wait_ended(struct fixture *f, uint64_t timeout_ns)
{
	struct timespec deadline = uring_deadline(timeout_ns);
	bool ended;

	pthread_mutex_lock(&f->lock);
	while (!f->ended &&
	       pthread_cond_clockwait(&f->cond, &f->lock, CLOCK_MONOTONIC, &deadline) == 0)
		;
	ended = f->ended;
	pthread_mutex_unlock(&f->lock);
	return ended;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	uring_session_kill(f->s);
	/* A session that cannot end would hang the loop's stop: fail instead. */
	assert_true(wait_ended(f, WAIT_NS));
	f->s = uring_session_free(f->s);
	f->pool = uring_pool_stop(f->pool);
	fuse_session_destroy(f->se);
	close(f->pipe[1]);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return 0;
}

static int block_on_loop(void *arg)
{
	struct fixture *f = arg;

	pthread_mutex_lock(&f->lock);
	f->blocking = true;
	pthread_cond_broadcast(&f->cond);
	while (!f->go)
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static void *block_thread(void *arg)
{
	struct fixture *f = arg;

	(void)uring_session_call(f->s, block_on_loop, f);
	return NULL;
}

static void write_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct fixture *f = (struct fixture *)((char *)op - offsetof(struct fixture, write_op));

	(void)cqe_flags;
	f->write_res = res;
	f->written = true;
}

static int queue_write_on_loop(void *arg)
{
	static const char byte = 'x';
	struct fixture *f = arg;
	struct io_uring_sqe *sqe;

	/* Queued only: it goes to the kernel with whatever the loop queues next. */
	f->write_op.complete = write_complete;
	sqe = uring_sqe(&f->write_op);
	io_uring_prep_write(sqe, f->pipe[1], &byte, 1, 0);
	return 0;
}

static void *write_thread(void *arg)
{
	struct fixture *f = arg;

	(void)uring_session_call(f->s, queue_write_on_loop, f);
	return NULL;
}

struct pause_call {
	struct fixture *f;
	int r;
};

static void *pause_thread(void *arg)
{
	struct pause_call *c = arg;

	c->r = uring_session_pause(c->f->s, WAIT_NS);
	return NULL;
}

static void *kill_thread(void *arg)
{
	struct fixture *f = arg;

	uring_session_kill(f->s);
	return NULL;
}

/*
 * Holds the loop while the write and then @second_fn post their commands,
 * so that the loop runs both in one go and submits the write and the
 * poll's removal together.
 */
static void race(struct fixture *f, void *(*second_fn)(void *), void *second_arg)
{
	pthread_t blocker, writer, second;

	assert_int_equal(pthread_create(&blocker, NULL, block_thread, f), 0);
	pthread_mutex_lock(&f->lock);
	while (!f->blocking)
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(pthread_create(&writer, NULL, write_thread, f), 0);
	usleep(POST_DELAY_MS * 1000);
	assert_int_equal(pthread_create(&second, NULL, second_fn, second_arg), 0);
	usleep(POST_DELAY_MS * 1000);
	pthread_mutex_lock(&f->lock);
	f->go = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(pthread_join(blocker, NULL), 0);
	assert_int_equal(pthread_join(writer, NULL), 0);
	assert_int_equal(pthread_join(second, NULL), 0);
}

static void test_pause_while_a_request_comes_in(void **state)
{
	struct fixture *f = *state;
	struct pause_call c = { .f = f };

	race(f, pause_thread, &c);
	/* Quiet: the byte waits unread, the write completed. */
	assert_int_equal(c.r, 0);
	assert_true(f->written);
	assert_int_equal(f->write_res, 1);
	assert_false(f->ended);
}

static void test_kill_while_a_request_comes_in(void **state)
{
	struct fixture *f = *state;

	race(f, kill_thread, f);
	assert_true(wait_ended(f, WAIT_NS));
	assert_true(f->written);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pause_while_a_request_comes_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_while_a_request_comes_in, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
