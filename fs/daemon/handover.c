/*
 * handover.c - a running daemon's volumes passed to its successor; see
 * handover.h.
 *
 * Wire: a unix stream socket; every message a fixed header, then `len`
 * bytes of payload. The fds of a message ride on its header (SCM_RIGHTS),
 * at most FDMSG_FDS_MAX of them: a volume with more open files sends the
 * rest in FDS messages that follow its VOLUME message.
 *
 *	successor                      running daemon
 *	HELLO {version}          ->
 *	                         <-    VOLUME {name, fd count, state blob} + fds
 *	                         <-    FDS + fds ...  (per volume)
 *	                         <-    END {discovery dir}, or REFUSE {why}
 *	TAKEN, or ABORT {why}    ->
 *	                               unlocks the pool
 *	locks the pool, serves,
 *	opens its control socket
 *	in place of the old one's
 *	SERVING                  ->
 *	                               exits 0, mounts untouched
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "fdmsg.h"
#include "handover.h"
#include "log.h"
#include "uring.h"
#include "vfs/handoff.h"
#include "volume.h"
#include "wire.h"

#define SOCKET_SUFFIX ".handover"
#define MSG_MAGIC 0x43564f48u /* "HOVC" */
#define PROTOCOL_VERSION 1u
#define PAYLOAD_MAX (1ull << 32)
#define NS_PER_S 1000000000ull
/*
 * Requests already read get this long to finish, throttled ones included
 * (at their limits' pace), before the hand-over is refused.
 */
#define DRAIN_TIMEOUT_NS (30 * NS_PER_S)
/* Each step of the peer: a message, building the volumes, serving. */
#define STEP_TIMEOUT_MS 60000
#define LOCK_POLL_MS 1
#define TEST_STALL_ENV "CARVEFS_TEST_HANDOVER_STALL"
#define TEST_STALL_S 60

enum msg_type {
	MSG_HELLO = 1,
	MSG_VOLUME,
	MSG_FDS,
	MSG_END,
	MSG_REFUSE,
	MSG_TAKEN,
	MSG_ABORT,
	MSG_SERVING,
};

struct handover {
	int listen_fd, stop_fd;
	char *path;
	dev_t sock_dev;
	ino_t sock_ino;
	pthread_t thread;
	bool thread_started;
	struct volmgr *mgr;
	struct handover_hooks hooks;
	atomic_bool done;
};

struct handover_client {
	int fd;
};

