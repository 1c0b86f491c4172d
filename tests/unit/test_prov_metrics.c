/*
 * Tests for metrics.c: counts, cumulative histogram buckets, label
 * escaping, and that the whole text parses as the exposition format 0.0.4.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

#define MS UINT64_C(1000000)
#define SEC (1000 * MS)

#define DISC "local_volume_provisioner_persistentvolume_discovery_"
#define DEL "local_volume_provisioner_persistentvolume_delete_"
#define API "local_volume_provisioner_apiserver_requests_"

static char *format(void)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(metrics_format(&text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

/* @line must be a whole line of @text. */
static void expect_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void expect_no(const char *text, const char *part)
{
	if (strstr(text, part))
		fail_msg("unexpected \"%s\"", part);
}

/* ---- a small parser of the text format ----------------------------------- */

struct series {
	char name[128];
	char labels[256]; /* without le, unescaped, "a=x,b=y" */
	char le[16];
	double value;
};

/* Parses one sample line; fails the test on anything malformed. */
static void parse_sample(const char *line, struct series *s)
{
	const char *p = line;
	size_t n = 0, ln = 0;
	char *end;

	memset(s, 0, sizeof(*s));
	while (*p && *p != '{' && *p != ' ') {
		assert_true(n + 1 < sizeof(s->name));
		assert_true((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || *p == '_' || *p == ':');
		s->name[n++] = *p++;
	}
	assert_true(n > 0);
	if (*p == '{') {
		p++;
		while (*p != '}') {
			char lname[32] = "", value[128] = "";
			size_t k = 0, v = 0;

			while (*p != '=') {
				assert_true(*p && k + 1 < sizeof(lname));
				lname[k++] = *p++;
			}
			p++;
			assert_int_equal(*p++, '"');
			while (*p != '"') {
				char c = *p++;

				assert_true(c != '\0' && c != '\n');
				if (c == '\\') {
					c = *p++;
					assert_true(c == '\\' || c == '"' || c == 'n');
					if (c == 'n')
						c = '\n';
				}
				assert_true(v + 1 < sizeof(value));
				value[v++] = c;
			}
			p++;
			if (strcmp(lname, "le") == 0) {
				assert_true(v < sizeof(s->le));
				memcpy(s->le, value, v + 1);
			} else {
				ln += (size_t)snprintf(s->labels + ln, sizeof(s->labels) - ln, "%s%s=%s",
						       ln ? "," : "", lname, value);
				assert_true(ln < sizeof(s->labels));
			}
			if (*p == ',')
				p++;
			else
				assert_int_equal(*p, '}');
		}
		p++;
	}
	assert_int_equal(*p++, ' ');
	s->value = strtod(p, &end);
	assert_true(end != p && *end == '\0');
}

static bool has_suffix(const char *s, const char *base, const char *suffix)
{
	size_t n = strlen(base);

	return strncmp(s, base, n) == 0 && strcmp(s + n, suffix) == 0;
}

/*
 * Every line is HELP, TYPE or a sample of the family last typed; a
 * histogram's buckets rise with le, never fall, end at +Inf, and +Inf
 * equals _count. Returns the number of samples.
 */
static size_t check_format(const char *text)
{
	char family[128] = "", type[16] = "", prev_labels[256] = "";
	double prev_le = -1, prev_count = 0, inf_count = -1;
	size_t samples = 0;
	char *copy = strdup(text), *save = NULL;

	assert_non_null(copy);
	assert_true(text[0] != '\0' && text[strlen(text) - 1] == '\n');
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct series s;

		if (strncmp(line, "# HELP ", 7) == 0) {
			assert_true(strchr(line + 7, ' ') != NULL);
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_int_equal(sscanf(line + 7, "%127s %15s", family, type), 2);
			assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
				    strcmp(type, "histogram") == 0);
			/* nothing after the type */
			assert_int_equal(line[7 + strlen(family) + 1 + strlen(type)], '\0');
			prev_labels[0] = '\0';
			continue;
		}
		assert_true(line[0] != '#');
		parse_sample(line, &s);
		samples++;
		assert_true(s.value >= 0);
		if (strcmp(type, "histogram") != 0) {
			assert_string_equal(s.name, family);
			assert_string_equal(s.le, "");
			continue;
		}
		if (has_suffix(s.name, family, "_bucket")) {
			double le;

			assert_true(s.le[0] != '\0');
			if (strcmp(s.labels, prev_labels) != 0) { /* a new series */
				assert_true(prev_le < 0);
				snprintf(prev_labels, sizeof(prev_labels), "%s", s.labels);
				prev_count = 0;
			}
			le = strcmp(s.le, "+Inf") == 0 ? 1e300 : strtod(s.le, NULL);
			assert_true(le > prev_le);
			assert_true(s.value >= prev_count);
			prev_le = le;
			prev_count = s.value;
			if (le == 1e300) {
				inf_count = s.value;
				prev_le = -1;
			}
		} else if (has_suffix(s.name, family, "_sum")) {
			assert_string_equal(s.labels, prev_labels);
			assert_true(prev_le < 0);
		} else {
			assert_true(has_suffix(s.name, family, "_count"));
			assert_string_equal(s.labels, prev_labels);
			assert_true(s.value == inf_count);
			prev_labels[0] = '\0';
			inf_count = -1;
		}
	}
	free(copy);
	return samples;
}

