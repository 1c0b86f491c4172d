/*
 * Tests for k8sname.c: DNS-1123 subdomains, label keys and label values as
 * Kubernetes validates them, each refusal with the rule it breaks. The
 * DNS-1123 label rules are tested through volname in test_volname.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "k8sname.h"

typedef int (*check_fn)(const char *, struct errmsg *);

static void expect_ok(check_fn f, const char *s)
{
	struct errmsg m = { "untouched" };

	if (f(s, &m) != 0)
		fail_msg("'%s' refused: %s", s, m.text);
	assert_string_equal(m.text, "untouched");
	assert_int_equal(f(s, NULL), 0);
}

static void expect_bad(check_fn f, const char *s, const char *words)
{
	struct errmsg m = { "" };

	if (f(s, &m) != -EINVAL)
		fail_msg("'%s' accepted", s ? s : "(null)");
	if (!strstr(m.text, words))
		fail_msg("'%s': reason \"%s\" does not say \"%s\"", s ? s : "(null)", m.text, words);
	assert_int_equal(f(s, NULL), -EINVAL);
}

static void test_dns_label(void **state)
{
	(void)state;
	expect_ok(k8sname_dns_label, "pvc-1");
	expect_bad(k8sname_dns_label, "a.b", "lowercase letters, digits and '-'");
	expect_bad(k8sname_dns_label, "", "empty");
}

static void test_dns_subdomain(void **state)
{
	char s[K8SNAME_SUBDOMAIN_MAX + 2];

	(void)state;
	expect_ok(k8sname_dns_subdomain, "a");
	expect_ok(k8sname_dns_subdomain, "local-pv-1a2b3c4d");
	expect_ok(k8sname_dns_subdomain, "carvefs.io");
	expect_ok(k8sname_dns_subdomain, "a.b-c.d0");
	expect_ok(k8sname_dns_subdomain, "a--b.c");

	expect_bad(k8sname_dns_subdomain, NULL, "empty");
	expect_bad(k8sname_dns_subdomain, "", "empty");
	/* Each part between dots is a label: no empty part, no '-' at a dot. */
	expect_bad(k8sname_dns_subdomain, "a..b", "both sides of each '.'");
	expect_bad(k8sname_dns_subdomain, "a-.b", "both sides of each '.'");
	expect_bad(k8sname_dns_subdomain, "a.-b", "both sides of each '.'");
	expect_bad(k8sname_dns_subdomain, ".a", "start");
	expect_bad(k8sname_dns_subdomain, "..", "start");
	expect_bad(k8sname_dns_subdomain, "a.", "end");
	expect_bad(k8sname_dns_subdomain, "-a", "start");
	expect_bad(k8sname_dns_subdomain, "a-", "end");
	expect_bad(k8sname_dns_subdomain, "A.b", "lowercase letters, digits, '-' and '.'");
	expect_bad(k8sname_dns_subdomain, "a_b", "lowercase letters, digits, '-' and '.'");
	expect_bad(k8sname_dns_subdomain, "a/b", "lowercase letters, digits, '-' and '.'");

	/* 253 is the whole; a part may be longer than 63, as Kubernetes allows. */
	memset(s, 'a', sizeof(s));
	s[K8SNAME_SUBDOMAIN_MAX] = '\0';
	expect_ok(k8sname_dns_subdomain, s);
	s[K8SNAME_SUBDOMAIN_MAX] = 'a';
	s[K8SNAME_SUBDOMAIN_MAX + 1] = '\0';
	expect_bad(k8sname_dns_subdomain, s, "at most 253");
}

static void test_label_key(void **state)
{
	char s[300];

	(void)state;
	expect_ok(k8sname_label_key, "app");
	expect_ok(k8sname_label_key, "App_1.x-y");
	expect_ok(k8sname_label_key, "kubernetes.io/hostname");
	expect_ok(k8sname_label_key, "carvefs.io/Claim_Name");

	expect_bad(k8sname_label_key, "", "empty");
	expect_bad(k8sname_label_key, "/a", "must not start with '/'");
	expect_bad(k8sname_label_key, "carvefs.io/", "name after the '/'");
	expect_bad(k8sname_label_key, "Carvefs.io/a", "prefix before '/' must contain only");
	expect_bad(k8sname_label_key, "a..b/c", "prefix before '/' must have");
	expect_bad(k8sname_label_key, "a/b/c", "name after '/' must contain only");
	expect_bad(k8sname_label_key, "a/-b", "name after '/' must start");
	expect_bad(k8sname_label_key, "a b", "letters, digits, '-', '_' and '.'");
	expect_bad(k8sname_label_key, "_a", "start");
	expect_bad(k8sname_label_key, "a.", "end");

	memset(s, 'a', 64);
	s[64] = '\0';
	expect_bad(k8sname_label_key, s, "at most 63");
	s[63] = '\0';
	expect_ok(k8sname_label_key, s);
	memset(s, 'a', 254);
	s[254] = '/';
	s[255] = 'x';
	s[256] = '\0';
	expect_bad(k8sname_label_key, s, "prefix before '/' must be at most 253");
}

static void test_label_value(void **state)
{
	char s[70];

	(void)state;
	expect_ok(k8sname_label_value, "");
	expect_ok(k8sname_label_value, "v1.2_beta-3");
	expect_ok(k8sname_label_value, "A");
	expect_bad(k8sname_label_value, NULL, "string");
	expect_bad(k8sname_label_value, "a/b", "letters, digits, '-', '_' and '.'");
	expect_bad(k8sname_label_value, "-a", "start");
	expect_bad(k8sname_label_value, "a_", "end");
	memset(s, 'z', 64);
	s[64] = '\0';
	expect_bad(k8sname_label_value, s, "at most 63");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dns_label),
		cmocka_unit_test(test_dns_subdomain),
		cmocka_unit_test(test_label_key),
		cmocka_unit_test(test_label_value),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
