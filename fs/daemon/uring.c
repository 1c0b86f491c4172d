/*
 * uring.c - event-loop threads, one io_uring each; see uring.h.
 *
 * Receive buffers: libfuse reads a request into the buffer we give it. A
 * WRITE's payload starts 80 bytes in (fuse_in_header + fuse_write_in), so the
 * buffer handed to libfuse starts 80 bytes before a page boundary and the
 * payload lands page-aligned: an O_DIRECT write of it to the backing file
 * needs no copy. libfuse reads up to its bufsize (256 pages plus one header
 * page) into the buffer, hence RXBUF_ALLOC.
 *
 * Each buffer is one transparent huge page where the system allows them
 * (madvise mode): the kernel copies every request into it, and an O_DIRECT
 * write of a large payload pins its pages; both cost a fraction for one
 * huge page of what they cost for 257 small ones (about a third less CPU
 * per 1 MiB write). The price is memory: a buffer in use is 2 MiB resident,
 * not the pages touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "log.h"
#include "uring.h"
#include "clock.h"

#define RING_ENTRIES 256
#define PAGE 4096u
#define WRITE_HEADER_BYTES 80u /* sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in) */
#define FUSE_READ_BYTES (256u * PAGE + PAGE)
#define RXBUF_ALLOC (FUSE_READ_BYTES + 2 * PAGE)
#define RXBUF_CACHE 8
#define HUGE_PAGE (2u * 1024 * 1024)
_Static_assert(RXBUF_ALLOC <= HUGE_PAGE, "a receive buffer fits one huge page");
/* Requests read per session between submissions of queued SQEs, so IO starts early. */
#define SUBMIT_BATCH 16

enum cmd_kind { CMD_ATTACH, CMD_KILL, CMD_CALL, CMD_STOP, CMD_PAUSE, CMD_RESUME };

struct loop_cmd {
	enum cmd_kind kind;
	struct uring_session *session;
	int (*fn)(void *arg);
	void *arg;
	int result;
	bool done;
	struct loop_cmd *next;
};

struct uring_loop;

struct uring_session {
	struct uring_op poll_op;
	struct uring_op disarm_op; /* the removal of poll_op */
	struct uring_loop *loop;
	struct fuse_session *se;
	int fd;
	void (*on_ending)(void *arg);
	void (*on_end)(void *arg);
	void *arg;
	/* The fields below belong to the loop thread. */
	unsigned inflight;
	bool poll_armed;
	bool disarming; /* a removal of the poll is in flight */
	bool poll_cancelled; /* the armed poll was asked to go: its -ECANCELED is ours */
	bool ending;
	bool finished;
	bool paused; /* reads nothing; see uring_session_pause() */
	/* protected by loop->lock: paused and nothing in flight, or ended */
	bool idle;
	struct uring_session *next;
};

struct rxbuf_cached {
	struct rxbuf_cached *next;
};

