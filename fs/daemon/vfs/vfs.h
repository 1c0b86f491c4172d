/*
 * vfs.h - one mounted volume as a filesystem: its inodes, its quota, its
 * FUSE session. Private to the daemon's filesystem modules (inode.c, meta.c,
 * dir.c, file.c, ops.c, vfs.c); the rest of the daemon sees struct vfs
 * through the functions at the bottom only.
 *
 * Confinement: every inode is found by a confined, fd-relative, no-follow
 * lookup, and known afterwards by the file handle of what was found; every
 * operation is relative to an O_PATH | O_NOFOLLOW fd of such an object,
 * reopened from that handle. Nothing is resolved by path from the pool, no
 * symlink is ever followed by the daemon, and an object on another
 * filesystem (a mount planted in the backing directory) is refused, so no
 * name a pod can create reaches outside the volume. Only handles the daemon
 * took itself (or that its predecessor exported, through the root-only
 * hand-over) are ever opened, and a reopened object must still be on the
 * volume's filesystem and mount.
 *
 * Threads: all of a volume's requests run on the one loop thread its session
 * is attached to, and work from other threads (wipe) is run there through
 * uring_session_call(). So the inode table needs no lock. The quota has its
 * own (a leaf), and so has the fd cache, which all volumes share (a leaf,
 * inode.c); the counters in struct vfs_stats are atomics read by the
 * control and HTTP threads.
 */
#ifndef CARVEFS_VFS_H
#define CARVEFS_VFS_H

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include <fuse_lowlevel.h>

#include "fhmap.h"
#include "histogram.h"
#include "quota.h"
#include "table.h"
#include "uring.h"

struct walk_usage;
struct recount;

/* Set by the kernel in the unique of a request it delivers again (Linux 6.9). */
#define VFS_UNIQUE_RESEND (1ULL << 63)

/* What a recount found (recount.c), for struct vfs_params' on_recounted. */
struct vfs_recount_result {
	int error; /* 0, or -errno: the upper bound stays the count */
	uint64_t bytes, inodes, dirs;
	double seconds;
};

/*
 * A backing object the kernel knows, by the file handle of that object
 * (name_to_handle_at), not by an open fd: fds are opened on demand and kept
 * in a bounded cache shared by all volumes (inode.c), so the number of
 * inodes the kernel caches does not bound the daemon's fds.
 */
struct inode {
	uint64_t nodeid;     /* FUSE node id: never reused for another object */
	uint64_t generation; /* the same for the life of the node id */
	mode_t type;	     /* S_IFMT bits */
	uint64_t nlookup;    /* references the kernel holds */
	unsigned opens;	     /* open file and directory handles */
	/* This object's share of quota's used bytes (st_blocks * 512 when last seen). */
	uint64_t charged_bytes;
	uint64_t size; /* st_size when last seen */
	uint64_t ino;  /* st_ino when last seen (0: not yet), for the recount (recount.c) */
	/*
	 * Writes in flight to this object (file.c): the quota bytes each
	 * reserved when it started, summed, and how much of that reservation
	 * is still held for them. Once one completes, its settle also charges
	 * the blocks that writes still in flight allocated; their reservation
	 * is spent by that, so it is given back then rather than at their own
	 * completion, or the same blocks would count twice meanwhile.
	 */
	uint64_t write_claimed_bytes;
	uint64_t write_held_bytes;
	bool uncounted; /* unlinked before a recount: not part of the quota's usage */
	/*
	 * Known from a crashed daemon's state file (recover.c): the kernel
	 * holds references we never counted, so nlookup counts only ours, and
	 * the kernel's final FORGET is the first to exceed it.
	 */
	bool lookups_unknown;
	uint64_t restored_unique; /* restored: the request that made its node id (0: unknown) */
	uint32_t cs_slot; /* its record in the crash state (CS_SLOT_NONE: none) */
	unsigned settles; /* settles after writeback in flight (file.c): keep the entry */
	/*
	 * protected by the fd cache's lock (inode.c): the cached O_PATH fd
	 * (-1 when not open), the borrowers using it, the LRU links. The
	 * root's fd is opened once and never changes.
	 */
	int fd;
	unsigned pins;
	struct inode *lru_prev, *lru_next;
	struct inode *id_next;	   /* in vfs->buckets, by node id */
	struct inode *handle_next; /* in vfs->hbuckets, by handle: hard links share an entry */
	int handle_type;
	unsigned handle_bytes; /* at most MAX_HANDLE_SZ */
	unsigned char handle[];
};

