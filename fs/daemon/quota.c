/*
 * quota.c - capacity accounting; see quota.h.
 *
 * A mutex rather than atomics: reserving must compare and update two counters
 * (used and reserved) as one step, and the lock is held for a few
 * instructions only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "quota.h"

struct quota {
	pthread_mutex_t lock;
	/* protected by lock */
	uint64_t capacity_bytes;
	uint64_t inode_limit;
	uint64_t used_bytes;
	uint64_t reserved_bytes;
	uint64_t used_inodes;
	uint64_t reserved_inodes;
	struct quota_mirror *mirror; /* NULL: none */
};

/* Every change ends here, with the lock held. */
static void unlock(struct quota *q)
{
	struct quota_mirror *m = q->mirror;

	if (m) {
		atomic_store_explicit(&m->used_bytes, q->used_bytes, memory_order_relaxed);
		atomic_store_explicit(&m->used_inodes, q->used_inodes, memory_order_relaxed);
		atomic_store_explicit(&m->reserved_bytes, q->reserved_bytes, memory_order_relaxed);
		atomic_store_explicit(&m->reserved_inodes, q->reserved_inodes,
				      memory_order_relaxed);
	}
	pthread_mutex_unlock(&q->lock);
}

int quota_new(uint64_t capacity_bytes, uint64_t inode_limit, struct quota **ret_quota)
{
	struct quota *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	q->capacity_bytes = capacity_bytes;
	q->inode_limit = inode_limit;
	*ret_quota = q;
	return 0;
}

struct quota *quota_free(struct quota *q)
{
	if (q) {
		pthread_mutex_destroy(&q->lock);
		free(q);
	}
	return NULL;
}

void quota_set_limits(struct quota *q, uint64_t capacity_bytes, uint64_t inode_limit)
{
	pthread_mutex_lock(&q->lock);
	q->capacity_bytes = capacity_bytes;
	q->inode_limit = inode_limit;
	unlock(q);
}

void quota_set_usage(struct quota *q, uint64_t used_bytes, uint64_t used_inodes)
{
	pthread_mutex_lock(&q->lock);
	q->used_bytes = used_bytes;
	q->used_inodes = used_inodes;
	unlock(q);
}

void quota_get(struct quota *q, struct quota_usage *ret_usage)
{
	pthread_mutex_lock(&q->lock);
	ret_usage->capacity_bytes = q->capacity_bytes;
	ret_usage->used_bytes = q->used_bytes;
	ret_usage->reserved_bytes = q->reserved_bytes;
	ret_usage->inode_limit = q->inode_limit;
	ret_usage->used_inodes = q->used_inodes;
	ret_usage->reserved_inodes = q->reserved_inodes;
	pthread_mutex_unlock(&q->lock);
}

void quota_set_mirror(struct quota *q, struct quota_mirror *m)
{
	pthread_mutex_lock(&q->lock);
	q->mirror = m;
	if (m)
		atomic_store(&m->attached, 1);
	unlock(q);
}

static uint64_t free_bytes_locked(const struct quota *q)
{
	uint64_t taken = q->used_bytes + q->reserved_bytes;

	return taken >= q->capacity_bytes ? 0 : q->capacity_bytes - taken;
}

int quota_reserve_bytes(struct quota *q, uint64_t want, uint64_t min, uint64_t unit,
			uint64_t *ret_granted)
{
	uint64_t avail, granted;
	int r = 0;

	if (want == 0) {
		*ret_granted = 0;
		return 0;
	}
	if (unit == 0)
		unit = 1;
	if (min == 0 || min > want)
		min = want;

	pthread_mutex_lock(&q->lock);
	avail = free_bytes_locked(q);
	granted = want <= avail ? want : avail - avail % unit;
	if (granted < min || granted == 0) {
		r = -ENOSPC;
		goto out;
	}
	q->reserved_bytes += granted;
	*ret_granted = granted;
out:
	unlock(q);
	return r;
}

void quota_release_bytes(struct quota *q, uint64_t bytes)
{
	pthread_mutex_lock(&q->lock);
	q->reserved_bytes = bytes > q->reserved_bytes ? 0 : q->reserved_bytes - bytes;
	unlock(q);
}

static uint64_t add_clamped(uint64_t v, int64_t delta)
{
	if (delta >= 0)
		return v + (uint64_t)delta;
	return -(uint64_t)delta > v ? 0 : v - -(uint64_t)delta;
}

void quota_charge_bytes(struct quota *q, int64_t delta)
{
	pthread_mutex_lock(&q->lock);
	q->used_bytes = add_clamped(q->used_bytes, delta);
	unlock(q);
}

int quota_reserve_inode(struct quota *q)
{
	int r = 0;

	pthread_mutex_lock(&q->lock);
	if (q->inode_limit && q->used_inodes + q->reserved_inodes >= q->inode_limit)
		r = -ENOSPC;
	else
		q->reserved_inodes++;
	unlock(q);
	return r;
}

void quota_release_inode(struct quota *q)
{
	pthread_mutex_lock(&q->lock);
	if (q->reserved_inodes)
		q->reserved_inodes--;
	unlock(q);
}

void quota_charge_inodes(struct quota *q, int64_t delta)
{
	pthread_mutex_lock(&q->lock);
	q->used_inodes = add_clamped(q->used_inodes, delta);
	unlock(q);
}

uint64_t quota_free_bytes(struct quota *q)
{
	uint64_t avail;

	pthread_mutex_lock(&q->lock);
	avail = free_bytes_locked(q);
	pthread_mutex_unlock(&q->lock);
	return avail;
}
