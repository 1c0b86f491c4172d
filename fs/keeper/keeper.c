/*
 * keeper.c - carvefs-keeper: holds every volume's /dev/fuse fd and its INIT
 * request for carvefs, so that the volumes outlive a crash of the daemon
 * (protocol and rationale in include/keeper.h).
 *
 * Deliberately small and rarely changed: one thread, one poll() over the
 * listening socket, the connected daemons and the held fds. It never touches
 * a FUSE request; the held fds are polled for POLLERR only, which the kernel
 * reports once a connection is unmounted or aborted. A lock file beside the
 * socket (PATH.lock, flock) makes one keeper per socket: a second one started
 * meanwhile exits 0 at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdmsg.h"
#include "keeper.h"
#include "log.h"
#include "volname.h"
#include "wire.h"

#define CLIENTS_MAX 16
/* --exit-when-idle: no daemon connected and nothing held for this long. */
#define IDLE_EXIT_MS 2000
/* --wait: how often the lock of the keeper serving the socket is tried. */
#define LOCK_RETRY_MS 200

struct held {
	char name[VOLNAME_MAX + 1];
	int fd;
	void *init;
	size_t init_len;
};

struct keeper {
	int listen_fd, signal_fd;
	int clients[CLIENTS_MAX];
	size_t nclients;
	struct held *held;
	size_t nheld;
	bool exit_when_idle;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: carvefs-keeper [--socket PATH] [--log-level LEVEL]\n"
		"\n"
		"Holds the /dev/fuse fd of every volume carvefs mounts, so that the volumes\n"
		"survive a crash of carvefs: a restarted carvefs takes them back.\n"
		"\n"
		"  --socket PATH       the keeper's socket (default %s%s,\n"
		"                      beside carvefs's default control socket)\n"
		"  --exit-when-idle    exit once no carvefs is connected and nothing is held\n"
		"                      (how carvefs starts one of its own)\n"
		"  --wait              when another keeper serves PATH, wait for it to exit\n"
		"                      and take its place (default: exit 0 at once)\n"
		"  --log-level LEVEL   error, warn, info (default) or debug\n"
		"  --help              this text\n"
		"\n"
		"SIGTERM or SIGINT make it exit; the volumes of a carvefs that is not\n"
		"running then end (their users get ENOTCONN).\n",
		WIRE_DEFAULT_SOCKET, KEEPER_SOCKET_SUFFIX);
}

static void held_close(struct held *h)
{
	close(h->fd);
	free(h->init);
}

static struct held *held_find(struct keeper *k, const char *name)
{
	for (size_t i = 0; i < k->nheld; i++)
		if (strcmp(k->held[i].name, name) == 0)
			return &k->held[i];
	return NULL;
}

static void held_remove(struct keeper *k, size_t i)
{
	held_close(&k->held[i]);
	k->held[i] = k->held[--k->nheld];
}

static int reply(int sock, enum keeper_msg type, const struct iovec *parts, size_t nparts,
		 const int *fds, size_t nfds)
{
	return fdmsg_send(sock, KEEPER_MAGIC, type, parts, nparts, fds, nfds, KEEPER_IO_TIMEOUT_MS);
}

static int reply_err(int sock, int r)
{
	int32_t e = -r;

	return reply(sock, KEEPER_ERR, &(struct iovec){ &e, sizeof(e) }, 1, NULL, 0);
}

static int on_keep(struct keeper *k, int sock, struct fdmsg *m)
{
	size_t name_len = m->payload ? strnlen(m->payload, m->len) : 0;
	struct held *h;
	void *init;
	size_t init_len;

	if (m->nfds != 1 || name_len == m->len || volname_validate(m->payload, NULL) < 0 ||
	    m->len - name_len - 1 > KEEPER_INIT_MAX || m->len - name_len - 1 == 0) {
		log_warn("refusing a malformed KEEP request");
		return reply_err(sock, -EINVAL);
	}
	init_len = m->len - name_len - 1;
	init = malloc(init_len);
	if (!init)
		return reply_err(sock, -ENOMEM);
	memcpy(init, m->payload + name_len + 1, init_len);
	h = held_find(k, m->payload);
	if (h) {
		held_close(h);
	} else {
		if (k->nheld == KEEPER_VOLUMES_MAX) {
			free(init);
			log_warn("refusing volume '%s': already holding %u volumes", m->payload,
				 KEEPER_VOLUMES_MAX);
			return reply_err(sock, -ENOSPC);
		}
		h = &k->held[k->nheld++];
		snprintf(h->name, sizeof(h->name), "%s", m->payload);
		log_info("holding volume '%s'", h->name);
	}
	h->fd = m->fds[0];
	m->fds[0] = -1;
	h->init = init;
	h->init_len = init_len;
	return reply(sock, KEEPER_OK, NULL, 0, NULL, 0);
}