/* An open regular file. */
struct handle {
	int fd;		 /* opened with the client's access mode (and O_DIRECT if asked) */
	int fd_buffered; /* without O_DIRECT, opened on first unaligned IO; -1 until then */
	int flags;	 /* the flags fd was opened with */
	bool client_direct; /* the client opened with O_DIRECT: its writes are all or nothing */
	bool wrote;	    /* a write or fallocate went through it: settle at release */
	uint64_t fh;	    /* the kernel's name for it, in vfs->file_fhs */
	uint32_t cs_slot;   /* its record in the crash state (CS_SLOT_NONE: none) */
	uint64_t restored_unique; /* restored: the request that opened it (0: unknown, or not) */
	struct inode *inode;
	struct handle *prev, *next; /* in vfs->files */
};

struct vfs_stats {
	_Atomic uint64_t read_ops, write_ops, read_bytes, write_bytes;
	_Atomic uint64_t throttled_ns, queue_depth;
	/*
	 * Reads and writes that reached the backing file, from the request's
	 * arrival to its reply (throttling included), with histogram_io_bounds.
	 */
	struct histogram read_latency, write_latency;
};

struct vfs {
	char name[64];
	struct inode *root;
	struct inode **buckets;	 /* by node id */
	struct inode **hbuckets; /* by file handle */
	size_t nbuckets, ninodes;
	uint64_t next_nodeid; /* the next node id to give out: ids are never reused */
	int handle_fd;	      /* the root opened O_RDONLY: open_by_handle_at() refuses O_PATH */
	struct quota *quota;
	uint64_t block_bytes; /* allocation unit of the backing filesystem */
	dev_t dev;	      /* the backing filesystem: nothing else is served */
	uint64_t mnt_id;      /* and the mount the backing directory is reached through */
	double entry_timeout, attr_timeout;
	struct fuse_session *se;
	struct uring_session *session;
	/*
	 * What a daemon started after a crash of this one needs (recover.c),
	 * or NULL. Closed when the session ends: removed then, unless the
	 * volume went to a successor (released), which goes on with the file.
	 */
	struct crashstate *cs;
	bool cs_staged; /* cs is a successor's file, under a temporary name until it serves */
	atomic_bool released;
	struct recount *recount; /* a walk counting usage anew (recount.c); NULL: none */
	/* Its driver (recover.c): a thread stepping it through the loop thread. */
	pthread_t recount_thread;
	bool recount_started;
	atomic_bool recount_stop;
	atomic_bool recount_running; /* until the walk is over (vfs_recount_wait()) */
	void (*on_recounted)(void *arg, const struct vfs_recount_result *res);
	/* The request being journalled (journal.c), its unique; 0: none. */
	uint64_t journal_unique;
	int journal_crash; /* journal.c's test hook for that request */
	void (*on_init)(void *arg, int fuse_fd, const void *init, size_t init_len);
	void *on_init_arg;
	struct file_throttle *throttle; /* file.c: IO limits and their queues */
	/*
	 * Open handles. A session that ends while files are open gets no
	 * RELEASE for them, so they are closed when the vfs is freed.
	 */
	struct handle *files;
	struct dir_handle *dirs;
	/* The fh given to the kernel -> struct handle / struct dir_handle (fhmap.h). */
	struct fhmap *file_fhs, *dir_fhs;
	struct vfs_stats stats;
	/*
	 * Belong to the loop thread: the request being processed as the
	 * session's read saw it (vfs.c), for what libfuse 3.14 does not pass on.
	 */
	uint64_t rq_unique;
	uint32_t rq_opcode;
	uint32_t rq_write_flags; /* fuse_write_in.write_flags of a WRITE, else 0 */
	bool kernel_dio_mmap;	 /* the kernel offered FUSE_DIRECT_IO_ALLOW_MMAP */
	/* The raw INIT request (header included), malloc'd; NULL until it came. */
	void *init_buf;
	size_t init_len;
	bool replaying;	  /* feeding init_buf to a new session: answers are dropped */
	int replay_error; /* -errno libfuse answered the replayed INIT with */
	/* protected by end_lock: set once the session ended */
	pthread_mutex_t end_lock;
	pthread_cond_t end_cond;
	bool ended;
};

