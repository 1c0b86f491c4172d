/*
 * throttle.c - token buckets; see throttle.h.
 *
 * Tokens are doubles: rates of a few IOPS and of gigabytes per second must
 * both refill without rounding drift, and 53 bits of mantissa hold a byte
 * count of a petabyte exactly.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "throttle.h"

struct bucket {
	double rate;	 /* per second; 0 = unlimited */
	double capacity; /* rate * burst */
	double tokens;	 /* may be negative: debt */
	uint64_t last_ns;
};

struct throttle {
	struct bucket ops[2], bytes[2];
	uint64_t iops_size_bytes;
};

int throttle_new(struct throttle **ret_throttle)
{
	struct throttle *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	*ret_throttle = t;
	return 0;
}

struct throttle *throttle_free(struct throttle *t)
{
	free(t);
	return NULL;
}

static void bucket_refill(struct bucket *b, uint64_t now_ns)
{
	if (now_ns > b->last_ns) {
		b->tokens += b->rate * (double)(now_ns - b->last_ns) / 1e9;
		if (b->tokens > b->capacity)
			b->tokens = b->capacity;
	}
	b->last_ns = now_ns;
}

static void bucket_set(struct bucket *b, uint64_t rate, double burst_s, uint64_t now_ns)
{
	double capacity = (double)rate * burst_s;

	bucket_refill(b, now_ns);
	if (rate == 0) {
		b->tokens = 0;
	} else if (b->rate == 0) {
		b->tokens = capacity; /* newly limited: start with a full bucket */
	} else if (b->tokens > capacity) {
		b->tokens = capacity;
	}
	/* Otherwise the level, and any debt, carries over: re-applying must not refill. */
	b->rate = (double)rate;
	b->capacity = capacity;
	b->last_ns = now_ns;
}

void throttle_set_limits(struct throttle *t, const struct io_limits *limits, uint64_t now_ns)
{
	double burst_s = (double)(limits->burst_ms ? limits->burst_ms : THROTTLE_DEFAULT_BURST_MS) /
			 1000.0;

	bucket_set(&t->ops[THROTTLE_READ], limits->riops, burst_s, now_ns);
	bucket_set(&t->ops[THROTTLE_WRITE], limits->wiops, burst_s, now_ns);
	bucket_set(&t->bytes[THROTTLE_READ], limits->rbps, burst_s, now_ns);
	bucket_set(&t->bytes[THROTTLE_WRITE], limits->wbps, burst_s, now_ns);
	t->iops_size_bytes = limits->iops_size_bytes;
}

bool throttle_unlimited(const struct throttle *t, enum throttle_dir dir)
{
	return t->ops[dir].rate == 0 && t->bytes[dir].rate == 0;
}

/* Nanoseconds until @b is out of debt; 0 if it is not in debt. */
static uint64_t bucket_wait_ns(const struct bucket *b)
{
	double ns;

	if (b->rate == 0 || b->tokens >= 0)
		return 0;
	ns = ceil(-b->tokens / b->rate * 1e9);
	return ns < 1 ? 1 : (uint64_t)ns;
}

uint64_t throttle_admit(struct throttle *t, enum throttle_dir dir, uint64_t bytes, uint64_t now_ns)
{
	struct bucket *ops = &t->ops[dir], *bw = &t->bytes[dir];
	uint64_t wait_ops, wait_bw;
	double units = 1;

	if (ops->rate)
		bucket_refill(ops, now_ns);
	if (bw->rate)
		bucket_refill(bw, now_ns);
	wait_ops = bucket_wait_ns(ops);
	wait_bw = bucket_wait_ns(bw);
	if (wait_ops || wait_bw)
		return wait_ops > wait_bw ? wait_ops : wait_bw;
	if (t->iops_size_bytes && bytes > t->iops_size_bytes)
		units = (double)bytes / (double)t->iops_size_bytes;
	if (ops->rate)
		ops->tokens -= units;
	if (bw->rate)
		bw->tokens -= (double)bytes;
	return 0;
}