static int socket_path(const char *control_socket, struct sockaddr_un *ret_addr)
{
	memset(ret_addr, 0, sizeof(*ret_addr));
	ret_addr->sun_family = AF_UNIX;
	if ((size_t)snprintf(ret_addr->sun_path, sizeof(ret_addr->sun_path), "%s%s",
			     control_socket, SOCKET_SUFFIX) >= sizeof(ret_addr->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

static int send_msg(int fd, enum msg_type type, const void *payload, size_t len, const int *fds,
		    size_t nfds)
{
	struct iovec part = { .iov_base = (void *)payload, .iov_len = len };

	return fdmsg_send(fd, MSG_MAGIC, type, &part, len ? 1 : 0, fds, nfds, STEP_TIMEOUT_MS);
}

/*
 * Receives one message, each of its parts within @timeout_ms. -ECONNRESET:
 * the peer is gone. *ret is cleared on failure too, so fdmsg_clear() is safe.
 */
static int recv_msg(int fd, int timeout_ms, struct fdmsg *ret)
{
	memset(ret, 0, sizeof(*ret));
	return fdmsg_recv(fd, MSG_MAGIC, PAYLOAD_MAX, timeout_ms, ret);
}

/* CARVEFS_TEST_HANDOVER_STALL=POINT[:SECONDS] (handover.h). */
static void test_stall(const char *point)
{
	const char *at = getenv(TEST_STALL_ENV);
	size_t n = strlen(point);
	unsigned seconds = TEST_STALL_S;

	if (!at || strncmp(at, point, n) != 0 || (at[n] != '\0' && at[n] != ':'))
		return;
	if (at[n] == ':')
		seconds = (unsigned)strtoul(at + n + 1, NULL, 10);
	log_warn("hand-over: stalling %u s after the fds were %s (%s)", seconds, point,
		 TEST_STALL_ENV);
	sleep(seconds);
}

static int peer_pid(int fd, pid_t *ret_pid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	if (cred.uid != 0)
		return -EPERM;
	*ret_pid = cred.pid;
	return 0;
}

/* ---- the running daemon's side ------------------------------------------ */

/* Sends one volume: its name, fd count and blob, then its fds in batches. */
static int send_volume(int fd, const char *name, const struct vfs_state *st)
{
	size_t name_len = strlen(name), len = 4 + name_len + 8 + st->blob_len, first;
	uint32_t nl = (uint32_t)name_len;
	uint64_t nfds = st->nfds;
	char *payload = malloc(len);
	int r;

	if (!payload)
		return -ENOMEM;
	memcpy(payload, &nl, 4);
	memcpy(payload + 4, name, name_len);
	memcpy(payload + 4 + name_len, &nfds, 8);
	memcpy(payload + 12 + name_len, st->blob, st->blob_len);
	first = st->nfds < FDMSG_FDS_MAX ? st->nfds : FDMSG_FDS_MAX;
	r = send_msg(fd, MSG_VOLUME, payload, len, st->fds, first);
	free(payload);
	for (size_t i = first; r == 0 && i < st->nfds; i += FDMSG_FDS_MAX) {
		size_t k = st->nfds - i < FDMSG_FDS_MAX ? st->nfds - i : FDMSG_FDS_MAX;

		r = send_msg(fd, MSG_FDS, NULL, 0, st->fds + i, k);
	}
	return r;
}

static void refuse(int fd, pid_t pid, const char *why)
{
	log_warn("hand-over to pid %d failed: %s; still serving", (int)pid, why);
	(void)send_msg(fd, MSG_REFUSE, why, strlen(why), NULL, 0);
}

/*
 * One successor on @fd. Returns true once the volumes are its, false when
 * this daemon still serves them.
 */
static bool serve_successor(struct handover *h, int fd)
{
	char why[WIRE_MSG_MAX] = "", name[VOLNAME_MAX + 1];
	struct errmsg paused_msg = { "" };
	uint64_t t0 = clock_now_ns(), t_paused;
	struct fdmsg m = { 0 };
	size_t count = 0;
	pid_t pid = 0;
	int r;

	r = peer_pid(fd, &pid);
	if (r < 0) {
		log_warn_errno(r, "hand-over socket: refusing a peer that is not root");
		return false;
	}
	r = recv_msg(fd, STEP_TIMEOUT_MS, &m);
	if (r < 0 || m.type != MSG_HELLO || m.len != 4 ||
	    *(uint32_t *)(void *)m.payload != PROTOCOL_VERSION) {
		fdmsg_clear(&m);
		refuse(fd, pid, "it does not speak this daemon's hand-over protocol (version 1)");
		return false;
	}
	fdmsg_clear(&m);
	log_info("pid %d asks for the volumes: pausing them", (int)pid);
	r = volmgr_handover_pause(h->mgr, DRAIN_TIMEOUT_NS, &paused_msg);
	if (r < 0) {
		refuse(fd, pid, paused_msg.text);
		return false;
	}
	t_paused = clock_now_ns();
	for (;; count++) {
		struct vfs_state st = { 0 };

		r = volmgr_handover_export(h->mgr, count, name, &st);
		if (r == -ENOENT)
			break;
		if (r < 0) {
			snprintf(why, sizeof(why), "cannot export volume '%s': %s", name,
				 strerror(-r));
			goto resume;
		}
		r = send_volume(fd, name, &st);
		vfs_state_clear(&st);
		if (r < 0) {
			snprintf(why, sizeof(why), "cannot send volume '%s': %s", name,
				 strerror(-r));
			goto resume;
		}
	}
	/* Where the volumes are mounted: the successor must serve the same paths. */
	r = send_msg(fd, MSG_END, volmgr_discovery_dir(h->mgr),
		     strlen(volmgr_discovery_dir(h->mgr)), NULL, 0);
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot send: %s", strerror(-r));
		goto resume;
	}
	log_info("sent %zu volume(s) to pid %d (paused after %.1f ms)", count, (int)pid,
		 (double)(t_paused - t0) / 1e6);
	test_stall("sent");
	r = recv_msg(fd, STEP_TIMEOUT_MS, &m);
	if (r < 0 || m.type != MSG_TAKEN) {
		if (r == 0 && m.type == MSG_ABORT)
			snprintf(why, sizeof(why), "the successor gave up: %s",
				 m.payload ? m.payload : "");
		else
			snprintf(why, sizeof(why), "the successor %s",
				 r == -ETIMEDOUT ? "did not answer in time" : "went away");
		fdmsg_clear(&m);
		goto resume;
	}
	fdmsg_clear(&m);

	/* From here on the successor may serve as soon as it holds the lock. */
	r = volmgr_lock_pool(h->mgr, false);
	if (r < 0)
		log_error_errno(r, "cannot unlock the pool for pid %d", (int)pid);
	r = recv_msg(fd, STEP_TIMEOUT_MS, &m);
	if (r == 0 && m.type == MSG_SERVING) {
		fdmsg_clear(&m);
		volmgr_handover_end(h->mgr, false);
		log_info("handed %zu volume(s) over to pid %d in %.1f ms, mounted as they are",
			 count, (int)pid, (double)(clock_now_ns() - t0) / 1e6);
		return true;
	}
	fdmsg_clear(&m);
	if (volmgr_lock_pool(h->mgr, true) < 0) {
		/* It holds the lock, so it lives and serves: the volumes are its. */
		volmgr_handover_end(h->mgr, false);
		log_warn("pid %d holds the pool but did not confirm; leaving the volumes to it",
			 (int)pid);
		return true;
	}
	volmgr_handover_end(h->mgr, true);
	h->hooks.take_back(h->hooks.arg);
	log_error("hand-over to pid %d failed: it went away before serving; serving again",
		  (int)pid);
	return false;
resume:
	volmgr_handover_end(h->mgr, true);
	refuse(fd, pid, why);
	return false;
}

static void *handover_thread(void *arg)
{
	struct handover *h = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = h->listen_fd, .events = POLLIN },
				       { .fd = h->stop_fd, .events = POLLIN } };
		int fd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error_errno(-errno, "hand-over socket: poll failed");
			break;
		}
		if (p[1].revents)
			break;
		fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (serve_successor(h, fd)) {
			atomic_store(&h->done, true);
			close(fd);
			h->hooks.done(h->hooks.arg);
			break;
		}
		close(fd);
	}
	return NULL;
}