struct uring_loop {
	struct io_uring ring;
	pthread_t thread;
	int wake_fd;
	struct uring_op wake_op;
	bool wake_armed;
	bool stopping;
	/* Owned by the thread: */
	struct uring_session *sessions;
	struct uring_session *current; /* session whose request is being processed */
	char *rxbuf;		       /* base of the current receive buffer */
	struct rxbuf_cached *rx_cache;
	unsigned rx_cached;
	unsigned nsessions; /* read by attach under lock */
	/* protected by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct loop_cmd *cmds;
	struct loop_cmd **cmds_tail;
};

struct uring_pool {
	unsigned nloops;
	struct uring_loop *loops;
};

static __thread struct uring_loop *tl_loop;

struct timespec uring_deadline(uint64_t timeout_ns)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(timeout_ns / 1000000000u);
	ts.tv_nsec += (long)(timeout_ns % 1000000000u);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static char *rxbuf_get(struct uring_loop *l)
{
	void *p;

	if (l->rx_cache) {
		struct rxbuf_cached *c = l->rx_cache;

		l->rx_cache = c->next;
		l->rx_cached--;
		return (char *)c;
	}
	if (posix_memalign(&p, HUGE_PAGE, HUGE_PAGE) != 0)
		return NULL;
	(void)madvise(p, HUGE_PAGE, MADV_HUGEPAGE);
	return p;
}

static void rxbuf_release(struct uring_loop *l, char *buf)
{
	struct rxbuf_cached *c = (struct rxbuf_cached *)buf;

	if (l->rx_cached >= RXBUF_CACHE) {
		free(buf);
		return;
	}
	c->next = l->rx_cache;
	l->rx_cache = c;
	l->rx_cached++;
}

void *uring_rxbuf_take(void)
{
	struct uring_loop *l = tl_loop;
	char *buf = l->rxbuf;

	l->rxbuf = NULL;
	return buf;
}

void uring_rxbuf_put(void *rxbuf)
{
	if (rxbuf)
		rxbuf_release(tl_loop, rxbuf);
}

static struct io_uring_sqe *loop_sqe(struct uring_loop *l)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&l->ring))) {
		/* The SQ ring is full: hand what is queued to the kernel. */
		int r = io_uring_submit(&l->ring);

		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			log_error_errno(r, "io_uring_submit failed");
	}
	return sqe;
}

struct io_uring_sqe *uring_sqe(struct uring_op *op)
{
	struct uring_loop *l = tl_loop;
	struct io_uring_sqe *sqe = loop_sqe(l);

	if (op) {
		op->session = l->current;
		if (op->session)
			op->session->inflight++;
	}
	io_uring_sqe_set_data(sqe, op);
	return sqe;
}

static void session_maybe_finish(struct uring_session *s)
{
	struct uring_loop *l = s->loop;
	struct uring_session **pp;

	if (!s->ending || s->poll_armed || s->disarming || s->inflight || s->finished)
		return;
	s->finished = true;
	for (pp = &l->sessions; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	pthread_mutex_lock(&l->lock);
	l->nsessions--;
	s->idle = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	s->on_end(s->arg);
}

/* Tells a waiting uring_session_pause() once a paused session has gone quiet. */
static void session_maybe_idle(struct uring_session *s)
{
	struct uring_loop *l = s->loop;

	if (!s->paused || s->poll_armed || s->disarming || s->inflight)
		return;
	pthread_mutex_lock(&l->lock);
	if (!s->idle) {
		s->idle = true;
		pthread_cond_broadcast(&l->cond);
	}
	pthread_mutex_unlock(&l->lock);
}

/*
 * After anything that may have quieted @s. The last touch of @s by the
 * caller: once finished, on_end ran and may have freed it.
 */
static void session_settle(struct uring_session *s)
{
	session_maybe_idle(s);
	session_maybe_finish(s);
}

/*
 * Asks the kernel to remove the session's poll; its final CQE (without
 * IORING_CQE_F_MORE) follows. The removal can fail with -EALREADY, the
 * poll staying armed: a wake-up of the FUSE fd (a request coming in) holds
 * the poll until its task work ran, and that can be just when the removal
 * is submitted. So the removal reports back, and is tried again while the
 * session still wants its poll gone (session_disarm_complete()).
 */
static void session_disarm(struct uring_session *s)
{
	struct io_uring_sqe *sqe;

	if (!s->poll_armed || s->disarming)
		return;
	sqe = loop_sqe(s->loop);
	io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)&s->poll_op);
	io_uring_sqe_set_data(sqe, &s->disarm_op);
	s->disarming = true;
	s->poll_cancelled = true;
}

static void session_disarm_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct uring_session *s =
		(struct uring_session *)((char *)op - offsetof(struct uring_session, disarm_op));

	(void)cqe_flags;
	s->disarming = false;
	/* 0: the poll's final CQE follows; -ENOENT: it ended on its own, and did or will say so. */
	if (res == -EALREADY && s->poll_armed) {
		if (s->paused || s->ending)
			session_disarm(s);
		else
			s->poll_cancelled = false; /* resumed meanwhile: the poll serves on */
	} else if (res < 0 && res != -EALREADY && res != -ENOENT) {
		log_error_errno(res, "removing the poll of a FUSE device failed");
	}
	session_settle(s);
}

