/*
 * keeperlink.c - handing the volumes' /dev/fuse fds to carvefs-keeper; see
 * keeperlink.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdmsg.h"
#include "keeper.h"
#include "keeperlink.h"
#include "log.h"
#include "volname.h"
#include "wire.h"

#define RECONNECT_MS 1000
/* A keeper just started gets this long to listen. */
#define SPAWN_WAIT_MS 5000
#define SPAWN_POLL_MS 20

struct kept {
	char name[VOLNAME_MAX + 1];
	int fd;
	void *init;
	size_t init_len;
	struct kept *next;
};

struct keeperlink {
	struct keeperlink_config cfg; /* its strings our own copies */
	pthread_mutex_t lock;
	int sock;	     /* protected by lock; -1 while away */
	struct kept *kept;   /* protected by lock */
	bool synced;	     /* protected by lock: the keeper holds all of kept */
	bool ever_connected; /* protected by lock */
	int stop_fd;
	pthread_t thread;
	bool thread_started;
};

/* 0 and *ret_sock, or -errno: wire_connect() with our own out-parameter. */
static int connect_keeper(const char *path, int *ret_sock)
{
	int fd = wire_connect(path);

	if (fd < 0)
		return fd;
	*ret_sock = fd;
	return 0;
}

/*
 * Starts @exe as a keeper of its own: double fork and a session of its own,
 * so that it is nobody's child, outlives us and gets no signal meant for
 * our process group. It inherits no fd but stderr, so that it holds neither
 * the pool's lock nor a volume beyond what it is handed.
 */
static int spawn_keeper(const char *exe, const char *path)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* Ours alone: it leaves once no daemon needs it (keeper.c). */
		char *argv[] = { (char *)"carvefs-keeper", (char *)"--socket", (char *)path,
				 (char *)"--exit-when-idle", NULL };
		int null;

		if (setsid() < 0)
			_exit(1);
		pid = fork();
		if (pid != 0)
			_exit(pid < 0);
		null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0)
			_exit(1);
		close_range(3, ~0u, 0);
		(void)!chdir("/");
		execv(exe, argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

static int request(int sock, enum keeper_msg type, const struct iovec *parts, size_t nparts,
		   int fd)
{
	struct fdmsg m;
	int r;

	r = fdmsg_send(sock, KEEPER_MAGIC, type, parts, nparts, &fd, fd >= 0, KEEPER_IO_TIMEOUT_MS);
	if (r < 0)
		return r;
	r = fdmsg_recv(sock, KEEPER_MAGIC, sizeof(int32_t), KEEPER_IO_TIMEOUT_MS, &m);
	if (r < 0)
		return r;
	if (m.type == KEEPER_ERR && m.len == sizeof(int32_t)) {
		int32_t e;

		memcpy(&e, m.payload, sizeof(e));
		r = e > 0 ? -e : -EPROTO;
	} else if (m.type != KEEPER_OK) {
		r = -EPROTO;
	}
	fdmsg_clear(&m);
	return r;
}

static int send_keep(int sock, const struct kept *e)
{
	struct iovec parts[2] = { { (void *)e->name, strlen(e->name) + 1 },
				  { e->init, e->init_len } };

	return request(sock, KEEPER_KEEP, parts, 2, e->fd);
}

/* With the lock: the keeper went away (or misbehaved). */
static void link_lost(struct keeperlink *k, int r)
{
	if (k->sock < 0)
		return;
	close(k->sock);
	k->sock = -1;
	k->synced = false;
	log_error_errno(r, "the keeper '%s' went away: the volumes work, but a crash of carvefs "
			   "would now end their mounts; reconnecting",
			k->cfg.socket_path);
}

/* With the lock: connects (starting a keeper if configured) and hands it everything. */
static void link_connect(struct keeperlink *k, bool quiet)
{
	int sock = -1, r;
	size_t n = 0;

	r = connect_keeper(k->cfg.socket_path, &sock);
	if (r < 0 && k->cfg.keeper_exe) {
		r = spawn_keeper(k->cfg.keeper_exe, k->cfg.socket_path);
		if (r < 0) {
			if (!quiet)
				log_error_errno(r, "cannot start the keeper '%s'", k->cfg.keeper_exe);
			return;
		}
		for (int waited = 0; waited < SPAWN_WAIT_MS; waited += SPAWN_POLL_MS) {
			r = connect_keeper(k->cfg.socket_path, &sock);
			if (r == 0)
				break;
			usleep(SPAWN_POLL_MS * 1000);
		}
		if (r == 0)
			log_info("started a keeper on '%s'", k->cfg.socket_path);
	}
	if (r < 0) {
		if (!quiet)
			log_error_errno(r, "no keeper serves '%s': a crash of carvefs would end the "
					   "volumes' mounts",
					k->cfg.socket_path);
		return;
	}
	for (struct kept *e = k->kept; e && r == 0; e = e->next, n++)
		r = send_keep(sock, e);
	if (r < 0) {
		close(sock);
		log_error_errno(r, "handing the volumes to the keeper '%s' failed",
				k->cfg.socket_path);
		return;
	}
	k->sock = sock;
	k->synced = true;
	log_info("the keeper '%s' %sholds all %zu volume(s)", k->cfg.socket_path,
		 k->ever_connected ? "is back and " : "", n);
	k->ever_connected = true;
}

static void *watch_main(void *arg)
{
	struct keeperlink *k = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = k->stop_fd, .events = POLLIN } };
		nfds_t n = 1;
		int sock;

		pthread_mutex_lock(&k->lock);
		sock = k->sock;
		pthread_mutex_unlock(&k->lock);
		/* The keeper never speaks first: a hang-up is all this waits for. */
		if (sock >= 0)
			p[n++] = (struct pollfd){ .fd = sock, .events = POLLRDHUP };
		if (poll(p, n, RECONNECT_MS) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		pthread_mutex_lock(&k->lock);
		if (sock >= 0 && sock == k->sock && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			link_lost(k, -ECONNRESET);
		if (k->sock < 0)
			link_connect(k, true);
		pthread_mutex_unlock(&k->lock);
	}
	return NULL;
}

