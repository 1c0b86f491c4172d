/*
 * main.c - the carvefs daemon: flags, start-up, signals, shutdown.
 *
 * Start-up order: the monitoring port (first, so that a bad --listen fails
 * before anything is mounted, and so that probes hear "starting" while a
 * crashed pool is recounted), event loops, then the volume manager (which
 * mounts the table's volumes on those loops), then the control socket, so
 * that by the time a client can ask for anything, everything it could ask
 * about exists. Shutdown runs the other way round, except that the
 * monitoring port goes last, answering "stopping" meanwhile. Without
 * --foreground the daemon forks and the parent exits only once the child is
 * serving (or with the child's error), so a script that starts it can rely
 * on the volumes being mounted.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/un.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "control.h"
#include "handover.h"
#include "fileio.h"
#include "httpd.h"
#include "keeper.h"
#include "keeperlink.h"
#include "log.h"
#include "monitor.h"
#include "uring.h"
#include "vfs/vfs.h"
#include "volume.h"
#include "wire.h"

#define CARVEFS_VERSION "0.1.0"
/* The volumes' crash state: the control socket's path followed by this. */
#define STATE_DIR_SUFFIX ".state"

struct options {
	const char *pool_dir;
	const char *discovery_dir;
	const char *socket_path;
	const char *listen; /* NULL: no HTTP endpoints */
	enum { KEEPER_MODE_START, KEEPER_MODE_EXTERNAL, KEEPER_MODE_OFF } keeper_mode;
	const char *keeper_socket; /* NULL: the control socket's path + KEEPER_SOCKET_SUFFIX */
	bool foreground;
	bool hold_after_handover;
	unsigned threads;
	enum log_level level;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: carvefs --pool DIR --discovery-dir DIR [OPTIONS]\n"
		"\n"
		"Serves the volumes of a pool (a directory on a local disk) as FUSE\n"
		"filesystems mounted at DISCOVERY-DIR/NAME, each with its own capacity.\n"
		"\n"
		"  --pool DIR            the pool: volume table and backing directories\n"
		"                        (created if missing)\n"
		"  --discovery-dir DIR   where volumes are mounted (created if missing)\n"
		"  --socket PATH         control socket (default %s)\n"
		"  --listen ADDR         serve /metrics (Prometheus) and /healthz over HTTP on\n"
		"                        ADDR: HOST:PORT, [IPV6]:PORT or :PORT (default: off)\n"
		"  --keeper MODE         who keeps the volumes' /dev/fuse fds across a crash of\n"
		"                        carvefs: start (default: a carvefs-keeper, started\n"
		"                        from beside this binary when none serves), external\n"
		"                        (one started by the pod or unit; never start one) or\n"
		"                        off (a crash ends the mounts)\n"
		"  --keeper-socket PATH  the keeper's socket (default: the control socket's\n"
		"                        path followed by %s)\n"
		"  --foreground          do not fork; log to stderr (for systemd and pods)\n"
		"  --hold-after-handover once a successor took the volumes over, keep running,\n"
		"                        serving nothing, until SIGTERM (for containers that\n"
		"                        are restarted when they exit)\n"
		"  --threads N           event-loop threads (default: one per CPU)\n"
		"  --fd-cache N          fds of backing files and directories kept open for\n"
		"                        all volumes together (default %d, at least %d)\n"
		"  --log-level LEVEL     error, warn, info (default) or debug\n"
		"  --help                this text\n"
		"  --version             the version\n"
		"\n"
		"Started while another carvefs serves the pool, it takes the volumes over\n"
		"from it without unmounting them (the other one exits 0).\n"
		"SIGTERM or SIGINT unmount every volume, record usage and exit 0.\n"
		"Volumes are managed with carvectl(8).\n",
		WIRE_DEFAULT_SOCKET, KEEPER_SOCKET_SUFFIX, VFS_FD_CACHE_DEFAULT, VFS_FD_CACHE_MIN);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "pool", required_argument, NULL, 'p' },
		{ "discovery-dir", required_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'L' },
		{ "keeper", required_argument, NULL, 'k' },
		{ "keeper-socket", required_argument, NULL, 'K' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "hold-after-handover", no_argument, NULL, 'H' },
		{ "threads", required_argument, NULL, 't' },
		{ "fd-cache", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int c;

	o->socket_path = WIRE_DEFAULT_SOCKET;
	o->level = LOG_LEVEL_INFO;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		char *end;
		unsigned long n;

		switch (c) {
		case 'p':
			o->pool_dir = optarg;
			break;
		case 'd':
			o->discovery_dir = optarg;
			break;
		case 's':
			o->socket_path = optarg;
			break;
		case 'L':
			if (httpd_check_addr(optarg) < 0) {
				log_error("--listen takes HOST:PORT, [IPV6]:PORT or :PORT, not '%s'",
					  optarg);
				return -EINVAL;
			}
			o->listen = optarg;
			break;
		case 'k':
			if (strcmp(optarg, "start") == 0) {
				o->keeper_mode = KEEPER_MODE_START;
			} else if (strcmp(optarg, "external") == 0) {
				o->keeper_mode = KEEPER_MODE_EXTERNAL;
			} else if (strcmp(optarg, "off") == 0) {
				o->keeper_mode = KEEPER_MODE_OFF;
			} else {
				log_error("--keeper takes start, external or off, not '%s'", optarg);
				return -EINVAL;
			}
			break;
		case 'K':
			o->keeper_socket = optarg;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'H':
			o->hold_after_handover = true;
			break;
		case 't':
			errno = 0;
			n = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || n == 0 || n > 1024) {
				log_error("--threads takes a number from 1 to 1024, not '%s'", optarg);
				return -EINVAL;
			}
			o->threads = (unsigned)n;
			break;
		case 'c':
			errno = 0;
			n = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || n < VFS_FD_CACHE_MIN || n > 1u << 24) {
				log_error("--fd-cache takes a number from %d to %u, not '%s'",
					  VFS_FD_CACHE_MIN, 1u << 24, optarg);
				return -EINVAL;
			}
			vfs_set_fd_cache(n);
			break;
		case 'l':
			if (log_level_parse(optarg, &o->level) < 0) {
				log_error("--log-level takes error, warn, info or debug, not '%s'", optarg);
				return -EINVAL;
			}
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("carvefs %s\n", CARVEFS_VERSION);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument '%s' (see --help)", argv[optind]);
		return -EINVAL;
	}
	if (!o->pool_dir || !o->discovery_dir) {
		log_error("--pool and --discovery-dir are required (see --help)");
		return -EINVAL;
	}
	return 0;
}

