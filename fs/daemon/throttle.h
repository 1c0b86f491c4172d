/*
 * throttle.h - per-volume IO limits as token buckets, the semantics of
 * QEMU's block throttling with cgroup v2's io.max knobs.
 *
 * Each direction (read, write) has an ops bucket and a bytes bucket. A
 * bucket fills at its rate and holds at most burst (default 0.1 s) of it, so
 * an idle volume may run ahead by that much IO and no more. A request is
 * admitted while every bucket of its direction is not in debt, and then
 * charged in full, possibly into debt; the debt is what later requests wait
 * out. So over any long interval the rate is exact, the stricter of IOPS and
 * bandwidth wins, and a request larger than the bucket still passes (it is
 * paid for afterwards). With iops_size set, a request of n bytes counts as
 * n / iops_size operations when larger than iops_size, so the count does not
 * depend on how the kernel split the IO.
 *
 * Pure: the caller passes the time. Not thread-safe (a volume's requests all
 * run on one loop thread). Never logs.
 */
#ifndef CARVEFS_THROTTLE_H
#define CARVEFS_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

#include "table.h"

#define THROTTLE_DEFAULT_BURST_MS 100

enum throttle_dir { THROTTLE_READ = 0, THROTTLE_WRITE = 1 };

struct throttle;

int throttle_new(struct throttle **ret_throttle);
/* Accepts NULL; returns NULL. */
struct throttle *throttle_free(struct throttle *t);

/*
 * Applies @limits (0 = unlimited). A bucket that was unlimited starts full; a
 * limited one keeps its level, capped at its new size, and any debt, so
 * re-applying or changing a limit can never be used to skip a wait.
 */
void throttle_set_limits(struct throttle *t, const struct io_limits *limits, uint64_t now_ns);

/* True if neither bucket of @dir has a limit. */
bool throttle_unlimited(const struct throttle *t, enum throttle_dir dir);

/*
 * If a request of @bytes in @dir may start at @now_ns, charges it and
 * returns 0. Otherwise charges nothing and returns how many nanoseconds
 * (>= 1) to wait before asking again.
 */
uint64_t throttle_admit(struct throttle *t, enum throttle_dir dir, uint64_t bytes, uint64_t now_ns);

#endif
