/*
 * Tests for kubeconfig.c: context selection, each field, relative paths,
 * base64, malformed input and the in-cluster form.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kube/kubeconfig.h"

/* base64 of "PEM-CA", "PEM-CERT", "PEM-KEY" */
#define CA_B64 "UEVNLUNB"
#define CERT_B64 "UEVNLUNFUlQ="
#define KEY_B64 "UEVNLUtFWQ=="

static const char full[] =
	"apiVersion: v1\n"
	"kind: Config\n"
	"current-context: main\n"
	"clusters:\n"
	"- name: other\n"
	"  cluster:\n"
	"    server: https://other:6443\n"
	"- name: c1\n"
	"  cluster:\n"
	"    server: https://127.0.0.1:6443/\n"
	"    certificate-authority-data: " CA_B64 "\n"
	"contexts:\n"
	"- name: main\n"
	"  context: {cluster: c1, user: u1}\n"
	"- name: alt\n"
	"  context:\n"
	"    cluster: other\n"
	"    user: u2\n"
	"users:\n"
	"- name: u1\n"
	"  user:\n"
	"    token: abc.def\n"
	"    client-certificate-data: " CERT_B64 "\n"
	"    client-key-data: " KEY_B64 "\n"
	"- name: u2\n"
	"  user:\n"
	"    tokenFile: tok\n"
	"    client-certificate: /abs/cert.pem\n"
	"    client-key: rel/key.pem\n";

static int parse(const char *text, const char *ctx, struct kubeconfig **kc, struct errmsg *err)
{
	return kubeconfig_parse(text, strlen(text), ctx, "/etc/kube", kc, err);
}

static void test_current_context(void **state)
{
	struct kubeconfig *kc = NULL;
	struct errmsg err;

	(void)state;
	assert_int_equal(parse(full, NULL, &kc, &err), 0);
	assert_string_equal(kc->server, "https://127.0.0.1:6443");
	assert_int_equal(kc->ca_len, 6);
	assert_string_equal(kc->ca_data, "PEM-CA");
	assert_null(kc->ca_file);
	assert_string_equal(kc->token, "abc.def");
	assert_null(kc->token_file);
	assert_string_equal(kc->cert_data, "PEM-CERT");
	assert_int_equal(kc->cert_len, 8);
	assert_string_equal(kc->key_data, "PEM-KEY");
	assert_false(kc->insecure_skip_tls_verify);
	kubeconfig_free(kc);
}

static void test_named_context_and_paths(void **state)
{
	struct kubeconfig *kc = NULL;
	struct errmsg err;

	(void)state;
	assert_int_equal(parse(full, "alt", &kc, &err), 0);
	assert_string_equal(kc->server, "https://other:6443");
	assert_null(kc->ca_data);
	assert_null(kc->token);
	assert_string_equal(kc->token_file, "/etc/kube/tok");
	assert_string_equal(kc->cert_file, "/abs/cert.pem");
	assert_string_equal(kc->key_file, "/etc/kube/rel/key.pem");
	kubeconfig_free(kc);
}

static void test_ca_file_and_insecure(void **state)
{
	static const char text[] = "current-context: x\n"
				   "contexts: [{name: x, context: {cluster: c}}]\n"
				   "clusters:\n"
				   "- name: c\n"
				   "  cluster:\n"
				   "    server: https://h\n"
				   "    certificate-authority: ca.crt\n"
				   "    insecure-skip-tls-verify: true\n";
	struct kubeconfig *kc = NULL;
	struct errmsg err;

	(void)state;
	assert_int_equal(parse(text, NULL, &kc, &err), 0);
	assert_string_equal(kc->ca_file, "/etc/kube/ca.crt");
	assert_true(kc->insecure_skip_tls_verify);
	/* no user: anonymous */
	assert_null(kc->token);
	assert_null(kc->cert_file);
	kubeconfig_free(kc);
}

static void expect_fail(const char *text, const char *ctx, int want, const char *needle)
{
	struct kubeconfig *kc = NULL;
	struct errmsg err;
	int r = parse(text, ctx, &kc, &err);

	if (r != want)
		fail_msg("r=%d want %d (%s) for:\n%s", r, want, err.text, text);
	assert_null(kc);
	if (needle && !strstr(err.text, needle))
		fail_msg("error '%s' lacks '%s'", err.text, needle);
}

