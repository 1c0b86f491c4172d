/*
 * Tests for dynspec.c: class parameters and claim annotations with their
 * bounds and errors, which claims are served, sizes, the daemon's create
 * request, reuse of an earlier volume, and the PV.
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

#include "dynamic/dynspec.h"

#define MiB (UINT64_C(1) << 20)

static struct errmsg errm;
static const char *const err = errm.text;

static json_t *json(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	if (!j)
		fail_msg("bad test JSON: %s: %s", e.text, text);
	return j;
}

static int resolve(const char *params, const char *annotations, struct dynspec_params *ret)
{
	json_t *p = params ? json(params) : NULL, *a = annotations ? json(annotations) : NULL;
	int r;

	errm.text[0] = '\0';
	r = dynspec_params_resolve(p, a, ret, &errm);
	json_decref(p);
	json_decref(a);
	return r;
}

static void expect_refused(const char *params, const char *annotations, const char *want)
{
	struct dynspec_params out;
	int r = resolve(params, annotations, &out);

	if (r != -EINVAL || !strstr(err, want))
		fail_msg("params %s, annotations %s: r=%d err \"%s\", want \"%s\"", params,
			 annotations, r, err, want);
}

static void test_params_from_class_and_claim(void **state)
{
	struct dynspec_params p;

	(void)state;
	assert_int_equal(resolve(NULL, NULL, &p), 0);
	for (int i = 0; i < DYNSPEC_N_PARAMS; i++)
		assert_false(p.set[i]);

	assert_int_equal(resolve("{\"inodes\": \"10k\", \"readIOPS\": \"500\", \"writeIOPS\": \"2k\","
				 " \"readBytesPerSecond\": \"100Mi\", \"writeBytesPerSecond\": \"1G\","
				 " \"burstSeconds\": \"1.5\", \"maxReadIOPS\": \"1000\"}",
				 "{\"other.io/x\": \"y\", \"carvefs.io/readIOPS\": \"1000\","
				 " \"carvefs.io/burstSeconds\": \"0.25\"}",
				 &p),
			 0);
	assert_true(p.set[DYNSPEC_INODES]);
	assert_int_equal(p.value[DYNSPEC_INODES], 10000);
	/* The claim's annotation wins, and the bound is inclusive. */
	assert_int_equal(p.value[DYNSPEC_RIOPS], 1000);
	assert_int_equal(p.value[DYNSPEC_WIOPS], 2000);
	assert_int_equal(p.value[DYNSPEC_RBPS], 100 * MiB);
	assert_int_equal(p.value[DYNSPEC_WBPS], 1000000000);
	assert_int_equal(p.value[DYNSPEC_BURST_MS], 250);

	/* An annotation alone, with no class value and no bound. */
	assert_int_equal(resolve("{}", "{\"carvefs.io/writeBytesPerSecond\": \"5Mi\"}", &p), 0);
	assert_true(p.set[DYNSPEC_WBPS]);
	assert_int_equal(p.value[DYNSPEC_WBPS], 5 * MiB);
	assert_false(p.set[DYNSPEC_RBPS]);
	/* A bound alone sets nothing. */
	assert_int_equal(resolve("{\"maxInodes\": \"100\"}", NULL, &p), 0);
	assert_false(p.set[DYNSPEC_INODES]);
	/* Zero is a value (the daemon reads it as "no limit"). */
	assert_int_equal(resolve("{\"readIOPS\": \"0\"}", NULL, &p), 0);
	assert_true(p.set[DYNSPEC_RIOPS]);
	assert_int_equal(p.value[DYNSPEC_RIOPS], 0);

	assert_string_equal(dynspec_param_key(DYNSPEC_WBPS), "writeBytesPerSecond");
	assert_string_equal(dynspec_param_field(DYNSPEC_BURST_MS), "burst_ms");
	assert_null(dynspec_param_key(DYNSPEC_N_PARAMS));
}

