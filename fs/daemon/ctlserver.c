/*
 * ctlserver.c - the control socket's line server; see ctlserver.h, and
 * include/wire.h for the protocol.
 *
 * One thread runs a poll() loop over the listening socket, an eventfd that
 * ctlserver_stop() writes, and at most CTLSERVER_CLIENTS_MAX connections. All
 * sockets are non-blocking and every connection has its own input and output
 * buffer, so a client that sends half a line or stops reading its replies
 * never holds up the others; one that makes no progress for
 * CTLSERVER_STALL_NS is dropped.
 *
 * Requests are answered one at a time, in order: while a reply is still
 * being written, the connection's further input is not read (backpressure
 * instead of an unbounded queue). The dispatch callback runs on this thread,
 * so requests of different clients are serialised here.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctlserver.h"
#include "log.h"
#include "wire.h"
#include "clock.h"
#include "fileio.h"

#define CTLSERVER_CLIENTS_MAX 64
#define CTLSERVER_BACKLOG 16
/* A client that neither reads nor writes for this long loses its slot. */
#define CTLSERVER_STALL_NS (5ULL * 1000000000ULL)
/* How long a refused peer has to read its one-line answer. */
#define CTLSERVER_REJECT_NS (2ULL * 1000000000ULL)
/* Pause before accepting again when the process is out of descriptors. */
#define CTLSERVER_ACCEPT_BACKOFF_NS (200ULL * 1000000ULL)
/* A line, its newline included, fits in WIRE_LINE_MAX bytes. */
#define CTLSERVER_IN_MAX WIRE_LINE_MAX

struct client {
	int fd; /* -1: free slot */
	pid_t pid;
	uid_t uid;
	bool rejected; /* not root: answered once, now drained until it goes */
	bool eof;      /* the peer shut down its sending side */
	bool closing;  /* close as soon as the output is written */
	char *in;      /* CTLSERVER_IN_MAX bytes */
	size_t in_len;
	char *out; /* one reply being written, owned */
	size_t out_len, out_off;
	uint64_t deadline_ns; /* 0: none */
};

/* Everything below is owned by the server's thread once it runs. */
struct ctlserver {
	char *path;
	dev_t sock_dev;
	ino_t sock_ino;
	int listen_fd;
	int stop_fd;
	ctlserver_dispatch_fn dispatch;
	void *userdata;
	pthread_t thread;
	bool thread_started;
	uint64_t accept_paused_until_ns;
	struct client clients[CTLSERVER_CLIENTS_MAX];
};

json_t *ctlserver_error_reply(const char *code, const char *msg)
{
	return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
}

static void client_close(struct client *cl)
{
	if (cl->fd < 0)
		return;
	close(cl->fd);
	free(cl->in);
	free(cl->out);
	*cl = (struct client){ .fd = -1 };
}

/*
 * Queues @reply as one line. The client's input is not read again until it
 * has been written, so there is never more than one reply queued.
 */
static int client_queue(struct client *cl, json_t *reply)
{
	char *text;
	size_t len;

	if (!reply)
		return -ENOMEM;
	text = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	/* json_dumps' buffer is exactly long enough; make room for the newline. */
	cl->out = realloc(text, len + 2);
	if (!cl->out) {
		free(text);
		return -ENOMEM;
	}
	cl->out[len] = '\n';
	cl->out[len + 1] = '\0';
	cl->out_len = len + 1;
	cl->out_off = 0;
	cl->deadline_ns = clock_now_ns() + CTLSERVER_STALL_NS;
	return 0;
}

/* Writes what the socket takes. Returns 0, or -errno when the client is gone. */
static int client_flush(struct client *cl)
{
	while (cl->out) {
		ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		cl->out_off += (size_t)n;
		cl->deadline_ns = clock_now_ns() + CTLSERVER_STALL_NS;
		if (cl->out_off == cl->out_len) {
			free(cl->out);
			cl->out = NULL;
			cl->out_len = cl->out_off = 0;
			cl->deadline_ns = 0;
		}
	}
	return 0;
}

/*
 * Answers the complete lines in the input buffer, one reply at a time.
 * Returns 0, or -errno when the client must be dropped.
 */
