/*
 * discovery.c - finding local volumes; see include/discovery.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <libmount.h>

#include "static/discovery.h"
#include "fileio.h"
#include "log.h"

/* Bounds one class's scan: a mountDir is a handful of disks, not a tree. */
#define ENTRIES_MAX 100000

struct discovery {
	char **prev; /* the messages of the last pass, sorted */
	size_t n_prev;
	char **cur; /* those of this pass so far */
	size_t n_cur;
};

static void strv_release(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int discovery_new(struct discovery **ret_disc)
{
	struct discovery *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	*ret_disc = d;
	return 0;
}

struct discovery *discovery_free(struct discovery *d)
{
	if (!d)
		return NULL;
	strv_release(d->prev, d->n_prev);
	strv_release(d->cur, d->n_cur);
	free(d);
	return NULL;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Logs a problem at @level the first pass it shows up, at debug level on
 * the passes after while it persists.
 */
__attribute__((format(printf, 4, 5)))
static void note(struct discovery *d, enum log_level level, int err, const char *fmt, ...)
{
	char msg[1024], *key = msg, **grown;
	bool seen;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	seen = d->n_prev > 0 && bsearch(&key, d->prev, d->n_prev, sizeof(*d->prev), str_cmp);
	(void)log_msg(seen ? LOG_LEVEL_DEBUG : level, err, "%s", msg);
	/* Without memory the message is merely repeated next time. */
	grown = realloc(d->cur, (d->n_cur + 1) * sizeof(*d->cur));
	if (!grown)
		return;
	d->cur = grown;
	d->cur[d->n_cur] = strdup(msg);
	if (d->cur[d->n_cur])
		d->n_cur++;
}

/* This pass's messages become the ones to stay quiet about. */
static void notes_rotate(struct discovery *d)
{
	strv_release(d->prev, d->n_prev);
	/* qsort() must not be handed the NULL of a pass without messages. */
	if (d->n_cur)
		qsort(d->cur, d->n_cur, sizeof(*d->cur), str_cmp);
	d->prev = d->cur;
	d->n_prev = d->n_cur;
	d->cur = NULL;
	d->n_cur = 0;
}

bool discovery_is_carvefs(const char *fstype)
{
	return fstype && strcmp(fstype, DISCOVERY_FSTYPE_CARVEFS) == 0;
}

static void volume_release(struct disc_volume *v)
{
	free(v->entry);
	free(v->mount_path);
	free(v->host_path);
	free(v->fstype);
	free(v->source);
}

struct disc_result *discovery_result_free(struct disc_result *r)
{
	if (!r)
		return NULL;
	for (size_t i = 0; i < r->n_volumes; i++)
		volume_release(&r->volumes[i]);
	free(r->volumes);
	free(r);
	return NULL;
}

static int result_append(struct disc_result *res, struct disc_volume *v)
{
	struct disc_volume *vs = realloc(res->volumes, (res->n_volumes + 1) * sizeof(*vs));

	if (!vs)
		return -ENOMEM;
	vs[res->n_volumes++] = *v;
	res->volumes = vs;
	memset(v, 0, sizeof(*v));
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of @path, sorted, so passes and logs are deterministic. */
static int read_entries(const char *path, char ***ret_names, size_t *ret_n)
{
	char **names;
	size_t n;
	int fd, r;

	fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = fileio_list_names(fd, ENTRIES_MAX, &names, &n);
	close(fd);
	if (r < 0)
		return r;
	qsort(names, n, sizeof(*names), name_cmp);
	*ret_names = names;
	*ret_n = n;
	return 0;
}

static bool matches(const struct prov_class *cls, const char *name)
{
	for (char **p = cls->name_patterns; *p; p++)
		if (fnmatch(*p, name, 0) == 0)
			return true;
	return false;
}

static int block_size(const char *path, uint64_t *ret_bytes)
{
	uint64_t bytes = 0;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
		r = -errno;
	close(fd);
	if (r == 0)
		*ret_bytes = bytes;
	return r;
}

static int fs_size(const char *path, uint64_t *ret_bytes)
{
	struct statvfs sv;
	uint64_t bytes;

	if (statvfs(path, &sv) < 0)
		return -errno;
	if (__builtin_mul_overflow((uint64_t)sv.f_blocks, (uint64_t)sv.f_frsize, &bytes))
		bytes = UINT64_MAX;
	*ret_bytes = bytes;
	return 0;
}

static char *path_join(const char *dir, const char *name)
{
	char *s = NULL;

	if (asprintf(&s, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name) < 0)
		return NULL;
	return s;
}

/*
 * Examines one entry. Returns 0 with v->entry set for a volume, 0 with it
 * NULL for something skipped, or -errno for an entry that could not be
 * examined (already logged) or -ENOMEM.
 */
static int examine(struct discovery *d, const struct prov_class *cls, struct libmnt_table *tb,
		   const char *canon_dir, const char *name, struct disc_volume *v)
{
	char *check_path = NULL;
	struct libmnt_fs *fs;
	struct stat st;
	int r;

	v->cls = cls;
	v->mount_path = path_join(cls->mount_dir, name);
	v->host_path = path_join(cls->host_dir, name);
	/* mountinfo holds canonical paths: look up the entry below the real mountDir */
	check_path = path_join(canon_dir, name);
	if (!v->mount_path || !v->host_path || !check_path) {
		r = -ENOMEM;
		goto out;
	}
	if (stat(v->mount_path, &st) < 0) {
		r = -errno;
		if (r == -ENOENT) {
			r = 0; /* gone since readdir, or a dangling symlink */
			log_debug("path \"%s\" vanished or dangles, skipped", v->mount_path);
		} else {
			note(d, LOG_LEVEL_WARN, r, "path \"%s\" cannot be examined", v->mount_path);
		}
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		r = block_size(v->mount_path, &v->capacity_bytes);
		if (r < 0) {
			note(d, LOG_LEVEL_WARN, r, "path \"%s\": block device size unknown",
			     v->mount_path);
			goto out;
		}
		v->is_block = true;
	} else if (S_ISDIR(st.st_mode)) {
		if (cls->volume_mode == PROV_MODE_BLOCK) {
			note(d, LOG_LEVEL_WARN, 0,
			     "path \"%s\" of filesystem mode cannot be used to create a block volume (class '%s')",
			     v->mount_path, cls->name);
			r = 0;
			goto out;
		}
		fs = mnt_table_find_target(tb, check_path, MNT_ITER_BACKWARD);
		if (!fs) {
			note(d, LOG_LEVEL_WARN, 0, "path \"%s\" is not a valid mount point",
			     v->mount_path);
			r = 0;
			goto out;
		}
		if ((mnt_fs_get_fstype(fs) && !(v->fstype = strdup(mnt_fs_get_fstype(fs)))) ||
		    (mnt_fs_get_source(fs) && !(v->source = strdup(mnt_fs_get_source(fs))))) {
			r = -ENOMEM;
			goto out;
		}
		r = fs_size(v->mount_path, &v->capacity_bytes);
		if (r < 0) {
			note(d, LOG_LEVEL_WARN, r, "path \"%s\": filesystem size unknown",
			     v->mount_path);
			goto out;
		}
	} else {
		note(d, LOG_LEVEL_WARN, 0,
		     "path \"%s\" is neither a directory nor a block device, skipped",
		     v->mount_path);
		r = 0;
		goto out;
	}
	v->entry = strdup(name);
	r = v->entry ? 0 : -ENOMEM;
out:
	free(check_path);
	if (!v->entry) {
		volume_release(v);
		memset(v, 0, sizeof(*v));
	}
	return r;
}

static int scan_class(struct discovery *d, const struct prov_class *cls,
		      struct libmnt_table *tb, struct disc_result *res)
{
	char **names = NULL, *canon = NULL;
	size_t n = 0;
	int r;

	canon = realpath(cls->mount_dir, NULL);
	if (!canon) {
		r = -errno;
		if (r == -ENOMEM)
			return r;
		note(d, LOG_LEVEL_ERROR, r, "class '%s': cannot open mountDir \"%s\"", cls->name,
		     cls->mount_dir);
		res->n_errors++;
		return 0;
	}
	r = read_entries(cls->mount_dir, &names, &n);
	if (r < 0) {
		if (r != -ENOMEM) {
			note(d, LOG_LEVEL_ERROR, r, "class '%s': cannot read mountDir \"%s\"",
			     cls->name, cls->mount_dir);
			res->n_errors++;
			r = 0;
		}
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct disc_volume v = { 0 };

		if (!matches(cls, names[i])) {
			log_debug("\"%s/%s\" does not match the class's namePattern, skipped",
				  cls->mount_dir, names[i]);
			continue;
		}
		r = examine(d, cls, tb, canon, names[i], &v);
		if (r == -ENOMEM)
			goto out;
		if (r < 0) {
			res->n_errors++;
			continue;
		}
		if (!v.entry)
			continue;
		r = result_append(res, &v);
		if (r < 0) {
			volume_release(&v);
			goto out;
		}
	}
	r = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(canon);
	return r;
}

int discovery_scan(struct discovery *d, const struct prov_config *cfg, const char *mountinfo,
		   struct disc_result **ret_result)
{
	struct disc_result *res = NULL;
	struct libmnt_table *tb;
	int r = 0;

	errno = 0;
	tb = mnt_new_table_from_file(mountinfo ? mountinfo : DISCOVERY_MOUNTINFO);
	if (!tb)
		return errno > 0 ? -errno : -EIO;
	res = calloc(1, sizeof(*res));
	if (!res) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cfg->n_classes; i++) {
		r = scan_class(d, &cfg->classes[i], tb, res);
		if (r < 0)
			goto out;
	}
	*ret_result = res;
	res = NULL;
out:
	notes_rotate(d);
	discovery_result_free(res);
	mnt_unref_table(tb);
	return r;
}
