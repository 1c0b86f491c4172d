/*
 * jpath.c - values nested in JSON objects; see jpath.h.
 */
#include <stdarg.h>
#include <string.h>

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

json_t *jpath_find_(const json_t *items, const char *value, ...)
{
	json_t *item;
	size_t i;

	json_array_foreach(items, i, item)
	{
		const char *s;
		va_list ap;

		va_start(ap, value);
		s = json_string_value(walk(item, ap));
		va_end(ap);
		if (s && strcmp(s, value) == 0)
			return item;
	}
	return NULL;
}