/* inode.c */
int inode_table_init(struct vfs *v, int root_fd);
void inode_table_fini(struct vfs *v);
/* The inode of a node id, or NULL if the kernel sent one we do not know. */
struct inode *inode_of(struct vfs *v, fuse_ino_t ino);
/*
 * Borrows the O_PATH | O_NOFOLLOW fd of @in, reopening it from its handle if
 * it is not cached; the fd stays open until the matching inode_fd_put().
 * Returns the fd (not owned by the caller) or -errno: -ESTALE once the
 * object is gone (no link and nothing holding it).
 */
int inode_fd_get(struct vfs *v, struct inode *in);
void inode_fd_put(struct vfs *v, struct inode *in);
/*
 * inode_of() and inode_fd_get() together: the fd of node @ino, borrowed, and
 * its inode in *ret_in; -ESTALE for an unknown node id.
 */
int inode_borrow(struct vfs *v, fuse_ino_t ino, struct inode **ret_in);
/*
 * Looks @name up below @parent without following symlinks and fills @e (one
 * more kernel reference). @created says the object was just made by this
 * request, so its blocks and inode are charged to the quota now; an existing
 * object was already counted by the usage walk. Returns 0 or -errno.
 */
int inode_lookup(struct vfs *v, struct inode *parent, const char *name, bool created,
		 struct fuse_entry_param *e);
/*
 * Takes back the name @name below @parent that this request has just made
 * (create, mknod, mkdir, symlink, link) when the request fails after all,
 * so that the directory is as it was and a retry does not find the name.
 * @in is the object's entry if inode_lookup() already returned it (its
 * reference is dropped, which gives a created object's space and inode
 * back), or NULL. The caller still holds the quota reservations it made.
 */
void inode_unmake(struct vfs *v, struct inode *parent, const char *name, struct inode *in);
/* Drops @nlookup kernel references (clamped at zero). Accepts NULL. */
void inode_forget(struct vfs *v, struct inode *in, uint64_t nlookup);
/* Drops an open handle's reference. */
void inode_close(struct vfs *v, struct inode *in);
/* Ends a settle after writeback (in->settles counts those in flight). */
void inode_settle_done(struct vfs *v, struct inode *in);
/* Charges the change of the object's allocation since it was last seen. */
void inode_settle(struct vfs *v, struct inode *in, const struct stat *st);
int inode_settle_fd(struct vfs *v, struct inode *in, int fd);
/* inode_settle_fd() through the inode's own (borrowed) fd. */
int inode_settle_self(struct vfs *v, struct inode *in);
/*
 * The file handle of @name below @dir_fd (not followed), to tell a tracked
 * object from the name before the name goes away.
 */
struct inode_key {
	int type;
	unsigned bytes;
	unsigned char data[MAX_HANDLE_SZ];
};
int inode_key_at(int dir_fd, const char *name, struct inode_key *ret_key);
/* The entry of the object @key names, or NULL if the table has none. */
struct inode *inode_of_key(struct vfs *v, const struct inode_key *key);
/* statx() of @name below @dir_fd ("" for @dir_fd itself), not followed, with its mount id. */
int inode_stat_at(int dir_fd, const char *name, struct stat *st, uint64_t *ret_mnt_id);
/* Whether the object @fd is open on is this volume's: its filesystem and mount (-EXDEV if not). */
int inode_check_confined(struct vfs *v, int fd, struct stat *st);
/*
 * Accounts an object that lost a link (unlink, rmdir, rename over it), as
 * @before (its stat) and @key (its handle, or NULL if none could be taken)
 * described it while it was linked: if the daemon does not track it and the
 * link was its last, its space and inode are given back now; a tracked one
 * gives them back when its last open handle goes.
 */
void inode_unlinked(struct vfs *v, const struct stat *before, const struct inode_key *key);
int inode_stat(struct vfs *v, struct inode *in, struct stat *st);
/* "/proc/self/fd/N" of @fd into @buf (at least 32 bytes). */
void inode_procpath(int fd, char *buf, size_t len);
/*
 * After the quota's usage was replaced by a walk of the backing directory
 * (wipe), makes every tracked object's charge agree with what the walk
 * counted: linked objects their blocks, unlinked ones nothing.
 */
