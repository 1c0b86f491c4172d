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
 * Layout: a header page (which also holds the usage, mapped shared), the
 * journal (a ring indexed by unique), then fixed-size slots, each a node,
 * an open file, an open directory or free. Every record
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

#include "quota.h"

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
	uint64_t unique; /* of the request that made the node id, without FUSE_UNIQUE_RESEND; 0: unknown */
};

/* An open file or directory: the fh the kernel holds, of node @nodeid. */
struct crashstate_open {
	uint64_t fh, nodeid;
	uint32_t flags;	 /* the open flags, for reopening */
	uint64_t unique; /* of the request that opened it, without FUSE_UNIQUE_RESEND; 0: unknown */
};

enum crashstate_op_state { CRASHSTATE_OP_BEGUN = 1, CRASHSTATE_OP_ENDED };

/* A journalled non-idempotent request. */
struct crashstate_op {
	uint64_t unique; /* without FUSE_UNIQUE_RESEND */
	uint32_t opcode;
	uint32_t state;	  /* enum crashstate_op_state */
	int32_t error;	  /* once ended: 0 or the positive errno answered */
	uint32_t existed; /* before it ran, the name it makes or removes existed */
	uint64_t nodeid;  /* once ended: the node created or linked, else 0 */
	uint64_t ino;	  /* rename: the source's st_ino before it ran, else 0 */
	uint32_t flags;	  /* rename: its flags (RENAME_EXCHANGE, ...) */
	uint32_t pad;
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
 * The volume's usage as its quota counted it (quota_set_mirror()), in the
 * file's first page mapped shared: every store is in the file at once,
 * with no system call, and outlives the process. Zero in a new file (its
 * attached field tells). Valid until crashstate_close(). Returns 0 or -errno.
 */
int crashstate_map_usage(struct crashstate *cs, struct quota_mirror **ret_usage);

/*
 * Gives the file the name @name (below the same directory), replacing what
 * had that name: a file written whole under a temporary name takes the
 * place of the one in use in one step. Returns 0 or -errno.
 */
int crashstate_rename(struct crashstate *cs, const char *name);

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
/*
 * Many records at once (a whole table): between begin and end, puts only
 * gather them in memory (each still gets its slot), and end writes them
 * all with one pwrite(). On failure none of them is on file. No release
 * in between. Returns 0 or -errno.
 */
void crashstate_batch_begin(struct crashstate *cs);
int crashstate_batch_end(struct crashstate *cs);
/* Frees @slot: its node was forgotten, or its file released. Returns 0 or -errno. */
int crashstate_release(struct crashstate *cs, uint32_t slot);

/*
 * The journal. op_begin() records @unique before it is executed, op_end()
 * its result after (before the answer goes to the kernel). op_find() reads
 * the entry of @unique: 0, or -ENOENT if none (never begun, or pushed out).
 */
int crashstate_op_begin(struct crashstate *cs, const struct crashstate_op *op);
int crashstate_op_end(struct crashstate *cs, uint64_t unique, int error, uint64_t nodeid);
int crashstate_op_find(struct crashstate *cs, uint64_t unique, struct crashstate_op *ret_op);

/*
 * What to do with a resent request (FUSE_UNIQUE_RESEND) that creates,
 * links, unlinks or renames (journal.c journals those), so that it is
 * answered as its first execution was:
 *
 *  - not in the journal: the dead daemon never began it (the entry is
 *    written before anything is done): execute it;
 *  - ended: answer what was answered then: its error, or success (creates
 *    and links then look the name up and answer with its node);
 *  - begun, not ended (the crash came while it ran): look at the names it
 *    works on. The kernel holds the parent directories' locks for the
 *    whole request, across the crash, and a volume changes only through
 *    its mount, so nobody else changed them meanwhile: a name it makes
 *    that exists now and did not before was made by it (done); a name it
 *    removes that existed and is gone now was removed by it (done); a
 *    rename whose source is gone, or for RENAME_EXCHANGE whose target now
 *    holds the source's inode, was done; anything else did not happen yet
 *    (execute). SETATTR is not journalled: it sets absolute values, so
 *    executing it again is its first execution's result.
 */
enum crashstate_resend {
	CRASHSTATE_EXECUTE,
	CRASHSTATE_ANSWER_ERROR, /* with *ret_error */
	CRASHSTATE_ANSWER_DONE,
};

/* What the names of a begun request hold now. */
struct crashstate_now {
	bool name_exists;   /* the name made or removed (a rename's target) */
	bool source_exists; /* a rename's source */
	uint64_t name_ino;  /* st_ino of the name, when it exists */
};

/*
 * The rule above for @op (NULL: not in the journal) and @now (read only for
 * a begun entry). FUSE opcodes as in <linux/fuse.h>.
 */
enum crashstate_resend crashstate_resend_rule(const struct crashstate_op *op,
					      const struct crashstate_now *now, int *ret_error);

#endif
