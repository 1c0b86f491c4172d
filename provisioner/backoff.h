/*
 * backoff.h - capped exponential backoff with jitter, for retrying calls to
 * a server that is busy or briefly away.
 *
 * The n-th delay (n from 0) is drawn uniformly from [d/2, d] where
 * d = min(cap, base * 2^n): growing quickly enough not to hammer a
 * struggling apiserver, spread so that many nodes restarted together do not
 * retry in lock-step, and never below half the nominal delay so that a
 * retry is never immediate.
 *
 * Pure: the caller seeds the random source and does the sleeping.
 */
#ifndef CARVEFS_BACKOFF_H
#define CARVEFS_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint64_t base_ns;
	uint64_t cap_ns;
	unsigned attempt; /* delays handed out since the last reset */
	uint64_t rng;	  /* xorshift64* state, never 0 */
};

/*
 * Starts a sequence: @base_ns the first nominal delay (0 is taken as 1),
 * @cap_ns the largest (raised to @base_ns if smaller), @seed any value,
 * e.g. the clock and the PID mixed.
 */
void backoff_init(struct backoff *b, uint64_t base_ns, uint64_t cap_ns, uint64_t seed);

/* The next delay in nanoseconds, in [d/2, d] as above. */
uint64_t backoff_next(struct backoff *b);

/* After a success: the next delay is the first one again. */
void backoff_reset(struct backoff *b);

#endif