/*
 * Connects to the keeper (keeperlink.h), which is told of every volume the
 * manager serves. Returns 0 (*ret_link NULL with --keeper off) or -errno.
 */
static int keeper_start(const struct options *o, char *socket_buf, size_t size,
			struct keeperlink **ret_link)
{
	char exe[4096];
	struct keeperlink_config cfg = { .socket_path = o->keeper_socket };
	struct utsname u;
	unsigned major, minor;
	int r;

	*ret_link = NULL;
	if (uname(&u) == 0 && sscanf(u.release, "%u.%u", &major, &minor) == 2 &&
	    (major < 6 || (major == 6 && minor < 9)))
		log_warn("Linux %s cannot resend requests to a restarted daemon (FUSE_NOTIFY_RESEND "
			 "came in 6.9): a crash of carvefs will end every mount, as without a keeper",
			 u.release);
	if (o->keeper_mode == KEEPER_MODE_OFF) {
		log_warn("--keeper off: a crash of carvefs will end every volume's mount");
		return 0;
	}
	if (!cfg.socket_path) {
		if ((size_t)snprintf(socket_buf, size, "%s%s", o->socket_path,
				     KEEPER_SOCKET_SUFFIX) >= size)
			return -ENAMETOOLONG;
		cfg.socket_path = socket_buf;
	}
	if (o->keeper_mode == KEEPER_MODE_START) {
		r = keeperlink_exe_beside_self(exe, sizeof(exe));
		if (r < 0)
			log_error_errno(r, "no carvefs-keeper beside carvefs to start");
		else
			cfg.keeper_exe = exe;
	}
	return keeperlink_start(&cfg, ret_link);
}

