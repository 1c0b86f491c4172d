/*
 * duration.h - Go-style durations ("10s", "1m30s", "500ms", "2h45m"), the
 * form Kubernetes ConfigMaps and flags use for periods.
 *
 * A duration is a sequence of decimal numbers, each with an optional
 * fraction and a unit: "ns", "us" (or "µs", "μs"), "ms", "s", "m", "h".
 * "1.5h" and "1h30m" are the same. A lone "0" is allowed without a unit.
 * Values are uint64_t nanoseconds, the project's one time type. Also plain
 * seconds with a fraction, in the same number grammar. Pure; never logs.
 */
#ifndef CARVEFS_DURATION_H
#define CARVEFS_DURATION_H

#include <stddef.h>
#include <stdint.h>

#include "errmsg.h"

#define DURATION_NS_PER_SEC UINT64_C(1000000000)

/*
 * Parses @s into *ret_ns. Returns 0, -EINVAL if @s is not a duration
 * (empty, no unit, an unknown unit, spaces), or -ERANGE if it is negative
 * or does not fit in 64 bits of nanoseconds (about 584 years). A leading
 * '+' is accepted. *ret_ns is untouched on failure.
 */
int duration_parse(const char *s, uint64_t *ret_ns);

/*
 * A plain number of seconds, the form of carvectl's --burst-seconds and the
 * StorageClass parameter burstSeconds: decimal digits with an optional
 * fraction, read as a duration's number is (either side of the point may
 * be empty: "2", "0.5", ".5", "1." and "0.500" are all fine; "." is not),
 * with no sign, unit, exponent or spaces. The value must be a whole number
 * of milliseconds (trailing zeros are fine; "0.0005" is refused rather than
 * rounded) and at most DURATION_SECONDS_MAX.
 *
 * Parses @s into *ret_ms (milliseconds, what the control socket carries).
 * Returns 0; -EINVAL if it is not such a number, -EDOM if it is finer than
 * a millisecond, -ERANGE if it is above the maximum; with the reason in
 * @ret_msg (may be NULL), e.g. "finer than a millisecond". *ret_ms is
 * untouched on failure.
 */
#define DURATION_SECONDS_MAX 86400 /* a day: a burst longer than that is a typo */
int duration_parse_seconds_ms(const char *s, uint64_t *ret_ms, struct errmsg *ret_msg);

/*
 * Writes @ns the way Go prints a duration: "0s", "750ms", "1.5s", "1m30s",
 * "2h0m0s". Returns the length snprintf would, or -ENOSPC if @len is too
 * small (32 bytes always suffice).
 */
int duration_format(uint64_t ns, char *buf, size_t len);

#endif
