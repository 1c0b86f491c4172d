/*
 * jpath.h - reading a value nested in Kubernetes objects:
 * jpath_str(pv, "metadata", "annotations", key) is the annotation's string.
 *
 * Each step names a key of an object. A step that is missing, or whose
 * parent is not an object (null, a list, a string), ends the walk with
 * NULL: the API server leaves out empty fields, so a missing field is the
 * common case, not an error. The result is borrowed from @o.
 *
 * Pure; never logs.
 */
#ifndef CARVEFS_JPATH_H
#define CARVEFS_JPATH_H

#include <jansson.h>

/* The value at the keys given after @o (at least one), or NULL. */
#define jpath_get(o, ...) jpath_get_((o), __VA_ARGS__, (const char *)NULL)

/* The string at the keys given after @o, or NULL (also when not a string). */
#define jpath_str(o, ...) jpath_str_((o), __VA_ARGS__, (const char *)NULL)

/*
 * The first item of the array @items whose string at the keys given after
 * @value equals @value, or NULL (also when @items is not an array):
 * jpath_find(pvs, name, "metadata", "name").
 */
#define jpath_find(items, value, ...) jpath_find_((items), (value), __VA_ARGS__, (const char *)NULL)

/* The functions behind the macros: the keys end with a NULL. */
json_t *jpath_get_(const json_t *o, ...);
const char *jpath_str_(const json_t *o, ...);
json_t *jpath_find_(const json_t *items, const char *value, ...);

#endif
