/*
 * growbuf.c - a growing byte buffer; see growbuf.h.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "growbuf.h"

/* The first allocation: most answers and manifests fit. */
#define GROWBUF_FIRST_CAP 4096

int growbuf_append(struct growbuf *b, const void *p, size_t n)
{
	size_t max = b->max ? b->max : SIZE_MAX - 1, need, cap;
	char *d;

	if (b->len > max || n > max - b->len)
		return -EFBIG;
	need = b->len + n + 1; /* cannot wrap: max is below SIZE_MAX */
	if (need > b->cap) {
		cap = b->cap ? b->cap : GROWBUF_FIRST_CAP;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}