static int client_process(struct ctlserver *c, struct client *cl)
{
	int r;

	while (!cl->out && !cl->closing && !cl->rejected) {
		char *nl = memchr(cl->in, '\n', cl->in_len);
		size_t len, used;

		if (nl) {
			len = (size_t)(nl - cl->in);
			used = len + 1;
		} else if (cl->in_len == CTLSERVER_IN_MAX) {
			char msg[WIRE_MSG_MAX];

			snprintf(msg, sizeof(msg), "request line is longer than %d bytes",
				 WIRE_LINE_MAX);
			r = client_queue(cl, ctlserver_error_reply(WIRE_E_BAD_REQUEST, msg));
			if (r < 0)
				return r;
			cl->closing = true;
			break;
		} else if (cl->eof && cl->in_len > 0) {
			/* A last request without its newline is still a request. */
			len = used = cl->in_len;
		} else {
			break;
		}
		if (len > 0 && cl->in[len - 1] == '\r')
			len--;
		r = client_queue(cl, c->dispatch(c->userdata, cl->in, len));
		if (r < 0)
			return r;
		memmove(cl->in, cl->in + used, cl->in_len - used);
		cl->in_len -= used;
		r = client_flush(cl);
		if (r < 0)
			return r;
	}
	if (cl->eof && !cl->out && (cl->in_len == 0 || cl->closing || cl->rejected))
		return -ECONNRESET;
	if (cl->closing && !cl->out)
		return -ECONNRESET;
	return 0;
}

static int client_read(struct client *cl)
{
	ssize_t n;

	if (cl->rejected) {
		char sink[4096];

		n = recv(cl->fd, sink, sizeof(sink), MSG_DONTWAIT);
		/* Its request has arrived, so our answer is queued before its read. */
		if (n >= 0)
			return -ECONNRESET;
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	}
	n = recv(cl->fd, cl->in + cl->in_len, CTLSERVER_IN_MAX - cl->in_len, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0)
		cl->eof = true;
	cl->in_len += (size_t)n;
	return 0;
}

static struct client *client_slot(struct ctlserver *c)
{
	for (size_t i = 0; i < CTLSERVER_CLIENTS_MAX; i++)
		if (c->clients[i].fd < 0)
			return &c->clients[i];
	return NULL;
}

/*
 * A refused connection gets one answer and is closed. The answer is tiny and
 * the socket new, so a non-blocking send cannot come up short.
 */
static void answer_and_close(int fd, const char *code, const char *msg)
{
	json_t *reply = ctlserver_error_reply(code, msg);
	char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;

	if (text) {
		size_t len = strlen(text);

		text[len] = '\n';
		(void)!send(fd, text, len + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	free(text);
	json_decref(reply);
	close(fd);
}

static void accept_one(struct ctlserver *c)
{
	struct ucred cred;
	socklen_t cred_len = sizeof(cred);
	struct client *cl;
	int fd;

	fd = accept4(c->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			log_warn_errno(-errno, "control socket: cannot accept a connection");
			c->accept_paused_until_ns = clock_now_ns() + CTLSERVER_ACCEPT_BACKOFF_NS;
		}
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) < 0) {
		log_warn_errno(-errno, "control socket: cannot identify a peer");
		close(fd);
		return;
	}
	cl = client_slot(c);
	if (!cl) {
		log_warn("control socket: refusing a connection from pid %d: %d connections open",
			 (int)cred.pid, CTLSERVER_CLIENTS_MAX);
		answer_and_close(fd, WIRE_E_BUSY, "too many control connections; retry later");
		return;
	}
	*cl = (struct client){ .fd = fd, .pid = cred.pid, .uid = cred.uid };
	if (cred.uid != 0) {
		log_warn("control socket: refusing pid %d of uid %u: only root is served",
			 (int)cred.pid, (unsigned)cred.uid);
		cl->rejected = true;
		/*
		 * Kept open until the client has sent its request: closed earlier,
		 * the client's write would fail before it could read the answer.
		 */
		if (client_queue(cl, ctlserver_error_reply(WIRE_E_PERMISSION,
						 "the control socket is for root only")) < 0 ||
		    client_flush(cl) < 0) {
			client_close(cl);
			return;
		}
		cl->deadline_ns = clock_now_ns() + CTLSERVER_REJECT_NS;
		return;
	}
	cl->in = malloc(CTLSERVER_IN_MAX);
	if (!cl->in) {
		log_warn("control socket: out of memory for a connection");
		client_close(cl);
	}
}

