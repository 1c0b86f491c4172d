/*
 * yamlscalar.c - YAML 1.2 core schema typing of scalars; see yamlscalar.h.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "yamlscalar.h"

static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
static const char *const trues[] = { "true", "True", "TRUE", NULL };
static const char *const falses[] = { "false", "False", "FALSE", NULL };
static const char *const infs[] = { ".inf", ".Inf", ".INF", NULL };
static const char *const nans[] = { ".nan", ".NaN", ".NAN", NULL };

static bool match_any(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (strcmp(s, *words) == 0)
			return true;
	return false;
}

/* Non-empty and made only of @set. */
static bool all_of(const char *s, const char *set)
{
	return *s != '\0' && strspn(s, set) == strlen(s);
}

static const char *skip_sign(const char *s)
{
	return *s == '-' || *s == '+' ? s + 1 : s;
}

static bool is_int_text(const char *s)
{
	if (strncmp(s, "0x", 2) == 0)
		return all_of(s + 2, "0123456789abcdefABCDEF");
	if (strncmp(s, "0o", 2) == 0)
		return all_of(s + 2, "01234567");
	return all_of(skip_sign(s), "0123456789");
}

static bool is_special_float(const char *s)
{
	return match_any(skip_sign(s), infs) || match_any(s, nans);
}

static bool is_float_text(const char *s)
{
	bool digits = false;

	if (is_special_float(s))
		return true;
	s = skip_sign(s);
	while (*s >= '0' && *s <= '9') {
		s++;
		digits = true;
	}
	if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9') {
			s++;
			digits = true;
		}
	}
	if (!digits)
		return false;
	if (*s == 'e' || *s == 'E') {
		s = skip_sign(s + 1);
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

enum yamlscalar_type yamlscalar_type(const char *s, size_t len, bool plain)
{
	if (!plain || strlen(s) != len)
		return YAMLSCALAR_STR;
	if (match_any(s, nulls))
		return YAMLSCALAR_NULL;
	if (match_any(s, trues) || match_any(s, falses))
		return YAMLSCALAR_BOOL;
	if (is_int_text(s))
		return YAMLSCALAR_INT;
	if (is_float_text(s))
		return YAMLSCALAR_FLOAT;
	return YAMLSCALAR_STR;
}

int yamlscalar_bool(const char *s, bool *ret_value)
{
	if (match_any(s, trues))
		*ret_value = true;
	else if (match_any(s, falses))
		*ret_value = false;
	else
		return -EINVAL;
	return 0;
}

int yamlscalar_int(const char *s, int64_t *ret_value)
{
	const char *digits = s;
	int base = 10;
	long long v;
	char *end;

	if (!is_int_text(s))
		return -EINVAL;
	if (strncmp(s, "0x", 2) == 0 || strncmp(s, "0o", 2) == 0) {
		base = s[1] == 'x' ? 16 : 8;
		digits = s + 2;
	}
	errno = 0;
	v = strtoll(digits, &end, base);
	if (errno == ERANGE)
		return -ERANGE;
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	*ret_value = v;
	return 0;
}

int yamlscalar_float(const char *s, double *ret_value)
{
	int64_t i;
	double d;
	char *end;
	int r;

	if (match_any(skip_sign(s), infs)) {
		*ret_value = *s == '-' ? -INFINITY : INFINITY;
		return 0;
	}
	if (match_any(s, nans)) {
		*ret_value = NAN;
		return 0;
	}
	if (is_int_text(s)) {
		r = yamlscalar_int(s, &i);
		if (r == 0) {
			*ret_value = (double)i;
			return 0;
		}
		if (r != -ERANGE)
			return r;
		/* An integer too long for 64 bits still has a double near it. */
	} else if (!is_float_text(s)) {
		return -EINVAL;
	}
	if (strncmp(s, "0x", 2) == 0 || strncmp(s, "0o", 2) == 0)
		return -ERANGE;
	errno = 0;
	d = strtod(s, &end);
	if (*end != '\0')
		return -EINVAL;
	/* Underflow to a tiny or zero value is a fine answer; overflow is not. */
	if (errno == ERANGE && isinf(d))
		return -ERANGE;
	*ret_value = d;
	return 0;
}
