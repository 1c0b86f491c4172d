/*
 * volume.h - the volume manager: every volume's lifecycle (carve, mount,
 * resize, wipe, unmount, delete) on the pool (pool.h).
 *
 * One struct volmgr per daemon. Its verbs are what the control socket
 * exposes; each is serialised by the manager's lock, persists the table
 * before it returns, and fills @ret_msg (errmsg.h; may be NULL) with one
 * sentence for the user when it fails. They return 0 or -errno:
 * -EINVAL bad argument, -ENOENT no such volume, -EEXIST name taken,
 * -EBUSY in use, -ENOSPC not enough room.
 *
 * Lock order: volmgr->lock, then a volume's lock, then quota (leaf).
 */
#ifndef CARVEFS_VOLUME_H
#define CARVEFS_VOLUME_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "errmsg.h"
#include "histogram.h"
#include "pool.h"
#include "table.h"
#include "wire.h"

struct keeperlink;
struct volmgr;
struct uring_pool;

struct volmgr_config {
	const char *pool_dir;
	const char *discovery_dir;
	struct uring_pool *loops; /* the event-loop threads that serve the volumes */
	struct keeperlink *keeper; /* told of every volume served and let go; NULL: none */
	/*
	 * Where each volume's crash state lives (vfs.h), made 0700 if
	 * missing; NULL: none, and a crash ends the mounts even with a keeper.
	 */
	const char *state_dir;
};

struct volume_spec {
	char name[VOLNAME_MAX + 1];
	uint64_t capacity_bytes;
	uint64_t inode_limit; /* 0 = unlimited */
	bool has_owner;	      /* uid, gid and mode below are set */
	uint32_t uid, gid, mode;
	struct io_limits limits;
	char storage_class[254];
	char labels[TABLE_LABELS_MAX]; /* a JSON object as text or "" */
	/*
	 * > 0: refuse (-ENOSPC) unless what every volume may still write, this
	 * one included, fits in the pool's free space times this ratio. 0: no
	 * such check (the volume must still fit on the pool's filesystem).
	 */
	double overcommit;
};

/*
 * Opens (creating if needed) the pool and discovery directory, takes the
 * pool's lock (-EBUSY if another daemon serves it), loads the table and
 * mounts every volume in it. A volume that fails to mount is logged and left
 * in state "error"; the others are served.
 */
int volmgr_start(const struct volmgr_config *cfg, struct volmgr **ret_mgr);

/*
 * Unmounts every volume, waits for their sessions to end, saves usage and
 * marks the table clean. Accepts NULL; returns NULL.
 */
struct volmgr *volmgr_stop(struct volmgr *m);

int volmgr_create(struct volmgr *m, const struct volume_spec *spec, struct errmsg *ret_msg);
int volmgr_delete(struct volmgr *m, const char *name, bool force, struct errmsg *ret_msg);
/* @overcommit as in struct volume_spec; only growth is checked against it. */
int volmgr_resize(struct volmgr *m, const char *name, uint64_t capacity_bytes, double overcommit,
		  struct errmsg *ret_msg);
int volmgr_set_limits(struct volmgr *m, const char *name, const struct io_limits *limits,
		      struct errmsg *ret_msg);
int volmgr_wipe(struct volmgr *m, const char *name, struct errmsg *ret_msg);

int volmgr_pool_info(struct volmgr *m, struct pool_info *ret_info);
const char *volmgr_pool_dir(const struct volmgr *m);
/* Canonical, as mountinfo shows it. */
const char *volmgr_discovery_dir(const struct volmgr *m);

/* One volume at one moment: what the control socket and monitoring show. */
struct volume_stats {
	char name[VOLNAME_MAX + 1];
	char mountpoint[PATH_MAX];
	char storage_class[254]; /* "" when none */
	const char *state;	 /* "mounted", "unmounted" or "error": a static string */
	char error[WIRE_MSG_MAX]; /* why, in state "error"; else "" */
	uint64_t capacity_bytes, used_bytes, inode_limit, used_inodes;
	/* The volume's table record was found: the fields below it come from there. */
	bool recorded;
	struct io_limits limits;
	uint32_t uid, gid, mode;
	int64_t created_unix;
	char labels[TABLE_LABELS_MAX]; /* a JSON object as text or "" */
	bool served; /* the volume has a filesystem since the daemon started: io below is set */
	uint64_t read_ops, write_ops, read_bytes, write_bytes, throttled_ns, queue_depth;
	struct histogram_snapshot read_latency, write_latency; /* histogram_io_bounds */
};

/*
 * Every volume's numbers, in table order, into a malloc'd array *ret_stats
 * of *ret_n (owned by the caller, free()). Waits at most @wait_ns for the
 * manager, which a long verb (wipe, delete) holds throughout: returns
 * -ETIMEDOUT then, 0 or -ENOMEM otherwise. Never called with the lock held.
 */
int volmgr_snapshot(struct volmgr *m, uint64_t wait_ns, struct volume_stats **ret_stats,
		    size_t *ret_n);
/* The same, waiting for the manager as long as it takes (a verb of the control socket). */
int volmgr_list(struct volmgr *m, struct volume_stats **ret_stats, size_t *ret_n);
/*
 * One volume's numbers into *ret_stats (a struct of several KiB: keep it off
 * small stacks). -ENOENT, with @ret_msg, when there is no such volume.
 */
int volmgr_stats(struct volmgr *m, const char *name, struct volume_stats *ret_stats,
		 struct errmsg *ret_msg);

/*
 * Hand-over to a successor process (handover.c drives it).
 *
 * The running daemon: volmgr_handover_pause() takes the manager's lock, so
 * every verb waits, and pauses every served volume (vfs_pause()); on
 * failure nothing is left paused or locked and @ret_msg says why.
 * volmgr_handover_export() then gives the state of the @i-th served volume
 * (-ENOENT past the last), and volmgr_handover_end() ends it all: @resume
 * serves again; otherwise every volume is released to the successor, and
 * this manager will neither unmount nor write the table any more. Either
 * way the lock is given back.
 *
 * The successor: volmgr_adopt() opens the pool without its lock, loads the
 * table and builds each volume named in @names from @states (taking their
 * fds), serving nothing yet. Once the pool's lock is held
 * (volmgr_lock_pool()), volmgr_adopt_commit() serves them and mounts the
 * table's other volumes; volmgr_stop() before that leaves every mount alone.
 *
 * volmgr_lock_pool() takes (@locked, without waiting: -EWOULDBLOCK) or
 * drops the flock() that says which process serves the pool.
 */
struct vfs_state;
int volmgr_handover_pause(struct volmgr *m, uint64_t timeout_ns, struct errmsg *ret_msg);
int volmgr_handover_export(struct volmgr *m, size_t i, char *ret_name,
			   struct vfs_state *ret_state);
void volmgr_handover_end(struct volmgr *m, bool resume);
int volmgr_adopt(const struct volmgr_config *cfg, const char *const *names,
		 struct vfs_state *states, size_t n, struct volmgr **ret_mgr);
int volmgr_adopt_commit(struct volmgr *m);
int volmgr_lock_pool(struct volmgr *m, bool locked);

#endif
