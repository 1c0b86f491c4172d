/*
 * pool.c - the pool on disk; see pool.h.
 *
 * Layout:
 *	<pool>/carvefs.lock          flock()ed while a daemon serves the pool
 *	<pool>/carvefs.meta[.prev]   the table (table.c)
 *	<pool>/volumes/<name>/       a volume's backing directory
 *	<pool>/volumes/.trash-*      a deleted volume still being emptied
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "log.h"
#include "pool.h"
#include "quantity.h"
#include "walk.h"
#include "wire.h"
#include "fileio.h"

struct pool {
	char pool_dir[PATH_MAX];
	char discovery_dir[PATH_MAX];
	int pool_fd, volumes_fd, discovery_fd, lock_fd;
	struct table *table;
};

/* Empties and removes volumes/<name>; used for trash directories. */
int pool_remove_tree(struct pool *p, const char *name)
{
	int fd, r;

	fd = openat(p->volumes_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	r = walk_wipe(fd, NULL);
	close(fd);
	if (r == 0 && unlinkat(p->volumes_fd, name, AT_REMOVEDIR) < 0)
		r = -errno;
	return r;
}

/* Empties leftover trash and names backing directories that have no record. */
void pool_sweep(struct pool *p)
{
	struct dirent *de;
	DIR *d;
	int fd;

	/* O_PATH fds cannot be listed: open the directory for reading. */
	fd = openat(p->volumes_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (strncmp(de->d_name, POOL_TRASH_PREFIX, strlen(POOL_TRASH_PREFIX)) == 0) {
			int r = pool_remove_tree(p, de->d_name);

			if (r < 0)
				log_warn_errno(r, "cannot remove deleted volume data '%s/volumes/%s'",
					       p->pool_dir, de->d_name);
			continue;
		}
		if (!table_find(p->table, de->d_name))
			log_warn("backing directory '%s/volumes/%s' has no volume record: not served, "
				 "left untouched", p->pool_dir, de->d_name);
	}
	closedir(d);
}

static int pool_open_dirs(struct pool *p, const char *pool_dir, const char *discovery_dir,
			  bool lock)
{
	char real[PATH_MAX];
	int r;

	r = fileio_mkdir_p(pool_dir, 0700);
	if (r < 0)
		return log_error_errno(r, "cannot create the pool directory '%s'", pool_dir);
	r = fileio_mkdir_p(discovery_dir, 0755);
	if (r < 0)
		return log_error_errno(r, "cannot create the discovery directory '%s'",
				       discovery_dir);
	/* Mountpoints are compared with mountinfo, which has canonical paths. */
	if (!realpath(pool_dir, p->pool_dir) || !realpath(discovery_dir, real))
		return log_error_errno(-errno, "cannot resolve '%s' or '%s'", pool_dir,
				       discovery_dir);
	snprintf(p->discovery_dir, sizeof(p->discovery_dir), "%s", real);

	p->pool_fd = open(p->pool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->pool_fd < 0)
		return log_error_errno(-errno, "cannot open the pool '%s'", p->pool_dir);
	p->lock_fd = openat(p->pool_fd, "carvefs.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (p->lock_fd < 0)
		return log_error_errno(-errno, "cannot open '%s/carvefs.lock'", p->pool_dir);
	if (lock && flock(p->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			/* The caller asks that daemon to hand the volumes over. */
			log_info("pool '%s' is already served by another carvefs daemon", p->pool_dir);
			return -EBUSY;
		}
		return log_error_errno(-errno, "cannot lock the pool '%s'", p->pool_dir);
	}
	if (mkdirat(p->pool_fd, "volumes", 0700) < 0 && errno != EEXIST)
		return log_error_errno(-errno, "cannot create '%s/volumes'", p->pool_dir);
	p->volumes_fd = openat(p->pool_fd, "volumes", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (p->volumes_fd < 0)
		return log_error_errno(-errno, "cannot open '%s/volumes'", p->pool_dir);
	p->discovery_fd = open(p->discovery_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (p->discovery_fd < 0)
		return log_error_errno(-errno, "cannot open the discovery directory '%s'",
				       p->discovery_dir);
	return 0;
}

static int table_open(struct pool *p)
{
	enum table_source src;
	int current_err = 0, r;

	r = table_load(p->pool_fd, &p->table, &src, &current_err);
	if (r < 0) {
		log_error_errno(r, "the volume table '%s/%s' is unreadable and no good previous copy "
				   "exists; refusing to start rather than forget volumes (inspect it, "
				   "or move it away to start with an empty pool)",
				p->pool_dir, TABLE_FILE);
		return r;
	}
	if (src == TABLE_SOURCE_PREVIOUS)
		log_warn_errno(current_err, "the volume table '%s/%s' was refused; using the previous "
					    "copy '%s'",
			       p->pool_dir, TABLE_FILE, TABLE_FILE_PREV);
	return 0;
}

static uint64_t pool_size_bytes(struct pool *p)
{
	struct statvfs sv;

	if (fstatvfs(p->pool_fd, &sv) < 0)
		return UINT64_MAX;
	return (uint64_t)sv.f_blocks * sv.f_frsize;
}

int pool_check_capacity(struct pool *p, const char *name, uint64_t capacity,
			struct errmsg *ret_msg)
{
	uint64_t pool = pool_size_bytes(p), total = capacity;
	char a[32], b[32];

	quantity_format_human(capacity, a, sizeof(a));
	quantity_format_human(pool, b, sizeof(b));
	if (capacity == 0)
		return errmsg_set(ret_msg, -EINVAL,
				  "the size of volume '%s' must be greater than zero", name);
	if (capacity > pool)
		return errmsg_set(ret_msg, -ENOSPC,
				  "volume '%s' of %s cannot fit on the pool's filesystem of %s", name,
				  a, b);
	for (size_t i = 0; i < table_count(p->table); i++) {
		struct volume_record *rec = table_at(p->table, i);

		if (strcmp(rec->name, name) != 0)
			total += rec->capacity_bytes;
	}
	if (total > pool)
		log_warn("the pool '%s' is overcommitted: volumes total %.1f%% of its filesystem",
			 p->pool_dir, 100.0 * (double)total / (double)pool);
	return 0;
}

static int pool_open_as(const char *pool_dir, const char *discovery_dir, bool lock,
			struct pool **ret_pool)
{
	struct pool *p;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pool_fd = p->volumes_fd = p->discovery_fd = p->lock_fd = -1;
	r = pool_open_dirs(p, pool_dir, discovery_dir, lock);
	if (r < 0)
		goto err;
	r = table_open(p);
	if (r < 0)
		goto err;
	if (lock)
		pool_sweep(p);
	*ret_pool = p;
	return 0;
err:
	pool_close(p);
	return r;
}

int pool_open(const char *pool_dir, const char *discovery_dir, struct pool **ret_pool)
{
	return pool_open_as(pool_dir, discovery_dir, true, ret_pool);
}

int pool_open_unlocked(const char *pool_dir, const char *discovery_dir, struct pool **ret_pool)
{
	return pool_open_as(pool_dir, discovery_dir, false, ret_pool);
}

int pool_lock(struct pool *p, bool locked)
{
	if (flock(p->lock_fd, (locked ? LOCK_EX : LOCK_UN) | LOCK_NB) < 0)
		return -errno;
	return 0;
}

struct pool *pool_close(struct pool *p)
{
	if (!p)
		return NULL;
	p->table = table_free(p->table);
	if (p->discovery_fd >= 0)
		close(p->discovery_fd);
	if (p->volumes_fd >= 0)
		close(p->volumes_fd);
	if (p->lock_fd >= 0)
		close(p->lock_fd);
	if (p->pool_fd >= 0)
		close(p->pool_fd);
	free(p);
	return NULL;
}

const char *pool_path(const struct pool *p)
{
	return p->pool_dir;
}

const char *pool_discovery_dir(const struct pool *p)
{
	return p->discovery_dir;
}

int pool_volumes_fd(const struct pool *p)
{
	return p->volumes_fd;
}

int pool_discovery_fd(const struct pool *p)
{
	return p->discovery_fd;
}

struct table *pool_table(struct pool *p)
{
	return p->table;
}

int pool_save(struct pool *p)
{
	int r = table_save(p->pool_fd, p->table);

	if (r < 0)
		log_error_errno(r, "cannot save the volume table in '%s'", p->pool_dir);
	return r;
}

int pool_space(struct pool *p, uint64_t *ret_size_bytes, uint64_t *ret_free_bytes)
{
	struct statvfs sv;

	if (fstatvfs(p->pool_fd, &sv) < 0)
		return -errno;
	*ret_size_bytes = (uint64_t)sv.f_blocks * sv.f_frsize;
	*ret_free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}

int pool_check_room(const struct pool_info *info, const char *name, uint64_t capacity,
		    uint64_t used, double overcommit, struct errmsg *ret_msg)
{
	char want[32], room[32], committed[32], free_b[32];
	double limit, need;

	if (overcommit <= 0)
		return 0;
	limit = (double)info->free_bytes * overcommit;
	need = (double)info->committed_bytes + (double)(capacity > used ? capacity - used : 0);
	if (need <= limit)
		return 0;
	quantity_format_human(capacity > used ? capacity - used : 0, want, sizeof(want));
	quantity_format_human(limit > (double)info->committed_bytes
				      ? (uint64_t)(limit - (double)info->committed_bytes)
				      : 0,
			      room, sizeof(room));
	quantity_format_human(info->committed_bytes, committed, sizeof(committed));
	quantity_format_human(info->free_bytes, free_b, sizeof(free_b));
	return errmsg_set(ret_msg, -ENOSPC,
		"not enough room in the pool for volume '%s': it needs %s, %s are left (free space "
		"%s x overcommit %.2f, minus %s the other volumes may still write)",
		name, want, room, free_b, overcommit, committed);
}
