/*
 * table.h - the pool's volume table, <pool>/carvefs.meta.
 *
 * On disk: one header line "CARVEFS-TABLE 1 <payload-length> <xxh64-hex>\n"
 * followed by a JSON payload of exactly that length whose XXH64 (seed 0) is
 * the checksum. Saving writes carvefs.meta.tmp, fsyncs it, keeps the current
 * table as carvefs.meta.prev, renames the new one into place and fsyncs the
 * directory, so at every instant at least one complete, checksummed table is
 * on disk. Loading verifies length and checksum and never trusts a table that
 * fails them: it falls back to carvefs.meta.prev and says so through
 * *ret_source.
 *
 * Pure data plus file IO relative to a directory fd; never logs. Not
 * thread-safe: the caller serialises access.
 */
#ifndef CARVEFS_TABLE_H
#define CARVEFS_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "volname.h"

#define TABLE_FILE "carvefs.meta"
#define TABLE_FILE_PREV "carvefs.meta.prev"
#define TABLE_FILE_TMP "carvefs.meta.tmp"
#define TABLE_VERSION 1
#define TABLE_LABELS_MAX 4096

/* The four cgroup-v2 io.max knobs plus QEMU-style burst and op sizing. */
struct io_limits {
	uint64_t riops;		  /* read ops/s, 0 = unlimited */
	uint64_t wiops;		  /* write ops/s, 0 = unlimited */
	uint64_t rbps;		  /* read bytes/s, 0 = unlimited */
	uint64_t wbps;		  /* write bytes/s, 0 = unlimited */
	uint64_t burst_ms;	  /* bucket depth as time at the rate; 0 = default (100) */
	uint64_t iops_size_bytes; /* 0 = off; else a larger request counts size/iops_size ops */
};

struct volume_record {
	char name[VOLNAME_MAX + 1];
	uint64_t capacity_bytes;
	uint64_t inode_limit;	/* 0 = unlimited */
	struct io_limits limits;
	uint32_t uid, gid, mode; /* of the volume's root directory; mode incl. type bits stripped */
	char storage_class[254]; /* "" when none */
	char labels[TABLE_LABELS_MAX]; /* a JSON object as text, "" when none */
	int64_t created_unix;	/* seconds since the epoch */
	uint64_t used_bytes;	/* at the last clean shutdown */
	uint64_t used_inodes;	/* at the last clean shutdown */
	bool clean;		/* used_* are exact: the daemon stopped cleanly */
};

struct table;

enum table_source {
	TABLE_SOURCE_NEW = 0, /* no table on disk: a fresh, empty one */
	TABLE_SOURCE_CURRENT, /* carvefs.meta */
	TABLE_SOURCE_PREVIOUS, /* carvefs.meta was missing or corrupt; carvefs.meta.prev used */
};

int table_new(struct table **ret_table);
/* Accepts NULL; returns NULL. */
struct table *table_free(struct table *t);

size_t table_count(const struct table *t);
/* Records stay in insertion order; pointers are valid until the next add/remove. */
struct volume_record *table_at(struct table *t, size_t i);
struct volume_record *table_find(struct table *t, const char *name);
/* Copies @rec. -EEXIST if the name is taken, -EINVAL if it is not a valid name. */
int table_add(struct table *t, const struct volume_record *rec);
/* -ENOENT if there is no such record. */
int table_remove(struct table *t, const char *name);
/* Incremented by every table_save(); stored in the file. */
uint64_t table_generation(const struct table *t);

/*
 * Serialises @t (header line + JSON) into a malloc'd buffer owned by the
 * caller. Returns 0 or -ENOMEM.
 */
int table_encode(const struct table *t, char **ret_buf, size_t *ret_len);

/*
 * Parses a buffer produced by table_encode(). Returns 0, -EBADMSG if the
 * header, length or checksum is wrong (a torn or corrupted file), -EPROTO if
 * the checksum matches but the JSON does not describe a valid table (missing
 * or mistyped fields, invalid names, duplicates), -EPROTONOSUPPORT for a
 * newer format version, -ENOMEM.
 */
int table_decode(const char *buf, size_t len, struct table **ret_table);

/*
 * Loads the table from @dirfd. Tries carvefs.meta, then carvefs.meta.prev.
 * If neither exists, returns a fresh empty table with TABLE_SOURCE_NEW. If
 * carvefs.meta exists but is bad and carvefs.meta.prev is good, returns the
 * latter with TABLE_SOURCE_PREVIOUS and, in *ret_current_error, why the
 * current one was refused (a negative errno as from table_decode, or -ENOENT
 * if it was missing). If no good copy exists but a file does, returns the
 * error of carvefs.meta (never an empty table in place of a damaged one).
 * @ret_current_error may be NULL.
 */
int table_load(int dirfd, struct table **ret_table, enum table_source *ret_source,
	       int *ret_current_error);

/*
 * Saves atomically as described above and increments the generation.
 * Returns 0 or -errno; on failure the previous table on disk is intact.
 */
int table_save(int dirfd, struct table *t);

#endif
