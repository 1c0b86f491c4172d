/*
 * crashstate.h - what a volume's kernel connection refers to, kept in a file
 * outside the daemon's memory, so that a daemon started after a crash of the
 * previous one can take the connection back (keeper.h) and still make sense
 * of what the kernel sends it.
 *
 * The kernel knows the volume's objects by node id (LOOKUP, CREATE, ...)
 * and its open files and directories by fh (OPEN, OPENDIR, CREATE), and
 * keeps both across the crash. The file records, per live node id, the
 * object's generation, type and file handle (name_to_handle_at()), and per
 * open fh its node id and open flags: enough to reopen everything lazily.
 * It also journals the last CRASHSTATE_JOURNAL_LEN non-idempotent requests
 * by unique: begun (with whether the name existed before) and ended (with
 * the result), so that a request the kernel resends after the crash
 * (FUSE_NOTIFY_RESEND) is answered as its first execution was (vfs.c has
 * the rule).
 *
 * Layout: a header, the journal (a ring indexed by unique), then fixed-size
 * slots, each a node, an open file, an open directory or free. Every record
 * is written with one pwrite() and carries a checksum, so a record torn by a
 * crash in the middle of writing it reads as free: a node or open whose
 * record never completed was never answered to the kernel either. The file
 * lives on tmpfs (/run/carvefs): it must survive the daemon, not the machine
 * (a reboot ends the connections too).
 *
 * Pure: plain file IO on an fd, no logging. Single-threaded, like the
 * volume's inode table (its loop thread).
 */
#ifndef CARVEFS_CRASHSTATE_H
#define CARVEFS_CRASHSTATE_H

#include <stdbool.h>
#include <stdint.h>

#define CRASHSTATE_HANDLE_MAX 128 /* MAX_HANDLE_SZ */
/* More requests in flight than this, and the oldest journal entries go. */
#define CRASHSTATE_JOURNAL_LEN 4096u

struct crashstate;

enum crashstate_kind {
	CRASHSTATE_FREE = 0,
	CRASHSTATE_NODE,
	CRASHSTATE_FILE,
	CRASHSTATE_DIR,
};

/* A node: an object the kernel holds a node id for. */
struct crashstate_node {
	uint64_t nodeid, generation;
	uint32_t type; /* S_IFMT bits */
	int32_t handle_type;
	uint32_t handle_bytes;
	unsigned char handle[CRASHSTATE_HANDLE_MAX];
};

/* An open file or directory: the fh the kernel holds, of node @nodeid. */
struct crashstate_open {
	uint64_t fh, nodeid;
	uint32_t flags; /* the open flags, for reopening */
};

enum crashstate_op_state { CRASHSTATE_OP_BEGUN = 1, CRASHSTATE_OP_ENDED };

/* A journalled non-idempotent request. */
struct crashstate_op {
	uint64_t unique; /* without FUSE_UNIQUE_RESEND */
	uint32_t opcode;
	uint32_t state;	  /* enum crashstate_op_state */
	int32_t error;	  /* once ended: 0 or the positive errno answered */
	uint32_t existed; /* the target name existed before (creates, link) */
	uint64_t nodeid;  /* once ended: the node created or linked, else 0 */
};

/*
 * Opens the state file @name below @dir_fd, creating it (mode 0600) if
 * missing. @fresh empties it first (a volume mounted anew: nothing the
 * kernel holds refers to it). Returns 0 or -errno.
 */
int crashstate_open(int dir_fd, const char *name, bool fresh, struct crashstate **ret_cs);
/* Closes; @remove unlinks the file (the volume is gone for good). Accepts NULL; returns NULL. */
struct crashstate *crashstate_close(struct crashstate *cs, bool remove);

/*
 * Calls @on_node and @on_open for every record in the file (nodes first,
 * so that an open's node is known when it comes), and prepares the free
 * slots. Stops at the first callback's failure. Call once, right after
 * opening a file that was not fresh. Returns 0 or -errno.
 */
int crashstate_load(struct crashstate *cs,
		    int (*on_node)(void *arg, const struct crashstate_node *n, uint32_t slot),
		    int (*on_open)(void *arg, enum crashstate_kind kind,
				   const struct crashstate_open *o, uint32_t slot),
		    void *arg);

/* Records a node (or an open file/directory) in a free slot: 0 and *ret_slot, or -errno. */
int crashstate_put_node(struct crashstate *cs, const struct crashstate_node *n, uint32_t *ret_slot);
int crashstate_put_open(struct crashstate *cs, enum crashstate_kind kind,
			const struct crashstate_open *o, uint32_t *ret_slot);
/* Frees @slot: its node was forgotten, or its file released. Returns 0 or -errno. */
int crashstate_release(struct crashstate *cs, uint32_t slot);

/*
 * The journal. op_begin() records @unique before it is executed, op_end()
 * its result after (before the answer goes to the kernel). op_find() reads
 * the entry of @unique: 0, or -ENOENT if none (never begun, or pushed out).
 */
int crashstate_op_begin(struct crashstate *cs, uint64_t unique, uint32_t opcode, bool existed);
int crashstate_op_end(struct crashstate *cs, uint64_t unique, int error, uint64_t nodeid);
int crashstate_op_find(struct crashstate *cs, uint64_t unique, struct crashstate_op *ret_op);

#endif