static void test_params_refused(void **state)
{
	(void)state;
	expect_refused("{\"readIOPS\": \"-5\"}", NULL,
		       "StorageClass parameter readIOPS=\"-5\": must not be negative");
	expect_refused("{\"colour\": \"blue\"}", NULL,
		       "unknown StorageClass parameter colour=\"blue\" (known: inodes, maxInodes,");
	expect_refused("{\"inodes\": \"many\"}", NULL, "inodes=\"many\": not a quantity");
	expect_refused("{\"inodes\": \"\"}", NULL, "inodes=\"\": not a quantity");
	expect_refused("{\"inodes\": \"1e30\"}", NULL, "inodes=\"1e30\": too large");
	expect_refused("{\"inodes\": \"10000Ei\"}", NULL, "too large");
	expect_refused("{\"burstSeconds\": \"1.2345\"}", NULL,
		       "burstSeconds=\"1.2345\": finer than a millisecond");
	expect_refused("{\"burstSeconds\": \"2s\"}", NULL,
		       "burstSeconds=\"2s\": not a number of seconds");
	expect_refused("{\"burstSeconds\": \".\"}", NULL, "not a number of seconds");
	expect_refused("{\"burstSeconds\": \"100000\"}", NULL, "more than 86400 seconds");
	expect_refused("{\"readIOPS\": 5}", NULL, "readIOPS: must be a string");
	expect_refused("{\"readIOPS\": \"500\", \"maxReadIOPS\": \"100\"}", NULL,
		       "readIOPS=\"500\" is above the class's own maxReadIOPS (100)");
	expect_refused("{\"maxWriteIOPS\": \"-1\"}", NULL, "maxWriteIOPS=\"-1\": must not be negative");

	expect_refused("{\"maxReadIOPS\": \"100\"}", "{\"carvefs.io/readIOPS\": \"500\"}",
		       "annotation carvefs.io/readIOPS=\"500\" is above the class's maxReadIOPS (100)");
	expect_refused("{\"maxInodes\": \"1k\"}", "{\"carvefs.io/inodes\": \"1001\"}",
		       "maxInodes (1000)");
	expect_refused(NULL, "{\"carvefs.io/speed\": \"fast\"}",
		       "unknown annotation carvefs.io/speed=\"fast\" (a claim may set: inodes, readIOPS,");
	expect_refused(NULL, "{\"carvefs.io/maxReadIOPS\": \"9\"}",
		       "carvefs.io/maxReadIOPS=\"9\"");
	expect_refused(NULL, "{\"carvefs.io/writeIOPS\": \"-1\"}",
		       "annotation carvefs.io/writeIOPS=\"-1\": must not be negative");
	expect_refused(NULL, "{\"carvefs.io/writeIOPS\": \"1.5.5\"}", "not a quantity");
}

static const char *claim_text =
	"{\"metadata\": {\"name\": \"data\", \"namespace\": \"team\", \"uid\": \"u-1\","
	" \"resourceVersion\": \"42\", \"annotations\": {"
	" \"volume.kubernetes.io/selected-node\": \"node-1\","
	" \"volume.beta.kubernetes.io/storage-provisioner\": \"carvefs.io/local\"}},"
	" \"spec\": {\"accessModes\": [\"ReadWriteOnce\"], \"storageClassName\": \"fast\","
	" \"resources\": {\"requests\": {\"storage\": \"100Mi\"}}},"
	" \"status\": {\"phase\": \"Pending\"}}";

static json_t *claim_with(const char *path_a, const char *path_b, json_t *value)
{
	json_t *c = json(claim_text), *parent = json_object_get(c, path_a);

	if (value)
		json_object_set_new(parent, path_b, value);
	else
		json_object_del(parent, path_b);
	return c;
}

static void test_claim_wanted(void **state)
{
	json_t *c = json(claim_text), *anns;

	(void)state;
	assert_true(dynspec_claim_wanted(c, "node-1"));
	assert_false(dynspec_claim_wanted(c, "node-2"));
	/* The GA annotation does as well as the beta one. */
	anns = json_object_get(json_object_get(c, "metadata"), "annotations");
	json_object_del(anns, DYNSPEC_ANN_PROVISIONER_BETA);
	assert_false(dynspec_claim_wanted(c, "node-1"));
	json_object_set_new(anns, DYNSPEC_ANN_PROVISIONER, json_string("carvefs.io/local"));
	assert_true(dynspec_claim_wanted(c, "node-1"));
	/* The name a CSIDriver object can carry serves as well as the old one. */
	json_object_set_new(anns, DYNSPEC_ANN_PROVISIONER, json_string("local.carvefs.io"));
	assert_true(dynspec_claim_wanted(c, "node-1"));
	json_object_set_new(anns, DYNSPEC_ANN_PROVISIONER, json_string("other.io/x"));
	assert_false(dynspec_claim_wanted(c, "node-1"));
	json_object_set_new(anns, DYNSPEC_ANN_PROVISIONER, json_string("carvefs.io"));
	assert_false(dynspec_claim_wanted(c, "node-1"));
	json_decref(c);

	c = claim_with("status", "phase", json_string("Bound"));
	assert_false(dynspec_claim_wanted(c, "node-1"));
	json_decref(c);
	c = claim_with("status", "phase", NULL);
	assert_true(dynspec_claim_wanted(c, "node-1"));
	json_decref(c);
	c = claim_with("spec", "volumeName", json_string("pvc-u-1"));
	assert_false(dynspec_claim_wanted(c, "node-1"));
	json_decref(c);
	c = claim_with("metadata", "deletionTimestamp", json_string("2026-01-01T00:00:00Z"));
	assert_false(dynspec_claim_wanted(c, "node-1"));
	json_decref(c);
}

