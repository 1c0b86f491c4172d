/*
 * keeperlink.h - the daemon's side of carvefs-keeper (include/keeper.h):
 * every served volume's /dev/fuse fd and INIT request are handed to the
 * keeper as soon as the volume is served, and taken back from it by a daemon
 * started after a crash.
 *
 * The link remembers what it handed over (a dup of each fd), so that a
 * keeper that died and came back (restarted by its container, its unit, or
 * by this link) is given everything again: while the keeper is away the
 * volumes work as before, only a crash of the daemon meanwhile would end
 * them. A thread watches the connection; it reconnects once a second while
 * the keeper is away, starting one first when configured to.
 *
 * Threads: every function may be called from any thread; one mutex (a
 * leaf) protects the connection and the table.
 */
#ifndef CARVEFS_KEEPERLINK_H
#define CARVEFS_KEEPERLINK_H

#include <stdbool.h>
#include <stddef.h>

struct keeperlink;

struct keeperlink_config {
	const char *socket_path; /* both copied */
	/* A carvefs-keeper to start when none serves socket_path; NULL: never. */
	const char *keeper_exe;
};

/*
 * Connects to the keeper, starting one when none serves and @cfg says so,
 * and waits at most a few seconds for it. Failing to reach a keeper is not
 * an error (logged, reported by keeperlink_holding(), retried); only a lack
 * of memory or threads is. Returns 0 or -errno.
 */
int keeperlink_start(const struct keeperlink_config *cfg, struct keeperlink **ret_link);
/* Stops watching and closes the connection; the keeper keeps what it holds. Accepts NULL. */
struct keeperlink *keeperlink_stop(struct keeperlink *k);

/*
 * Hands volume @name's /dev/fuse @fuse_fd (dup'ed; the caller keeps its
 * own) and INIT request to the keeper, replacing what it held under that
 * name. Returns 0, or -errno when the link could not remember it (a keeper
 * that is away is given it once back).
 */
int keeperlink_keep(struct keeperlink *k, const char *name, int fuse_fd, const void *init,
		    size_t init_len);
/* The volume is unmounted for good: the keeper lets go of it. */
void keeperlink_drop(struct keeperlink *k, const char *name);
/*
 * The volumes went to a successor, which hands them to the keeper as its
 * own: forgets them without a word to the keeper, so that it keeps holding
 * them and a keeper coming back is given nothing by this daemon. Accepts NULL.
 */
void keeperlink_forget_all(struct keeperlink *k);

/*
 * What the keeper holds, for a daemon starting after a crash: @fn is called
 * once per volume with an fd that it owns from then on (even on failure).
 * Returns 0 (nothing held when no keeper serves) or -errno.
 */
int keeperlink_take(struct keeperlink *k,
		    int (*fn)(void *arg, const char *name, int fuse_fd, const void *init,
			      size_t init_len),
		    void *arg);

/* Whether a keeper holds every volume handed to the link right now. */
bool keeperlink_holding(struct keeperlink *k);

/*
 * The path of carvefs-keeper beside the running executable, in @buf of
 * @size bytes. Returns 0 or -errno.
 */
int keeperlink_exe_beside_self(char *buf, size_t size);

#endif