void inode_table_recount(struct vfs *v);
/*
 * The table as a self-describing binary blob for a successor daemon (see
 * inode.c for the layout): every entry's node id, generation, handle, type,
 * lookup count and quota share, and the next node id. *ret_buf is malloc'd
 * and owned by the caller. Run it on the volume's loop thread, or once its
 * session stopped. Open handles (opens) and writes in flight are not part
 * of it: the successor counts the handles it takes over itself. Returns 0
 * or -errno.
 */
int inode_table_export(struct vfs *v, void **ret_buf, size_t *ret_len);
/*
 * Recreates the entries of an exported table in a freshly initialised table
 * of the same volume (only its root set up), with the same node ids and
 * generations; opens nothing (fds open on first use). A blob that is not
 * exactly well formed, or is of another volume, gives -EINVAL and leaves the
 * table as it was. Returns 0 or -errno.
 */
int inode_table_import(struct vfs *v, const void *buf, size_t len);

/*
 * A node a crashed daemon had given the kernel, as its crash state recorded
 * it (recover.c). inode_restore() enters it with the same node id and
 * generation and unknown kernel references (see struct inode); it opens
 * nothing. Returns 0, -EEXIST (the node id or the object is in the table
 * already) or -EINVAL (not a node a volume can hold).
 */
struct inode_record {
	uint64_t nodeid, generation;
	mode_t type;
	int handle_type;
	unsigned handle_bytes;
	const unsigned char *handle;
	uint32_t slot;
	uint64_t unique; /* the request that made the node id (0: unknown) */
};
int inode_restore(struct vfs *v, const struct inode_record *rec);
/*
 * The kernel delivers again the request @unique (FUSE_UNIQUE_RESEND
 * cleared), which creates a name (CREATE, MKDIR, MKNOD, SYMLINK): if its
 * first execution made a restored node, the kernel holds no reference to
 * it (the answer never went out, and the parent stayed locked meanwhile,
 * so nothing else found the new object): its references are all counted
 * from now on.
 */
void inode_resent_creation(struct vfs *v, uint64_t unique);

/*
 * record.c: the crash state (crashstate.h) kept current. Each function is
 * a no-op without one (v->cs NULL). A record is written before the kernel
 * learns what it records: put fails the request with its -errno rather
 * than give the kernel something a daemon started after a crash could not
 * resolve.
 */
#define CS_SLOT_NONE UINT32_MAX
/* A new node id, given out by the request @unique (0: by none of this connection's). */
int record_node_put(struct vfs *v, struct inode *in, uint64_t unique);
/*
 * An open file (@dir false, @flags file_record_flags()) or directory,
 * opened by the request @unique (0: by none of this connection's, e.g.
 * taken over).
 */
int record_open_put(struct vfs *v, bool dir, uint64_t fh, struct inode *in, uint32_t flags,
		    uint64_t unique, uint32_t *ret_slot);
/* The kernel let go of what *@slot records; sets it to CS_SLOT_NONE. */
void record_release(struct vfs *v, uint32_t *slot);
/* Enters the node a crashed daemon's file records at @slot (inode_restore()). */
struct crashstate_node;
int record_node_restore(struct vfs *v, const struct crashstate_node *n, uint32_t slot);
/*
 * An empty state file below @dir_fd (-1: none, and no crash state): for a
 * volume mounted anew; or @staged, for a volume taken over from a
 * predecessor (handoff.c), under a temporary name until this process
 * serves (record_state_commit(), from vfs_serve()): the predecessor's file,
 * in use until then, is replaced in one step.
 */
int record_state_open(struct vfs *v, int dir_fd, bool staged);
int record_state_commit(struct vfs *v);
/* Closes the state file; @remove unlinks it (the volume is unmounted). */
void record_state_close(struct vfs *v, bool remove);

/*
 * recount.c: usage counted anew by a walk while the volume is served.
 * recount_prepare() before the volume serves (v->recount); then, on the
 * loop thread, recount_step() lists one directory and says whether the
 * walk is over: then the quota has the count (unless *ret has an error:
 * -ECANCELED if the count was replaced by other means, recount_abandon(),
 * wipe) and the recount is freed (v->recount NULL). recount_free() ends one
 * still going. Also on the loop thread: a change of usage of the object
 * with inode number @ino (recount_charge(), beside the quota's), a name
 * just made below @dir_fd (recount_name_made()).
 */