static void *ctlserver_thread(void *arg)
{
	struct ctlserver *c = arg;
	struct pollfd pfds[2 + CTLSERVER_CLIENTS_MAX];
	struct client *owner[2 + CTLSERVER_CLIENTS_MAX];

	for (;;) {
		uint64_t now = clock_now_ns(), next = 0;
		nfds_t n = 0;
		int timeout_ms = -1, r;

		pfds[n] = (struct pollfd){ .fd = c->stop_fd, .events = POLLIN };
		owner[n++] = NULL;
		if (c->accept_paused_until_ns > now) {
			next = c->accept_paused_until_ns;
		} else {
			pfds[n] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
			owner[n++] = NULL;
		}
		for (size_t i = 0; i < CTLSERVER_CLIENTS_MAX; i++) {
			struct client *cl = &c->clients[i];
			short events = 0;

			if (cl->fd < 0)
				continue;
			if (cl->deadline_ns && (!next || cl->deadline_ns < next))
				next = cl->deadline_ns;
			if (cl->out)
				events |= POLLOUT;
			if (!cl->out && (cl->rejected || (!cl->eof && !cl->closing &&
							  cl->in_len < CTLSERVER_IN_MAX)))
				events |= POLLIN;
			pfds[n] = (struct pollfd){ .fd = cl->fd, .events = events };
			owner[n++] = cl;
		}
		if (next)
			timeout_ms = next <= now ? 0 : (int)((next - now + 999999) / 1000000);

		r = poll(pfds, n, timeout_ms);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			log_error_errno(-errno, "control socket: poll failed; no longer serving");
			break;
		}
		if (pfds[0].revents)
			break;
		now = clock_now_ns();
		for (nfds_t i = 1; i < n; i++) {
			struct client *cl = owner[i];
			short rev = pfds[i].revents;

			/*
			 * Deadlines are judged only here, after a poll that found the
			 * client idle: a long volume operation on this thread must not
			 * count against clients that had no chance to make progress.
			 */
			if (!rev && cl && cl->deadline_ns && cl->deadline_ns <= now) {
				log_warn("control socket: dropping pid %d: %s", (int)cl->pid,
					 cl->rejected ? "refused peer did not go away"
						      : "it stopped reading its replies");
				client_close(cl);
				continue;
			}
			if (!rev)
				continue;
			if (!cl) {
				accept_one(c);
				continue;
			}
			/* With POLLHUP the peer is gone both ways: nobody reads a reply. */
			if ((rev & (POLLERR | POLLNVAL)) || ((rev & POLLHUP) && cl->out)) {
				client_close(cl);
				continue;
			}
			r = 0;
			if (rev & POLLOUT)
				r = client_flush(cl);
			if (r >= 0 && (rev & (POLLIN | POLLHUP)) && !cl->out)
				r = client_read(cl);
			if (r >= 0 && (rev & POLLHUP) && !(rev & POLLIN))
				cl->eof = true;
			if (r >= 0)
				r = client_process(c, cl);
			if (r < 0)
				client_close(cl);
		}
	}
	return NULL;
}

/*
 * Creates the socket's directory, and any missing directory above it, without
 * touching the mode of one that exists: an operator may have opened it up on
 * purpose. The directory itself is 0700, the ones above 0755.
 */
static int make_parent_dirs(const char *path)
{
	char *dir = strdup(path);
	char *slash;
	int r = 0;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		r = fileio_mkdir_p(dir, 0700);
	}
	free(dir);
	return r;
}

/*
 * Clears the way for bind(): nothing there is fine; a socket nobody answers on
 * is a leftover of a dead daemon and goes; a live socket or anything that is
 * not a socket stays, and we refuse to start.
 */
