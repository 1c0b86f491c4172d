/*
 * promtext.h - writing Prometheus' text exposition format 0.0.4, for every
 * program of the project that serves /metrics.
 *
 * A struct promtext is a growing buffer, set up as { 0 }. The writers never
 * fail on their own: the first allocation failure is remembered, later
 * writes do nothing, and promtext_finish() reports it. So a caller writes
 * every family and checks once.
 *
 * The caller keeps the format's rules the writer cannot see: metric and
 * label names are valid identifiers, a family's HELP and TYPE come before
 * its samples, and each family is written in one piece. Label values and
 * HELP texts are escaped here.
 *
 * Pure. Never logs.
 */
#ifndef CARVEFS_PROMTEXT_H
#define CARVEFS_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "histogram.h"

#define PROMTEXT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct promtext {
	char *data; /* NUL-terminated once anything was written */
	size_t len, cap;
	int err; /* 0 or the first -errno */
};

/* A label; one with a NULL value is left out, so optional labels need no second array. */
struct promtext_label {
	const char *name, *value;
};

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram, ...). */
void promtext_family(struct promtext *p, const char *name, const char *type, const char *help);

/* One sample: name{labels} value. */
void promtext_u64(struct promtext *p, const char *name, const struct promtext_label *l, size_t n,
		  uint64_t value);
/* One sample of @ns nanoseconds written as seconds, exactly ("1.500000000"). */
void promtext_seconds(struct promtext *p, const char *name, const struct promtext_label *l,
		      size_t n, uint64_t ns);

/*
 * A histogram's samples: name_bucket{labels,le="..."} cumulative for every
 * bound and "+Inf", then name_sum (seconds) and name_count. @s holds the
 * per-bucket counts of a histogram with bounds @b.
 */
void promtext_histogram(struct promtext *p, const char *name, const struct promtext_label *l,
			size_t n, const struct histogram_bounds *b,
			const struct histogram_snapshot *s);

/*
 * Hands the text over: *ret_text (malloc'd, NUL-terminated, owned by the
 * caller) of *ret_len bytes. On an earlier failure frees the buffer and
 * returns it (-ENOMEM). Either way @p is empty again afterwards.
 */
int promtext_finish(struct promtext *p, char **ret_text, size_t *ret_len);

/*
 * Writes @value escaped for a label value (\\, \" and \n) to @buf, always
 * NUL-terminated when @size > 0. Returns the length of the whole escaped
 * text, as snprintf() does: a result >= @size means it was cut short.
 */
size_t promtext_escape_label(const char *value, char *buf, size_t size);

/*
 * @ns as decimal seconds with no trailing zeros ("0.00005", "2.5", "1") into
 * @buf; returns the length as snprintf() does.
 */
size_t promtext_format_seconds(uint64_t ns, char *buf, size_t size);

#endif