int recount_prepare(struct vfs *v);
bool recount_step(struct vfs *v, struct vfs_recount_result *ret);
void recount_free(struct vfs *v);
void recount_abandon(struct vfs *v);
void recount_charge(struct vfs *v, uint64_t ino, int64_t bytes, int64_t inodes);
void recount_name_made(struct vfs *v, int dir_fd, const char *name);

/* creds.c: create objects as the caller, never as root first. */
int creds_enter(fuse_req_t req);
void creds_leave(void);

/* meta.c, dir.c, file.c: request handlers, referenced by ops.c. */
void meta_init(void *userdata, struct fuse_conn_info *conn);
void meta_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void meta_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void meta_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void meta_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void meta_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		  struct fuse_file_info *fi);
void meta_readlink(fuse_req_t req, fuse_ino_t ino);
void meta_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void meta_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void meta_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void meta_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void meta_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void meta_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void meta_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		 const char *newname, unsigned int flags);
void meta_statfs(fuse_req_t req, fuse_ino_t ino);
void meta_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		   size_t size, int flags);
void meta_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void meta_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void meta_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

void dir_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void dir_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi);
void dir_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi);
void dir_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void dir_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

void file_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		 struct fuse_file_info *fi);
void file_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void file_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void file_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
		    struct fuse_file_info *fi);
void file_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void file_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void file_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void file_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
		    struct fuse_file_info *fi);
void file_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);
/*
 * A predecessor's open file or directory, under the fh the kernel knows:
 * the handle owns @fd (and @fd_buffered, -1 if none) on success only.
 */
int file_adopt(struct vfs *v, uint64_t fh, struct inode *in, int fd, int fd_buffered, int flags,
	       bool client_direct, bool wrote);
int dir_adopt(struct vfs *v, uint64_t fh, struct inode *in, int fd);
/*
 * A crashed daemon's open file or directory under the fh the kernel knows,
 * reopened from its node (@flags as file_record_flags() made them), its
 * record in the crash state at @slot. Returns 0 or -errno (-ESTALE: the
 * object is gone, e.g. unlinked while open).
 */
int file_restore(struct vfs *v, uint64_t fh, struct inode *in, uint32_t flags, uint64_t unique,
		 uint32_t slot);
int dir_restore(struct vfs *v, uint64_t fh, struct inode *in, uint64_t unique, uint32_t slot);
/*
 * The kernel delivers again the request @unique (FUSE_UNIQUE_RESEND
 * cleared) that opened a restored file or directory (@unique as
 * restored): the dead daemon recorded it, but its answer never went out,
 * so the kernel does not know its fh and never releases it. Closes it.
 */
void file_drop_unanswered(struct vfs *v, uint64_t unique);
void dir_drop_unanswered(struct vfs *v, uint64_t unique);
/* What the crash state records of an open file: enough for file_restore(). */
uint32_t file_record_flags(const struct handle *h);
/* Records open directory @fh in the crash state (handoff.c). */
int dir_record(struct vfs *v, uint64_t fh, struct inode *in);
size_t dir_count(struct vfs *v);
/* Calls @fn for every open directory with its fh, inode and fd; stops at an error. */
int dir_for_each(struct vfs *v, int (*fn)(void *arg, uint64_t fh, struct inode *in, int fd),
		 void *arg);
/* The open file the kernel names with @fi->fh, or NULL. */
struct handle *file_handle_of(struct vfs *v, const struct fuse_file_info *fi);
/* Closes every handle still open; only once the session has ended. */
void file_close_all(struct vfs *v);
void dir_close_all(struct vfs *v);
/* Truncates through @fd and settles the quota; used by setattr and O_TRUNC. */
int file_truncate(struct vfs *v, struct inode *in, int fd, off_t size);
/*
 * IO limits. Reads and writes over a limit wait, in arrival order, in a
 * queue per direction, and are released by io_uring timeouts: no thread
 * sleeps. set and release_all run on the volume's loop thread.
 */
int file_throttle_new(struct vfs *v, const struct io_limits *limits);
void file_throttle_free(struct vfs *v);
void file_throttle_set(struct vfs *v, const struct io_limits *limits);
/* The session is ending: submit everything queued now, unthrottled. */
void file_throttle_release_all(struct vfs *v);

