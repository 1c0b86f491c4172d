/*
 * quantity.c - Kubernetes resource quantities; see include/quantity.h.
 *
 * The grammar is the one of k8s.io/apimachinery's resource.Quantity,
 *
 *	<quantity> ::= <number> <suffix>
 *	<number>   ::= <digits> | <digits> "." <digits> | <digits> "." | "." <digits>
 *	<suffix>   ::= "" | Ki | Mi | Gi | Ti | Pi | Ei | k | M | G | T | P | E
 *	             | ("e" | "E") [sign] <digits>
 *
 * minus what makes no sense for a size: a sign in front of the number, and
 * the milli suffix "m", which a user who types "500m" almost certainly means
 * as megabytes and would otherwise get a one-byte volume.
 *
 * The value is computed exactly, never through a double: "1.1" is 11 tenths
 * of a byte and must round up to 2, and a 19-digit byte count must not lose
 * its last digits.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "quantity.h"

/*
 * Any exponent beyond this is clamped: it already shifts the point further
 * than any string in memory has digits, so the result (0 rounded up to 1, or
 * an overflow) is the same.
 */
#define EXPONENT_CLAMP INT64_C(1000000000000000)

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Digit @i of the integer digits followed by the fraction digits. */
static uint64_t digit_at(const char *int_digits, size_t int_len, const char *frac_digits, size_t i)
{
	return (uint64_t)((i < int_len ? int_digits[i] : frac_digits[i - int_len]) - '0');
}

/*
 * Parses the suffix at @s: the multiplier it applies, or a decimal exponent
 * (then the multiplier is 1). Returns 0 or -EINVAL.
 */
static int parse_suffix(const char *s, uint64_t *ret_mult, int64_t *ret_exp10)
{
	static const char binary[] = "KMGTPE";
	static const char decimal[] = "kMGTPE";
	const char *p;
	int64_t exp10 = 0;
	bool negative = false;

	*ret_mult = 1;
	*ret_exp10 = 0;
	if (s[0] == '\0')
		return 0;
	if (s[1] == 'i' && s[2] == '\0') {
		p = strchr(binary, s[0]);
		if (!p)
			return -EINVAL;
		*ret_mult = UINT64_C(1) << (10 * (p - binary + 1));
		return 0;
	}
	/* "E" alone is exa; "E" followed by digits is an exponent. */
	if (s[1] == '\0') {
		p = strchr(decimal, s[0]);
		if (!p)
			return -EINVAL;
		for (ptrdiff_t i = 0; i <= p - decimal; i++)
			*ret_mult *= 1000;
		return 0;
	}
	if (s[0] != 'e' && s[0] != 'E')
		return -EINVAL;
	p = s + 1;
	if (*p == '+' || *p == '-')
		negative = *p++ == '-';
	if (!is_digit(*p))
		return -EINVAL;
	for (; is_digit(*p); p++) {
		if (exp10 < EXPONENT_CLAMP)
			exp10 = exp10 * 10 + (*p - '0');
	}
	if (*p != '\0')
		return -EINVAL;
	*ret_exp10 = negative ? -exp10 : exp10;
	return 0;
}

