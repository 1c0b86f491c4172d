/*
 * cleaner.c - emptying released local volumes; see include/cleaner.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "static/cleaner.h"
#include "fileio.h"
#include "static/discovery.h"
#include "log.h"
#include "volclient.h"

extern char **environ;

/* ---- carvefs volumes ---------------------------------------------------- */

const char *cleaner_carvefs_name(const char *source, const char *mount_path)
{
	const char *slash;

	if (source && strncmp(source, "carvefs:", 8) == 0 && source[8] != '\0')
		return source + 8;
	slash = strrchr(mount_path, '/');
	return slash ? slash + 1 : mount_path;
}

int cleaner_wipe_carvefs(const char *socket_path, const char *name, int timeout_ms)
{
	char msg[WIRE_MSG_MAX];
	int r;

	r = volclient_wipe(socket_path, name, timeout_ms, msg);
	if (r < 0)
		return log_error_errno(r, "carvefs volume '%s' not wiped: %s", name, msg);
	log_info("carvefs volume '%s' wiped", name);
	return 0;
}

/* ---- other filesystems -------------------------------------------------- */

/*
 * One directory being emptied. Only the innermost one has an open fd; the
 * others are remembered by name and identity so the walk can climb back.
 */
struct frame {
	char **names; /* the entries, read up front */
	size_t n_names, next;
	char *name; /* this directory's name in its parent; NULL at the top */
	dev_t dev;
	ino_t ino;
};

struct identity {
	dev_t dev;
	uint64_t mnt_id;
	bool has_mnt_id;
};

static void frame_release(struct frame *f)
{
	fileio_names_free(f->names, f->n_names);
	free(f->name);
}

static void keep_first(int *first, int r)
{
	if (r < 0 && *first == 0)
		*first = r;
}

/*
 * statx without following a symlink or triggering an automount. The mount
 * id (Linux 5.8) also catches a bind mount from the same filesystem, which
 * st_dev alone cannot tell apart.
 */
static int stat_entry(int dfd, const char *name, struct statx *ret)
{
	if (statx(dfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
		  STATX_TYPE | STATX_INO | STATX_MNT_ID, ret) < 0)
		return -errno;
	return 0;
}

static bool same_mount(const struct identity *root, const struct statx *stx)
{
	if (makedev(stx->stx_dev_major, stx->stx_dev_minor) != root->dev)
		return false;
	if (root->has_mnt_id && (stx->stx_mask & STATX_MNT_ID))
		return stx->stx_mnt_id == root->mnt_id;
	return true;
}

static int frames_push(struct frame **frames, size_t *n, size_t *cap, struct frame *f)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct frame *grown = realloc(*frames, ncap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		*frames = grown;
		*cap = ncap;
	}
	(*frames)[(*n)++] = *f;
	return 0;
}