/*
 * journal.c: the handlers of the requests that make, link, remove or
 * rename names (ops.c), journalled around meta.c's and file.c's so that a
 * request resent after a crash is answered as its first execution was.
 * journal_answered() ends the entry with the answer about to be sent
 * (vfs.c), when the answer is the journalled request's (v->journal_unique).
 */
struct fuse_out_header;
void journal_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void journal_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void journal_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void journal_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void journal_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void journal_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void journal_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		    const char *newname, unsigned int flags);
void journal_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		    struct fuse_file_info *fi);
void journal_answered(struct vfs *v, const struct fuse_out_header *oh, const struct iovec *arg);

/* ops.c */
extern const struct fuse_lowlevel_ops vfs_ops;

/*
 * vfs.c: a volume's filesystem from mount to end. Called by the volume
 * manager, never from a loop thread.
 */
struct vfs_params {
	const char *name;
	const char *mountpoint;
	int root_fd; /* O_PATH | O_DIRECTORY of the backing directory; ownership moves to the vfs */
	uint64_t capacity_bytes;
	uint64_t inode_limit;
	struct io_limits limits;
	bool usage_known; /* used_* below are exact (clean stop); else the tree is walked */
	uint64_t used_bytes;
	uint64_t used_inodes;
	/*
	 * Called on the loop thread with the connection's /dev/fuse fd and the
	 * raw INIT request as soon as it is read, before it is answered, so
	 * that a keeper can hold the connection from its start; and by
	 * vfs_adopt_session() for a connection taken over, which is this
	 * process's from then on. NULL: none.
	 */
	void (*on_init)(void *arg, int fuse_fd, const void *init, size_t init_len);
	/*
	 * Called on a thread of the vfs when a recount after a crash ended
	 * (vfs_recover()), with its figures. NULL: none. Both callbacks get
	 * @on_init_arg.
	 */
	void (*on_recounted)(void *arg, const struct vfs_recount_result *res);
	void *on_init_arg;
	/*
	 * The directory of the volumes' crash state files (recover.c): one per
	 * volume, named after it, on tmpfs. -1: none, and a daemon started
	 * after a crash cannot take the volume's connection back. Not owned.
	 */
	int state_dir_fd;
};

/*
 * Mounts the volume at @p->mountpoint (the mountpoint must exist and be
 * free) and starts serving it on @loops. On failure the root fd is closed
 * too. Returns 0 or -errno.
 */
int vfs_mount(const struct vfs_params *p, struct uring_pool *loops, struct vfs **ret_vfs);
/*
 * Unmounts and waits until the session ended. Without @lazy, a volume in use
 * is left alone and -EBUSY returned. With @lazy the mount is detached and the
 * session ended at once: whoever still uses the volume gets ENOTCONN.
 */
int vfs_unmount(struct vfs *v, const char *mountpoint, bool lazy);
/* Whether the session ended (unmounted by anyone, or aborted). */
bool vfs_ended(struct vfs *v);
/* Frees an ended (or never mounted) vfs. Accepts NULL; returns NULL. */
struct vfs *vfs_free(struct vfs *v);
/* Empties the volume and recounts its usage, serialised with its requests. */
int vfs_wipe(struct vfs *v, uint64_t *ret_skipped);
/*
 * Crash recovery (keeper.h). vfs_init_offers_resend() says whether the
 * kernel that sent the raw INIT request @init can resend the requests a dead
 * daemon had read (FUSE_HAS_RESEND, Linux 6.9). vfs_kernel_resend() asks it
 * to, on the adopted connection @fuse_fd: every such request comes back
 * with FUSE_UNIQUE_RESEND (bit 63) set in its unique, and is answered under
 * that same unique (libfuse passes uniques through unchanged). Returns 0 or
 * -errno (-EINVAL from a kernel without it).
 */
bool vfs_init_offers_resend(const void *init, size_t init_len);
int vfs_kernel_resend(int fuse_fd);

/* Applies new IO limits to the live volume; queued requests see them at once. */
int vfs_set_limits(struct vfs *v, const struct io_limits *limits);
/*
 * How many fds of backing objects the daemon keeps open for all volumes
 * together (--fd-cache; open files and each volume's root come on top).
 * Set before any volume is mounted.
 */
#define VFS_FD_CACHE_DEFAULT 4096
#define VFS_FD_CACHE_MIN 16
void vfs_set_fd_cache(size_t max_fds);