int quantity_parse(const char *s, uint64_t *ret_bytes)
{
	const char *int_digits, *frac_digits = "", *p = s;
	size_t int_len, frac_len = 0, n;
	uint64_t mult, whole = 0, carry = 0, value;
	int64_t exp10, point;
	bool all_zero = true, inexact = false;
	int r;

	if (!s)
		return -EINVAL;
	int_digits = p;
	while (is_digit(*p))
		p++;
	int_len = (size_t)(p - int_digits);
	if (*p == '.') {
		frac_digits = ++p;
		while (is_digit(*p))
			p++;
		frac_len = (size_t)(p - frac_digits);
	}
	/* Also refuses "", ".", a lone suffix and anything with a sign. */
	if (int_len + frac_len == 0)
		return -EINVAL;
	r = parse_suffix(p, &mult, &exp10);
	if (r < 0)
		return r;

	/*
	 * The number is the digit string D = int_digits frac_digits with its
	 * point after @point digits (an exponent moves it; it may fall outside
	 * D), times @mult.
	 */
	n = int_len + frac_len;
	for (size_t i = 0; i < n && all_zero; i++)
		all_zero = digit_at(int_digits, int_len, frac_digits, i) == 0;
	if (all_zero) {
		*ret_bytes = 0;
		return 0;
	}
	point = (int64_t)int_len + exp10;

	/* The integer part; past the end of D it continues with zeros. */
	for (int64_t i = 0; i < point; i++) {
		uint64_t d = 0;

		if ((uint64_t)i < n)
			d = digit_at(int_digits, int_len, frac_digits, (size_t)i);

		/*
		 * Past the end of D the whole part is already nonzero, so a
		 * huge exponent overflows within 20 rounds.
		 */
		if (__builtin_mul_overflow(whole, 10, &whole) ||
		    __builtin_add_overflow(whole, d, &whole))
			return -ERANGE;
	}

	/*
	 * The fraction times @mult by long multiplication from the last digit:
	 * the final carry is its integer part, and any nonzero digit left
	 * behind means the value must be rounded up. The point falls before
	 * D only with a negative exponent, where @mult is 1: the zeros between
	 * it and D could only shift a carry that is then always 0.
	 */
	for (size_t i = n; i > 0 && (int64_t)(i - 1) >= point; i--) {
		uint64_t t = digit_at(int_digits, int_len, frac_digits, i - 1) * mult + carry;

		inexact |= t % 10 != 0;
		carry = t / 10;
	}

	if (__builtin_mul_overflow(whole, mult, &value) ||
	    __builtin_add_overflow(value, carry, &value) ||
	    __builtin_add_overflow(value, (uint64_t)inexact, &value))
		return -ERANGE;
	*ret_bytes = value;
	return 0;
}

static const char *const binary_suffixes[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };

int quantity_format(uint64_t bytes, char *buf, size_t len)
{
	const size_t k_max = sizeof(binary_suffixes) / sizeof(binary_suffixes[0]) - 1;
	uint64_t v = bytes;
	size_t k = 0;
	int n;

	while (v != 0 && v % 1024 == 0 && k < k_max) {
		v /= 1024;
		k++;
	}
	n = snprintf(buf, len, "%" PRIu64 "%s", v, binary_suffixes[k]);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= len)
		return -ENOSPC;
	return n;
}

/*
 * Like df -h: binary units, rounded up (a volume with one byte used is not
 * shown as empty), one decimal below 10 of a unit. An exact value drops the
 * ".0".
 */
void quantity_format_human(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	unsigned int k = 0;

	if (bytes < 1024) {
		(void)snprintf(buf, len, "%" PRIu64, bytes);
		return;
	}
	while (k < 6 && bytes >> (10 * (k + 1)) != 0)
		k++;
	for (;;) {
		unsigned int shift = 10 * k;
		uint64_t unit = UINT64_C(1) << shift;
		uint64_t whole = bytes >> shift, rem = bytes & (unit - 1);

		/* rem * 10 + unit < 11 * 2^60: no overflow even for exbibytes. */
		if (whole < 10) {
			uint64_t tenths = whole * 10 + ((rem * 10 + unit - 1) >> shift);

			if (tenths < 100) {
				if (tenths % 10)
					(void)snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "%c",
						       tenths / 10, tenths % 10, units[k - 1]);
				else
					(void)snprintf(buf, len, "%" PRIu64 "%c", tenths / 10,
						       units[k - 1]);
				return;
			}
		}
		whole += rem != 0;
		if (whole >= 1024 && k < 6) {
			k++;
			continue;
		}
		(void)snprintf(buf, len, "%" PRIu64 "%c", whole, units[k - 1]);
		return;
	}
}