static void test_claim_grows(void **state)
{
	json_t *c = claim_with("status", "phase", json_string("Bound")), *status;

	(void)state;
	status = json_object_get(c, "status");
	/* No capacity in the status yet: nothing to compare with. */
	assert_false(dynspec_claim_grows(c, "node-1"));
	json_object_set_new(status, "capacity", json_pack("{s:s}", "storage", "16Mi"));
	json_object_set_new(json_object_get(json_object_get(json_object_get(c, "spec"), "resources"),
					    "requests"),
			    "storage", json_string("32Mi"));
	assert_true(dynspec_claim_grows(c, "node-1"));
	assert_false(dynspec_claim_grows(c, "node-2"));
	/* Asking for what it has, or less, is no growth. */
	json_object_set_new(status, "capacity", json_pack("{s:s}", "storage", "32Mi"));
	assert_false(dynspec_claim_grows(c, "node-1"));
	json_object_set_new(status, "capacity", json_pack("{s:s}", "storage", "1Gi"));
	assert_false(dynspec_claim_grows(c, "node-1"));
	json_object_set_new(status, "capacity", json_pack("{s:s}", "storage", "bad"));
	assert_false(dynspec_claim_grows(c, "node-1"));
	/* Pending claims and other provisioners' claims are not ours to grow. */
	json_object_set_new(status, "capacity", json_pack("{s:s}", "storage", "16Mi"));
	json_object_set_new(status, "phase", json_string("Pending"));
	assert_false(dynspec_claim_grows(c, "node-1"));
	json_object_set_new(status, "phase", json_string("Bound"));
	json_object_del(json_object_get(json_object_get(c, "metadata"), "annotations"),
			DYNSPEC_ANN_PROVISIONER_BETA);
	assert_false(dynspec_claim_grows(c, "node-1"));
	json_decref(c);
}

static void expect_size(const char *storage, uint64_t want, const char *want_err)
{
	json_t *c = json(claim_text);
	uint64_t size = 0;
	int r;

	json_object_set_new(json_object_get(json_object_get(json_object_get(c, "spec"), "resources"),
					    "requests"),
			    "storage", json_string(storage));
	r = dynspec_claim_size(c, &size, &errm);
	if (want_err) {
		if (r != -EINVAL || !strstr(err, want_err))
			fail_msg("%s: r=%d err \"%s\"", storage, r, err);
	} else {
		assert_int_equal(r, 0);
		assert_int_equal(size, want);
	}
	json_decref(c);
}

static void test_claim_size(void **state)
{
	json_t *c;
	uint64_t size;

	(void)state;
	expect_size("100Mi", 100 * MiB, NULL);
	expect_size("1", 4096, NULL);
	expect_size("4097", 8192, NULL);
	expect_size("1G", 1000001536, NULL); /* 10^9 rounded up to 4 KiB */
	expect_size("0", 0, "is zero");
	expect_size("lots", 0, "\"lots\" is not a quantity");
	expect_size("-1Gi", 0, "not a quantity");
	expect_size("100Ei", 0, "too large");

	c = claim_with("spec", "resources", json_object());
	assert_int_equal(dynspec_claim_size(c, &size, &errm), -EINVAL);
	assert_non_null(strstr(err, "requests no storage size"));
	json_decref(c);
}

static void test_claim_supported(void **state)
{
	json_t *c = json(claim_text);

	(void)state;
	assert_int_equal(dynspec_claim_supported(c, &errm), 0);
	json_decref(c);
	c = claim_with("spec", "volumeMode", json_string("Block"));
	assert_int_equal(dynspec_claim_supported(c, &errm), -EINVAL);
	assert_non_null(strstr(err, "volumeMode Block is not supported"));
	json_decref(c);
	c = claim_with("spec", "volumeMode", json_string("Filesystem"));
	assert_int_equal(dynspec_claim_supported(c, &errm), 0);
	json_decref(c);
	c = claim_with("spec", "selector", json("{\"matchLabels\": {\"a\": \"b\"}}"));
	assert_int_equal(dynspec_claim_supported(c, &errm), -EINVAL);
	assert_non_null(strstr(err, "selector"));
	json_decref(c);
	c = claim_with("spec", "dataSource", json("{\"kind\": \"PersistentVolumeClaim\", \"name\": \"x\"}"));
	assert_int_equal(dynspec_claim_supported(c, &errm), -EINVAL);
	assert_non_null(strstr(err, "data source"));
	json_decref(c);
}

