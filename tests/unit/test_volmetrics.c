/*
 * Tests for volmetrics.c: every family has HELP and TYPE once, samples are
 * labelled by volume (and storage class when set), IO families only for
 * served volumes, volumes counted by state, limits and latency as given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "volmetrics.h"

#define US UINT64_C(1000)
#define MS UINT64_C(1000000)

/* @line must be a whole line of @text. */
static void expect_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	fail_msg("no line \"%s\" in:\n%s", line, text);
}

static size_t count(const char *text, const char *part)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, part)) != NULL; p++)
		n++;
	return n;
}

static void fill(struct volume_stats *v)
{
	struct histogram h = { 0 };

	memset(v, 0, 2 * sizeof(*v));
	snprintf(v[0].name, sizeof(v[0].name), "pvc-1");
	snprintf(v[0].mountpoint, sizeof(v[0].mountpoint), "/mnt/we\"ird\\dir/pvc-1");
	snprintf(v[0].storage_class, sizeof(v[0].storage_class), "fast");
	v[0].state = "mounted";
	v[0].capacity_bytes = 64 << 20;
	v[0].used_bytes = 12288;
	v[0].inode_limit = 100;
	v[0].used_inodes = 3;
	v[0].limits.riops = 500;
	v[0].limits.wbps = 10 << 20;
	v[0].limits.burst_ms = 250;
	v[0].served = true;
	v[0].read_ops = 7;
	v[0].write_ops = 9;
	v[0].read_bytes = 28672;
	v[0].write_bytes = 36864;
	v[0].throttled_ns = 1500 * MS;
	v[0].queue_depth = 2;
	histogram_observe(&h, &histogram_io_bounds, 80 * US);
	histogram_observe(&h, &histogram_io_bounds, 3 * MS);
	histogram_read(&h, &histogram_io_bounds, &v[0].write_latency);

	snprintf(v[1].name, sizeof(v[1].name), "broken");
	snprintf(v[1].mountpoint, sizeof(v[1].mountpoint), "/mnt/broken");
	v[1].state = "error";
	v[1].capacity_bytes = 1 << 20;
}