int handover_listen(const char *control_socket, struct volmgr *mgr,
		    const struct handover_hooks *hooks, struct handover **ret_handover)
{
	struct sockaddr_un addr;
	struct handover *h;
	sigset_t all, old;
	struct stat st;
	mode_t umask_old;
	int r;

	r = socket_path(control_socket, &addr);
	if (r < 0)
		return log_error_errno(r, "the hand-over socket '%s%s' is too long for a unix "
					  "socket",
				       control_socket, SOCKET_SUFFIX);
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->listen_fd = h->stop_fd = -1;
	h->mgr = mgr;
	h->hooks = *hooks;
	h->path = strdup(addr.sun_path);
	if (!h->path) {
		r = -ENOMEM;
		goto err;
	}
	h->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	h->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->listen_fd < 0 || h->stop_fd < 0) {
		r = -errno;
		goto err;
	}
	/* We hold the pool and serve its control socket: whatever is there is a leftover. */
	if (unlink(h->path) < 0 && errno != ENOENT) {
		r = log_error_errno(-errno, "cannot remove the old hand-over socket '%s'", h->path);
		goto err;
	}
	umask_old = umask(0177);
	r = bind(h->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -errno : 0;
	umask(umask_old);
	if (r == 0 && stat(h->path, &st) < 0)
		r = -errno;
	if (r == 0 && listen(h->listen_fd, 4) < 0)
		r = -errno;
	if (r < 0) {
		log_error_errno(r, "cannot listen on the hand-over socket '%s'", h->path);
		goto err;
	}
	h->sock_dev = st.st_dev;
	h->sock_ino = st.st_ino;
	/* Signals belong to the main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&h->thread, NULL, handover_thread, h);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0)
		goto err;
	h->thread_started = true;
	*ret_handover = h;
	return 0;
err:
	handover_stop(h);
	return r;
}

struct handover *handover_stop(struct handover *h)
{
	struct stat st;

	if (!h)
		return NULL;
	if (h->thread_started) {
		uint64_t one = 1;

		(void)!write(h->stop_fd, &one, sizeof(one));
		pthread_join(h->thread, NULL);
	}
	if (h->listen_fd >= 0) {
		close(h->listen_fd);
		/* Only our own: the successor has bound its own at the same path. */
		if (h->path && stat(h->path, &st) == 0 && st.st_dev == h->sock_dev &&
		    st.st_ino == h->sock_ino)
			(void)unlink(h->path);
	}
	if (h->stop_fd >= 0)
		close(h->stop_fd);
	free(h->path);
	free(h);
	return NULL;
}