static void test_volume_name_and_request(void **state)
{
	struct dynspec_params p = { 0 };
	json_t *c = json(claim_text), *req = NULL, *labels;
	char *name = NULL;

	(void)state;
	assert_int_equal(dynspec_volume_name(c, &name), 0);
	assert_string_equal(name, "pvc-u-1");

	p.set[DYNSPEC_RIOPS] = true;
	p.value[DYNSPEC_RIOPS] = 500;
	p.set[DYNSPEC_BURST_MS] = true;
	p.value[DYNSPEC_BURST_MS] = 1500;
	assert_int_equal(dynspec_create_request(name, 100 * MiB, &p, "fast", c, 1.5, &req), 0);
	assert_string_equal(json_string_value(json_object_get(req, "verb")), "create");
	assert_string_equal(json_string_value(json_object_get(req, "name")), "pvc-u-1");
	assert_int_equal(json_integer_value(json_object_get(req, "size_bytes")), 100 * MiB);
	assert_int_equal(json_integer_value(json_object_get(req, "riops")), 500);
	assert_int_equal(json_integer_value(json_object_get(req, "burst_ms")), 1500);
	assert_null(json_object_get(req, "wiops"));
	assert_null(json_object_get(req, "inodes"));
	assert_true(json_real_value(json_object_get(req, "overcommit")) == 1.5);
	assert_string_equal(json_string_value(json_object_get(req, "storage_class")), "fast");
	labels = json_object_get(req, "labels");
	assert_int_equal(json_object_size(labels), 3);
	assert_string_equal(json_string_value(json_object_get(labels, DYNSPEC_LABEL_CLAIM_NAMESPACE)),
			    "team");
	assert_string_equal(json_string_value(json_object_get(labels, DYNSPEC_LABEL_CLAIM_NAME)),
			    "data");
	assert_string_equal(json_string_value(json_object_get(labels, DYNSPEC_LABEL_CLAIM_UID)),
			    "u-1");
	json_decref(req);
	/* Without a ratio the daemon only checks the pool's filesystem. */
	assert_int_equal(dynspec_create_request(name, 4096, NULL, NULL, c, 0, &req), 0);
	assert_null(json_object_get(req, "overcommit"));
	assert_null(json_object_get(req, "storage_class"));
	json_decref(req);
	free(name);
	json_decref(c);

	c = claim_with("metadata", "uid", NULL);
	assert_int_equal(dynspec_volume_name(c, &name), -EINVAL);
	assert_int_equal(dynspec_create_request("pvc-x", 4096, NULL, NULL, c, 0, &req), -EINVAL);
	json_decref(c);
}

static void test_volume_matches(void **state)
{
	json_t *c = json(claim_text);
	json_t *v = json("{\"name\": \"pvc-u-1\", \"capacity_bytes\": 104857600,"
			 " \"labels\": {\"carvefs.io/claim-uid\": \"u-1\"}}");
	json_t *other = json("{\"name\": \"pvc-u-1\", \"capacity_bytes\": 104857600,"
			     " \"labels\": {\"carvefs.io/claim-uid\": \"u-2\"}}");
	json_t *bare = json("{\"name\": \"pvc-u-1\", \"capacity_bytes\": 104857600}");

	(void)state;
	assert_true(dynspec_volume_matches(v, c, 100 * MiB));
	assert_false(dynspec_volume_matches(v, c, 200 * MiB));
	assert_false(dynspec_volume_matches(other, c, 100 * MiB));
	assert_false(dynspec_volume_matches(bare, c, 100 * MiB));
	json_decref(v);
	json_decref(other);
	json_decref(bare);
	json_decref(c);
}

