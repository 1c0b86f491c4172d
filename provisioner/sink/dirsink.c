/*
 * dirsink.c - the directory sink: PV manifests in a directory; see
 * include/sink.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "pv.h"
#include "fileio.h"
#include "k8sname.h"
#include "sink/sink.h"

#define MANIFEST_SUFFIX ".yaml"
#define TMP_SUFFIX ".tmp"
#define MANIFEST_MAX (1024 * 1024)
#define PV_NAME_LEN_MAX K8SNAME_SUBDOMAIN_MAX

static const char manifest_header[] =
	"# Written by carve-provisioner; removed when its volume goes away.\n";

struct dirsink {
	struct sink base;
	char *path;
	int dir_fd;
};

static struct dirsink *to_dirsink(struct sink *s)
{
	return (struct dirsink *)s;
}

/*
 * A PV name is a DNS-1123 subdomain: that also makes it a safe file name
 * (no '/', never "." or "..", no leading '.' to hide among the temporary
 * files).
 */
static bool pv_name_ok(const char *name)
{
	return k8sname_dns_subdomain(name, NULL) == 0;
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int dirsink_list(struct sink *s, json_t **ret_pvs)
{
	struct dirsink *d = to_dirsink(s);
	json_t *pvs = NULL;
	char **names = NULL;
	size_t n = 0;
	int r;

	r = fileio_list_names(d->dir_fd, 0, &names, &n);
	if (r < 0)
		return r;
	pvs = json_array();
	if (!pvs) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *file = names[i];
		char stem[PV_NAME_LEN_MAX + 1], *text = NULL;
		const char *name;
		json_t *pv = NULL;
		size_t len = 0, stem_len;

		if (file[0] == '.' || !has_suffix(file, MANIFEST_SUFFIX))
			continue;
		stem_len = strlen(file) - strlen(MANIFEST_SUFFIX);
		if (stem_len > PV_NAME_LEN_MAX)
			continue;
		memcpy(stem, file, stem_len);
		stem[stem_len] = '\0';

		r = fileio_read(d->dir_fd, file, false, MANIFEST_MAX, &text, &len);
		if (r == -ENOENT)
			continue;
		if (r < 0) {
			log_warn_errno(r, "%s/%s: cannot read the manifest, ignoring it", d->path,
				       file);
			continue;
		}
		r = pv_manifest_parse(text, len, &pv);
		free(text);
		if (r == -ENOMEM)
			goto out;
		if (r < 0) {
			log_warn("%s/%s: not a PV manifest, ignoring it", d->path, file);
			continue;
		}
		name = pv_get_name(pv);
		if (!name || strcmp(name, stem) != 0) {
			log_warn("%s/%s: metadata.name is not '%s', ignoring it", d->path,
				 file, stem);
			json_decref(pv);
			continue;
		}
		if (json_array_append_new(pvs, pv) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	*ret_pvs = pvs;
	pvs = NULL;
	r = 0;
out:
	json_decref(pvs);
	fileio_names_free(names, n);
	return r;
}

static int dirsink_create(struct sink *s, const json_t *pv)
{
	struct dirsink *d = to_dirsink(s);
	const char *name = pv_get_name(pv);
	char file[PV_NAME_LEN_MAX + sizeof(MANIFEST_SUFFIX)];
	char tmp[PV_NAME_LEN_MAX + 64];
	char *text = NULL, *whole = NULL;
	size_t len = 0;
	struct stat st;
	int n, r;

	if (!name || !pv_name_ok(name))
		return -EINVAL;
	snprintf(file, sizeof(file), "%s%s", name, MANIFEST_SUFFIX);
	snprintf(tmp, sizeof(tmp), ".%s%s.%ld%s", name, MANIFEST_SUFFIX, (long)getpid(),
		 TMP_SUFFIX);
	if (fstatat(d->dir_fd, file, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST;
	if (errno != ENOENT)
		return -errno;
	r = pv_manifest_format(pv, &text, &len);
	if (r < 0)
		return r;
	n = asprintf(&whole, "%s%.*s", manifest_header, (int)len, text);
	if (n < 0) {
		whole = NULL;
		r = -ENOMEM;
		goto out;
	}
	r = fileio_write_tmp(d->dir_fd, tmp, whole, (size_t)n, 0644);
	if (r < 0)
		goto out;
	/* RENAME_NOREPLACE: a manifest that appeared meanwhile is not overwritten. */
	r = fileio_commit(d->dir_fd, tmp, file, RENAME_NOREPLACE);
out:
	free(whole);
	free(text);
	return r;
}

static int dirsink_remove(struct sink *s, const char *name)
{
	struct dirsink *d = to_dirsink(s);
	char file[PV_NAME_LEN_MAX + sizeof(MANIFEST_SUFFIX)];

	if (!pv_name_ok(name))
		return -EINVAL;
	snprintf(file, sizeof(file), "%s%s", name, MANIFEST_SUFFIX);
	if (unlinkat(d->dir_fd, file, 0) < 0)
		return -errno;
	if (fsync(d->dir_fd) < 0)
		return -errno;
	return 0;
}

static void dirsink_free(struct sink *s)
{
	struct dirsink *d = to_dirsink(s);

	if (d->dir_fd >= 0)
		close(d->dir_fd);
	free(d->path);
	free(d);
}

static const struct sink_ops dirsink_ops = {
	.kind = "dir",
	.remove_vanished = true,
	.list = dirsink_list,
	.create = dirsink_create,
	.remove = dirsink_remove,
	.free = dirsink_free,
};

/* Removes temporary files a crash left behind: ".<name>.yaml.<pid>.tmp". */
static void remove_stale_tmp(struct dirsink *d)
{
	struct dirent *de;
	DIR *dir;
	int fd;

	fd = openat(d->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	while ((de = readdir(dir))) {
		if (de->d_name[0] != '.' || !has_suffix(de->d_name, TMP_SUFFIX) ||
		    !strstr(de->d_name, MANIFEST_SUFFIX "."))
			continue;
		if (unlinkat(d->dir_fd, de->d_name, 0) == 0)
			log_debug("removed the stale temporary file %s/%s", d->path, de->d_name);
	}
	closedir(dir);
}

int dirsink_open(const char *path, struct sink **ret_sink)
{
	struct dirsink *d;
	int r;

	if (!path || path[0] == '\0')
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->base.ops = &dirsink_ops;
	d->dir_fd = -1;
	d->path = strdup(path);
	if (!d->path) {
		r = -ENOMEM;
		goto fail;
	}
	r = fileio_mkdir_p(path, 0755);
	if (r < 0)
		goto fail;
	d->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->dir_fd < 0) {
		r = -errno;
		goto fail;
	}
	remove_stale_tmp(d);
	*ret_sink = &d->base;
	return 0;
fail:
	dirsink_free(&d->base);
	return r;
}