bool handover_done(struct handover *h)
{
	return h && atomic_load(&h->done);
}

/* ---- the successor's side ----------------------------------------------- */

struct received {
	char **names;
	struct vfs_state *states;
	size_t n;
};

static void received_clear(struct received *rv)
{
	for (size_t i = 0; i < rv->n; i++) {
		free(rv->names[i]);
		vfs_state_clear(&rv->states[i]);
	}
	free(rv->names);
	free(rv->states);
	memset(rv, 0, sizeof(*rv));
}

/* Parses a VOLUME message and receives the FDS messages that follow it. */
static int recv_volume(int fd, struct fdmsg *m, struct received *rv)
{
	struct vfs_state *st;
	uint64_t nfds;
	uint32_t nl;
	char **names;
	int r = 0;

	if (m->len < 12)
		return -EPROTO;
	memcpy(&nl, m->payload, 4);
	if (nl == 0 || nl > VOLNAME_MAX || m->len < 12 + (size_t)nl)
		return -EPROTO;
	memcpy(&nfds, m->payload + 4 + nl, 8);
	if (nfds > (1u << 24) || nfds < m->nfds)
		return -EPROTO;
	names = realloc(rv->names, (rv->n + 1) * sizeof(*names));
	if (!names)
		return -ENOMEM;
	rv->names = names;
	st = realloc(rv->states, (rv->n + 1) * sizeof(*st));
	if (!st)
		return -ENOMEM;
	rv->states = st;
	st = &rv->states[rv->n];
	memset(st, 0, sizeof(*st));
	rv->names[rv->n] = strndup(m->payload + 4, nl);
	st->blob_len = m->len - 12 - nl;
	st->blob = malloc(st->blob_len ? st->blob_len : 1);
	st->fds = malloc((size_t)(nfds ? nfds : 1) * sizeof(int));
	rv->n++; /* from here on received_clear() frees it */
	if (!rv->names[rv->n - 1] || !st->blob || !st->fds)
		return -ENOMEM;
	memcpy(st->blob, m->payload + 12 + nl, st->blob_len);
	for (size_t i = 0; i < m->nfds; i++) {
		st->fds[st->nfds++] = m->fds[i];
		m->fds[i] = -1;
	}
	while (r == 0 && st->nfds < nfds) {
		struct fdmsg more;

		r = recv_msg(fd, STEP_TIMEOUT_MS, &more);
		if (r < 0)
			break;
		if (more.type != MSG_FDS || more.nfds == 0 || st->nfds + more.nfds > nfds)
			r = -EPROTO;
		for (size_t i = 0; r == 0 && i < more.nfds; i++) {
			st->fds[st->nfds++] = more.fds[i];
			more.fds[i] = -1;
		}
		fdmsg_clear(&more);
	}
	return r;
}

static void abort_take(int fd, const char *why)
{
	(void)send_msg(fd, MSG_ABORT, why, strlen(why), NULL, 0);
}

int handover_take(const char *control_socket, const struct volmgr_config *cfg,
		  struct volmgr **ret_mgr, struct handover_client **ret_client)
{
	uint32_t version = PROTOCOL_VERSION;
	struct handover_client *c = NULL;
	struct received rv = { 0 };
	struct volmgr *m = NULL;
	char *mounted_under = NULL;
	struct sockaddr_un addr;
	uint64_t t0 = clock_now_ns();
	int fd = -1, r, waited_ms = 0;
	pid_t pid = 0;

