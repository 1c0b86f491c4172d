/*
 * uring.h - the daemon's event loops.
 *
 * A fixed set of threads, each owning one io_uring, serves every mounted
 * volume: a volume's /dev/fuse fd is attached to one loop for its whole life,
 * so threads and rings do not grow with the number of volumes. A loop waits
 * on its ring only: a multishot poll per FUSE fd, one for its command
 * eventfd, and the completions of the IO its request handlers submitted.
 *
 * Request handlers run on the loop thread, inside fuse_session_process_buf().
 * A handler that does IO takes an SQE with uring_sqe(), returns, and replies
 * to the FUSE request from its completion callback, on the same thread. So
 * nothing ever blocks on IO or on a throttle, and a request is never handed
 * between threads.
 *
 * A session ends when its mount goes away (the kernel answers ENODEV), when
 * it is killed, or when its fd fails. Its on_end callback then runs on the
 * loop thread once no operation of it is in flight any more, so the callback
 * may destroy the fuse_session safely.
 *
 * Locking: each loop has one mutex protecting its command queue only; it is
 * a leaf lock. Everything else of a loop belongs to its thread.
 */
#ifndef CARVEFS_URING_H
#define CARVEFS_URING_H

#include <stdint.h>
#include <time.h>

#include <liburing.h>

struct fuse_session;
struct uring_pool;
struct uring_session;

/*
 * One unit of work in flight on a ring. @complete runs on the loop thread
 * with the CQE's result (bytes or -errno) and flags; it may free the op.
 */
struct uring_op {
	void (*complete)(struct uring_op *op, int res, uint32_t cqe_flags);
	struct uring_session *session; /* set by uring_sqe(); NULL for the loop's own ops */
};

/* Starts @nthreads loops (0 = one per online CPU). */
int uring_pool_start(unsigned nthreads, struct uring_pool **ret_pool);
/* Stops every loop; all sessions must have ended. Accepts NULL; returns NULL. */
struct uring_pool *uring_pool_stop(struct uring_pool *p);
unsigned uring_pool_threads(const struct uring_pool *p);

/*
 * Serves @se on the least busy loop from now on. Takes no ownership of @se:
 * @on_end(@arg) is called exactly once, on the loop thread, after the session
 * ended and its last operation completed, and is where the caller destroys
 * it. @on_ending(@arg) (may be NULL) is called first, on the loop thread, as
 * soon as the session starts ending, so that work held back (throttled IO)
 * can be released at once instead of at its pace. Returns 0 or -errno (then
 * neither is ever called).
 */
int uring_session_attach(struct uring_pool *p, struct fuse_session *se,
			 void (*on_ending)(void *arg), void (*on_end)(void *arg), void *arg,
			 struct uring_session **ret_session);

/*
 * Ends the session as soon as possible; on_end follows once its in-flight
 * operations completed. Waits until the loop has seen the request, so it must
 * not be called from a loop thread. Harmless on a session that already ended.
 */
void uring_session_kill(struct uring_session *s);

/*
 * Stops reading requests of the session and waits, at most @timeout_ns,
 * until every operation of it in flight completed, requests held back by
 * IO limits included (released at their pace, in order): then no handler
 * of the session runs or will run until uring_session_resume(), and
 * requests not read yet stay queued in the kernel. Returns 0 once quiet,
 * -ETIMEDOUT (still paused: resume it), or -ENODEV if the session ended
 * meanwhile. Must not be called from a loop thread.
 */
int uring_session_pause(struct uring_session *s, uint64_t timeout_ns);
/* Serves a paused session again. Must not be called from a loop thread. */
void uring_session_resume(struct uring_session *s);

/*
 * Frees the handle. Only after on_end ran: the loop never frees a session
 * itself, so that kill and call stay safe on an ended one. Accepts NULL.
 */
struct uring_session *uring_session_free(struct uring_session *s);

/*
 * Runs @fn(@arg) on the session's loop thread, between requests, and returns
 * its result. Request handlers' uring_sqe() calls made by @fn count against
 * the session. For work that must not race with the volume's request handlers
 * (wiping, walking). Must not be called from a loop thread.
 */
int uring_session_call(struct uring_session *s, int (*fn)(void *arg), void *arg);

/*
 * For request handlers, on a loop thread only. Returns an SQE of this loop's
 * ring with @op as its user data (submitting queued SQEs first if the ring is
 * full), and counts @op as in flight for the current session until its
 * completion ran. A NULL @op makes an SQE whose completion is ignored (for
 * cancellations). Never returns NULL.
 */
struct io_uring_sqe *uring_sqe(struct uring_op *op);

/*
 * Transfers the receive buffer holding the request being processed to the
 * caller, so that a WRITE payload stays valid until its IO completes. Give it
 * back with uring_rxbuf_put() on the same thread.
 */
void *uring_rxbuf_take(void);
void uring_rxbuf_put(void *rxbuf);

/* CLOCK_MONOTONIC @timeout_ns from now, for the *_clockwait/_clocklock calls. */
struct timespec uring_deadline(uint64_t timeout_ns);

#endif
