/*
 * cleaner.h - emptying a released local volume before it is offered again.
 *
 * Three methods, chosen by what the volume is:
 *   - a carvefs volume (fstype fuse.carvefs): the daemon wipes it, asked over
 *     its control socket ({"verb": "wipe", "name": ...}); the daemon knows
 *     the volume's backing directory and resets its usage with it;
 *   - another filesystem: everything below the mountpoint is removed, the
 *     mountpoint itself is kept, symlinks are never followed and nothing on
 *     another mount is touched;
 *   - a block device: the class's blockCleanerCommand runs with
 *     LOCAL_PV_BLKDEVICE set to the device, as the upstream provisioner runs
 *     it.
 * Each method logs what went wrong (log.h) and returns 0 or -errno. They
 * block until done: run them off any loop that must stay responsive.
 */
#ifndef CARVEFS_CLEANER_H
#define CARVEFS_CLEANER_H

#include <stdbool.h>
#include <stdint.h>

#define CLEANER_BLOCK_ENV "LOCAL_PV_BLKDEVICE"
#define CLEANER_WIPE_TIMEOUT_MS (10 * 60 * 1000)

struct cleaner_target {
	const char *mount_path;	 /* the volume as this process sees it */
	bool is_block;		 /* @mount_path is a block device */
	const char *fstype;	 /* from the mount table; NULL for a block device */
	const char *source;	 /* the mount's source ("carvefs:<name>"), may be NULL */
	char *const *block_cleaner_command; /* argv, NULL-terminated */
	const char *carvefs_socket;	    /* NULL for WIRE_DEFAULT_SOCKET */
};

/* Cleans @t by the method its kind calls for. */
int cleaner_clean(const struct cleaner_target *t);

/*
 * Asks the carvefs daemon at @socket_path to wipe its volume @name, waiting
 * at most @timeout_ms, and logs the outcome. Returns 0 or -errno as
 * ctlclient.h says (-ECONNREFUSED when the daemon is not running).
 */
int cleaner_wipe_carvefs(const char *socket_path, const char *name, int timeout_ms);

/*
 * The carvefs volume name of a mount: the part after "carvefs:" in
 * @source, else the basename of @mount_path (the daemon mounts volume N at
 * <discovery dir>/N). Returns a pointer into one of the two.
 */
const char *cleaner_carvefs_name(const char *source, const char *mount_path);

/*
 * Removes everything below the directory @mount_path and keeps the
 * directory, with walk_wipe() (walk.h: no symlink followed, other mounts
 * left alone and counted in *ret_skipped, which may be NULL, -ESTALE if the
 * tree moves underneath, -EOPNOTSUPP without mount ids). @mount_path itself
 * must be a directory, not a symlink to one (-ENOTDIR). Goes on past errors
 * and returns the first.
 */
int cleaner_delete_contents(const char *mount_path, uint64_t *ret_skipped);

/*
 * Runs @argv (argv[0] looked up in PATH) with the environment plus
 * LOCAL_PV_BLKDEVICE=@device, stdin from /dev/null, and waits for it.
 * Returns 0 if it exits 0, -EIO if it fails or is killed, or -errno if it
 * cannot be started.
 */
int cleaner_run_block_command(char *const argv[], const char *device);

#endif
