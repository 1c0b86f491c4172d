/*
 * handoff.h - one volume's live state, as a successor process needs it to
 * take the volume over without unmounting it: a versioned byte blob and the
 * file descriptors that go with it.
 *
 * The blob holds the raw INIT request of the connection (the kernel sends
 * INIT once per connection), exact usage, IO statistics, the inode table
 * (inode_table_export()) and every open file and directory with the fh the
 * kernel knows it by. The fds are, in this order: the volume's /dev/fuse,
 * then per open file its backing fd (and its buffered twin when it has one),
 * then per open directory its fd. Passing the open files' own fds keeps
 * their open flags, positions and unlinked-but-open files exactly.
 *
 * The /dev/fuse fd and the INIT bytes come first and stand alone, so that a
 * process that only keeps the connection alive (an fd keeper) can hold and
 * give back those two without understanding the rest.
 */
#ifndef CARVEFS_HANDOFF_H
#define CARVEFS_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

#include "vfs.h"

struct vfs_state {
	void *blob; /* malloc'd */
	size_t blob_len;
	int *fds; /* malloc'd, owned: closed by vfs_state_clear() */
	size_t nfds;
};

/*
 * Fills @ret with the state of @v, which must be paused (vfs_pause()) and
 * stay so. The fds are duplicates: @v keeps its own. Returns 0, -ENOMEM,
 * -EPROTO (the volume never got INIT) or inode_table_export()'s -errno.
 * Reads the volume on its loop thread (uring_session_call()), so it must
 * not be called from a loop thread.
 */
int vfs_export(struct vfs *v, struct vfs_state *ret);

/*
 * Builds the successor's vfs of a volume from @st: the session is
 * initialised, the inode table, open files and directories, usage and
 * statistics are those of the predecessor; nothing is read from the
 * device until vfs_serve(). Takes every fd of @st (set to -1 there) and
 * @p->root_fd. Returns 0 or -errno (-EPROTO: a blob this build does not
 * read).
 */
int vfs_adopt(const struct vfs_params *p, struct vfs_state *st, struct vfs **ret_vfs);

/* Closes the fds still owned and frees. Accepts a cleared state. */
void vfs_state_clear(struct vfs_state *st);

#endif