	r = socket_path(control_socket, &addr);
	if (r < 0)
		return log_error_errno(r, "the hand-over socket of '%s' is too long", control_socket);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		r = -errno;
		log_error_errno(r, "pool '%s' is served by another carvefs daemon, and its hand-over "
				   "socket '%s' does not answer (it must be started with the same "
				   "--socket)",
				cfg->pool_dir, addr.sun_path);
		goto err;
	}
	r = peer_pid(fd, &pid);
	if (r < 0) {
		log_error_errno(r, "the hand-over socket '%s' is not served by root", addr.sun_path);
		goto err;
	}
	log_info("pool '%s' is served by pid %d: taking its volumes over", cfg->pool_dir, (int)pid);
	r = send_msg(fd, MSG_HELLO, &version, sizeof(version), NULL, 0);
	while (r == 0) {
		struct fdmsg msg;

		r = recv_msg(fd, STEP_TIMEOUT_MS, &msg);
		if (r < 0)
			break;
		if (msg.type == MSG_END) {
			mounted_under = msg.payload;
			msg.payload = NULL;
			fdmsg_clear(&msg);
			break;
		}
		if (msg.type == MSG_REFUSE) {
			log_error("pid %d refused to hand its volumes over: %s", (int)pid,
				  msg.payload ? msg.payload : "");
			fdmsg_clear(&msg);
			r = -EBUSY;
			goto err;
		}
		r = msg.type == MSG_VOLUME ? recv_volume(fd, &msg, &rv) : -EPROTO;
		fdmsg_clear(&msg);
	}
	if (r < 0) {
		log_error_errno(r, "receiving the volumes of pid %d failed", (int)pid);
		abort_take(fd, "receiving the volumes failed");
		goto err;
	}
	test_stall("received");
	r = volmgr_adopt(cfg, (const char *const *)rv.names, rv.states, rv.n, &m);
	if (r < 0) {
		abort_take(fd, "the successor could not take the volumes over (see its log)");
		goto err;
	}
	if (!mounted_under || strcmp(mounted_under, volmgr_discovery_dir(m)) != 0) {
		log_error("pid %d mounts the volumes under '%s', not under --discovery-dir '%s': "
			  "start with the same flags",
			  (int)pid, mounted_under ? mounted_under : "?", volmgr_discovery_dir(m));
		abort_take(fd, "the successor was started with another --discovery-dir");
		r = -EINVAL;
		goto err;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		r = -ENOMEM;
		abort_take(fd, "out of memory");
		goto err;
	}
	r = send_msg(fd, MSG_TAKEN, NULL, 0, NULL, 0);
	if (r < 0) {
		log_error_errno(r, "pid %d went away during the hand-over", (int)pid);
		goto err;
	}
	/*
	 * The old daemon unlocks the pool once it stopped its control socket,
	 * or loses the lock by dying: either way the volumes are ours then.
	 */
	while ((r = volmgr_lock_pool(m, true)) == -EWOULDBLOCK && waited_ms < STEP_TIMEOUT_MS) {
		usleep(LOCK_POLL_MS * 1000);
		waited_ms += LOCK_POLL_MS;
	}
	if (r < 0) {
		log_error_errno(r, "pid %d kept the pool's lock; leaving the volumes to it", (int)pid);
		goto err;
	}
	r = volmgr_adopt_commit(m);
	if (r < 0)
		log_warn_errno(r, "cannot save the volume table after the take-over");
	c->fd = fd;
	log_info("took %zu volume(s) over from pid %d in %.1f ms", rv.n, (int)pid,
		 (double)(clock_now_ns() - t0) / 1e6);
	received_clear(&rv);
	free(mounted_under);
	*ret_mgr = m;
	*ret_client = c;
	return 0;
err:
	/* Before the commit, stopping leaves every mount to the old daemon. */
	volmgr_stop(m);
	received_clear(&rv);
	free(mounted_under);
	free(c);
	if (fd >= 0)
		close(fd);
	return r < 0 ? r : -EIO;
}

struct handover_client *handover_client_serving(struct handover_client *c)
{
	int r;

	if (!c)
		return NULL;
	r = send_msg(c->fd, MSG_SERVING, NULL, 0, NULL, 0);
	if (r < 0)
		log_warn_errno(r, "cannot tell the previous daemon that the volumes are served; it "
				  "exits on its own seeing the pool locked");
	close(c->fd);
	free(c);
	return NULL;
}
