/*
 * growbuf.h - a byte buffer that grows as it is appended to, for answers
 * and documents whose size is known only at the end: HTTP bodies, watch
 * streams, files read whole, manifests being written.
 *
 * Start one zeroed, with .max set to the most it may hold (0: no bound
 * but memory); .data is NUL-terminated after every append (the NUL is not
 * counted in .len), or NULL while nothing was appended. The caller owns
 * .data: free it, or take it and zero the struct.
 *
 * Pure; never logs.
 */
#ifndef CARVEFS_GROWBUF_H
#define CARVEFS_GROWBUF_H

#include <stddef.h>

struct growbuf {
	char *data;
	size_t len;
	size_t cap; /* bytes allocated, the NUL's included */
	size_t max; /* the most .len may reach; 0 for no bound */
};

/*
 * Appends the @n bytes at @p. Returns 0, -EFBIG if .len would pass .max
 * (nothing is appended), or -ENOMEM.
 */
int growbuf_append(struct growbuf *b, const void *p, size_t n);

#endif
