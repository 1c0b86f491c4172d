/*
 * errmsg.c - a failure's one-line reason; see include/errmsg.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "errmsg.h"

int errmsg_set(struct errmsg *m, int r, const char *fmt, ...)
{
	va_list ap;
	char *nl;

	if (!m)
		return r;
	va_start(ap, fmt);
	vsnprintf(m->text, sizeof(m->text), fmt, ap);
	va_end(ap);
	/* One line, whatever a quoted string or a peer's reply held. */
	while ((nl = strpbrk(m->text, "\r\n")))
		*nl = ' ';
	return r;
}
