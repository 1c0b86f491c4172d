/*
 * clock.h - the one clock: uint64_t nanoseconds of CLOCK_MONOTONIC, the
 * project's one time type.
 *
 * Monotonic, so deadlines, backoffs and durations neither jump with the
 * wall clock nor go backwards. Wall-clock timestamps for the API server
 * (Events, PV annotations) are not this clock's business.
 */
#ifndef CARVEFS_CLOCK_H
#define CARVEFS_CLOCK_H

#include <stdint.h>

#define CLOCK_NS_PER_SEC UINT64_C(1000000000)
#define CLOCK_NS_PER_MS UINT64_C(1000000)

/* Now, in nanoseconds of CLOCK_MONOTONIC. Never fails, never logs. */
uint64_t clock_now_ns(void);

#endif
