/*
 * backoff.c - capped exponential backoff with jitter; see include/backoff.h.
 */
#include "backoff.h"

/* Any nonzero constant: xorshift never leaves the zero state. */
#define BACKOFF_SEED_ZERO UINT64_C(0x9e3779b97f4a7c15)

void backoff_init(struct backoff *b, uint64_t base_ns, uint64_t cap_ns, uint64_t seed)
{
	b->base_ns = base_ns ? base_ns : 1;
	b->cap_ns = cap_ns < b->base_ns ? b->base_ns : cap_ns;
	b->attempt = 0;
	b->rng = seed ? seed : BACKOFF_SEED_ZERO;
}

void backoff_reset(struct backoff *b)
{
	b->attempt = 0;
}

static uint64_t rng_next(struct backoff *b)
{
	uint64_t x = b->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	b->rng = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

uint64_t backoff_next(struct backoff *b)
{
	uint64_t d = b->base_ns, half, span;

	/* Doubling stops at the cap, so it cannot overflow. */
	for (unsigned i = 0; i < b->attempt && d < b->cap_ns; i++)
		d = d > b->cap_ns / 2 ? b->cap_ns : d * 2;
	if (d > b->cap_ns)
		d = b->cap_ns;
	if (b->attempt < UINT32_MAX)
		b->attempt++;
	half = d / 2;
	span = d - half; /* the draw is half + [0, span] */
	if (span == UINT64_MAX)
		return half + rng_next(b);
	return half + rng_next(b) % (span + 1);
}
