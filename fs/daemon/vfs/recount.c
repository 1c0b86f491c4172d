/*
 * recount.c - a volume's usage counted anew by a walk of its backing
 * directory while the volume is served.
 *
 * After a crash the dead daemon's count is known only as an upper bound
 * (struct quota_mirror): the volume is served at once against that bound,
 * which never lets usage pass the capacity, and this walk replaces it with
 * the exact count when it ends. The walk lists one directory per step, on
 * the volume's loop thread (recover.c drives it from a thread of its own
 * through uring_session_call()), so requests are served between any two
 * steps and wait at most for the listing of one directory; within a step
 * nothing changes.
 *
 * Each object is counted once, by inode number (an object removed gives
 * its number back, for the next object that gets it):
 *  - a step counts the objects of the directory it lists that were not
 *    counted yet; an object the daemon tracks counts as its charge (its
 *    share of the quota, kept current as it changes), any other as its
 *    blocks now;
 *  - a change of usage of a counted object changes the count as it
 *    changes the quota (recount_charge(), from inode.c);
 *  - a name made in a directory listed already (create, link, rename into
 *    it) is counted at once (recount_name_made()): no step lists that
 *    directory again. A directory counted so is listed later.
 * As walk_usage() does, the root's blocks count but not the root itself,
 * hard links count once, and other filesystems and mounts are left out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vfs.h"

/*
 * SEEN_GONE: counted, then removed. The filesystem may give its inode
 * number to an object made later (ext4 does at once), which is another
 * object and is counted as such; the entry stays to keep probe chains whole.
 */
enum { SEEN_NONE, SEEN_COUNTED, SEEN_LISTED, SEEN_GONE };

struct recount {
	struct vfs *v;
	/* The loop thread's, like the inode table. */
	uint64_t *inos; /* open addressing, by inode number; state in seen[] */
	unsigned char *seen;
	size_t cap, count;
	struct inode_key *todo; /* directories counted but not listed, a stack */
	size_t ntodo, todo_cap;
	uint64_t bytes, inodes, dirs;
	int error;
	bool done;
};

static size_t slot_of(const struct recount *rc, uint64_t ino)
{
	size_t i = (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 17) & (rc->cap - 1);

	while (rc->seen[i] != SEEN_NONE && rc->inos[i] != ino)
		i = (i + 1) & (rc->cap - 1);
	return i;
}

static int seen_of(const struct recount *rc, uint64_t ino)
{
	return rc->seen[slot_of(rc, ino)];
}

static bool counted(const struct recount *rc, uint64_t ino)
{
	int state = seen_of(rc, ino);

	return state == SEEN_COUNTED || state == SEEN_LISTED;
}

static int seen_set(struct recount *rc, uint64_t ino, int state)
{
	size_t i;

	if ((rc->count + 1) * 10 > rc->cap * 7) {
		size_t old_cap = rc->cap;
		uint64_t *old_inos = rc->inos;
		unsigned char *old_seen = rc->seen;

		rc->inos = malloc(old_cap * 2 * sizeof(*rc->inos));
		rc->seen = calloc(old_cap * 2, 1);
		if (!rc->inos || !rc->seen) {
			free(rc->inos);
			free(rc->seen);
			rc->inos = old_inos;
			rc->seen = old_seen;
			return -ENOMEM;
		}
		rc->cap = old_cap * 2;
		for (size_t j = 0; j < old_cap; j++) {
			if (old_seen[j] == SEEN_NONE)
				continue;
			i = slot_of(rc, old_inos[j]);
			rc->inos[i] = old_inos[j];
			rc->seen[i] = old_seen[j];
		}
		free(old_inos);
		free(old_seen);
	}
	i = slot_of(rc, ino);
	if (rc->seen[i] == SEEN_NONE)
		rc->count++;
	rc->inos[i] = ino;
	rc->seen[i] = (unsigned char)state;
	return 0;
}

static int todo_push(struct recount *rc, const struct inode_key *key)
{
	if (rc->ntodo == rc->todo_cap) {
		size_t cap = rc->todo_cap ? rc->todo_cap * 2 : 64;
		struct inode_key *t = realloc(rc->todo, cap * sizeof(*t));

		if (!t)
			return -ENOMEM;
		rc->todo = t;
		rc->todo_cap = cap;
	}
	rc->todo[rc->ntodo++] = *key;
	return 0;
}

/*
 * Counts @name below @dir_fd unless it is counted already, or not this
 * volume's (another filesystem or mount), or gone.
 */
static int count_at(struct recount *rc, int dir_fd, const char *name)
{
	struct vfs *v = rc->v;
	struct inode_key key;
	struct inode *in;
	struct stat st;
	uint64_t mnt_id;
	int r;

	r = inode_stat_at(dir_fd, name, &st, &mnt_id);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	if (st.st_dev != v->dev || mnt_id != v->mnt_id || counted(rc, st.st_ino))
		return 0;
	r = inode_key_at(dir_fd, name, &key);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	r = seen_set(rc, st.st_ino, SEEN_COUNTED);
	if (r == 0 && S_ISDIR(st.st_mode))
		r = todo_push(rc, &key);
	if (r < 0)
		return r;
	in = inode_of_key(v, &key);
	rc->bytes += in ? in->charged_bytes : (uint64_t)st.st_blocks * 512;
	rc->inodes++;
	return 0;
}

