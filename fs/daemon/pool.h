/*
 * pool.h - the pool on disk: its directory and lock, the volumes' backing
 * directories, the volume table and its persistence, and the room on the
 * pool's filesystem.
 *
 * One struct pool per daemon, owned by the volume manager, which serialises
 * every call (volume.h's lock): the pool has no lock of its own. Opening and
 * saving log their failures; the checks fill @ret_msg (errmsg.h; may be
 * NULL) with one sentence for the user.
 */
#ifndef CARVEFS_POOL_H
#define CARVEFS_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "errmsg.h"
#include "table.h"

/* A deleted volume's backing directory is renamed to this prefix while it is emptied. */
#define POOL_TRASH_PREFIX ".trash-"

struct pool;

/* The pool's space, as the room checks see it. */
struct pool_info {
	uint64_t size_bytes;	  /* the pool filesystem's size */
	uint64_t free_bytes;	  /* its space available to unprivileged writers */
	uint64_t allocated_bytes; /* the volumes' capacities, summed */
	uint64_t committed_bytes; /* what the volumes may still write: capacity - used, summed */
	uint64_t volumes;
};

/*
 * Opens (creating if needed) the pool and discovery directories, takes the
 * pool's lock (-EBUSY if another daemon serves it), loads the table (or its
 * previous copy), empties leftover trash and names backing directories
 * without a record. Returns 0 or -errno; logs why it failed.
 */
int pool_open(const char *pool_dir, const char *discovery_dir, struct pool **ret_pool);
/*
 * For a successor taking the pool over from the daemon that holds it
 * (handover.h): as pool_open(), but neither takes the lock nor changes
 * anything in the pool. pool_lock() takes the lock once the other daemon let
 * go; pool_sweep() then does the rest of what pool_open() does.
 */
int pool_open_unlocked(const char *pool_dir, const char *discovery_dir, struct pool **ret_pool);
/*
 * Takes (@locked; -EWOULDBLOCK while another process holds it, never waits)
 * or drops the pool's lock, the flock() that says which daemon serves it.
 */
int pool_lock(struct pool *p, bool locked);
/* Empties leftover trash and names backing directories without a record. */
void pool_sweep(struct pool *p);
/* Releases the lock and frees the table, without saving it. Accepts NULL; returns NULL. */
struct pool *pool_close(struct pool *p);

/* Canonical paths (mountinfo compares them), valid while the pool is open. */
const char *pool_path(const struct pool *p);
const char *pool_discovery_dir(const struct pool *p);
/* O_PATH fds of <pool>/volumes and of the discovery directory, owned by the pool. */
int pool_volumes_fd(const struct pool *p);
int pool_discovery_fd(const struct pool *p);
/* The table, owned by the pool; pool_save() makes changes to it durable. */
struct table *pool_table(struct pool *p);
/* Saves the table durably. Returns 0 or -errno, logged. */
int pool_save(struct pool *p);

/* The pool filesystem's size and the space unprivileged writers have left. */
int pool_space(struct pool *p, uint64_t *ret_size_bytes, uint64_t *ret_free_bytes);
/* Empties and removes volumes/@name (a trash directory); 0 if it is gone already. */
int pool_remove_tree(struct pool *p, const char *name);

/*
 * Whether a volume @name of @capacity can be on the pool at all: -EINVAL for
 * 0, -ENOSPC when larger than the pool's filesystem. Logs a warning when the
 * capacities in the table, the new one instead of @name's, exceed the pool.
 */
int pool_check_capacity(struct pool *p, const char *name, uint64_t capacity,
			struct errmsg *ret_msg);
/*
 * With @overcommit > 0, refuses (-ENOSPC) a volume of @capacity holding
 * @used bytes if what every volume may still write, @info's committed bytes
 * (without this volume) plus capacity - used, would exceed the pool's free
 * space times @overcommit. Pure.
 */
int pool_check_room(const struct pool_info *info, const char *name, uint64_t capacity,
		    uint64_t used, double overcommit, struct errmsg *ret_msg);

#endif
