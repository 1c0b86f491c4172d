/*
 * discovery.h - finds the local volumes of every configured class.
 *
 * For each class, the first level of its mountDir: entries matching one of
 * its namePattern globs (fnmatch(3), as upstream's filepath.Match; a
 * leading dot is matched by '*') are volumes if they are
 *   - a directory that is an actual mountpoint, checked with libmount
 *     against the mount table (by default /proc/self/mountinfo); capacity
 *     from statfs(2), f_blocks * f_frsize;
 *   - a block device (symlinks followed, as to /dev/disk/by-id/...);
 *     capacity from BLKGETSIZE64.
 * A directory that is not a mountpoint is skipped with the warning
 *   path "<p>" is not a valid mount point
 * and so is anything else that cannot be a volume (a regular file, a
 * directory in a Block class). An entry that cannot be examined (statfs or
 * the device fails) is an error, counted in the result. Discovery logs what
 * it skips, through log.h, once per appearance of each problem; it never
 * changes anything.
 */
#ifndef CARVEFS_DISCOVERY_H
#define CARVEFS_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define DISCOVERY_MOUNTINFO "/proc/self/mountinfo"
/* The fstype of a carvefs volume in the mount table. */
#define DISCOVERY_FSTYPE_CARVEFS "fuse.carvefs"

struct disc_volume {
	const struct prov_class *cls; /* borrowed from the config given to discovery_scan() */
	char *entry;		      /* basename in the class's mountDir */
	char *mount_path;	      /* mountDir/entry: the path this process uses */
	char *host_path;	      /* hostDir/entry: the path the kubelet uses */
	bool is_block;
	char *fstype;		 /* e.g. "fuse.carvefs", "ext4"; NULL for a block device */
	char *source;		 /* the mount's source, e.g. "carvefs:pvc-1"; may be NULL */
	uint64_t capacity_bytes; /* as measured, not rounded */
};

struct disc_result {
	struct disc_volume *volumes; /* sorted by class, then entry */
	size_t n_volumes;
	/*
	 * Entries or classes that could not be examined. When it is not zero
	 * the result is incomplete: a volume missing from it may still exist.
	 */
	unsigned n_errors;
};

/*
 * What discovery remembers between passes: the warnings it gave, so that a
 * problem is reported at warning level when it appears and at debug level
 * while it lasts, rather than every period. Used by one thread.
 */
struct discovery;

int discovery_new(struct discovery **ret_disc);
/* Accepts NULL; returns NULL. */
struct discovery *discovery_free(struct discovery *d);

/*
 * Scans every class of @cfg, checking mountpoints against @mountinfo (NULL
 * for DISCOVERY_MOUNTINFO). *ret_result is owned by the caller and borrows
 * the classes of @cfg, which must outlive it. Returns 0 (per-entry and
 * per-class problems are logged and counted, not returned) or -ENOMEM, or
 * -errno if the mount table cannot be read.
 */
int discovery_scan(struct discovery *d, const struct prov_config *cfg, const char *mountinfo,
		   struct disc_result **ret_result);

/* Accepts NULL; returns NULL. */
struct disc_result *discovery_result_free(struct disc_result *r);

/* True if @fstype is that of a carvefs volume. */
bool discovery_is_carvefs(const char *fstype);

#endif