/* ---- tests ---------------------------------------------------------------- */

static int reset(void **state)
{
	(void)state;
	metrics_reset();
	return 0;
}

static void test_empty(void **state)
{
	char *text;

	(void)state;
	text = format();
	expect_line(text, "# TYPE " DISC "total counter");
	expect_line(text, DISC "total{mode=\"Filesystem\"} 0");
	expect_line(text, DISC "total{mode=\"Block\"} 0");
	expect_line(text, "# TYPE " DISC "duration_seconds histogram");
	expect_line(text, DISC "duration_seconds_bucket{mode=\"Block\",le=\"+Inf\"} 0");
	expect_line(text, DEL "failed_total{mode=\"Block\",type=\"process\"} 0");
	expect_line(text, API "total{method=\"PATCH\"} 0");
	expect_line(text, "local_volume_provisioner_proctable_running 0");
	expect_line(text, "# TYPE local_volume_provisioner_proctable_failed gauge");
	expect_no(text, "method=\"other\"");
	expect_line(text, "# TYPE carvefs_dynamic_orphaned_volumes gauge");
	expect_line(text, "carvefs_dynamic_provisioned_total 0");
	/* 2 + 2*14 + 2 + 2 + 2*14 + 5 + 5 + 5*14 + 3 + 4 */
	assert_int_equal(check_format(text), 149);
	free(text);
}

static void test_counts_and_buckets(void **state)
{
	char *text;

	(void)state;
	metrics_discovered(false);
	metrics_discovered(false);
	metrics_discovered(true);
	metrics_api_request("GET", true, 3 * MS);
	metrics_api_request("GET", false, 70 * MS);
	metrics_api_request("GET", true, 5 * MS); /* on a bound: in it (le is <=) */
	metrics_api_request("POST", true, 20 * SEC);
	metrics_discovery_pass(false, 1500 * MS);
	text = format();
	expect_line(text, DISC "total{mode=\"Filesystem\"} 2");
	expect_line(text, DISC "total{mode=\"Block\"} 1");
	expect_line(text, API "total{method=\"GET\"} 3");
	expect_line(text, API "failed_total{method=\"GET\"} 1");
	expect_line(text, API "failed_total{method=\"POST\"} 0");
	expect_line(text, API "duration_seconds_bucket{method=\"GET\",le=\"0.005\"} 2");
	expect_line(text, API "duration_seconds_bucket{method=\"GET\",le=\"0.05\"} 2");
	expect_line(text, API "duration_seconds_bucket{method=\"GET\",le=\"0.1\"} 3");
	expect_line(text, API "duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 3");
	expect_line(text, API "duration_seconds_sum{method=\"GET\"} 0.078000000");
	expect_line(text, API "duration_seconds_count{method=\"GET\"} 3");
	expect_line(text, API "duration_seconds_bucket{method=\"POST\",le=\"10\"} 0");
	expect_line(text, API "duration_seconds_bucket{method=\"POST\",le=\"+Inf\"} 1");
	expect_line(text, API "duration_seconds_sum{method=\"POST\"} 20.000000000");
	expect_line(text, DISC "duration_seconds_bucket{mode=\"Filesystem\",le=\"1\"} 0");
	expect_line(text, DISC "duration_seconds_bucket{mode=\"Filesystem\",le=\"2.5\"} 1");
	expect_line(text, DISC "duration_seconds_count{mode=\"Block\"} 0");
	check_format(text);
	free(text);
}

