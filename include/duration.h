/*
 * duration.h - Go-style durations ("10s", "1m30s", "500ms", "2h45m"), the
 * form Kubernetes ConfigMaps and flags use for periods.
 *
 * A duration is a sequence of decimal numbers, each with an optional
 * fraction and a unit: "ns", "us" (or "µs", "μs"), "ms", "s", "m", "h".
 * "1.5h" and "1h30m" are the same. A lone "0" is allowed without a unit.
 * Values are uint64_t nanoseconds, the project's one time type. Pure; never
 * logs.
 */
#ifndef CARVEFS_DURATION_H
#define CARVEFS_DURATION_H

#include <stddef.h>
#include <stdint.h>

#define DURATION_NS_PER_SEC UINT64_C(1000000000)

/*
 * Parses @s into *ret_ns. Returns 0, -EINVAL if @s is not a duration
 * (empty, no unit, an unknown unit, spaces), or -ERANGE if it is negative
 * or does not fit in 64 bits of nanoseconds (about 584 years). A leading
 * '+' is accepted. *ret_ns is untouched on failure.
 */
int duration_parse(const char *s, uint64_t *ret_ns);

/*
 * Writes @ns the way Go prints a duration: "0s", "750ms", "1.5s", "1m30s",
 * "2h0m0s". Returns the length snprintf would, or -ENOSPC if @len is too
 * small (32 bytes always suffice).
 */
int duration_format(uint64_t ns, char *buf, size_t len);

#endif
