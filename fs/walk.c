/*
 * walk.c - usage walk and wipe of a backing directory; see include/walk.h.
 *
 * Recursion holds one directory fd per level. The daemon raises its fd limit
 * at start, and backing trees deeper than that are refused by the kernel's
 * own path limits long before.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "walk.h"

/* Inode numbers of multiply-linked files already counted: open addressing. */
struct ino_set {
	ino_t *slots;
	size_t cap, n;
};

static int ino_set_add(struct ino_set *s, ino_t ino, bool *ret_added)
{
	size_t i;

	if ((s->n + 1) * 2 > s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 256;
		ino_t *ns = calloc(ncap, sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		for (size_t j = 0; j < s->cap; j++) {
			if (!s->slots[j])
				continue;
			for (i = (size_t)s->slots[j] % ncap; ns[i]; i = (i + 1) % ncap)
				;
			ns[i] = s->slots[j];
		}
		free(s->slots);
		s->slots = ns;
		s->cap = ncap;
	}
	/* Inode 0 never names a file, so it marks an empty slot. */
	for (i = (size_t)ino % s->cap; s->slots[i]; i = (i + 1) % s->cap) {
		if (s->slots[i] == ino) {
			*ret_added = false;
			return 0;
		}
	}
	s->slots[i] = ino;
	s->n++;
	*ret_added = true;
	return 0;
}

static int open_subdir(int dfd, const char *name, DIR **ret)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		int r = -errno;

		close(fd);
		return r;
	}
	*ret = d;
	return 0;
}

static bool is_dot(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

static int usage_dir(DIR *d, dev_t dev, struct ino_set *links, struct walk_usage *u)
{
	struct dirent *de;
	int r = 0;

	while ((errno = 0, de = readdir(d))) {
		struct stat st;
		bool added = true;

		if (is_dot(de->d_name))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue; /* removed while we walked */
			return -errno;
		}
		if (st.st_dev != dev) {
			u->skipped++;
			continue;
		}
		if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
			r = ino_set_add(links, st.st_ino, &added);
			if (r < 0)
				return r;
		}
		if (added) {
			u->bytes += (uint64_t)st.st_blocks * 512;
			u->inodes++;
		}
		if (S_ISDIR(st.st_mode)) {
			DIR *sub;

			r = open_subdir(dirfd(d), de->d_name, &sub);
			if (r == -ENOENT)
				continue;
			if (r < 0)
				return r;
			r = usage_dir(sub, dev, links, u);
			closedir(sub);
			if (r < 0)
				return r;
		}
	}
	return errno ? -errno : 0;
}

/* Opens @dirfd for listing, with its stat: the device every walk stays on. */
static int open_top(int dirfd, struct stat *ret_st, DIR **ret_dir)
{
	if (fstat(dirfd, ret_st) < 0)
		return -errno;
	return open_subdir(dirfd, ".", ret_dir);
}

int walk_usage(int dirfd, struct walk_usage *ret_usage)
{
	struct walk_usage u = { 0 };
	struct ino_set links = { 0 };
	struct stat st;
	DIR *d;
	int r;

	r = open_top(dirfd, &st, &d);
	if (r < 0)
		return r;
	u.bytes = (uint64_t)st.st_blocks * 512;
	r = usage_dir(d, st.st_dev, &links, &u);
	closedir(d);
	free(links.slots);
	if (r == 0)
		*ret_usage = u;
	return r;
}

static void keep_first(int *first, int r)
{
	if (r < 0 && *first == 0)
		*first = r;
}

static int wipe_dir(DIR *d, dev_t dev, uint64_t *skipped)
{
	struct dirent *de;
	int first = 0;

	while ((errno = 0, de = readdir(d))) {
		struct stat st;

		if (is_dot(de->d_name))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				keep_first(&first, -errno);
			continue;
		}
		if (st.st_dev != dev) {
			(*skipped)++;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			DIR *sub;
			int r = open_subdir(dirfd(d), de->d_name, &sub);

			if (r < 0) {
				if (r != -ENOENT)
					keep_first(&first, r);
				continue;
			}
			keep_first(&first, wipe_dir(sub, dev, skipped));
			closedir(sub);
			if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
				keep_first(&first, -errno);
		} else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			keep_first(&first, -errno);
		}
	}
	if (errno)
		keep_first(&first, -errno);
	return first;
}

int walk_wipe(int dirfd, uint64_t *ret_skipped)
{
	uint64_t skipped = 0;
	struct stat st;
	DIR *d;
	int r;

	r = open_top(dirfd, &st, &d);
	if (r < 0)
		return r;
	r = wipe_dir(d, st.st_dev, &skipped);
	closedir(d);
	if (ret_skipped)
		*ret_skipped = skipped;
	return r;
}
