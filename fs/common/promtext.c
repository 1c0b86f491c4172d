/*
 * promtext.c - the text exposition format's writer; see include/promtext.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promtext.h"

#define NS_PER_S UINT64_C(1000000000)

/* Room for @n more bytes and a NUL. */
static int reserve(struct promtext *p, size_t n)
{
	size_t cap = p->cap ? p->cap : 4096;
	char *data;

	if (p->err)
		return p->err;
	if (p->len + n + 1 <= p->cap)
		return 0;
	while (cap < p->len + n + 1)
		cap *= 2;
	data = realloc(p->data, cap);
	if (!data) {
		p->err = -ENOMEM;
		return p->err;
	}
	p->data = data;
	p->cap = cap;
	return 0;
}

__attribute__((format(printf, 2, 3))) static void put(struct promtext *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		p->err = p->err ? p->err : -EINVAL;
		return;
	}
	if (reserve(p, (size_t)n) < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(p->data + p->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	p->len += (size_t)n;
}

/*
 * @s escaped into the buffer: backslash and newline always, the double
 * quote only inside label values (HELP text leaves it as it is).
 */
static size_t escape(const char *s, bool quote, char *buf, size_t size)
{
	size_t n = 0;

	for (; *s; s++) {
		char esc[2] = { *s, '\0' };
		size_t w = 1;

		if (*s == '\\' || *s == '\n' || (quote && *s == '"')) {
			esc[0] = '\\';
			esc[1] = *s == '\n' ? 'n' : *s;
			w = 2;
		}
		for (size_t j = 0; j < w; j++, n++)
			if (n + 1 < size)
				buf[n] = esc[j];
	}
	if (size > 0)
		buf[n < size ? n : size - 1] = '\0';
	return n;
}

size_t promtext_escape_label(const char *value, char *buf, size_t size)
{
	return escape(value, true, buf, size);
}

static void put_escaped(struct promtext *p, const char *s, bool quote)
{
	size_t n = escape(s, quote, NULL, 0);

	if (reserve(p, n) < 0)
		return;
	escape(s, quote, p->data + p->len, n + 1);
	p->len += n;
}

size_t promtext_format_seconds(uint64_t ns, char *buf, size_t size)
{
	char frac[16];
	size_t len;

	if (ns % NS_PER_S == 0)
		return (size_t)snprintf(buf, size, "%" PRIu64, ns / NS_PER_S);
	len = (size_t)snprintf(frac, sizeof(frac), "%09" PRIu64, ns % NS_PER_S);
	while (len > 0 && frac[len - 1] == '0')
		frac[--len] = '\0';
	return (size_t)snprintf(buf, size, "%" PRIu64 ".%s", ns / NS_PER_S, frac);
}

void promtext_family(struct promtext *p, const char *name, const char *type, const char *help)
{
	put(p, "# HELP %s ", name);
	put_escaped(p, help, false);
	put(p, "\n# TYPE %s %s\n", name, type);
}

/* "{a="x",b="y",le="0.5"}", or nothing when no label has a value. */
static void put_labels(struct promtext *p, const struct promtext_label *l, size_t n,
		       const char *le)
{
	bool first = true;

	for (size_t i = 0; i < n; i++) {
		if (!l[i].value)
			continue;
		put(p, "%s%s=\"", first ? "{" : ",", l[i].name);
		put_escaped(p, l[i].value, true);
		put(p, "\"");
		first = false;
	}
	if (le) {
		put(p, "%sle=\"%s\"", first ? "{" : ",", le);
		first = false;
	}
	if (!first)
		put(p, "}");
}

void promtext_u64(struct promtext *p, const char *name, const struct promtext_label *l, size_t n,
		  uint64_t value)
{
	put(p, "%s", name);
	put_labels(p, l, n, NULL);
	put(p, " %" PRIu64 "\n", value);
}

void promtext_seconds(struct promtext *p, const char *name, const struct promtext_label *l,
		      size_t n, uint64_t ns)
{
	put(p, "%s", name);
	put_labels(p, l, n, NULL);
	put(p, " %" PRIu64 ".%09" PRIu64 "\n", ns / NS_PER_S, ns % NS_PER_S);
}

void promtext_histogram(struct promtext *p, const char *name, const struct promtext_label *l,
			size_t n, const struct histogram_bounds *b,
			const struct histogram_snapshot *s)
{
	uint64_t cumulative = 0;
	char le[32];

	for (size_t i = 0; i <= b->n; i++) {
		cumulative += s->slot[i];
		if (i < b->n)
			promtext_format_seconds(b->le_ns[i], le, sizeof(le));
		else
			snprintf(le, sizeof(le), "+Inf");
		put(p, "%s_bucket", name);
		put_labels(p, l, n, le);
		put(p, " %" PRIu64 "\n", cumulative);
	}
	put(p, "%s_sum", name);
	promtext_seconds(p, "", l, n, s->sum_ns);
	put(p, "%s_count", name);
	put_labels(p, l, n, NULL);
	/* The +Inf bucket, so the two agree whatever raced the snapshot. */
	put(p, " %" PRIu64 "\n", cumulative);
}

int promtext_finish(struct promtext *p, char **ret_text, size_t *ret_len)
{
	int r = p->err;

	if (r == 0 && reserve(p, 0) < 0)
		r = p->err;
	if (r < 0) {
		free(p->data);
	} else {
		p->data[p->len] = '\0';
		*ret_text = p->data;
		*ret_len = p->len;
	}
	*p = (struct promtext){ 0 };
	return r;
}
