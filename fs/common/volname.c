/*
 * volname.c - volume name rules; see include/volname.h.
 *
 * The reasons are sentence fragments meant to follow the name, as in
 * "volume 'Data': must contain only lowercase letters, digits and '-'".
 * The first rule broken is reported, checked in the order a user reads the
 * name: its length, its characters, then its two ends.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "volname.h"

_Static_assert(VOLNAME_MAX == 63, "the length rule's reason names the limit");

static bool is_alnum_lower(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int volname_validate(const char *name, const char **ret_reason)
{
	const char *reason = NULL;
	size_t len;

	if (!name || name[0] == '\0') {
		reason = "must not be empty";
		goto out;
	}
	/* Bounded: a name from the socket may be arbitrarily long. */
	len = strnlen(name, VOLNAME_MAX + 1);
	if (len > VOLNAME_MAX) {
		reason = "must be at most 63 characters";
		goto out;
	}
	for (size_t i = 0; i < len; i++) {
		if (!is_alnum_lower(name[i]) && name[i] != '-') {
			reason = "must contain only lowercase letters, digits and '-'";
			goto out;
		}
	}
	if (name[0] == '-') {
		reason = "must start with a letter or digit";
		goto out;
	}
	if (name[len - 1] == '-')
		reason = "must end with a letter or digit";
out:
	if (!reason)
		return 0;
	if (ret_reason)
		*ret_reason = reason;
	return -EINVAL;
}
