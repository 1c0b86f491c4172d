/*
 * k8sname.c - Kubernetes name rules; see include/k8sname.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "k8sname.h"

_Static_assert(K8SNAME_LABEL_MAX == 63 && K8SNAME_SUBDOMAIN_MAX == 253,
	       "the length rules' reasons name the limits");

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_label_char(char c)
{
	return is_lower_alnum(c) || c == '-';
}

static bool is_subdomain_char(char c)
{
	return is_label_char(c) || c == '.';
}

static bool is_qualified_char(char c)
{
	return is_alnum(c) || c == '-' || c == '_' || c == '.';
}

/* The length, bounded: a name from a socket or a file may be arbitrarily long. */
static int check_length(const char *s, size_t max, size_t *ret_len, struct errmsg *m)
{
	size_t len;

	if (!s || s[0] == '\0')
		return errmsg_set(m, -EINVAL, "must not be empty");
	len = strnlen(s, max + 1);
	if (len > max)
		return errmsg_set(m, -EINVAL, "must be at most %zu characters", max);
	*ret_len = len;
	return 0;
}

/*
 * The shape every rule shares, on @len > 0 bytes of @s: only characters
 * @is_char accepts (@chars says which, for the reason), and both ends
 * alphanumeric as @is_end says.
 */
static int check_chars(const char *s, size_t len, bool (*is_char)(char), const char *chars,
		       bool (*is_end)(char), struct errmsg *m)
{
	for (size_t i = 0; i < len; i++)
		if (!is_char(s[i]))
			return errmsg_set(m, -EINVAL, "must contain only %s", chars);
	if (!is_end(s[0]))
		return errmsg_set(m, -EINVAL, "must start with a letter or digit");
	if (!is_end(s[len - 1]))
		return errmsg_set(m, -EINVAL, "must end with a letter or digit");
	return 0;
}

int k8sname_dns_label(const char *s, struct errmsg *ret_msg)
{
	size_t len = 0;
	int r;

	r = check_length(s, K8SNAME_LABEL_MAX, &len, ret_msg);
	if (r < 0)
		return r;
	return check_chars(s, len, is_label_char, "lowercase letters, digits and '-'",
			   is_lower_alnum, ret_msg);
}

/* The subdomain rules on the first @len > 0 bytes of @s (also a label key's prefix). */
static int dns_subdomain_n(const char *s, size_t len, struct errmsg *m)
{
	int r;

	r = check_chars(s, len, is_subdomain_char, "lowercase letters, digits, '-' and '.'",
			is_lower_alnum, m);
	if (r < 0)
		return r;
	/* Each part is a label: a '.' has a letter or digit on either side. */
	for (size_t i = 1; i + 1 < len; i++)
		if (s[i] == '.' && (!is_lower_alnum(s[i - 1]) || !is_lower_alnum(s[i + 1])))
			return errmsg_set(m, -EINVAL,
					  "must have a letter or digit on both sides of each '.'");
	return 0;
}

int k8sname_dns_subdomain(const char *s, struct errmsg *ret_msg)
{
	size_t len = 0;
	int r;

	r = check_length(s, K8SNAME_SUBDOMAIN_MAX, &len, ret_msg);
	if (r < 0)
		return r;
	return dns_subdomain_n(s, len, ret_msg);
}

/* A label value or a key's name part, @len > 0 bytes. */
static int qualified_part(const char *s, size_t len, struct errmsg *m)
{
	if (len > K8SNAME_LABEL_MAX)
		return errmsg_set(m, -EINVAL, "must be at most 63 characters");
	return check_chars(s, len, is_qualified_char, "letters, digits, '-', '_' and '.'",
			   is_alnum, m);
}

int k8sname_label_key(const char *s, struct errmsg *ret_msg)
{
	const char *slash, *name;
	struct errmsg why;
	size_t plen;
	int r;

	if (!s || s[0] == '\0')
		return errmsg_set(ret_msg, -EINVAL, "must not be empty");
	slash = strchr(s, '/');
	name = slash ? slash + 1 : s;
	if (slash) {
		plen = (size_t)(slash - s);
		if (plen == 0)
			return errmsg_set(ret_msg, -EINVAL, "must not start with '/'");
		if (plen > K8SNAME_SUBDOMAIN_MAX)
			return errmsg_set(ret_msg, -EINVAL,
					  "prefix before '/' must be at most 253 characters");
		r = dns_subdomain_n(s, plen, &why);
		if (r < 0)
			return errmsg_set(ret_msg, r, "prefix before '/' %s", why.text);
	}
	if (name[0] == '\0')
		return errmsg_set(ret_msg, -EINVAL, "must have a name after the '/'");
	r = qualified_part(name, strnlen(name, K8SNAME_LABEL_MAX + 1), &why);
	if (r < 0 && slash)
		return errmsg_set(ret_msg, r, "name after '/' %s", why.text);
	if (r < 0)
		return errmsg_set(ret_msg, r, "%s", why.text);
	return 0;
}

int k8sname_label_value(const char *s, struct errmsg *ret_msg)
{
	if (!s)
		return errmsg_set(ret_msg, -EINVAL, "must be a string");
	if (s[0] == '\0')
		return 0;
	return qualified_part(s, strnlen(s, K8SNAME_LABEL_MAX + 1), ret_msg);
}
