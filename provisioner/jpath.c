/*
 * jpath.c - values nested in JSON objects; see jpath.h.
 */
#include <stdarg.h>

#include "jpath.h"

static json_t *walk(const json_t *o, va_list ap)
{
	json_t *v = (json_t *)o;
	const char *key;

	while (v && (key = va_arg(ap, const char *)))
		v = json_object_get(v, key);
	return v;
}

json_t *jpath_get_(const json_t *o, ...)
{
	json_t *v;
	va_list ap;

	va_start(ap, o);
	v = walk(o, ap);
	va_end(ap);
	return v;
}

const char *jpath_str_(const json_t *o, ...)
{
	json_t *v;
	va_list ap;

	va_start(ap, o);
	v = walk(o, ap);
	va_end(ap);
	return json_string_value(v);
}