static void test_deletes(void **state)
{
	char *text;

	(void)state;
	metrics_delete_started();
	metrics_delete_done(false, true, SEC);
	metrics_delete_started();
	metrics_delete_done(true, false, 30 * SEC);
	metrics_delete_started(); /* still running */
	text = format();
	expect_line(text, DEL "total{mode=\"Filesystem\",type=\"process\"} 1");
	expect_line(text, DEL "total{mode=\"Block\",type=\"process\"} 0");
	expect_line(text, DEL "failed_total{mode=\"Block\",type=\"process\"} 1");
	expect_line(text, DEL "duration_seconds_bucket{mode=\"Filesystem\",type=\"process\",le=\"1\"} 1");
	expect_line(text, DEL "duration_seconds_count{mode=\"Block\",type=\"process\"} 1");
	expect_line(text, "local_volume_provisioner_proctable_running 1");
	expect_line(text, "local_volume_provisioner_proctable_succeeded 1");
	expect_line(text, "local_volume_provisioner_proctable_failed 1");
	check_format(text);
	free(text);
}

static void test_dynamic(void **state)
{
	char *text;

	(void)state;
	metrics_provisioned(true);
	metrics_provisioned(true);
	metrics_provisioned(false);
	metrics_dynamic_deleted();
	metrics_orphaned_volumes(3);
	metrics_orphaned_volumes(2); /* a gauge: the latest count, not a sum */
	text = format();
	expect_line(text, "# TYPE carvefs_dynamic_provisioned_total counter");
	expect_line(text, "carvefs_dynamic_provisioned_total 2");
	expect_line(text, "carvefs_dynamic_provisioning_failed_total 1");
	expect_line(text, "carvefs_dynamic_deleted_total 1");
	expect_line(text, "carvefs_dynamic_orphaned_volumes 2");
	free(text);
	metrics_reset();
	text = format();
	expect_line(text, "carvefs_dynamic_orphaned_volumes 0");
	expect_line(text, "carvefs_dynamic_provisioned_total 0");
	free(text);
}

static void test_other_method(void **state)
{
	char *text;

	(void)state;
	metrics_api_request("OPTIONS", false, 0);
	metrics_api_request(NULL, true, 0);
	text = format();
	expect_line(text, API "total{method=\"other\"} 2");
	expect_line(text, API "failed_total{method=\"other\"} 1");
	expect_line(text, API "duration_seconds_bucket{method=\"other\",le=\"0.005\"} 2");
	assert_int_equal(check_format(text), 149 + 2 + 14);
	free(text);
}

static void test_escape(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(metrics_escape_label("plain", buf, sizeof(buf)), 5);
	assert_string_equal(buf, "plain");
	assert_int_equal(metrics_escape_label("a\"b\\c\nd", buf, sizeof(buf)), 10);
	assert_string_equal(buf, "a\\\"b\\\\c\\nd");
	assert_int_equal(metrics_escape_label("", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	/* Cut short like snprintf, still terminated. */
	assert_int_equal(metrics_escape_label("a\"b", buf, 3), 4);
	assert_string_equal(buf, "a\\");
	assert_int_equal(metrics_escape_label("x\n", NULL, 0), 3);
}

static void test_parser_catches_escapes(void **state)
{
	struct series s;

	(void)state;
	parse_sample("m{a=\"x\\\"y\\\\z\\n\",le=\"0.5\"} 3", &s);
	assert_string_equal(s.name, "m");
	assert_string_equal(s.labels, "a=x\"y\\z\n");
	assert_string_equal(s.le, "0.5");
	assert_true(s.value == 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_empty, reset),
		cmocka_unit_test_setup(test_counts_and_buckets, reset),
		cmocka_unit_test_setup(test_deletes, reset),
		cmocka_unit_test_setup(test_dynamic, reset),
		cmocka_unit_test_setup(test_other_method, reset),
		cmocka_unit_test_setup(test_escape, reset),
		cmocka_unit_test_setup(test_parser_catches_escapes, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
