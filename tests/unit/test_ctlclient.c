/*
 * Tests for ctlclient.c against a fake daemon on a unix socket: what is
 * sent, each way a call can end (reply, refusal, malformed answer, silence,
 * a closed connection, no daemon) and the errno and reason it gives, which
 * carvectl turns into its exit status.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctlclient.h"
#include "fake_daemon.h"

static char base[48], sock[96];

static int setup(void **state)
{
	(void)state;
	snprintf(base, sizeof(base), "/tmp/test_ctlclient.XXXXXX");
	if (!mkdtemp(base))
		return -1;
	snprintf(sock, sizeof(sock), "%s/carvefs.sock", base);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(sock);
	return rmdir(base);
}

/* A ping answered with @reply after @hold_ms; the result and the reason in @m. */
static int ping(const char *reply, int hold_ms, int timeout_ms, json_t **ret, struct errmsg *m)
{
	struct fake_daemon f = { .reply = reply, .hold_ms = hold_ms };
	json_t *req = json_pack("{s:s}", "verb", "ping");
	int r;

	fake_daemon_start(&f, sock);
	r = ctlclient_call(sock, req, timeout_ms, ret, m);
	fake_daemon_stop(&f);
	json_decref(req);
	assert_string_equal(f.request, "{\"verb\":\"ping\"}");
	return r;
}

static void expect_refusal(const char *code, int want)
{
	char reply[256];
	struct errmsg m;

	snprintf(reply, sizeof(reply), "{\"error\": {\"code\": \"%s\", \"message\": \"said %s\"}}\n",
		 code, code);
	assert_int_equal(ping(reply, 0, 5000, NULL, &m), want);
	assert_true(strstr(m.text, "said ") && strstr(m.text, code));
	assert_false(ctlclient_unreachable(want));
}

static void test_reply_and_refusals(void **state)
{
	struct errmsg m = { "untouched" };
	json_t *reply = NULL;

	(void)state;
	assert_int_equal(ping("{\"ok\": true, \"x\": 1}\n", 0, 5000, &reply, &m), 0);
	assert_int_equal(json_integer_value(json_object_get(reply, "x")), 1);
	assert_string_equal(m.text, "untouched");
	json_decref(reply);

	expect_refusal("no_space", -ENOSPC);
	expect_refusal("not_found", -ENOENT);
	expect_refusal("already_exists", -EEXIST);
	expect_refusal("busy", -EBUSY);
	expect_refusal("invalid_argument", -EINVAL);
	expect_refusal("bad_request", -EINVAL);
	expect_refusal("unknown_verb", -EOPNOTSUPP);
	expect_refusal("permission_denied", -EACCES);
	expect_refusal("internal", -EIO);
	expect_refusal("something_new", -EIO);

	/* Without a message, the code is the reason. */
	assert_int_equal(ping("{\"error\": {\"code\": \"busy\"}}\n", 0, 5000, NULL, &m), -EBUSY);
	assert_string_equal(m.text, "busy");
}

static void test_malformed_answers(void **state)
{
	struct errmsg m;

	(void)state;
	assert_int_equal(ping("not json\n", 0, 5000, NULL, &m), -EPROTO);
	assert_non_null(strstr(m.text, "malformed reply from carvefs"));
	assert_int_equal(ping("[1]\n", 0, 5000, NULL, &m), -EPROTO);
	assert_non_null(strstr(m.text, "not a JSON object"));
	assert_int_equal(ping("{\"ok\": false}\n", 0, 5000, NULL, &m), -EPROTO);
	assert_non_null(strstr(m.text, "neither \"ok\" nor \"error\""));
	assert_false(ctlclient_unreachable(-EPROTO));
}

static void test_no_answer(void **state)
{
	struct errmsg m;
	int r;

	(void)state;
	/* Hangs up without a word. */
	r = ping(NULL, 0, 5000, NULL, &m);
	assert_int_equal(r, -ECONNRESET);
	assert_true(ctlclient_unreachable(r));
	assert_non_null(strstr(m.text, "closed the connection without a reply"));
	assert_non_null(strstr(m.text, sock));

	/* Answers too late. */
	r = ping("{\"ok\": true}\n", 600, 100, NULL, &m);
	assert_int_equal(r, -ETIMEDOUT);
	assert_true(ctlclient_unreachable(r));
	assert_non_null(strstr(m.text, "did not reply within 100 ms"));
	r = ping("{\"ok\": true}\n", 1500, 1000, NULL, &m);
	assert_int_equal(r, -ETIMEDOUT);
	assert_non_null(strstr(m.text, "did not reply within 1 s"));
}

static void test_no_daemon(void **state)
{
	json_t *req = json_pack("{s:s}", "verb", "ping");
	struct errmsg m;
	int r;

	(void)state;
	unlink(sock);
	r = ctlclient_call(sock, req, 1000, NULL, &m);
	/* Never -ENOENT: that is the daemon's not_found. */
	assert_int_equal(r, -ECONNREFUSED);
	assert_true(ctlclient_unreachable(r));
	assert_non_null(strstr(m.text, "cannot reach carvefs at"));
	assert_non_null(strstr(m.text, sock));
	assert_non_null(strstr(m.text, "is the daemon running?"));
	json_decref(req);

	/* The verbs that build their own requests: same outcome, NULL reason is fine. */
	assert_int_equal(ctlclient_wipe(sock, "v", 1000, NULL), -ECONNREFUSED);
	assert_int_equal(ctlclient_delete(sock, "v", false, &m), -ECONNREFUSED);
}

static void test_verbs_take_their_field(void **state)
{
	struct fake_daemon f = { .reply = "{\"ok\": true, \"volume\": {\"name\": \"v\"}}\n" };
	json_t *vol = NULL;
	struct errmsg m;

	(void)state;
	fake_daemon_start(&f, sock);
	assert_int_equal(ctlclient_stats(sock, "v", &vol, &m), 0);
	fake_daemon_stop(&f);
	assert_string_equal(json_string_value(json_object_get(vol, "name")), "v");
	assert_string_equal(f.request, "{\"verb\":\"stats\",\"name\":\"v\"}");
	json_decref(vol);

	f = (struct fake_daemon){ .reply = "{\"ok\": true}\n" };
	fake_daemon_start(&f, sock);
	assert_int_equal(ctlclient_list(sock, &vol, &m), -EPROTO);
	fake_daemon_stop(&f);
	assert_non_null(strstr(m.text, "no 'volumes'"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_and_refusals),
		cmocka_unit_test(test_malformed_answers),
		cmocka_unit_test(test_no_answer),
		cmocka_unit_test(test_no_daemon),
		cmocka_unit_test(test_verbs_take_their_field),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