int keeperlink_start(const struct keeperlink_config *cfg, struct keeperlink **ret_link)
{
	struct keeperlink *k = calloc(1, sizeof(*k));
	int r;

	if (!k)
		return -ENOMEM;
	k->sock = -1;
	pthread_mutex_init(&k->lock, NULL);
	k->stop_fd = eventfd(0, EFD_CLOEXEC);
	k->cfg.socket_path = strdup(cfg->socket_path);
	k->cfg.keeper_exe = cfg->keeper_exe ? strdup(cfg->keeper_exe) : NULL;
	if (k->stop_fd < 0 || !k->cfg.socket_path || (cfg->keeper_exe && !k->cfg.keeper_exe)) {
		r = k->stop_fd < 0 ? -errno : -ENOMEM;
		goto err;
	}
	link_connect(k, false);
	r = -pthread_create(&k->thread, NULL, watch_main, k);
	if (r < 0)
		goto err;
	k->thread_started = true;
	*ret_link = k;
	return 0;
err:
	keeperlink_stop(k);
	return r;
}

struct keeperlink *keeperlink_stop(struct keeperlink *k)
{
	if (!k)
		return NULL;
	if (k->thread_started) {
		uint64_t one = 1;

		(void)!write(k->stop_fd, &one, sizeof(one));
		pthread_join(k->thread, NULL);
	}
	if (k->stop_fd >= 0)
		close(k->stop_fd);
	if (k->sock >= 0)
		close(k->sock);
	keeperlink_forget_all(k);
	pthread_mutex_destroy(&k->lock);
	free((char *)k->cfg.socket_path);
	free((char *)k->cfg.keeper_exe);
	free(k);
	return NULL;
}

static void kept_free(struct kept *e)
{
	if (!e)
		return;
	if (e->fd >= 0)
		close(e->fd);
	free(e->init);
	free(e);
}

/* With the lock: forgets what was handed over under @name, if anything. */
static void kept_remove(struct keeperlink *k, const char *name)
{
	for (struct kept **pp = &k->kept; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) == 0) {
			struct kept *old = *pp;

			*pp = old->next;
			kept_free(old);
			return;
		}
	}
}