static int clear_stale_socket(const char *path, const struct sockaddr_un *addr)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("control socket '%s' exists and is not a socket; not replacing it", path);
		return -EEXIST;
	}
	/* Non-blocking: a live daemon with a full backlog answers -EAGAIN, not a hang. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 ? -errno : 0;
	close(fd);
	if (r == 0 || r == -EAGAIN)
		return log_error_errno(-EADDRINUSE,
				       "control socket '%s' is served by another process", path);
	if (r != -ECONNREFUSED)
		return log_error_errno(r, "cannot check the existing control socket '%s'", path);
	log_info("removing the stale control socket '%s'", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return log_error_errno(-errno, "cannot remove the stale control socket '%s'", path);
	return 0;
}

int ctlserver_start(const char *socket_path, ctlserver_dispatch_fn dispatch, void *userdata,
		    struct ctlserver **ret_server)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	sigset_t all, old;
	struct ctlserver *c;
	bool bound = false;
	struct stat st;
	int r;

	if (strlen(socket_path) >= sizeof(addr.sun_path)) {
		log_error("control socket path '%s' is longer than the %zu bytes a unix socket "
			  "allows",
			  socket_path, sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, socket_path, strlen(socket_path) + 1);

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->listen_fd = c->stop_fd = -1;
	c->dispatch = dispatch;
	c->userdata = userdata;
	for (size_t i = 0; i < CTLSERVER_CLIENTS_MAX; i++)
		c->clients[i].fd = -1;
	c->path = strdup(socket_path);
	if (!c->path) {
		r = -ENOMEM;
		goto err;
	}

	r = make_parent_dirs(socket_path);
	if (r < 0) {
		log_error_errno(r, "cannot create the directory of the control socket '%s'",
				socket_path);
		goto err;
	}
	r = clear_stale_socket(socket_path, &addr);
	if (r < 0)
		goto err;

	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->listen_fd < 0) {
		r = log_error_errno(-errno, "cannot create the control socket");
		goto err;
	}
	/*
	 * The socket file takes the mode of the socket's inode, less the umask,
	 * at bind() time; setting it before bind() leaves no window in which
	 * anyone but root could connect. Not through umask(): that is shared
	 * with every thread, and the daemon's loop threads are already creating
	 * files for the volumes mounted.
	 */
	if (fchmod(c->listen_fd, 0600) < 0) {
		r = log_error_errno(-errno, "cannot set the mode of the control socket");
		goto err;
	}
	r = bind(c->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -errno : 0;
	if (r < 0) {
		log_error_errno(r, "cannot bind the control socket '%s'", socket_path);
		goto err;
	}
	bound = true;
	if (stat(socket_path, &st) < 0) {
		r = log_error_errno(-errno, "cannot stat the control socket '%s'", socket_path);
		goto err;
	}
	c->sock_dev = st.st_dev;
	c->sock_ino = st.st_ino;
	if (listen(c->listen_fd, CTLSERVER_BACKLOG) < 0) {
		r = log_error_errno(-errno, "cannot listen on the control socket '%s'",
				    socket_path);
		goto err;
	}
	c->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->stop_fd < 0) {
		r = -errno;
		goto err;
	}

	/* Signals belong to the main thread; this one must never take them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&c->thread, NULL, ctlserver_thread, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		log_error_errno(r, "cannot start the control socket thread");
		goto err;
	}
	c->thread_started = true;
	log_info("control socket listening on '%s'", socket_path);
	*ret_server = c;
	return 0;
err:
	if (bound)
		(void)unlink(socket_path);
	ctlserver_stop(c);
	return r;
}

struct ctlserver *ctlserver_stop(struct ctlserver *c)
{
	struct stat st;

	if (!c)
		return NULL;
	if (c->thread_started) {
		uint64_t one = 1;

		(void)!write(c->stop_fd, &one, sizeof(one));
		pthread_join(c->thread, NULL);
	}
	for (size_t i = 0; i < CTLSERVER_CLIENTS_MAX; i++)
		client_close(&c->clients[i]);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		/* Only our own socket: a newer daemon may have taken the path over. */
		if (stat(c->path, &st) == 0 && st.st_dev == c->sock_dev && st.st_ino == c->sock_ino)
			(void)unlink(c->path);
	}
	if (c->stop_fd >= 0)
		close(c->stop_fd);
	free(c->path);
	free(c);
	return NULL;
}
