/*
 * Tests for sizing.c: rounding to whole pages, judging a claim's request
 * against its PV, the claim status patch, the node's allocatable bytes and
 * the values written on the Node.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "dynamic/sizing.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static void test_round_up(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(sizing_round_up(0, 4096, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(sizing_round_up(1, 4096, &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(sizing_round_up(4096, 4096, &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(sizing_round_up(4097, 4096, &v), 0);
	assert_int_equal(v, 8192);
	assert_int_equal(sizing_round_up(UINT64_MAX - 4095, 4096, &v), 0);
	assert_int_equal(v, UINT64_MAX - 4095);
	v = 7;
	assert_int_equal(sizing_round_up(UINT64_MAX - 4094, 4096, &v), -ERANGE);
	assert_int_equal(v, 7);
	assert_int_equal(sizing_round_up(1, 0, &v), -EINVAL);
}

static enum sizing_verdict judge(const char *req, const char *cap, uint64_t last,
				 uint64_t *ret_req, uint64_t *ret_target)
{
	enum sizing_verdict v = (enum sizing_verdict)-1;
	uint64_t rq = 0, t = 0;

	assert_int_equal(sizing_judge(req, cap, last, &v, &rq, &t), 0);
	if (ret_req)
		*ret_req = rq;
	if (ret_target)
		*ret_target = t;
	return v;
}

static void test_judge(void **state)
{
	enum sizing_verdict v;
	uint64_t req, target;

	(void)state;
	/* growth: quantities in any spelling compare by value */
	assert_int_equal(judge("128Mi", "64Mi", 0, &req, &target), SIZING_GROW);
	assert_int_equal(req, 128 * MiB);
	assert_int_equal(target, 128 * MiB);
	assert_int_equal(judge("134217728", "64Mi", 0, NULL, &target), SIZING_GROW);
	assert_int_equal(target, 128 * MiB);
	assert_int_equal(judge("0.125Gi", "67108864", 0, NULL, &target), SIZING_GROW);
	assert_int_equal(target, 128 * MiB);
	/* decimal suffixes are rounded up to a whole page */
	assert_int_equal(judge("100M", "64Mi", 0, &req, &target), SIZING_GROW);
	assert_int_equal(req, 100000000);
	assert_int_equal(target, 100003840);
	assert_int_equal(target % 4096, 0);
	/* one byte more is growth too */
	assert_int_equal(judge("67108865", "64Mi", 0, NULL, &target), SIZING_GROW);
	assert_int_equal(target, 64 * MiB + 4096);

	/* equal, or a claim bound to a bigger PV: nothing to do */
	assert_int_equal(judge("64Mi", "64Mi", 0, NULL, NULL), SIZING_KEEP);
	assert_int_equal(judge("1Gi", "10Gi", 0, NULL, NULL), SIZING_KEEP);
	assert_int_equal(judge("1Gi", "10Gi", GiB, NULL, NULL), SIZING_KEEP);
	/* a request that went up but stays within the PV */
	assert_int_equal(judge("2Gi", "10Gi", GiB, NULL, NULL), SIZING_KEEP);

	/* lowered below the PV's capacity: a shrink, refused */
	assert_int_equal(judge("64Mi", "128Mi", 128 * MiB, NULL, NULL), SIZING_SHRINK);
	/* lowered, yet still above the PV: growth to the new, smaller target */
	assert_int_equal(judge("256Mi", "128Mi", GiB, NULL, &target), SIZING_GROW);
	assert_int_equal(target, 256 * MiB);
	/* lowered to exactly the PV's size: nothing to do, not a shrink */
	assert_int_equal(judge("128Mi", "128Mi", GiB, NULL, NULL), SIZING_KEEP);

	/* malformed or missing input */
	assert_int_equal(sizing_judge(NULL, "1Gi", 0, &v, &req, &target), -EINVAL);
	assert_int_equal(sizing_judge("1Gi", NULL, 0, &v, &req, &target), -EINVAL);
	assert_int_equal(sizing_judge("1Gb", "1Gi", 0, &v, &req, &target), -EINVAL);
	assert_int_equal(sizing_judge("1Gi", "lots", 0, &v, &req, &target), -EINVAL);
	assert_int_equal(sizing_judge("0", "1Gi", 0, &v, &req, &target), -EINVAL);
	assert_int_equal(sizing_judge("100Ei", "1Gi", 0, &v, &req, &target), -ERANGE);
	/* a request so large that rounding it up overflows */
	assert_int_equal(sizing_judge("18446744073709551615", "1Gi", 0, &v, &req, &target),
			 -ERANGE);
}