int keeperlink_keep(struct keeperlink *k, const char *name, int fuse_fd, const void *init,
		    size_t init_len)
{
	struct kept *e = calloc(1, sizeof(*e));
	int r = 0;

	if (!e)
		return -ENOMEM;
	e->fd = -1;
	if (strlen(name) > VOLNAME_MAX || init_len == 0 || init_len > KEEPER_INIT_MAX) {
		r = -EINVAL;
		goto err;
	}
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->fd = fcntl(fuse_fd, F_DUPFD_CLOEXEC, 3);
	e->init = malloc(init_len);
	if (e->fd < 0 || !e->init) {
		r = e->fd < 0 ? -errno : -ENOMEM;
		goto err;
	}
	memcpy(e->init, init, init_len);
	e->init_len = init_len;
	pthread_mutex_lock(&k->lock);
	kept_remove(k, name);
	e->next = k->kept;
	k->kept = e;
	if (k->sock >= 0) {
		r = send_keep(k->sock, e);
		if (r < 0)
			link_lost(k, r);
	}
	pthread_mutex_unlock(&k->lock);
	return 0;
err:
	kept_free(e);
	return r;
}

void keeperlink_forget_all(struct keeperlink *k)
{
	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	while (k->kept) {
		struct kept *e = k->kept;

		k->kept = e->next;
		kept_free(e);
	}
	pthread_mutex_unlock(&k->lock);
}

void keeperlink_drop(struct keeperlink *k, const char *name)
{
	pthread_mutex_lock(&k->lock);
	kept_remove(k, name);
	if (k->sock >= 0) {
		int r = request(k->sock, KEEPER_DROP, &(struct iovec){ (void *)name, strlen(name) },
				1, -1);

		if (r < 0)
			link_lost(k, r);
	}
	pthread_mutex_unlock(&k->lock);
}

int keeperlink_take(struct keeperlink *k,
		    int (*fn)(void *arg, const char *name, int fuse_fd, const void *init,
			      size_t init_len),
		    void *arg)
{
	struct fdmsg *got = NULL;
	size_t n = 0;
	int r = 0;

	pthread_mutex_lock(&k->lock);
	if (k->sock >= 0)
		r = fdmsg_send(k->sock, KEEPER_MAGIC, KEEPER_TAKE, NULL, 0, NULL, 0,
			       KEEPER_IO_TIMEOUT_MS);
	while (k->sock >= 0 && r == 0) {
		struct fdmsg m, *more;
		size_t name_len;

		r = fdmsg_recv(k->sock, KEEPER_MAGIC, VOLNAME_MAX + 1 + KEEPER_INIT_MAX,
			       KEEPER_IO_TIMEOUT_MS, &m);
		if (r < 0)
			break;
		if (m.type == KEEPER_END) {
			fdmsg_clear(&m);
			break;
		}
		name_len = m.payload ? strnlen(m.payload, m.len) : 0;
		more = n < KEEPER_VOLUMES_MAX ? realloc(got, (n + 1) * sizeof(*got)) : NULL;
		if (m.type != KEEPER_ENTRY || m.nfds != 1 || name_len == 0 || name_len >= m.len ||
		    !more) {
			fdmsg_clear(&m);
			r = more ? -EPROTO : -ENOMEM;
			got = more ? more : got;
			break;
		}
		got = more;
		got[n++] = m;
	}
	if (r < 0)
		link_lost(k, r);
	pthread_mutex_unlock(&k->lock);
	/* Outside the lock: fn hands the volume back to us through keeperlink_keep(). */
	for (size_t i = 0; i < n; i++) {
		size_t name_len = strlen(got[i].payload);
		int fd = got[i].fds[0], q;

		/* Each volume taken is served, whatever became of the others. */
		got[i].fds[0] = -1;
		q = fn(arg, got[i].payload, fd, got[i].payload + name_len + 1,
		       got[i].len - name_len - 1);
		if (q < 0 && r == 0)
			r = q;
		fdmsg_clear(&got[i]);
	}
	free(got);
	return r;
}

bool keeperlink_holding(struct keeperlink *k)
{
	bool held;

	if (!k)
		return false;
	pthread_mutex_lock(&k->lock);
	held = k->sock >= 0 && k->synced;
	pthread_mutex_unlock(&k->lock);
	return held;
}

int keeperlink_exe_beside_self(char *buf, size_t size)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n < 0)
		return -errno;
	self[n] = '\0';
	if ((size_t)snprintf(buf, size, "%s/carvefs-keeper", dirname(self)) >= size)
		return -ENAMETOOLONG;
	return access(buf, X_OK) < 0 ? -errno : 0;
}