static void test_pv_build(void **state)
{
	json_t *c = json(claim_text), *pv = NULL, *spec, *ref, *expr;
	json_t *sc = json("{\"metadata\": {\"name\": \"fast\"}, \"provisioner\": \"carvefs.io/local\","
			  " \"reclaimPolicy\": \"Retain\", \"mountOptions\": [\"noatime\"]}");
	struct dynspec_pv_request req = { .claim = c,
					  .storage_class = sc,
					  .name = "pvc-u-1",
					  .path = "/mnt/carvefs/pvc-u-1",
					  .hostname = "host-1",
					  .capacity_bytes = 100 * MiB };

	(void)state;
	assert_int_equal(dynspec_pv_build(&req, &pv, &errm), 0);
	assert_string_equal(json_string_value(json_object_get(json_object_get(pv, "metadata"), "name")),
			    "pvc-u-1");
	/* provisioned-by is the class's own name for carvefs. */
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_object_get(pv, "metadata"), "annotations"),
				    "pv.kubernetes.io/provisioned-by")),
			    "carvefs.io/local");
	assert_true(dynspec_pv_ours(pv));
	assert_true(dynspec_pv_for_claim(pv, "u-1"));
	assert_false(dynspec_pv_for_claim(pv, "u-2"));
	assert_string_equal(dynspec_pv_volume(pv), "pvc-u-1");
	spec = json_object_get(pv, "spec");
	assert_string_equal(json_string_value(json_object_get(json_object_get(spec, "capacity"),
							      "storage")),
			    "100Mi");
	assert_string_equal(json_string_value(json_object_get(json_object_get(spec, "local"), "path")),
			    "/mnt/carvefs/pvc-u-1");
	assert_string_equal(json_string_value(json_object_get(spec, "persistentVolumeReclaimPolicy")),
			    "Retain");
	assert_string_equal(json_string_value(json_object_get(spec, "storageClassName")), "fast");
	assert_string_equal(json_string_value(json_object_get(spec, "volumeMode")), "Filesystem");
	assert_string_equal(json_string_value(json_array_get(json_object_get(spec, "mountOptions"), 0)),
			    "noatime");
	assert_string_equal(json_string_value(json_array_get(json_object_get(spec, "accessModes"), 0)),
			    "ReadWriteOnce");
	ref = json_object_get(spec, "claimRef");
	assert_string_equal(json_string_value(json_object_get(ref, "kind")), "PersistentVolumeClaim");
	assert_string_equal(json_string_value(json_object_get(ref, "namespace")), "team");
	assert_string_equal(json_string_value(json_object_get(ref, "name")), "data");
	assert_string_equal(json_string_value(json_object_get(ref, "resourceVersion")), "42");
	expr = json_array_get(json_object_get(json_array_get(json_object_get(json_object_get(
							    json_object_get(spec, "nodeAffinity"),
							    "required"), "nodeSelectorTerms"), 0),
						    "matchExpressions"),
			      0);
	assert_string_equal(json_string_value(json_object_get(expr, "key")), "kubernetes.io/hostname");
	assert_string_equal(json_string_value(json_array_get(json_object_get(expr, "values"), 0)),
			    "host-1");
	json_decref(pv);
	pv = NULL;

	/* No reclaim policy means Delete; an odd size stays exact. */
	json_object_del(sc, "reclaimPolicy");
	json_object_del(sc, "mountOptions");
	req.capacity_bytes = 100 * MiB + 4096;
	assert_int_equal(dynspec_pv_build(&req, &pv, &errm), 0);
	spec = json_object_get(pv, "spec");
	assert_string_equal(json_string_value(json_object_get(spec, "persistentVolumeReclaimPolicy")),
			    "Delete");
	assert_null(json_object_get(spec, "mountOptions"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(spec, "capacity"),
							      "storage")),
			    "102404Ki");
	json_decref(pv);
	pv = NULL;

	json_object_set_new(sc, "provisioner", json_string("local.carvefs.io"));
	assert_int_equal(dynspec_pv_build(&req, &pv, &errm), 0);
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_object_get(pv, "metadata"), "annotations"),
				    "pv.kubernetes.io/provisioned-by")),
			    "local.carvefs.io");
	assert_true(dynspec_pv_ours(pv));
	json_decref(pv);
	pv = NULL;

	json_object_set_new(sc, "provisioner", json_string("other.io/x"));
	assert_int_equal(dynspec_pv_build(&req, &pv, &errm), -EINVAL);
	assert_null(pv);
	json_object_set_new(sc, "provisioner", json_string("local.carvefs.io"));

	json_object_set_new(sc, "reclaimPolicy", json_string("Recycle"));
	assert_int_equal(dynspec_pv_build(&req, &pv, &errm), -EINVAL);
	assert_non_null(strstr(err, "reclaimPolicy Recycle is not supported"));
	assert_null(pv);
	json_decref(sc);
	json_decref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params_from_class_and_claim),
		cmocka_unit_test(test_params_refused),
		cmocka_unit_test(test_claim_wanted),
		cmocka_unit_test(test_claim_grows),
		cmocka_unit_test(test_claim_size),
		cmocka_unit_test(test_claim_supported),
		cmocka_unit_test(test_volume_name_and_request),
		cmocka_unit_test(test_volume_matches),
		cmocka_unit_test(test_pv_build),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