/* Ends @s once nothing of it is in flight: the caller settles it afterwards. */
static void session_end(struct uring_session *s)
{
	if (s->ending)
		return;
	s->ending = true;
	if (s->on_ending) {
		struct uring_session *saved = s->loop->current;

		s->loop->current = s;
		s->on_ending(s->arg);
		s->loop->current = saved;
	}
	session_disarm(s);
}

static void session_arm(struct uring_session *s)
{
	struct io_uring_sqe *sqe = loop_sqe(s->loop);

	io_uring_prep_poll_multishot(sqe, s->fd, POLLIN);
	io_uring_sqe_set_data(sqe, &s->poll_op);
	s->poll_armed = true;
}

/* Reads and processes every request queued on the session's fd. */
static void session_drain(struct uring_session *s)
{
	struct uring_loop *l = s->loop;
	unsigned n = 0;

	while (!s->ending && !s->paused) {
		struct fuse_buf fbuf = { 0 };
		int r;

		if (!l->rxbuf) {
			l->rxbuf = rxbuf_get(l);
			if (!l->rxbuf) {
				log_error("volume session: out of memory for a receive buffer");
				session_end(s);
				return;
			}
		}
		fbuf.mem = l->rxbuf + PAGE - WRITE_HEADER_BYTES;
		r = fuse_session_receive_buf(s->se, &fbuf);
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN)
			return;
		if (r <= 0) {
			if (r < 0 && !fuse_session_exited(s->se))
				log_error_errno(r, "reading a FUSE request failed");
			session_end(s);
			return;
		}
		l->current = s;
		fuse_session_process_buf(s->se, &fbuf);
		l->current = NULL;
		if (fuse_session_exited(s->se)) {
			session_end(s);
			return;
		}
		/*
		 * The first request's IO starts before the read that finds the
		 * queue empty, which is all a lone request (queue depth 1) waits
		 * for; the IO of a burst goes in batches.
		 */
		if (++n % SUBMIT_BATCH == 1)
			(void)io_uring_submit(&l->ring);
	}
}

static void session_poll_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct uring_session *s = (struct uring_session *)op;
	/* -ECANCELED after session_disarm() is our own removal, not the device failing. */
	bool removed = res == -ECANCELED && s->poll_cancelled;

	if (!(cqe_flags & IORING_CQE_F_MORE)) {
		s->poll_armed = false;
		s->poll_cancelled = false;
	}
	if (res < 0 && !removed && !s->ending)
		log_error_errno(res, "polling a FUSE device failed");
	/* A paused session's last poll may still report requests: they wait. */
	if (res >= 0 && (res & POLLIN) && !s->paused)
		session_drain(s);
	if ((res < 0 && !removed) || (res > 0 && (res & (POLLERR | POLLHUP | POLLNVAL))))
		session_end(s);
	if (!s->ending && !s->poll_armed && !s->paused)
		session_arm(s);
	session_settle(s);
}

static void loop_run_cmd(struct uring_loop *l, struct loop_cmd *c)
{
	switch (c->kind) {
	case CMD_ATTACH:
		c->session->next = l->sessions;
		l->sessions = c->session;
		session_arm(c->session);
		break;
	case CMD_KILL:
		session_end(c->session);
		session_settle(c->session);
		break;
	case CMD_CALL:
		l->current = c->session;
		c->result = c->fn(c->arg);
		l->current = NULL;
		break;
	case CMD_STOP:
		l->stopping = true;
		break;
	case CMD_PAUSE:
		c->session->paused = true;
		session_disarm(c->session);
		session_maybe_idle(c->session);
		break;
	case CMD_RESUME:
		c->session->paused = false;
		pthread_mutex_lock(&l->lock);
		c->session->idle = c->session->finished;
		pthread_mutex_unlock(&l->lock);
		if (!c->session->ending && !c->session->poll_armed)
			session_arm(c->session);
		break;
	}
}

