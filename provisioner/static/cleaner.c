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
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "static/cleaner.h"
#include "static/discovery.h"
#include "log.h"
#include "walk.h"
#include "ctlclient.h"

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
	struct errmsg msg;
	int r;

	r = ctlclient_wipe(socket_path, name, timeout_ms, &msg);
	if (r < 0)
		return log_error_errno(r, "carvefs volume '%s' not wiped: %s", name, msg.text);
	log_info("carvefs volume '%s' wiped", name);
	return 0;
}

/* ---- other filesystems -------------------------------------------------- */

int cleaner_delete_contents(const char *mount_path, uint64_t *ret_skipped)
{
	uint64_t skipped = 0;
	int fd, r;

	fd = open(mount_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot open \"%s\" to clean it", mount_path);
	r = walk_wipe(fd, &skipped);
	close(fd);
	if (r == -ESTALE)
		log_error_errno(r, "\"%s\" changed while being cleaned", mount_path);
	else if (r == -EOPNOTSUPP)
		log_error("\"%s\" not cleaned: the kernel does not tell mounts apart (needs Linux 5.8)",
			  mount_path);
	else if (r < 0)
		log_error_errno(r, "cleaning \"%s\" left some of it", mount_path);
	if (skipped > 0)
		log_warn("\"%s\": %llu mount(s) inside were not cleaned", mount_path,
			 (unsigned long long)skipped);
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
