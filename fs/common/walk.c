/*
 * walk.c - usage walk and wipe of a backing directory; see include/walk.h.
 *
 * A pod decides how deep its tree is, so the walk must not spend a file
 * descriptor, a DIR buffer or a stack frame per level: it is iterative and
 * holds one directory fd at a time. Each directory's names are read into
 * memory when it is entered (its fd is then only a handle to move from); to
 * come back up, the walk opens ".." and checks that it is the directory it
 * came from, so a tree moved underneath it stops the walk (-ESTALE) instead
 * of sending it elsewhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fileio.h"
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

/*
 * The directory just opened must be the entry just checked: one swapped in
 * between (a rename, a mount on it) is left alone with -ESTALE rather than
 * walked, as it may lie outside.
 */
static int same_entry(int fd, const struct entry *checked)
{
	struct entry opened;
	int r;

	r = entry_stat(fd, "", AT_EMPTY_PATH, &opened);
	if (r < 0)
		return r;
	if (opened.ino != checked->ino || !same_mount(checked, &opened))
		return -ESTALE;
	return 0;
}

struct frame {
	char **names; /* entries of this directory, read when it was entered */
	size_t n, next;
	dev_t dev;    /* identity of this directory, checked on the way back up */
	ino_t ino;
};

static void frame_release(struct frame *f)
{
	fileio_names_free(f->names, f->n);
	f->names = NULL;
	f->n = f->next = 0;
}

static int enter(int fd, struct frame *f)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	return fileio_list_names(fd, 0, &f->names, &f->n);
}

enum walk_mode { WALK_USAGE, WALK_WIPE };

struct walk_state {
	enum walk_mode mode;
	struct entry top;
	struct ino_set links;
	struct walk_usage usage;
	int first_error; /* wipe: the first failure, the walk goes on */
};

static void keep_first(int *first, int r)
{
	if (r < 0 && *first == 0)
		*first = r;
}

/* A non-directory entry, or a directory on the way down (before its contents). */
static int visit(struct walk_state *w, int dfd, const char *name, const struct entry *e)
{
	bool added = true;
	int r;

	if (w->mode == WALK_WIPE) {
		if (!S_ISDIR(e->mode) && unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
			keep_first(&w->first_error, -errno);
		return 0;
	}
	if (!S_ISDIR(e->mode) && e->nlink > 1) {
		r = ino_set_add(&w->links, e->ino, &added);
		if (r < 0)
			return r;
	}
	if (added) {
		w->usage.bytes += e->bytes;
		w->usage.inodes++;
	}
	return 0;
}

static int walk_tree(int dirfd, struct walk_state *w)
{
	struct frame *stack = NULL;
	size_t depth = 0, cap = 0;
	int cur = -1, r;

	r = entry_stat(dirfd, "", AT_EMPTY_PATH, &w->top);
	if (r < 0)
		return r;
	cur = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -errno;
	for (;;) {
		struct frame *f;

		if (depth == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct frame *ns = realloc(stack, ncap * sizeof(*ns));

			if (!ns) {
				r = -ENOMEM;
				goto out;
			}
			stack = ns;
			cap = ncap;
		}
		f = &stack[depth];
		memset(f, 0, sizeof(*f));
		depth++;
		r = enter(cur, f);
		if (r < 0)
			goto out;
		/* Down: the next directory entry of the deepest unfinished level. */
		for (;;) {
			struct entry e;
			const char *name;
			int sub;

			f = &stack[depth - 1];
			if (f->next == f->n) {
				struct stat st;
				int up;

				if (depth == 1) {
					r = 0;
					goto out;
				}
				/* Up: back to the parent, which must still be where we left it. */
				up = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				if (up < 0) {
					r = -errno;
					goto out;
				}
				close(cur);
				cur = up;
				frame_release(f);
				depth--;
				f = &stack[depth - 1];
				if (fstat(cur, &st) < 0 || st.st_dev != f->dev || st.st_ino != f->ino) {
					r = -ESTALE;
					goto out;
				}
				if (w->mode == WALK_WIPE &&
				    unlinkat(cur, f->names[f->next - 1], AT_REMOVEDIR) < 0 && errno != ENOENT)
					keep_first(&w->first_error, -errno);
				continue;
			}
			name = f->names[f->next++];
			r = entry_stat(cur, name, 0, &e);
			if (r == -ENOENT)
				continue; /* removed while we walked */
			if (r < 0) {
				if (w->mode == WALK_USAGE)
					goto out;
				keep_first(&w->first_error, r);
				continue;
			}
			if (!same_mount(&w->top, &e)) {
				w->usage.skipped++;
				continue;
			}
			r = visit(w, cur, name, &e);
			if (r < 0)
				goto out;
			if (!S_ISDIR(e.mode))
				continue;
			sub = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				if (errno == ENOENT)
					continue;
				r = -errno;
				if (w->mode == WALK_USAGE)
					goto out;
				keep_first(&w->first_error, r);
				continue;
			}
			r = same_entry(sub, &e);
			if (r < 0) {
				close(sub);
				if (w->mode == WALK_USAGE)
					goto out;
				keep_first(&w->first_error, r);
				continue;
			}
			close(cur);
			cur = sub;
			break;
		}
	}
out:
	for (size_t i = 0; i < depth; i++)
		frame_release(&stack[i]);
	free(stack);
	if (cur >= 0)
		close(cur);
	free(w->links.slots);
	w->links.slots = NULL;
	return r;
}

int walk_usage(int dirfd, struct walk_usage *ret_usage)
{
	struct walk_state w = { .mode = WALK_USAGE };
	int r;

	r = walk_tree(dirfd, &w);
	if (r < 0)
		return r;
	w.usage.bytes += w.top.bytes;
	*ret_usage = w.usage;
	return 0;
}

int walk_wipe(int dirfd, uint64_t *ret_skipped)
{
	struct walk_state w = { .mode = WALK_WIPE };
	int r;

	r = walk_tree(dirfd, &w);
	if (ret_skipped)
		*ret_skipped = w.usage.skipped;
	return r < 0 ? r : w.first_error;
}