static void loop_wake_complete(struct uring_op *op, int res, uint32_t cqe_flags)
{
	struct uring_loop *l = (struct uring_loop *)((char *)op - offsetof(struct uring_loop, wake_op));
	struct loop_cmd *c, *next;
	uint64_t v;

	if (!(cqe_flags & IORING_CQE_F_MORE))
		l->wake_armed = false;
	(void)res;
	(void)!read(l->wake_fd, &v, sizeof(v));

	pthread_mutex_lock(&l->lock);
	c = l->cmds;
	l->cmds = NULL;
	l->cmds_tail = &l->cmds;
	pthread_mutex_unlock(&l->lock);

	for (; c; c = next) {
		next = c->next;
		loop_run_cmd(l, c);
		pthread_mutex_lock(&l->lock);
		c->done = true;
		pthread_cond_broadcast(&l->cond);
		pthread_mutex_unlock(&l->lock);
	}
	if (!l->wake_armed && !l->stopping) {
		struct io_uring_sqe *sqe = loop_sqe(l);

		io_uring_prep_poll_multishot(sqe, l->wake_fd, POLLIN);
		io_uring_sqe_set_data(sqe, &l->wake_op);
		l->wake_armed = true;
	}
}

static void *loop_main(void *arg)
{
	struct uring_loop *l = arg;
	struct io_uring_sqe *sqe;

	tl_loop = l;
	sqe = loop_sqe(l);
	io_uring_prep_poll_multishot(sqe, l->wake_fd, POLLIN);
	io_uring_sqe_set_data(sqe, &l->wake_op);
	l->wake_armed = true;

	while (!l->stopping || l->sessions) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int r;

		r = io_uring_submit_and_wait(&l->ring, 1);
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			log_error_errno(r, "io_uring_submit_and_wait failed");
			continue;
		}
		io_uring_for_each_cqe(&l->ring, head, cqe) {
			struct uring_op *op = io_uring_cqe_get_data(cqe);
			struct uring_session *s;

			seen++;
			if (!op)
				continue;
			s = op->session;
			/* IO a completion submits (a throttled request released) is its session's too. */
			l->current = s;
			op->complete(op, cqe->res, cqe->flags);
			l->current = NULL;
			if (s) {
				s->inflight--;
				session_settle(s);
			}
		}
		io_uring_cq_advance(&l->ring, seen);
	}
	if (l->rxbuf)
		free(l->rxbuf);
	while (l->rx_cache) {
		struct rxbuf_cached *c = l->rx_cache;

		l->rx_cache = c->next;
		free(c);
	}
	return NULL;
}

static void loop_post(struct uring_loop *l, struct loop_cmd *c)
{
	uint64_t one = 1;

	pthread_mutex_lock(&l->lock);
	c->next = NULL;
	*l->cmds_tail = c;
	l->cmds_tail = &c->next;
	pthread_mutex_unlock(&l->lock);
	(void)!write(l->wake_fd, &one, sizeof(one));
}

static void loop_post_wait(struct uring_loop *l, struct loop_cmd *c)
{
	loop_post(l, c);
	pthread_mutex_lock(&l->lock);
	while (!c->done)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
}

static int loop_init(struct uring_loop *l)
{
	struct io_uring_params params = { 0 };
	int r;

	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->cmds_tail = &l->cmds;
	l->wake_op.complete = loop_wake_complete;
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0)
		return -errno;
	/* Completions may outnumber the SQ entries while many requests are in flight. */
	params.flags = IORING_SETUP_CQSIZE;
	params.cq_entries = RING_ENTRIES * 8;
	r = io_uring_queue_init_params(RING_ENTRIES, &l->ring, &params);
	if (r < 0) {
		close(l->wake_fd);
		l->wake_fd = -1;
		return r;
	}
	r = -pthread_create(&l->thread, NULL, loop_main, l);
	if (r < 0) {
		io_uring_queue_exit(&l->ring);
		close(l->wake_fd);
		l->wake_fd = -1;
		return r;
	}
	return 0;
}

