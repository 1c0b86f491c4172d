/*
 * volname.c - volume name rules; see include/volname.h.
 *
 * A separate name for the rule, so that the day volume names need more
 * than a DNS-1123 label says, the daemon, carvectl and the table change in
 * one place.
 */
#include "volname.h"

int volname_validate(const char *name, struct errmsg *ret_msg)
{
	return k8sname_dns_label(name, ret_msg);
}
