/*
 * volname.h - volume name rules.
 *
 * A volume name is a Kubernetes DNS-1123 label (k8sname.h): 1 to 63
 * characters, lowercase ASCII letters, digits and '-', starting and ending
 * with a letter or digit. So a name is always one safe path component
 * (never "", ".", ".." or with a '/') and a valid suffix for a PV name.
 */
#ifndef CARVEFS_VOLNAME_H
#define CARVEFS_VOLNAME_H

#include "errmsg.h"
#include "k8sname.h"

#define VOLNAME_MAX K8SNAME_LABEL_MAX

/*
 * Returns 0 if @name is valid, else -EINVAL with the rule it breaks in
 * @ret_msg (may be NULL), worded to follow the name: "must be at most 63
 * characters".
 */
int volname_validate(const char *name, struct errmsg *ret_msg);

#endif
