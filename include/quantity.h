/*
 * quantity.h - Kubernetes resource quantities as byte counts.
 *
 * Accepts what a PVC's spec.resources.requests.storage accepts: a decimal
 * number (optionally with a fraction or an exponent such as "1e9") followed by
 * an optional suffix: binary Ki Mi Gi Ti Pi Ei, decimal k M G T P E, or none.
 * "5Gi", "500Mi", "1G", "1.5Ti", "1073741824" are all valid. A value that is
 * not a whole number of bytes is rounded up, as Kubernetes does. Pure; never
 * logs.
 */
#ifndef CARVEFS_QUANTITY_H
#define CARVEFS_QUANTITY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses @s into *ret_bytes. Returns 0, -EINVAL for anything malformed
 * (empty, a sign, spaces, an unknown suffix, a lone suffix), or -ERANGE if the
 * value does not fit in 64 bits. Zero parses as 0: callers that need a
 * positive size check that themselves. *ret_bytes is untouched on failure.
 */
int quantity_parse(const char *s, uint64_t *ret_bytes);

/*
 * Writes @bytes as the shortest exact quantity: the largest binary suffix
 * that divides it ("5Gi", "1536Mi"), else plain bytes. Returns the length
 * snprintf would, or -ENOSPC if @len is too small.
 */
int quantity_format(uint64_t bytes, char *buf, size_t len);

/* Writes a human-readable approximation for tables: "1.5G", "512M", "0". */
void quantity_format_human(uint64_t bytes, char *buf, size_t len);

#endif
