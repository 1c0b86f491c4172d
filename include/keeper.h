/*
 * keeper.h - the protocol of carvefs-keeper, the process that holds every
 * volume's /dev/fuse fd so that a crash of carvefs is a pause for the
 * volumes' users rather than the end of their mounts (the kernel aborts a
 * FUSE connection only when the last fd of its device file closes).
 *
 * The keeper listens on a unix stream socket, by default the control
 * socket's path plus KEEPER_SOCKET_SUFFIX, mode 0600, and serves root peers
 * only (SO_PEERCRED). Messages are fdmsg.h's with KEEPER_MAGIC; each request
 * gets its answer before the next is read:
 *
 *	KEEP  {name, NUL, INIT request bytes} + the volume's /dev/fuse fd
 *	                                        -> OK, or ERR {int32 errno}
 *	DROP  {name}                            -> OK (also for a name not held)
 *	TAKE  {}                                -> ENTRY {name, NUL, INIT} + fd
 *	                                           per volume held, then END
 *
 * KEEP of a name already held replaces it. The keeper never reads nor writes
 * a /dev/fuse fd; it lets go of one on DROP, and by itself once the kernel
 * reports the connection gone (unmounted or aborted: POLLERR), so that it
 * never hands out a dead volume. TAKE hands out dups: the keeper keeps its
 * own, so that a daemon that crashes again right after taking them over
 * loses nothing either.
 */
#ifndef CARVEFS_KEEPER_H
#define CARVEFS_KEEPER_H

#define KEEPER_MAGIC 0x504b5643u /* "CVKP" */
#define KEEPER_SOCKET_SUFFIX ".keeper"
/* The raw FUSE_INIT request: a header and fuse_init_in, 104 bytes today. */
#define KEEPER_INIT_MAX 4096u
/* Volumes one keeper holds; a pool is far smaller than this. */
#define KEEPER_VOLUMES_MAX 4096u
/* Each part of a message from a peer must come within this. */
#define KEEPER_IO_TIMEOUT_MS 5000

enum keeper_msg {
	KEEPER_KEEP = 1,
	KEEPER_DROP,
	KEEPER_TAKE,
	KEEPER_OK,
	KEEPER_ERR,
	KEEPER_ENTRY,
	KEEPER_END,
};

#endif