static void test_resize_conditions(void **state)
{
	(void)state;
	assert_true(sizing_is_resize_condition("Resizing"));
	assert_true(sizing_is_resize_condition("FileSystemResizePending"));
	assert_false(sizing_is_resize_condition("Ready"));
	assert_false(sizing_is_resize_condition("resizing"));
	assert_false(sizing_is_resize_condition(NULL));
}

static json_t *claim_json(const char *text)
{
	json_error_t err;
	json_t *c = json_loads(text, 0, &err);

	if (!c)
		fail_msg("bad test JSON: %s", err.text);
	return c;
}

static void test_claim_status_patch(void **state)
{
	json_t *claim, *patch, *conds;
	bool needed = false;
	char *text;

	(void)state;
	/* capacity behind, no conditions: only the capacity is patched */
	claim = claim_json(
		"{\"status\": {\"phase\": \"Bound\", \"capacity\": {\"storage\": \"64Mi\"}}}");
	assert_int_equal(sizing_claim_status_patch(claim, 128 * MiB, &patch, &needed), 0);
	assert_true(needed);
	text = json_dumps(patch, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "{\"status\":{\"capacity\":{\"storage\":\"128Mi\"}}}");
	free(text);
	json_decref(patch);

	/* already there: nothing to do */
	assert_int_equal(sizing_claim_status_patch(claim, 64 * MiB, &patch, &needed), 0);
	assert_false(needed);
	assert_null(patch);
	json_decref(claim);

	/* the same size spelt otherwise is the same size */
	claim = claim_json("{\"status\": {\"capacity\": {\"storage\": \"67108864\"}}}");
	assert_int_equal(sizing_claim_status_patch(claim, 64 * MiB, &patch, &needed), 0);
	assert_false(needed);
	json_decref(claim);

	/* resize conditions go, others stay, in order */
	claim = claim_json("{\"status\": {\"capacity\": {\"storage\": \"128Mi\"}, \"conditions\": ["
			   "{\"type\": \"Resizing\", \"status\": \"True\"},"
			   "{\"type\": \"Other\", \"status\": \"True\"},"
			   "{\"type\": \"FileSystemResizePending\", \"status\": \"True\"}]}}");
	assert_int_equal(sizing_claim_status_patch(claim, 128 * MiB, &patch, &needed), 0);
	assert_true(needed);
	conds = json_object_get(json_object_get(patch, "status"), "conditions");
	assert_int_equal(json_array_size(conds), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(conds, 0), "type")),
			    "Other");
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_object_get(patch, "status"), "capacity"),
				    "storage")),
			    "128Mi");
	json_decref(patch);
	json_decref(claim);

	/* only a resize condition: the list is emptied, not left as it was */
	claim = claim_json("{\"status\": {\"capacity\": {\"storage\": \"128Mi\"}, \"conditions\": ["
			   "{\"type\": \"Resizing\", \"status\": \"True\"}]}}");
	assert_int_equal(sizing_claim_status_patch(claim, 128 * MiB, &patch, &needed), 0);
	assert_true(needed);
	conds = json_object_get(json_object_get(patch, "status"), "conditions");
	assert_true(json_is_array(conds));
	assert_int_equal(json_array_size(conds), 0);
	json_decref(patch);
	json_decref(claim);

	/* no status at all (a list item seen early) */
	claim = claim_json("{}");
	assert_int_equal(sizing_claim_status_patch(claim, 4096, &patch, &needed), 0);
	assert_true(needed);
	text = json_dumps(patch, JSON_COMPACT);
	assert_string_equal(text, "{\"status\":{\"capacity\":{\"storage\":\"4Ki\"}}}");
	free(text);
	json_decref(patch);
	json_decref(claim);
}