static void fuse_log_to_ours(enum fuse_log_level level, const char *fmt, va_list ap)
{
	enum log_level l = level <= FUSE_LOG_ERR ? LOG_LEVEL_ERROR :
			   level <= FUSE_LOG_WARNING ? LOG_LEVEL_WARN :
			   level <= FUSE_LOG_INFO ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG;
	char msg[1024];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	if (n && msg[n - 1] == '\n')
		msg[n - 1] = '\0';
	log_msg(l, 0, "libfuse: %s", msg);
}

/*
 * Every file a pod has open holds an fd here, for all volumes together, on
 * top of the --fd-cache fds of backing objects: a limit of a few thousand
 * would cap how many files the volumes can have open, and past it even
 * unlink fails (EMFILE). As root the hard limit
 * may go up to the kernel's fs.nr_open; otherwise take what the hard limit
 * allows.
 */
#define FD_LIMIT_WANTED 65536

static void raise_fd_limit(void)
{
	struct rlimit rl;
	char *text = NULL;
	size_t len;
	unsigned long long nr_open = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (fileio_read(AT_FDCWD, "/proc/sys/fs/nr_open", true, 64, &text, &len) == 0)
		nr_open = strtoull(text, NULL, 10);
	free(text);
	if (nr_open > rl.rlim_max) {
		struct rlimit want = { .rlim_cur = nr_open, .rlim_max = nr_open };

		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < FD_LIMIT_WANTED)
		log_warn("the open file limit is %llu (no CAP_SYS_RESOURCE to raise it): the "
			 "volumes together can have about that many files in use; raise it with "
			 "LimitNOFILE= or ulimit -Hn",
			 (unsigned long long)rl.rlim_cur);
}

/*
 * Forks; the parent waits for one status byte from the child (0 = serving)
 * and exits with it. Returns the pipe's write end in the child.
 */
static int daemonize(void)
{
	int fds[2];
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		unsigned char status = 1;

		close(fds[1]);
		if (read(fds[0], &status, 1) != 1)
			status = 1;
		_exit(status);
	}
	close(fds[0]);
	if (setsid() < 0)
		return -errno;
	return fds[1];
}

static void report_ready(int *fd, unsigned char status)
{
	if (*fd < 0)
		return;
	(void)!write(*fd, &status, 1);
	close(*fd);
	*fd = -1;
}

/*
 * Under systemd, a successor started by ExecReload= tells the service
 * manager that it is the service's main process now, before the old one
 * exits (systemd handles notifications before the exit of a process, and
 * needs NotifyAccess=all to take one from a process that is not the main
 * one yet). The protocol is one datagram to $NOTIFY_SOCKET; nothing else of
 * sd_notify is used.
 */
static void notify_main_pid(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char msg[64];
	size_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(addr.sun_path))
		return;
	memcpy(addr.sun_path, path, strlen(path));
	len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
	if (path[0] == '@')
		addr.sun_path[0] = '\0'; /* an abstract socket */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	snprintf(msg, sizeof(msg), "MAINPID=%d\nREADY=1", (int)getpid());
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&addr,
		   (socklen_t)len) < 0)
		log_warn_errno(-errno, "cannot tell the service manager that this process serves "
				       "now ($NOTIFY_SOCKET)");
	close(fd);
}

/*
 * The control socket, which a successor that goes away before serving may
 * leave replaced by its own, dead one: then it is started again.
 */