static int on_drop(struct keeper *k, int sock, struct fdmsg *m)
{
	for (size_t i = 0; m->payload && i < k->nheld; i++) {
		if (strcmp(k->held[i].name, m->payload) == 0) {
			log_info("letting go of volume '%s'", m->payload);
			held_remove(k, i);
			break;
		}
	}
	return reply(sock, KEEPER_OK, NULL, 0, NULL, 0);
}

static int on_take(struct keeper *k, int sock)
{
	for (size_t i = 0; i < k->nheld; i++) {
		struct held *h = &k->held[i];
		struct iovec parts[2] = { { h->name, strlen(h->name) + 1 }, { h->init, h->init_len } };
		int r = reply(sock, KEEPER_ENTRY, parts, 2, &h->fd, 1);

		if (r < 0)
			return r;
	}
	log_info("handed %zu volume(s) to a daemon", k->nheld);
	return reply(sock, KEEPER_END, NULL, 0, NULL, 0);
}

/* Serves one request of client @i; a failed or closed client is dropped. */
static void on_client(struct keeper *k, size_t i)
{
	int sock = k->clients[i];
	struct fdmsg m;
	int r;

	r = fdmsg_recv(sock, KEEPER_MAGIC, VOLNAME_MAX + 1 + KEEPER_INIT_MAX, KEEPER_IO_TIMEOUT_MS,
		       &m);
	if (r == 0) {
		switch (m.type) {
		case KEEPER_KEEP:
			r = on_keep(k, sock, &m);
			break;
		case KEEPER_DROP:
			r = on_drop(k, sock, &m);
			break;
		case KEEPER_TAKE:
			r = on_take(k, sock);
			break;
		default:
			r = -EPROTO;
		}
		fdmsg_clear(&m);
	}
	if (r == 0)
		return;
	if (r != -ECONNRESET)
		log_warn_errno(r, "dropping a daemon's connection");
	close(sock);
	k->clients[i] = k->clients[--k->nclients];
}

static void on_accept(struct keeper *k)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int sock = accept4(k->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (sock < 0)
		return;
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != 0) {
		log_warn("refusing a connection from uid %u: root only", (unsigned)cred.uid);
		close(sock);
		return;
	}
	if (k->nclients == CLIENTS_MAX) {
		log_warn("refusing a connection: %d daemons connected already", CLIENTS_MAX);
		close(sock);
		return;
	}
	k->clients[k->nclients++] = sock;
}

/* Takes PATH.lock for the keeper's life: 0, -EALREADY (another keeper) or -errno. */
static int lock_socket(const char *path)
{
	char lock[sizeof(((struct sockaddr_un *)0)->sun_path) + 8], dir[sizeof(lock)];
	int fd;

	if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", path) >= sizeof(lock))
		return -ENAMETOOLONG;
	/* Started before carvefs, which would otherwise make the directory. */
	snprintf(dir, sizeof(dir), "%s", path);
	if (mkdir(dirname(dir), 0755) < 0 && errno != EEXIST)
		return -errno;
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int r = errno == EWOULDBLOCK ? -EALREADY : -errno;

		close(fd);
		return r;
	}
	return 0; /* the fd stays open, so the lock is held, until exit */
}

/*
 * --wait: a second pod of a rolling DaemonSet starts its keeper while the
 * old pod's still holds the volumes. Waiting keeps this one running (and
 * its pod ready) until the old one exits, then it takes the socket, and
 * carvefs hands it every volume again. Returns lock_socket()'s result, or
 * -EINTR when SIGTERM or SIGINT came first.
 */
static int wait_for_lock(struct keeper *k, const char *path)
{
	int r = -EALREADY;

	log_info("another keeper serves '%s': waiting to take its place", path);
	while (r == -EALREADY) {
		struct pollfd p = { .fd = k->signal_fd, .events = POLLIN };

		if (poll(&p, 1, LOCK_RETRY_MS) > 0)
			return -EINTR;
		r = lock_socket(path);
	}
	return r;
}

