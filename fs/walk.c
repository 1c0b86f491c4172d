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
#include <sys/sysmacros.h>
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

/*
 * What a walk needs to know of an entry. The mount id, not only the device,
 * tells a bind mount of another directory of the same filesystem from the
 * volume's own tree.
 */
struct entry {
	uint64_t mnt_id;
	dev_t dev;
	ino_t ino;
	mode_t mode;
	nlink_t nlink;
	uint64_t bytes;
};

static int entry_stat(int dfd, const char *name, int flags, struct entry *e)
{
	struct statx stx;

	if (statx(dfd, name, flags | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
		  STATX_BASIC_STATS | STATX_MNT_ID, &stx) < 0)
		return -errno;
	if (!(stx.stx_mask & STATX_MNT_ID))
		return -EOPNOTSUPP;
	e->mnt_id = stx.stx_mnt_id;
	e->dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	e->ino = stx.stx_ino;
	e->mode = stx.stx_mode;
	e->nlink = stx.stx_nlink;
	e->bytes = stx.stx_blocks * 512;
	return 0;
}

/* True if @e lies on the walk's own mount: never descend or delete elsewhere. */
static bool same_mount(const struct entry *top, const struct entry *e)
{
	return e->dev == top->dev && e->mnt_id == top->mnt_id;
}

static int usage_dir(DIR *d, const struct entry *top, struct ino_set *links,
		     struct walk_usage *u)
{
	struct dirent *de;
	int r = 0;

	while ((errno = 0, de = readdir(d))) {
		struct entry e;
		bool added = true;

		if (is_dot(de->d_name))
			continue;
		r = entry_stat(dirfd(d), de->d_name, 0, &e);
		if (r == -ENOENT)
			continue; /* removed while we walked */
		if (r < 0)
			return r;
		if (!same_mount(top, &e)) {
			u->skipped++;
			continue;
		}
		if (!S_ISDIR(e.mode) && e.nlink > 1) {
			r = ino_set_add(links, e.ino, &added);
			if (r < 0)
				return r;
		}
		if (added) {
			u->bytes += e.bytes;
			u->inodes++;
		}
		if (S_ISDIR(e.mode)) {
			DIR *sub;

			r = open_subdir(dirfd(d), de->d_name, &sub);
			if (r == -ENOENT)
				continue;
			if (r < 0)
				return r;
			r = usage_dir(sub, top, links, u);
			closedir(sub);
			if (r < 0)
				return r;
		}
	}
	return errno ? -errno : 0;
}

/* Opens @dirfd for listing, with what identifies the mount every walk stays on. */
static int open_top(int dirfd, struct entry *ret_top, DIR **ret_dir)
{
	int r = entry_stat(dirfd, "", AT_EMPTY_PATH, ret_top);

	if (r < 0)
		return r;
	return open_subdir(dirfd, ".", ret_dir);
}

int walk_usage(int dirfd, struct walk_usage *ret_usage)
{
	struct walk_usage u = { 0 };
	struct ino_set links = { 0 };
	struct entry top;
	DIR *d;
	int r;

	r = open_top(dirfd, &top, &d);
	if (r < 0)
		return r;
	u.bytes = top.bytes;
	r = usage_dir(d, &top, &links, &u);
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

static int wipe_dir(DIR *d, const struct entry *top, uint64_t *skipped)
{
	struct dirent *de;
	int first = 0;

	while ((errno = 0, de = readdir(d))) {
		struct entry e;
		int r;

		if (is_dot(de->d_name))
			continue;
		r = entry_stat(dirfd(d), de->d_name, 0, &e);
		if (r < 0) {
			if (r != -ENOENT)
				keep_first(&first, r);
			continue;
		}
		if (!same_mount(top, &e)) {
			(*skipped)++;
			continue;
		}
		if (S_ISDIR(e.mode)) {
			DIR *sub;

			r = open_subdir(dirfd(d), de->d_name, &sub);
			if (r < 0) {
				if (r != -ENOENT)
					keep_first(&first, r);
				continue;
			}
			keep_first(&first, wipe_dir(sub, top, skipped));
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
	struct entry top;
	DIR *d;
	int r;

	r = open_top(dirfd, &top, &d);
	if (r < 0)
		return r;
	r = wipe_dir(d, &top, &skipped);
	closedir(d);
	if (ret_skipped)
		*ret_skipped = skipped;
	return r;
}