static void test_format(void **state)
{
	struct volume_stats v[2];
	char *text = NULL;
	size_t len = 0;

	(void)state;
	fill(v);
	assert_int_equal(volmetrics_format(v, 2, "1.2.3", true, &text, &len), 0);
	assert_int_equal(strlen(text), len);

	expect_line(text, "carvefs_build_info{version=\"1.2.3\"} 1");
	expect_line(text, "carvefs_volumes{state=\"mounted\"} 1");
	expect_line(text, "carvefs_volumes{state=\"unmounted\"} 0");
	expect_line(text, "carvefs_volumes{state=\"error\"} 1");
	expect_line(text, "carvefs_volume_info{volume=\"pvc-1\",storage_class=\"fast\","
			  "mountpoint=\"/mnt/we\\\"ird\\\\dir/pvc-1\",state=\"mounted\"} 1");
	expect_line(text, "carvefs_volume_info{volume=\"broken\",mountpoint=\"/mnt/broken\","
			  "state=\"error\"} 1");
	expect_line(text, "carvefs_volume_capacity_bytes{volume=\"pvc-1\",storage_class=\"fast\"} "
			  "67108864");
	expect_line(text, "carvefs_volume_capacity_bytes{volume=\"broken\"} 1048576");
	expect_line(text, "carvefs_volume_used_bytes{volume=\"pvc-1\",storage_class=\"fast\"} 12288");
	expect_line(text, "carvefs_volume_inode_limit{volume=\"pvc-1\",storage_class=\"fast\"} 100");
	expect_line(text, "carvefs_volume_inodes_used{volume=\"pvc-1\",storage_class=\"fast\"} 3");
	expect_line(text, "carvefs_volume_io_limit_iops{volume=\"pvc-1\",storage_class=\"fast\","
			  "op=\"read\"} 500");
	expect_line(text, "carvefs_volume_io_limit_iops{volume=\"pvc-1\",storage_class=\"fast\","
			  "op=\"write\"} 0");
	expect_line(text, "carvefs_volume_io_limit_bytes_per_second{volume=\"pvc-1\","
			  "storage_class=\"fast\",op=\"write\"} 10485760");
	expect_line(text, "carvefs_volume_io_limit_burst_seconds{volume=\"pvc-1\","
			  "storage_class=\"fast\"} 0.250000000");
	/* Unset burst is the default, 0.1 s. */
	expect_line(text, "carvefs_volume_io_limit_burst_seconds{volume=\"broken\"} 0.100000000");
	expect_line(text, "carvefs_volume_io_ops_total{volume=\"pvc-1\",storage_class=\"fast\","
			  "op=\"write\"} 9");
	expect_line(text, "carvefs_volume_io_bytes_total{volume=\"pvc-1\",storage_class=\"fast\","
			  "op=\"read\"} 28672");
	expect_line(text, "carvefs_volume_io_throttled_seconds_total{volume=\"pvc-1\","
			  "storage_class=\"fast\"} 1.500000000");
	expect_line(text, "carvefs_volume_io_queue_depth{volume=\"pvc-1\",storage_class=\"fast\"} 2");
	expect_line(text, "carvefs_volume_io_request_duration_seconds_bucket{volume=\"pvc-1\","
			  "storage_class=\"fast\",op=\"write\",le=\"0.00005\"} 0");
	expect_line(text, "carvefs_volume_io_request_duration_seconds_bucket{volume=\"pvc-1\","
			  "storage_class=\"fast\",op=\"write\",le=\"0.0001\"} 1");
	expect_line(text, "carvefs_volume_io_request_duration_seconds_bucket{volume=\"pvc-1\","
			  "storage_class=\"fast\",op=\"write\",le=\"0.0025\"} 1");
	expect_line(text, "carvefs_volume_io_request_duration_seconds_bucket{volume=\"pvc-1\","
			  "storage_class=\"fast\",op=\"write\",le=\"0.005\"} 2");
	expect_line(text, "carvefs_volume_io_request_duration_seconds_bucket{volume=\"pvc-1\","
			  "storage_class=\"fast\",op=\"write\",le=\"+Inf\"} 2");
	expect_line(text, "carvefs_volume_io_request_duration_seconds_sum{volume=\"pvc-1\","
			  "storage_class=\"fast\",op=\"write\"} 0.003080000");
	expect_line(text, "carvefs_volume_io_request_duration_seconds_count{volume=\"pvc-1\","
			  "storage_class=\"fast\",op=\"read\"} 0");

	/* The volume that is not served has no IO samples, only its settings. */
	assert_null(strstr(text, "io_ops_total{volume=\"broken\""));
	assert_null(strstr(text, "io_request_duration_seconds_bucket{volume=\"broken\""));
	assert_null(strstr(text, "io_queue_depth{volume=\"broken\""));

	/* Each family announced once. */
	assert_int_equal(count(text, "# TYPE carvefs_volume_io_ops_total counter\n"), 1);
	assert_int_equal(count(text, "# TYPE carvefs_volume_io_request_duration_seconds histogram\n"),
			 1);
	assert_int_equal(count(text, "# HELP "), count(text, "# TYPE "));
	assert_int_equal(count(text, "# TYPE "), 17);
	expect_line(text, "carvefs_keeper_holding 1");
	free(text);
}

static void test_no_volumes(void **state)
{
	char *text = NULL;
	size_t len = 0;

	(void)state;
	assert_int_equal(volmetrics_format(NULL, 0, "0.1.0", false, &text, &len), 0);
	expect_line(text, "carvefs_volumes{state=\"mounted\"} 0");
	expect_line(text, "carvefs_keeper_holding 0");
	/* Families stay announced, so a dashboard knows them before any volume. */
	assert_non_null(strstr(text, "# TYPE carvefs_volume_capacity_bytes gauge\n"));
	assert_null(strstr(text, "volume=\""));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_no_volumes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