/* Lists the next directory to list: one step. */
static int list_next(struct recount *rc)
{
	struct vfs *v = rc->v;
	struct inode_key key = rc->todo[--rc->ntodo];
	union {
		struct file_handle fh;
		char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	} h;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd, r = 0;

	h.fh.handle_bytes = key.bytes;
	h.fh.handle_type = key.type;
	memcpy(h.fh.f_handle, key.data, key.bytes);
	fd = open_by_handle_at(v->handle_fd, &h.fh, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ESTALE || errno == ENOENT ? 0 : -errno; /* removed meanwhile */
	r = inode_check_confined(v, fd, &st);
	if (r < 0) {
		close(fd);
		return r == -EXDEV ? 0 : r;
	}
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	while (r == 0 && (errno = 0, de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			r = count_at(rc, dirfd(d), de->d_name);
	if (r == 0 && errno)
		r = -errno;
	if (r == 0)
		r = seen_set(rc, st.st_ino, SEEN_LISTED);
	closedir(d);
	rc->dirs++;
	return r;
}

bool recount_step(struct vfs *v, struct vfs_recount_result *ret)
{
	struct recount *rc = v->recount;
	int r;

	if (!rc) {
		*ret = (struct vfs_recount_result){ .error = -ECANCELED };
		return true;
	}
	if (!rc->done) {
		r = rc->ntodo ? list_next(rc) : 0;
		if (r < 0) {
			rc->error = r;
			rc->done = true;
		} else if (rc->ntodo == 0) {
			/* Exact now: what writes in flight reserved stays reserved. */
			quota_set_usage(v->quota, rc->bytes, rc->inodes);
			rc->done = true;
		}
	}
	if (!rc->done)
		return false;
	*ret = (struct vfs_recount_result){ .error = rc->error,
					    .bytes = rc->bytes,
					    .inodes = rc->inodes,
					    .dirs = rc->dirs };
	/* Its table of inode numbers is as large as the volume is: not kept for nothing. */
	recount_free(v);
	return true;
}

int recount_prepare(struct vfs *v)
{
	struct recount *rc = calloc(1, sizeof(*rc));
	struct inode_key key;
	struct stat st;
	uint64_t mnt_id;
	int r;

	if (!rc)
		return -ENOMEM;
	/* Before the volume serves: its requests' hooks count from the first on. */
	v->recount = rc;
	rc->v = v;
	rc->cap = 1024;
	rc->inos = malloc(rc->cap * sizeof(*rc->inos));
	rc->seen = calloc(rc->cap, 1);
	r = rc->inos && rc->seen ? 0 : -ENOMEM;
	if (r == 0)
		r = inode_stat_at(v->root->fd, "", &st, &mnt_id);
	if (r == 0) {
		key.type = v->root->handle_type;
		key.bytes = v->root->handle_bytes;
		memcpy(key.data, v->root->handle, key.bytes);
	}
	if (r == 0)
		r = seen_set(rc, st.st_ino, SEEN_COUNTED);
	if (r == 0)
		r = todo_push(rc, &key);
	if (r < 0) {
		recount_free(v);
		return r;
	}
	rc->bytes = v->root->charged_bytes;
	return 0;
}

void recount_free(struct vfs *v)
{
	if (!v->recount)
		return;
	free(v->recount->inos);
	free(v->recount->seen);
	free(v->recount->todo);
	free(v->recount);
	v->recount = NULL;
}

void recount_abandon(struct vfs *v)
{
	if (v->recount && !v->recount->done) {
		v->recount->error = -ECANCELED;
		v->recount->done = true;
	}
}

static bool recounting(const struct vfs *v)
{
	return v->recount && !v->recount->done;
}

void recount_charge(struct vfs *v, uint64_t ino, int64_t bytes, int64_t inodes)
{
	struct recount *rc = v->recount;

	if (!recounting(v) || ino == 0 || !counted(rc, ino))
		return;
	rc->bytes = bytes < 0 && (uint64_t)-bytes > rc->bytes ? 0 : rc->bytes + (uint64_t)bytes;
	rc->inodes = inodes < 0 && (uint64_t)-inodes > rc->inodes ? 0 :
								      rc->inodes + (uint64_t)inodes;
	/* An inode given back is the object's end: its number may come again. */
	if (inodes < 0)
		rc->seen[slot_of(rc, ino)] = SEEN_GONE;
}

void recount_name_made(struct vfs *v, int dir_fd, const char *name)
{
	struct recount *rc = v->recount;
	struct stat st;
	uint64_t mnt_id;
	int r;

	if (!recounting(v) || inode_stat_at(dir_fd, "", &st, &mnt_id) < 0 ||
	    seen_of(rc, st.st_ino) != SEEN_LISTED)
		return;
	r = count_at(rc, dir_fd, name);
	if (r < 0) {
		/* Without it the count would be wrong: keep the bound instead. */
		rc->error = r;
		rc->done = true;
	}
}
