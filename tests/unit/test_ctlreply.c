/*
 * Tests for ctlreply.c: the V and P objects of the control socket (wire.h)
 * byte for byte as clients read them, keys in their order, "error",
 * "limits" and "io" only when they apply, labels passed through as JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctlreply.h"

static void expect_json(json_t *o, const char *want)
{
	char *text;

	assert_non_null(o);
	text = json_dumps(o, JSON_COMPACT);
	assert_non_null(text);
	assert_string_equal(text, want);
	free(text);
	json_decref(o);
}

static struct volume_stats *served_volume(void)
{
	struct volume_stats *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	snprintf(s->name, sizeof(s->name), "pvc-1");
	snprintf(s->mountpoint, sizeof(s->mountpoint), "/mnt/carvefs/pvc-1");
	snprintf(s->storage_class, sizeof(s->storage_class), "fast");
	s->state = "mounted";
	s->capacity_bytes = 67108864;
	s->used_bytes = 12288;
	s->inode_limit = 100;
	s->used_inodes = 3;
	s->recorded = true;
	s->limits.riops = 500;
	s->limits.wbps = 1048576;
	s->uid = 1000;
	s->gid = 2000;
	s->mode = 0750;
	s->created_unix = 1764806400;
	snprintf(s->labels, sizeof(s->labels), "{\"app\":\"db\"}");
	s->served = true;
	s->read_ops = 7;
	s->write_ops = 9;
	s->read_bytes = 28672;
	s->write_bytes = 36864;
	s->throttled_ns = 1500000000;
	s->queue_depth = 2;
	return s;
}

static void test_served_volume(void **state)
{
	struct volume_stats *s = served_volume();

	(void)state;
	expect_json(ctlreply_volume(s),
		    "{\"name\":\"pvc-1\",\"mountpoint\":\"/mnt/carvefs/pvc-1\",\"state\":\"mounted\","
		    "\"capacity_bytes\":67108864,\"used_bytes\":12288,\"inode_limit\":100,"
		    "\"used_inodes\":3,\"uid\":1000,\"gid\":2000,\"mode\":488,"
		    "\"created_unix\":1764806400,\"storage_class\":\"fast\","
		    "\"labels\":{\"app\":\"db\"},"
		    "\"limits\":{\"riops\":500,\"wiops\":0,\"rbps\":0,\"wbps\":1048576,"
		    "\"burst_ms\":0,\"iops_size_bytes\":0},"
		    "\"io\":{\"read_ops\":7,\"write_ops\":9,\"read_bytes\":28672,"
		    "\"write_bytes\":36864,\"throttled_ns\":1500000000,\"queue_depth\":2,"
		    "\"read_latency\":{\"count\":0,\"sum_ns\":0,\"p50_ns\":0,\"p99_ns\":0},"
		    "\"write_latency\":{\"count\":0,\"sum_ns\":0,\"p50_ns\":0,\"p99_ns\":0}}}");
	free(s);
}

static void test_latency_is_summarised(void **state)
{
	struct volume_stats *s = served_volume();
	struct histogram h = { 0 };
	json_t *o, *l;

	(void)state;
	for (int i = 0; i < 10; i++)
		histogram_observe(&h, &histogram_io_bounds, 80000);
	histogram_observe(&h, &histogram_io_bounds, 3000000);
	histogram_read(&h, &histogram_io_bounds, &s->write_latency);
	o = ctlreply_volume(s);
	assert_non_null(o);
	l = json_object_get(json_object_get(o, "io"), "write_latency");
	assert_int_equal(json_integer_value(json_object_get(l, "count")), 11);
	assert_int_equal(json_integer_value(json_object_get(l, "sum_ns")), 10 * 80000 + 3000000);
	assert_int_equal(json_integer_value(json_object_get(l, "p50_ns")),
			 histogram_quantile_ns(&s->write_latency, &histogram_io_bounds, 0.5));
	assert_int_equal(json_integer_value(json_object_get(l, "p99_ns")),
			 histogram_quantile_ns(&s->write_latency, &histogram_io_bounds, 0.99));
	assert_true(json_integer_value(json_object_get(l, "p99_ns")) >
		    json_integer_value(json_object_get(l, "p50_ns")));
	json_decref(o);
	free(s);
}

/* A volume that failed to mount: its error, no IO; no record means no limits. */
static void test_volume_in_error(void **state)
{
	struct volume_stats *s = calloc(1, sizeof(*s));

	(void)state;
	assert_non_null(s);
	snprintf(s->name, sizeof(s->name), "broken");
	snprintf(s->mountpoint, sizeof(s->mountpoint), "/mnt/broken");
	snprintf(s->error, sizeof(s->error), "mount failed: No such device");
	s->state = "error";
	snprintf(s->labels, sizeof(s->labels), "not json");
	expect_json(ctlreply_volume(s),
		    "{\"name\":\"broken\",\"mountpoint\":\"/mnt/broken\",\"state\":\"error\","
		    "\"capacity_bytes\":0,\"used_bytes\":0,\"inode_limit\":0,\"used_inodes\":0,"
		    "\"uid\":0,\"gid\":0,\"mode\":0,\"created_unix\":0,\"storage_class\":\"\","
		    "\"labels\":{},\"error\":\"mount failed: No such device\"}");
	/* Only state "error" carries the sentence. */
	s->state = "unmounted";
	expect_json(ctlreply_volume(s),
		    "{\"name\":\"broken\",\"mountpoint\":\"/mnt/broken\",\"state\":\"unmounted\","
		    "\"capacity_bytes\":0,\"used_bytes\":0,\"inode_limit\":0,\"used_inodes\":0,"
		    "\"uid\":0,\"gid\":0,\"mode\":0,\"created_unix\":0,\"storage_class\":\"\","
		    "\"labels\":{}}");
	free(s);
}

static void test_volumes_keep_their_order(void **state)
{
	struct volume_stats *v = calloc(3, sizeof(*v));
	json_t *arr;

	(void)state;
	assert_non_null(v);
	for (int i = 0; i < 3; i++) {
		snprintf(v[i].name, sizeof(v[i].name), "v%d", 2 - i);
		v[i].state = "unmounted";
	}
	arr = ctlreply_volumes(v, 3);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(
			json_string_value(json_object_get(json_array_get(arr, (size_t)i), "name")),
			v[i].name);
	json_decref(arr);
	expect_json(ctlreply_volumes(v, 0), "[]");
	free(v);
}

static void test_pool(void **state)
{
	struct pool_info info = {
		.size_bytes = 1073741824,
		.free_bytes = 536870912,
		.allocated_bytes = 805306368,
		.committed_bytes = 268435456,
		.volumes = 2,
	};

	(void)state;
	expect_json(ctlreply_pool("/var/lib/carvefs", &info),
		    "{\"path\":\"/var/lib/carvefs\",\"size_bytes\":1073741824,"
		    "\"free_bytes\":536870912,\"allocated_bytes\":805306368,"
		    "\"committed_bytes\":268435456,\"volumes\":2}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_served_volume),
		cmocka_unit_test(test_latency_is_summarised),
		cmocka_unit_test(test_volume_in_error),
		cmocka_unit_test(test_volumes_keep_their_order),
		cmocka_unit_test(test_pool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