int cleaner_delete_contents(const char *mount_path, uint64_t *ret_skipped)
{
	struct frame *frames = NULL, top = { 0 };
	size_t n_frames = 0, cap = 0;
	struct identity root;
	struct statx stx;
	uint64_t skipped = 0;
	bool reported = false;
	int cur = -1, first = 0, r;

	cur = open(mount_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (cur < 0)
		return log_error_errno(-errno, "cannot open \"%s\" to clean it", mount_path);
	if (statx(cur, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO | STATX_MNT_ID, &stx) < 0) {
		r = -errno;
		goto out;
	}
	root.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	root.has_mnt_id = stx.stx_mask & STATX_MNT_ID;
	root.mnt_id = stx.stx_mnt_id;
	top.dev = root.dev;
	top.ino = stx.stx_ino;
	r = fileio_list_names(cur, 0, &top.names, &top.n_names);
	if (r == 0)
		r = frames_push(&frames, &n_frames, &cap, &top);
	if (r < 0) {
		frame_release(&top);
		goto out;
	}

	while (n_frames > 0) {
		struct frame *f = &frames[n_frames - 1];

		if (f->next < f->n_names) {
			const char *name = f->names[f->next++];
			struct frame child = { 0 };
			struct stat st;
			int fd;

			r = stat_entry(cur, name, &stx);
			if (r < 0) {
				if (r != -ENOENT)
					keep_first(&first, r);
				continue;
			}
			if (!same_mount(&root, &stx)) {
				log_warn("\"%s\": left \"%s\" alone, it is another mount", mount_path,
					 name);
				skipped++;
				continue;
			}
			if (!S_ISDIR(stx.stx_mode)) {
				if (unlinkat(cur, name, 0) < 0 && errno != ENOENT)
					keep_first(&first, -errno);
				continue;
			}
			fd = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				if (errno != ENOENT)
					keep_first(&first, -errno);
				continue;
			}
			/* Swapped for something else between statx and open: leave it. */
			if (fstat(fd, &st) < 0 || st.st_ino != stx.stx_ino || st.st_dev != root.dev) {
				keep_first(&first, -ESTALE);
				close(fd);
				continue;
			}
			child.dev = st.st_dev;
			child.ino = st.st_ino;
			child.name = strdup(name);
			r = child.name ? fileio_list_names(fd, 0, &child.names, &child.n_names) : -ENOMEM;
			if (r == 0)
				r = frames_push(&frames, &n_frames, &cap, &child);
			if (r < 0) {
				frame_release(&child);
				close(fd);
				if (r == -ENOMEM)
					goto out;
				keep_first(&first, r);
				continue;
			}
			close(cur);
			cur = fd;
			continue;
		}

		/* This directory is done: climb to its parent and remove it. */
		if (n_frames == 1)
			break;
		{
			struct frame *parent = &frames[n_frames - 2];
			struct stat st;
			int pfd;

			pfd = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (pfd < 0) {
				r = -errno;
				goto out;
			}
			if (fstat(pfd, &st) < 0 || st.st_dev != parent->dev ||
			    st.st_ino != parent->ino) {
				/* Moved while we worked: removing by name could hit the wrong tree. */
				close(pfd);
				r = log_error_errno(-ESTALE, "\"%s\" changed while being cleaned",
						    mount_path);
				reported = true;
				goto out;
			}
			close(cur);
			cur = pfd;
			if (unlinkat(cur, f->name, AT_REMOVEDIR) < 0 && errno != ENOENT)
				keep_first(&first, -errno);
			frame_release(f);
			n_frames--;
		}
	}
	r = first;
out:
	if (r < 0 && !reported)
		log_error_errno(r, "cleaning \"%s\" left some of it", mount_path);
	if (skipped > 0)
		log_warn("\"%s\": %llu mount(s) inside were not cleaned", mount_path,
			 (unsigned long long)skipped);
	while (n_frames > 0)
		frame_release(&frames[--n_frames]);
	free(frames);
	if (cur >= 0)
		close(cur);
	if (ret_skipped)
		*ret_skipped = skipped;
	return r;
}

/* ---- block devices ------------------------------------------------------ */

int cleaner_run_block_command(char *const argv[], const char *device)
{
	posix_spawn_file_actions_t fa;
	char **envp = NULL, *var = NULL;
	size_t n = 0, k = 0;
	int status, r;
	pid_t pid;

	if (!argv || !argv[0])
		return -EINVAL;
	if (asprintf(&var, "%s=%s", CLEANER_BLOCK_ENV, device) < 0)
		return -ENOMEM;
	while (environ && environ[n])
		n++;
	envp = calloc(n + 2, sizeof(*envp));
	if (!envp) {
		free(var);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], CLEANER_BLOCK_ENV "=", strlen(CLEANER_BLOCK_ENV) + 1) != 0)
			envp[k++] = environ[i];
	envp[k] = var;

	r = posix_spawn_file_actions_init(&fa);
	if (r != 0) {
		r = -r;
		goto out;
	}
	r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (r == 0)
		r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0) {
		r = log_error_errno(-r, "cannot run the block cleaner '%s'", argv[0]);
		goto out;
	}
	log_info("cleaning block device %s with '%s' (pid %ld)", device, argv[0], (long)pid);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			r = log_error_errno(-errno, "lost the block cleaner '%s'", argv[0]);
			goto out;
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		log_info("block device %s cleaned", device);
		r = 0;
	} else if (WIFEXITED(status)) {
		log_error("block cleaner '%s' failed on %s: exit status %d", argv[0], device,
			  WEXITSTATUS(status));
		r = -EIO;
	} else {
		log_error("block cleaner '%s' on %s killed by signal %d", argv[0], device,
			  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
		r = -EIO;
	}
out:
	free(envp);
	free(var);
	return r;
}

/* ---- dispatch ----------------------------------------------------------- */

int cleaner_clean(const struct cleaner_target *t)
{
	if (t->is_block)
		return cleaner_run_block_command(t->block_cleaner_command, t->mount_path);
	if (t->fstype && strcmp(t->fstype, DISCOVERY_FSTYPE_CARVEFS) == 0)
		return cleaner_wipe_carvefs(t->carvefs_socket,
					    cleaner_carvefs_name(t->source, t->mount_path),
					    CLEANER_WIPE_TIMEOUT_MS);
	return cleaner_delete_contents(t->mount_path, NULL);
}
