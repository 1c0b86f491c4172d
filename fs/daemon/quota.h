/*
 * quota.h - capacity accounting of one volume, in allocated bytes and inodes.
 *
 * The model is the one ext4 and XFS quotas use: a file costs what it has
 * allocated (st_blocks * 512), not its apparent size, and every backing inode
 * costs one inode. Writers reserve before they submit IO and settle from the
 * real st_blocks after it completes, so concurrent writers can never push
 * used + reserved past the capacity:
 *
 *	quota_reserve_bytes()  before the IO: claims room, or -ENOSPC
 *	quota_charge_bytes()   after the IO: the observed change of st_blocks
 *	quota_release_bytes()  after the IO: gives the reservation back
 *
 * Charges are never refused: they record what the backing filesystem really
 * did (metadata blocks may make usage pass the capacity by a block or two,
 * exactly as on a quota'd ext4).
 *
 * Thread-safe (one internal mutex, a leaf lock: nothing is called with it
 * held). Pure: no clock, no IO, never logs.
 */
#ifndef CARVEFS_QUOTA_H
#define CARVEFS_QUOTA_H

#include <stdatomic.h>
#include <stdint.h>

struct quota;

/*
 * A copy of the counts, stored at every change, for a page that outlives
 * the process (crashstate.h maps one): after a crash, used plus reserved
 * is an upper bound of what the volume holds, as every change to the disk
 * is reserved before it is made and charged before its reservation goes.
 * Up to what no one reserves, as charges are never refused: the metadata
 * blocks a write allocates and a directory's growth by a new name, which
 * the requests in flight at the crash may have made and not yet charged
 * (a few blocks each).
 */
struct quota_mirror {
	_Atomic uint64_t used_bytes, used_inodes, reserved_bytes, reserved_inodes;
	_Atomic uint64_t attached; /* 1 once a quota stored its counts here */
};

struct quota_usage {
	uint64_t capacity_bytes;
	uint64_t used_bytes;
	uint64_t reserved_bytes;
	uint64_t inode_limit; /* 0 = unlimited */
	uint64_t used_inodes;
	uint64_t reserved_inodes;
};

int quota_new(uint64_t capacity_bytes, uint64_t inode_limit, struct quota **ret_quota);
/* Accepts NULL; returns NULL. */
struct quota *quota_free(struct quota *q);

/* Sets the limits; usage is kept. Shrinking below usage is the caller's policy. */
void quota_set_limits(struct quota *q, uint64_t capacity_bytes, uint64_t inode_limit);
/* Replaces the usage, e.g. after a walk of the backing directory. */
void quota_set_usage(struct quota *q, uint64_t used_bytes, uint64_t used_inodes);
void quota_get(struct quota *q, struct quota_usage *ret_usage);
/* Keeps @m (NULL: none any more) current from now on, starting with the counts now. */
void quota_set_mirror(struct quota *q, struct quota_mirror *m);

/*
 * Reserves room for @want bytes of new allocation. If all of it does not fit,
 * grants the largest multiple of @unit that does (a short write), provided it
 * is at least @min; @unit and @min of 0 mean 1 byte and "all of @want".
 * On success *ret_granted (0 < granted <= want) is reserved and must be given
 * back with quota_release_bytes(). Returns 0 or -ENOSPC. A @want of 0 always
 * succeeds with 0 granted.
 */
int quota_reserve_bytes(struct quota *q, uint64_t want, uint64_t min, uint64_t unit,
			uint64_t *ret_granted);
void quota_release_bytes(struct quota *q, uint64_t bytes);
/* Adds @delta (may be negative) to the used bytes; usage never drops below 0. */
void quota_charge_bytes(struct quota *q, int64_t delta);

/*
 * Reserves one inode: -ENOSPC if used + reserved already reaches the limit.
 * Settle with quota_charge_inodes(q, 1) on success and always
 * quota_release_inode().
 */
int quota_reserve_inode(struct quota *q);
void quota_release_inode(struct quota *q);
void quota_charge_inodes(struct quota *q, int64_t delta);

/* Free bytes as statfs reports them: capacity - used - reserved, or 0. */
uint64_t quota_free_bytes(struct quota *q);

#endif
