/*
 * duration.c - Go-style durations; see include/duration.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"
#include "errmsg.h"

struct unit {
	const char *name;
	uint64_t ns;
};

/* Longest names first, so "ms" is not read as "m" followed by garbage. */
static const struct unit units[] = {
	{ "ns", 1 },
	{ "us", 1000 },
	{ "\xc2\xb5s", 1000 }, /* U+00B5 MICRO SIGN */
	{ "\xce\xbcs", 1000 }, /* U+03BC GREEK SMALL LETTER MU */
	{ "ms", 1000 * 1000 },
	{ "s", DURATION_NS_PER_SEC },
	{ "m", 60 * DURATION_NS_PER_SEC },
	{ "h", 3600 * DURATION_NS_PER_SEC },
};

static const struct unit *unit_match(const char *p, size_t *ret_len)
{
	const struct unit *best = NULL;
	size_t best_len = 0;

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		size_t n = strlen(units[i].name);

		if (n > best_len && strncmp(p, units[i].name, n) == 0) {
			best = &units[i];
			best_len = n;
		}
	}
	*ret_len = best_len;
	return best;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * A decimal number: digits, then optionally '.' and digits, either side of
 * the point possibly empty (".5", "1."), as Go reads a duration's numbers.
 * 128-bit intermediates make every term exact: a whole part of up to 2^64
 * times the largest unit still fits, so overflow is one compare.
 */
struct decimal {
	unsigned __int128 whole, frac, scale; /* the value is whole + frac / scale */
	bool digits;			      /* at least one digit was read */
	bool overflow;			      /* whole > UINT64_MAX */
	bool dropped;			      /* a non-zero digit past 18 decimals was ignored */
};

/* Reads a decimal at @p into *d; returns where it stopped. */
static const char *decimal_scan(const char *p, struct decimal *d)
{
	*d = (struct decimal){ .scale = 1 };
	for (; is_digit(*p); p++) {
		d->digits = true;
		if (!d->overflow) {
			d->whole = d->whole * 10 + (unsigned)(*p - '0');
			d->overflow = d->whole > UINT64_MAX;
		}
	}
	if (*p != '.')
		return p;
	for (p++; is_digit(*p); p++) {
		d->digits = true;
		/* Digits below a nanosecond of an hour cannot matter to a duration. */
		if (d->scale < (unsigned __int128)1000000000000000000ULL) {
			d->frac = d->frac * 10 + (unsigned)(*p - '0');
			d->scale *= 10;
		} else if (*p != '0') {
			d->dropped = true;
		}
	}
	return p;
}

int duration_parse(const char *s, uint64_t *ret_ns)
{
	unsigned __int128 total = 0;
	bool negative = false;
	const char *p = s;

	if (!s)
		return -EINVAL;
	if (*p == '+' || *p == '-') {
		negative = *p == '-';
		p++;
	}
	if (strcmp(p, "0") == 0) {
		*ret_ns = 0;
		return 0;
	}
	if (*p == '\0')
		return -EINVAL;

	while (*p != '\0') {
		struct decimal d;
		const struct unit *u;
		size_t ulen;

		p = decimal_scan(p, &d);
		if (!d.digits)
			return -EINVAL;
		u = unit_match(p, &ulen);
		if (!u)
			return -EINVAL;
		p += ulen;
		if (d.overflow)
			return -ERANGE;
		total += d.whole * u->ns + d.frac * u->ns / d.scale;
		if (total > UINT64_MAX)
			return -ERANGE;
	}
	if (negative && total != 0)
		return -ERANGE;
	*ret_ns = (uint64_t)total;
	return 0;
}

int duration_parse_seconds_ms(const char *s, uint64_t *ret_ms, struct errmsg *ret_msg)
{
	unsigned __int128 ms;
	struct decimal d;
	const char *p;

	if (!s)
		return errmsg_set(ret_msg, -EINVAL, "not a number of seconds (e.g. 2 or 0.5)");
	p = decimal_scan(s, &d);
	if (!d.digits || *p != '\0')
		return errmsg_set(ret_msg, -EINVAL, "not a number of seconds (e.g. 2 or 0.5)");
	if (d.overflow || d.whole > DURATION_SECONDS_MAX)
		return errmsg_set(ret_msg, -ERANGE, "more than %llu seconds",
				  (unsigned long long)DURATION_SECONDS_MAX);
	/* Trailing zeros are the same value; anything finer is not rounded away. */
	if (d.dropped || d.frac * 1000 % d.scale != 0)
		return errmsg_set(ret_msg, -EDOM, "finer than a millisecond");
	ms = d.whole * 1000 + d.frac * 1000 / d.scale;
	if (ms > (unsigned __int128)DURATION_SECONDS_MAX * 1000)
		return errmsg_set(ret_msg, -ERANGE, "more than %llu seconds",
				  (unsigned long long)DURATION_SECONDS_MAX);
	*ret_ms = (uint64_t)ms;
	return 0;
}

/* Appends ".ddd" with @width digits of @frac, trailing zeros dropped. */
static void frac_append(char *out, size_t outlen, uint64_t frac, int width)
{
	char digits[24];

	if (frac == 0) {
		out[0] = '\0';
		return;
	}
	snprintf(digits, sizeof(digits), "%0*llu", width, (unsigned long long)frac);
	for (size_t n = strlen(digits); n > 0 && digits[n - 1] == '0'; n--)
		digits[n - 1] = '\0';
	snprintf(out, outlen, ".%s", digits);
}

int duration_format(uint64_t ns, char *buf, size_t len)
{
	char frac[24];
	int r;

	if (ns == 0) {
		r = snprintf(buf, len, "0s");
	} else if (ns < 1000) {
		r = snprintf(buf, len, "%lluns", (unsigned long long)ns);
	} else if (ns < 1000 * 1000) {
		frac_append(frac, sizeof(frac), ns % 1000, 3);
		r = snprintf(buf, len, "%llu%s\xc2\xb5s", (unsigned long long)(ns / 1000), frac);
	} else if (ns < DURATION_NS_PER_SEC) {
		frac_append(frac, sizeof(frac), ns % 1000000, 6);
		r = snprintf(buf, len, "%llu%sms", (unsigned long long)(ns / 1000000), frac);
	} else {
		uint64_t secs = ns / DURATION_NS_PER_SEC;
		unsigned long long h = secs / 3600, m = secs / 60 % 60, s = secs % 60;

		frac_append(frac, sizeof(frac), ns % DURATION_NS_PER_SEC, 9);
		if (h > 0)
			r = snprintf(buf, len, "%lluh%llum%llu%ss", h, m, s, frac);
		else if (m > 0)
			r = snprintf(buf, len, "%llum%llu%ss", m, s, frac);
		else
			r = snprintf(buf, len, "%llu%ss", s, frac);
	}
	if (r < 0)
		return -EINVAL;
	if ((size_t)r >= len)
		return -ENOSPC;
	return r;
}
