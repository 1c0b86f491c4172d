/*
 * volname.h - volume name rules.
 *
 * A volume name is a Kubernetes DNS-1123 label: 1 to 63 characters, lowercase
 * ASCII letters, digits and '-', starting and ending with a letter or digit.
 * So a name is always one safe path component (never "", ".", ".." or with a
 * '/') and a valid suffix for a PV name.
 */
#ifndef CARVEFS_VOLNAME_H
#define CARVEFS_VOLNAME_H

#define VOLNAME_MAX 63

/*
 * Returns 0 if @name is valid, else -EINVAL and, if @ret_reason is not NULL,
 * a static sentence saying which rule it breaks (e.g. "must be at most 63
 * characters").
 */
int volname_validate(const char *name, const char **ret_reason);

#endif