static void test_allocatable(void **state)
{
	(void)state;
	assert_int_equal(sizing_allocatable(10 * GiB, 1.0, 3 * GiB), 7 * GiB);
	/* exact to the byte, with ratio 1, even for odd and huge figures */
	assert_int_equal(sizing_allocatable(1234567891, 1.0, 1), 1234567890);
	assert_int_equal(sizing_allocatable(UINT64_MAX - 1, 1.0, 0), UINT64_MAX - 1);
	/* never below zero */
	assert_int_equal(sizing_allocatable(GiB, 1.0, 2 * GiB), 0);
	assert_int_equal(sizing_allocatable(GiB, 1.0, GiB), 0);
	assert_int_equal(sizing_allocatable(0, 4.0, 0), 0);
	/* overcommit multiplies the free space, not the committed bytes */
	assert_int_equal(sizing_allocatable(10 * GiB, 1.5, 5 * GiB), 10 * GiB);
	assert_int_equal(sizing_allocatable(10 * GiB, 0.5, GiB), 4 * GiB);
	/* a fractional product is rounded down */
	assert_int_equal(sizing_allocatable(3, 0.5, 0), 1);
	/* saturates */
	assert_int_equal(sizing_allocatable(UINT64_MAX, 1000.0, 0), UINT64_MAX);
	/* a nonsense ratio counts as 1 */
	assert_int_equal(sizing_allocatable(5 * GiB, 0.0, GiB), 4 * GiB);
	assert_int_equal(sizing_allocatable(5 * GiB, -2.0, GiB), 4 * GiB);
	assert_int_equal(sizing_allocatable(5 * GiB, NAN, GiB), 4 * GiB);
	assert_int_equal(sizing_allocatable(5 * GiB, INFINITY, GiB), 4 * GiB);
}

/* A label value: at most 63 characters of [A-Za-z0-9], '-', '_', '.', alphanumeric at both ends. */
static bool valid_label_value(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return true;
	if (n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			     (c >= 'A' && c <= 'Z');

		if (!alnum && !((c == '-' || c == '_' || c == '.') && i > 0 && i < n - 1))
			return false;
	}
	return true;
}

static void test_formats(void **state)
{
	char buf[SIZING_DECIMAL_MAX], small[3];

	(void)state;
	assert_int_equal(sizing_format_bytes(7 * GiB + 5, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "7516192773");
	assert_int_equal(sizing_format_bytes(UINT64_MAX, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "18446744073709551615");
	assert_int_equal(sizing_format_bytes(0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0");
	assert_int_equal(sizing_format_bytes(1000, small, sizeof(small)), -ENOSPC);

	/* whole GiB, rounded down */
	assert_int_equal(sizing_format_gib(GiB - 1, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0");
	assert_int_equal(sizing_format_gib(GiB, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1");
	assert_int_equal(sizing_format_gib(100 * GiB - 1, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "99");
	assert_true(valid_label_value(buf));
	assert_int_equal(sizing_format_gib(UINT64_MAX, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "17179869183");
	assert_true(valid_label_value(buf));
	assert_int_equal(sizing_format_gib(1000 * GiB, small, sizeof(small)), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_up),
		cmocka_unit_test(test_judge),
		cmocka_unit_test(test_resize_conditions),
		cmocka_unit_test(test_claim_status_patch),
		cmocka_unit_test(test_allocatable),
		cmocka_unit_test(test_formats),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