static void loop_fini(struct uring_loop *l)
{
	struct loop_cmd c = { .kind = CMD_STOP };

	if (l->wake_fd < 0)
		return;
	loop_post_wait(l, &c);
	pthread_join(l->thread, NULL);
	io_uring_queue_exit(&l->ring);
	close(l->wake_fd);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
}

int uring_pool_start(unsigned nthreads, struct uring_pool **ret_pool)
{
	struct uring_pool *p;
	long ncpu;
	int r = 0;

	if (nthreads == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = ncpu > 0 ? (unsigned)ncpu : 1;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->loops = calloc(nthreads, sizeof(*p->loops));
	if (!p->loops) {
		free(p);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < nthreads; i++)
		p->loops[i].wake_fd = -1;
	for (unsigned i = 0; i < nthreads; i++) {
		r = loop_init(&p->loops[i]);
		if (r < 0)
			goto err;
		p->nloops++;
	}
	*ret_pool = p;
	return 0;
err:
	uring_pool_stop(p);
	return r;
}

struct uring_pool *uring_pool_stop(struct uring_pool *p)
{
	if (!p)
		return NULL;
	for (unsigned i = 0; i < p->nloops; i++)
		loop_fini(&p->loops[i]);
	free(p->loops);
	free(p);
	return NULL;
}

unsigned uring_pool_threads(const struct uring_pool *p)
{
	return p->nloops;
}

int uring_session_attach(struct uring_pool *p, struct fuse_session *se,
			 void (*on_ending)(void *arg), void (*on_end)(void *arg), void *arg,
			 struct uring_session **ret_session)
{
	struct uring_loop *best = NULL;
	unsigned best_n = ~0u;
	struct uring_session *s;
	struct loop_cmd c = { .kind = CMD_ATTACH };
	int fd = fuse_session_fd(se), flags;

	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	for (unsigned i = 0; i < p->nloops; i++) {
		unsigned n;

		pthread_mutex_lock(&p->loops[i].lock);
		n = p->loops[i].nsessions;
		pthread_mutex_unlock(&p->loops[i].lock);
		if (n < best_n) {
			best = &p->loops[i];
			best_n = n;
		}
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->poll_op.complete = session_poll_complete;
	s->disarm_op.complete = session_disarm_complete;
	s->loop = best;
	s->se = se;
	s->fd = fd;
	s->on_ending = on_ending;
	s->on_end = on_end;
	s->arg = arg;
	pthread_mutex_lock(&best->lock);
	best->nsessions++;
	pthread_mutex_unlock(&best->lock);
	c.session = s;
	loop_post_wait(best, &c);
	*ret_session = s;
	return 0;
}

void uring_session_kill(struct uring_session *s)
{
	struct loop_cmd c = { .kind = CMD_KILL, .session = s };

	/* Waiting keeps the command from outliving the session it names. */
	loop_post_wait(s->loop, &c);
}

int uring_session_pause(struct uring_session *s, uint64_t timeout_ns)
{
	struct uring_loop *l = s->loop;
	struct loop_cmd c = { .kind = CMD_PAUSE, .session = s };
	struct timespec deadline = uring_deadline(timeout_ns);
	int r = 0;

	loop_post_wait(l, &c);
	pthread_mutex_lock(&l->lock);
	while (!s->idle && r == 0)
		r = -pthread_cond_clockwait(&l->cond, &l->lock, CLOCK_MONOTONIC, &deadline);
	if (s->idle)
		r = s->finished ? -ENODEV : 0;
	pthread_mutex_unlock(&l->lock);
	return r;
}

void uring_session_resume(struct uring_session *s)
{
	struct loop_cmd c = { .kind = CMD_RESUME, .session = s };

	loop_post_wait(s->loop, &c);
}

struct uring_session *uring_session_free(struct uring_session *s)
{
	free(s);
	return NULL;
}

int uring_session_call(struct uring_session *s, int (*fn)(void *arg), void *arg)
{
	struct loop_cmd c = { .kind = CMD_CALL, .session = s, .fn = fn, .arg = arg };

	loop_post_wait(s->loop, &c);
	return c.result;
}