static int listen_socket(const char *path, int *ret_fd)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	(void)unlink(path); /* a dead keeper's; the lock says none is alive */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (r == 0)
		r = chmod(path, 0600);
	if (r == 0)
		r = listen(fd, CLIENTS_MAX);
	if (r < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

static int run(struct keeper *k)
{
	struct pollfd *p = calloc(2 + CLIENTS_MAX + KEEPER_VOLUMES_MAX, sizeof(*p));

	if (!p)
		return -ENOMEM;
	for (;;) {
		size_t n = 0, nclients = k->nclients, nheld = k->nheld;
		bool idle;
		int r;

		p[n++] = (struct pollfd){ .fd = k->signal_fd, .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = k->listen_fd, .events = POLLIN };
		for (size_t i = 0; i < nclients; i++)
			p[n++] = (struct pollfd){ .fd = k->clients[i], .events = POLLIN };
		/* No events asked: POLLERR alone says the connection is gone. */
		for (size_t i = 0; i < nheld; i++)
			p[n++] = (struct pollfd){ .fd = k->held[i].fd };
		idle = k->exit_when_idle && nclients == 0 && nheld == 0;
		r = poll(p, n, idle ? IDLE_EXIT_MS : -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(p);
			return -errno;
		}
		if (r == 0 && idle) {
			log_info("no carvefs connected and no volume held: exiting");
			free(p);
			return 0;
		}
		if (p[0].revents) {
			struct signalfd_siginfo si;

			if (read(k->signal_fd, &si, sizeof(si)) == sizeof(si)) {
				log_info("received %s: exiting, %zu volume(s) let go", strsignal((int)si.ssi_signo),
					 k->nheld);
				free(p);
				return 0;
			}
		}
		/* Held fds first, by name, as the indexes shift when clients change the table. */
		for (size_t i = nheld; i-- > 0;) {
			if (!(p[2 + nclients + i].revents & (POLLERR | POLLHUP | POLLNVAL)))
				continue;
			log_info("volume '%s' was unmounted: letting go of it", k->held[i].name);
			held_remove(k, i);
		}
		for (size_t i = nclients; i-- > 0;)
			if (p[2 + i].revents)
				on_client(k, i);
		if (p[1].revents & POLLIN)
			on_accept(k);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "exit-when-idle", no_argument, NULL, 'i' },
		{ "wait", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char default_path[sizeof(WIRE_DEFAULT_SOCKET) + sizeof(KEEPER_SOCKET_SUFFIX)];
	const char *path = default_path;
	struct keeper k = { .listen_fd = -1, .signal_fd = -1 };
	struct stat bound, now;
	enum log_level level = LOG_LEVEL_INFO;
	struct rlimit rl;
	sigset_t sigs;
	bool wait = false;
	int c, r;

	log_init("carvefs-keeper", LOG_LEVEL_INFO);
	snprintf(default_path, sizeof(default_path), "%s%s", WIRE_DEFAULT_SOCKET,
		 KEEPER_SOCKET_SUFFIX);
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'l':
			if (log_level_parse(optarg, &level) < 0) {
				log_error("--log-level takes error, warn, info or debug, not '%s'", optarg);
				return 2;
			}
			break;
		case 'i':
			k.exit_when_idle = true;
			break;
		case 'w':
			wait = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument '%s' (see --help)", argv[optind]);
		return 2;
	}
	log_set_level(level);
	if (geteuid() != 0) {
		log_error("carvefs-keeper must run as root: it serves root's carvefs only");
		return 1;
	}
	/* One fd per volume held: the soft limit of a shell (1024) is too few. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	k.signal_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	k.held = calloc(KEEPER_VOLUMES_MAX, sizeof(*k.held));
	if (k.signal_fd < 0 || !k.held) {
		log_error("cannot start: out of resources");
		return 1;
	}
	r = lock_socket(path);
	if (r == -EALREADY && wait)
		r = wait_for_lock(&k, path);
	if (r == -EALREADY) {
		log_info("another keeper serves '%s': exiting", path);
		return 0;
	}
	if (r == -EINTR)
		return 0;
	if (r < 0) {
		log_error_errno(r, "cannot lock '%s.lock'", path);
		return 1;
	}
	r = listen_socket(path, &k.listen_fd);
	if (r < 0) {
		log_error_errno(r, "cannot listen on '%s'", path);
		return 1;
	}
	log_info("holding volumes for carvefs on '%s'", path);
	if (stat(path, &bound) < 0)
		memset(&bound, 0, sizeof(bound));
	r = run(&k);
	if (r < 0)
		log_error_errno(r, "polling failed");
	/* Only our own: a keeper started after its lock file was removed may have bound anew. */
	if (stat(path, &now) == 0 && now.st_ino == bound.st_ino && now.st_dev == bound.st_dev)
		(void)unlink(path);
	return r < 0 ? 1 : 0;
}