static void test_malformed(void **state)
{
	(void)state;
	expect_fail("", NULL, -EINVAL, NULL);
	expect_fail("- a\n- b\n", NULL, -EINVAL, "not a mapping");
	expect_fail("a: [1, 2\n", NULL, -EINVAL, "line");
	expect_fail("a: b\n", NULL, -EINVAL, "current-context");
	expect_fail(full, "nope", -EINVAL, "no context named 'nope'");
	expect_fail("current-context: x\ncontexts: {x: 1}\n", NULL, -EINVAL, "not a list");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n", NULL,
		    -EINVAL, "no cluster named 'c'");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {user: u}}]\n", NULL,
		    -EINVAL, "no cluster");
	expect_fail("current-context: x\ncontexts: [{name: x, context: 3}]\n", NULL, -EINVAL,
		    "no context mapping");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
		    "clusters: [{name: c, cluster: {certificate-authority-data: QQ==}}]\n",
		    NULL, -EINVAL, "no server");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
		    "clusters: [{name: c, cluster: {server: ftp://h}}]\n",
		    NULL, -EINVAL, "not an http(s) URL");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
		    "clusters: [{name: c, cluster: {server: [https://h]}}]\n",
		    NULL, -EINVAL, "not a string");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
		    "clusters: [{name: c, cluster: {server: https://h, "
		    "certificate-authority-data: '***'}}]\n",
		    NULL, -EINVAL, "not base64");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
		    "clusters: [{name: c, cluster: {server: https://h, "
		    "insecure-skip-tls-verify: maybe}}]\n",
		    NULL, -EINVAL, "not a boolean");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
		    "clusters: [{name: c, cluster: {server: https://h}}]\n",
		    NULL, -EINVAL, "no user named 'u'");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
		    "clusters: [{name: c, cluster: {server: https://h}}]\n"
		    "users: [{name: u, user: {client-certificate: c.pem}}]\n",
		    NULL, -EINVAL, "needs its key");
	expect_fail("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
		    "clusters: [{name: c, cluster: {server: https://h}}]\n"
		    "users: [{name: u, user: {exec: {command: aws}}}]\n",
		    NULL, -EOPNOTSUPP, "only token");
	expect_fail("a: *nowhere\n", NULL, -EINVAL, NULL);
}

static void test_aliases(void **state)
{
	static const char text[] = "current-context: x\n"
				   "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
				   "clusters: [{name: c, cluster: {server: &s https://h:1}}]\n"
				   "users: [{name: u, user: {token: *s}}]\n";
	struct kubeconfig *kc = NULL;
	struct errmsg err;

	(void)state;
	assert_int_equal(parse(text, NULL, &kc, &err), 0);
	assert_string_equal(kc->token, "https://h:1");
	kubeconfig_free(kc);
}

static void test_in_cluster(void **state)
{
	struct kubeconfig *kc = NULL;

	(void)state;
	assert_int_equal(kubeconfig_in_cluster("10.0.0.1", "443", KUBECONFIG_SA_TOKEN,
					       KUBECONFIG_SA_CA, &kc),
			 0);
	assert_string_equal(kc->server, "https://10.0.0.1:443");
	assert_string_equal(kc->token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
	assert_string_equal(kc->ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
	assert_null(kc->token);
	kc = kubeconfig_free(kc);
	assert_int_equal(kubeconfig_in_cluster("fd00::1", "6443", NULL, NULL, &kc), 0);
	assert_string_equal(kc->server, "https://[fd00::1]:6443");
	kubeconfig_free(kc);
	kc = NULL;
	assert_int_equal(kubeconfig_in_cluster("", "443", NULL, NULL, &kc), -EINVAL);
	assert_int_equal(kubeconfig_in_cluster("h", NULL, NULL, NULL, &kc), -EINVAL);
	assert_int_equal(kubeconfig_in_cluster("h", "0", NULL, NULL, &kc), -EINVAL);
	assert_int_equal(kubeconfig_in_cluster("h", "65536", NULL, NULL, &kc), -EINVAL);
	assert_int_equal(kubeconfig_in_cluster("h", "44x", NULL, NULL, &kc), -EINVAL);
	assert_int_equal(kubeconfig_in_cluster("h", "-1", NULL, NULL, &kc), -EINVAL);
	assert_null(kc);
}

static void expect_b64(const char *in, const char *want)
{
	char *out = NULL;
	size_t len = 0;

	if (kubeconfig_base64_decode(in, &out, &len) != 0)
		fail_msg("'%s' rejected", in);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
	free(out);
}

static void test_base64(void **state)
{
	char *out = NULL;
	size_t len;

	(void)state;
	expect_b64("", "");
	expect_b64("QQ==", "A");
	expect_b64("QQ", "A");
	expect_b64("QUI=", "AB");
	expect_b64("QUJD", "ABC");
	expect_b64("QUJD\nREVG", "ABCDEF");
	expect_b64("Pz8+", "?\x3f>");
	expect_b64("Pz8/", "???");
	assert_int_equal(kubeconfig_base64_decode("Q", &out, &len), -EINVAL);
	assert_int_equal(kubeconfig_base64_decode("QQ=A", &out, &len), -EINVAL);
	assert_int_equal(kubeconfig_base64_decode("QQ===", &out, &len), -EINVAL);
	assert_int_equal(kubeconfig_base64_decode("QUJD=", &out, &len), -EINVAL);
	assert_int_equal(kubeconfig_base64_decode("QR==", &out, &len), -EINVAL);
	assert_int_equal(kubeconfig_base64_decode("Q-==", &out, &len), -EINVAL);
	assert_null(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_current_context),
		cmocka_unit_test(test_named_context_and_paths),
		cmocka_unit_test(test_ca_file_and_insecure),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_in_cluster),
		cmocka_unit_test(test_base64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