struct control_slot {
	pthread_mutex_t lock;
	struct control *ctl; /* protected by lock */
	bool closing;	     /* protected by lock: main() is stopping */
	const char *path;
	struct volmgr *mgr;
	pthread_t main_thread;
};

static void control_slot_stop(void *arg)
{
	struct control_slot *cs = arg;

	pthread_mutex_lock(&cs->lock);
	cs->ctl = control_stop(cs->ctl);
	pthread_mutex_unlock(&cs->lock);
}

static void control_take_back(void *arg)
{
	struct control_slot *cs = arg;
	int r = 0;

	pthread_mutex_lock(&cs->lock);
	if (!cs->closing) {
		cs->ctl = control_stop(cs->ctl);
		r = control_start(cs->path, cs->mgr, &cs->ctl);
	}
	pthread_mutex_unlock(&cs->lock);
	if (r < 0)
		log_error_errno(r, "cannot serve the control socket '%s' again", cs->path);
}

static void handed_over(void *arg)
{
	struct control_slot *cs = arg;

	/* SIGUSR2 is blocked everywhere and taken by sigwait() in main(). */
	pthread_kill(cs->main_thread, SIGUSR2);
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct uring_pool *loops = NULL;
	struct volmgr *mgr = NULL;
	struct control_slot cs = { .lock = PTHREAD_MUTEX_INITIALIZER, .path = NULL };
	struct handover *ho = NULL;
	struct handover_client *successor_of = NULL;
	struct monitor *mon = NULL;
	struct keeperlink *keeper = NULL;
	char keeper_socket[4096], state_dir[4096];
	sigset_t sigs;
	int ready_fd = -1, sig = 0, r;

	log_init("carvefs", LOG_LEVEL_INFO);
	r = parse_options(argc, argv, &o);
	if (r < 0)
		return 2;
	log_set_level(o.level);
	if (geteuid() != 0) {
		log_error("carvefs must run as root: it mounts filesystems and serves every uid");
		return 1;
	}
	/*
	 * The kernel has already applied the caller's umask to the mode of
	 * every CREATE, MKDIR and MKNOD (we do not ask for FUSE_DONT_MASK nor
	 * POSIX ACLs), so the backing object must get that mode as it is. The
	 * umask is per process, shared by every thread: set once, before any
	 * thread starts, and never changed. Our own files name their modes.
	 */
	umask(0);
	fuse_set_log_func(fuse_log_to_ours);
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	if (!o.foreground) {
		ready_fd = daemonize();
		if (ready_fd < 0) {
			log_error_errno(ready_fd, "cannot start in the background");
			return 1;
		}
	}
	/* Blocked before any thread starts, so only sigwait() below sees them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	cs.path = o.socket_path;
	cs.main_thread = pthread_self();

	if (o.listen) {
		r = monitor_start(o.listen, CARVEFS_VERSION, &mon);
		if (r < 0) {
			if (r == -EINVAL)
				log_error("--listen '%s': no such address", o.listen);
			else
				log_error_errno(r, "cannot listen on '%s' (--listen)", o.listen);
			goto out;
		}
		log_info("serving /metrics and /healthz on '%s' (port %u)", o.listen,
			 monitor_port(mon));
	}
	r = uring_pool_start(o.threads, &loops);
	if (r < 0) {
		log_error_errno(r, "cannot start the io_uring event loops");
		goto out;
	}
	r = keeper_start(&o, keeper_socket, sizeof(keeper_socket), &keeper);
	if (r < 0) {
		log_error_errno(r, "cannot set up the keeper's link");
		goto out;
	}
	struct volmgr_config cfg = { .pool_dir = o.pool_dir,
				     .discovery_dir = o.discovery_dir,
				     .loops = loops,
				     .keeper = keeper };
	/* Beside the control socket, on tmpfs: it must outlive the daemon, not the machine. */
	if (keeper) {
		if ((size_t)snprintf(state_dir, sizeof(state_dir), "%s%s", o.socket_path,
				     STATE_DIR_SUFFIX) >= sizeof(state_dir)) {
			r = log_error_errno(-ENAMETOOLONG, "control socket path too long");
			goto out;
		}
		cfg.state_dir = state_dir;
	}
	/*
	 * Only a daemon that found the pool's lock free lets go of what the
	 * keeper holds (volmgr_start()); a successor takes the connections
	 * over instead, and hands them to the keeper as its own.
	 */
	r = volmgr_start(&cfg, &mgr);
	if (r == -EBUSY)
		r = handover_take(o.socket_path, &cfg, &mgr, &successor_of);
	if (r < 0)
		goto out;
	cs.mgr = mgr;
	/*
	 * The old daemon still listens there (a verb of it may wait for its
	 * manager), and will refuse everything from now on: take the path.
	 */
	if (successor_of && unlink(o.socket_path) < 0 && errno != ENOENT)
		log_warn_errno(-errno, "cannot remove the previous daemon's control socket '%s'",
			       o.socket_path);
	r = control_start(o.socket_path, mgr, &cs.ctl);
	if (r < 0 && successor_of) {
		/* The volumes are ours now: stopping would unmount them under their users. */
		log_error_errno(r, "cannot serve the control socket '%s'; serving the volumes "
				   "without it",
				o.socket_path);
	} else if (r < 0) {
		log_error_errno(r, "cannot serve the control socket '%s'", o.socket_path);
		goto out;
	}
	r = handover_listen(o.socket_path, mgr,
			    &(struct handover_hooks){ .take_back = control_take_back,
						      .done = handed_over,
						      .arg = &cs },
			    &ho);
	if (r < 0)
		log_warn("serving without a hand-over socket: a successor will not be able to "
			 "take the volumes over");
	if (successor_of)
		notify_main_pid();
	successor_of = handover_client_serving(successor_of);
	log_info("carvefs %s ready: %u event loop(s), control socket '%s'", CARVEFS_VERSION,
		 uring_pool_threads(loops), o.socket_path);
	monitor_serving(mon, mgr, keeper);
	report_ready(&ready_fd, 0);

	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP)
			continue; /* nothing to reload: the table is authoritative */
		if (sig == SIGUSR2 && !handover_done(ho))
			continue;
		break;
	}
	/* The successor holds the volumes at the keeper now; this daemon only lets go. */
	if (sig == SIGUSR2)
		keeperlink_forget_all(keeper);
	if (sig == SIGUSR2 && o.hold_after_handover) {
		/*
		 * A container that exits is restarted, and a restarted daemon
		 * would take the volumes back. Let go of everything and wait.
		 */
		monitor_handed_over(mon);
		control_slot_stop(&cs);
		ho = handover_stop(ho);
		mgr = volmgr_stop(mgr);
		loops = uring_pool_stop(loops);
		log_info("the volumes are served by the successor: waiting for SIGTERM "
			 "(--hold-after-handover)");
		do
			sig = 0;
		while (sigwait(&sigs, &sig) != 0 || (sig != SIGTERM && sig != SIGINT));
		log_info("received %s: exiting", strsignal(sig));
	} else if (sig == SIGUSR2)
		log_info("the volumes are served by the successor: exiting");
	else
		log_info("received %s: unmounting and recording usage", strsignal(sig));
	r = 0;
out:
	monitor_stopping(mon);
	pthread_mutex_lock(&cs.lock);
	cs.closing = true;
	pthread_mutex_unlock(&cs.lock);
	control_slot_stop(&cs);
	/* Waits for a hand-over in progress: its outcome decides what stop does. */
	ho = handover_stop(ho);
	mgr = volmgr_stop(mgr);
	keeper = keeperlink_stop(keeper);
	loops = uring_pool_stop(loops);
	mon = monitor_stop(mon);
	report_ready(&ready_fd, 1);
	return r < 0 ? 1 : 0;
}