/* A volume's IO counters (struct vfs_stats) read at one moment. */
struct vfs_counters {
	uint64_t read_ops, write_ops, read_bytes, write_bytes, throttled_ns, queue_depth;
	struct histogram_snapshot read_latency, write_latency; /* histogram_io_bounds */
};

/* Reads the counters; safe from any thread while the vfs exists. */
void vfs_stats_read(struct vfs *v, struct vfs_counters *ret_counters);
/* The quota's count now, writes in flight reserved; safe from any thread. */
void vfs_usage(struct vfs *v, struct quota_usage *ret_usage);
/*
 * Counts what the backing directory holds by walking it (walk_usage()).
 * Meant for an ended vfs, whose tree nothing changes any more.
 */
int vfs_count_usage(struct vfs *v, struct walk_usage *ret_usage);
/* New capacity and inode limit (0 = unlimited), in force for the next request. */
void vfs_set_capacity(struct vfs *v, uint64_t capacity_bytes, uint64_t inode_limit);

/*
 * Hand-over to a successor process (handoff.c has the state it passes).
 *
 * vfs_pause() stops reading the volume's requests and waits, at most
 * @timeout_ns, until those read are answered (see uring_session_pause()):
 * 0, -ETIMEDOUT (still paused) or -ENODEV (the session ended). A paused
 * volume is served again by vfs_resume(), or left to the successor by
 * vfs_release(), which ends the session without unmounting; vfs_free()
 * follows.
 */
int vfs_pause(struct vfs *v, uint64_t timeout_ns);
void vfs_resume(struct vfs *v);
void vfs_release(struct vfs *v);
/*
 * The successor's side: a vfs for a volume mounted by another process,
 * over its /dev/fuse @fuse_fd (owned from now on, even on failure), whose
 * libfuse session is made initialised by replaying @init (the raw INIT
 * request the kernel sent at mount). Nothing is read from @fuse_fd until
 * vfs_serve(). @p->root_fd is owned as in vfs_mount(); @p->mountpoint is
 * not touched.
 */
int vfs_adopt_session(const struct vfs_params *p, int fuse_fd, const void *init, size_t init_len,
		      struct vfs **ret_vfs);
/* Starts serving an adopted volume on @loops. Returns 0 or -errno. */
int vfs_serve(struct vfs *v, struct uring_pool *loops);

/*
 * Crash recovery (recover.c): the volume's connection, kept by the keeper
 * for a daemon that died (@fuse_fd, owned from now on even on failure,
 * and the INIT request it was set up with), taken back with the node ids
 * and open files its crash state below @p->state_dir_fd records. Usage is
 * recounted by a walk of the backing directory first. Nothing is read
 * until vfs_serve(); then vfs_ask_resend() has the kernel deliver again
 * what the dead daemon had read and not answered. Returns 0 or -errno
 * (-ENOENT: no crash state).
 */
struct vfs_recovery {
	uint64_t nodes, opens; /* node ids and open fhs taken back */
	uint64_t lost_opens;   /* open files whose object is gone: their fh gets EBADF */
	uint64_t dropped;      /* records of nothing this volume holds */
	bool usage_bound;      /* served against the dead daemon's count until a recount */
};
int vfs_recover(const struct vfs_params *p, int fuse_fd, const void *init, size_t init_len,
		struct vfs_recovery *ret_counts, struct vfs **ret_vfs);
int vfs_ask_resend(struct vfs *v);
/*
 * After vfs_recover() and vfs_serve(): the volume was served against an
 * upper bound of its usage (what the dead daemon counted, writes in flight
 * included); a walk, a directory at a time between requests, replaces it
 * with the exact count and reports to @p->on_recounted. Without the bound
 * (a state file of an older build) vfs_recover() walked before serving,
 * and this does nothing. Returns 0 or -errno.
 */
int vfs_recount_start(struct vfs *v);
/*
 * Waits at most @timeout_ns for a recount in progress to end: 0 (none
 * going) or -ETIMEDOUT. A hand-over passes usage as exact, so it waits.
 */
int vfs_recount_wait(struct vfs *v, uint64_t timeout_ns);
/* Stops a recount still going (its count is not used) and frees it. Not on a loop thread. */
void vfs_recount_stop(struct vfs *v);

#endif
