/*
 * walk.h - whole-tree work on a volume's backing directory: measuring usage
 * (after an unclean stop) and wiping (emptying a volume, deleting one).
 *
 * Both go fd-relative from the directory they are given, never follow a
 * symlink and never descend into another mount (an entry whose device or
 * mount id differs, a bind mount of the same filesystem included, is left
 * alone and counted in *skipped), so a pod's symlinks or a mount planted in
 * the directory cannot make them touch anything outside. A directory
 * swapped for another between its check and its open is not entered
 * (-ESTALE). Without mount ids (Linux before 5.8) they refuse to work
 * (-EOPNOTSUPP): a device check alone cannot see a bind mount.
 * Neither logs.
 */
#ifndef CARVEFS_WALK_H
#define CARVEFS_WALK_H

#include <stdint.h>

struct walk_usage {
	uint64_t bytes;	  /* allocated bytes (st_blocks * 512), the directory itself included */
	uint64_t inodes;  /* objects below the directory; hard links count once */
	uint64_t skipped; /* entries on another filesystem, not counted */
};

/* Returns 0 or -errno. */
int walk_usage(int dirfd, struct walk_usage *ret_usage);

/*
 * Removes everything below @dirfd and keeps @dirfd itself. Goes on past
 * errors and returns the first one (0 if none); *ret_skipped (may be NULL)
 * counts what it left on other filesystems.
 */
int walk_wipe(int dirfd, uint64_t *ret_skipped);

#endif
