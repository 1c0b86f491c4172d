/*
 * Tests for pv.c: PV names (the upstream provisioner's FNV-1a vectors),
 * capacity rounding at its boundaries, the PV object's fields with and
 * without a cluster, matching by node and path, and manifests.
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

#include "config.h"
#include "pv.h"

#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)

static struct prov_config *config_of(const char *scm, const char *node_labels,
				     const char *labels, bool owner_ref, bool name_only)
{
	struct provconfig_snapshot *snap = NULL;
	struct prov_config *c = NULL;
	struct errmsg err;

	assert_int_equal(provconfig_snapshot_new(&snap), 0);
	assert_int_equal(provconfig_snapshot_add(snap, "storageClassMap", scm, strlen(scm)), 0);
	if (node_labels)
		assert_int_equal(provconfig_snapshot_add(snap, "nodeLabelsForPV", node_labels,
							 strlen(node_labels)),
				 0);
	if (labels)
		assert_int_equal(provconfig_snapshot_add(snap, "labelsForPV", labels, strlen(labels)),
				 0);
	if (owner_ref)
		assert_int_equal(provconfig_snapshot_add(snap, "setPVOwnerRef", "true", 4), 0);
	if (name_only)
		assert_int_equal(provconfig_snapshot_add(snap, "useNodeNameOnly", "true", 4), 0);
	if (provconfig_parse(snap, &c, &err) != 0)
		fail_msg("config: %s", err.text);
	provconfig_snapshot_free(snap);
	return c;
}

static const char *str_at(const json_t *root, const char *path)
{
	/* a dotted path; numeric components index arrays */
	char buf[256], *save = NULL, *tok;
	const json_t *v = root;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save)) {
		if (json_is_array(v))
			v = json_array_get(v, strtoul(tok, NULL, 10));
		else
			v = json_object_get(v, tok);
	}
	return json_string_value(v);
}

static const json_t *at(const json_t *root, const char *path)
{
	char buf[256], *save = NULL, *tok;
	const json_t *v = root;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save)) {
		if (json_is_array(v))
			v = json_array_get(v, strtoul(tok, NULL, 10));
		else
			v = json_object_get(v, tok);
	}
	return v;
}

static void expect_name(const char *entry, const char *node, const char *cls, const char *want)
{
	char name[PV_NAME_MAX];

	pv_name(entry, node, cls, name);
	if (strcmp(name, want) != 0)
		fail_msg("(%s, %s, %s): got %s want %s", entry, node, cls, name, want);
}

static void test_names(void **state)
{
	(void)state;
	/* the vector of the upstream provisioner's own tests */
	expect_name("x1", "ubuntu-2", "local-volume", "local-pv-13be7592");
	/* computed independently (FNV-1a 32 of the concatenation) */
	expect_name("vol1", "node1", "fast-disks", "local-pv-2abde981");
	expect_name("a", "n1", "local-storage", "local-pv-1e9ced44");
	expect_name("disk-0", "n1", "local-storage", "local-pv-262d3713");
	/* no separators: only the concatenation counts */
	expect_name("x", "1ubuntu-2", "local-volume", "local-pv-13be7592");
	/* no padding: the offset basis of the empty string is 8 digits anyway */
	expect_name("", "", "", "local-pv-811c9dc5");
	/* the published FNV-1a test vectors */
	assert_int_equal(pv_fnv1a32(PV_FNV32_OFFSET, "", 0), 0x811c9dc5);
	assert_int_equal(pv_fnv1a32(PV_FNV32_OFFSET, "a", 1), 0xe40c292c);
	assert_int_equal(pv_fnv1a32(PV_FNV32_OFFSET, "foobar", 6), 0xbf9cf968);
}

static void test_names_unpadded(void **state)
{
	char name[PV_NAME_MAX];
	uint32_t h;
	char entry[16];

	(void)state;
	/* find an entry whose hash has a leading zero nibble: printed without it */
	for (int i = 0;; i++) {
		snprintf(entry, sizeof(entry), "e%d", i);
		h = pv_fnv1a32(PV_FNV32_OFFSET, entry, strlen(entry));
		h = pv_fnv1a32(h, "n", 1);
		h = pv_fnv1a32(h, "c", 1);
		if (h < 0x10000000)
			break;
	}
	pv_name(entry, "n", "c", name);
	assert_true(strlen(name) < strlen("local-pv-") + 8);
	assert_int_equal(strtoul(name + strlen("local-pv-"), NULL, 16), h);
}

static void test_capacity_round(void **state)
{
	(void)state;
	assert_int_equal(pv_capacity_round(0), 0);
	assert_int_equal(pv_capacity_round(1), 1);
	assert_int_equal(pv_capacity_round(10 * MIB - 1), 10 * MIB - 1);
	assert_int_equal(pv_capacity_round(10 * MIB), 10 * MIB);
	assert_int_equal(pv_capacity_round(10 * MIB + 1), 10 * MIB);
	assert_int_equal(pv_capacity_round(20 * MIB + 12345), 20 * MIB);
	assert_int_equal(pv_capacity_round(GIB), GIB);
	assert_int_equal(pv_capacity_round(10 * GIB - 1), 10239 * MIB);
	assert_int_equal(pv_capacity_round(10 * GIB), 10 * GIB);
	assert_int_equal(pv_capacity_round(10 * GIB + MIB), 10 * GIB);
	assert_int_equal(pv_capacity_round(15 * GIB + GIB / 2), 15 * GIB);
	assert_int_equal(pv_capacity_round(UINT64_MAX), UINT64_MAX / GIB * GIB);
}

static json_t *build(const struct pv_request *req, int want_r, const char **ret_why)
{
	json_t *pv = NULL;
	const char *why = NULL;
	int r = pv_build(req, &pv, &why);

	if (r != want_r)
		fail_msg("pv_build: r=%d want %d (%s)", r, want_r, why ? why : "");
	if (ret_why)
		*ret_why = why;
	return pv;
}

static void test_pv_without_cluster(void **state)
{
	struct prov_config *c;
	json_t *pv;

	(void)state;
	c = config_of("local-storage:\n  hostDir: /mnt/disks\n  mountDir: /mnt/disks\n"
		      "  fsType: xfs\n",
		      "- kubernetes.io/hostname\n- topology.kubernetes.io/zone\n", "tier: fast\n",
		      true, false);
	pv = build(&(struct pv_request){ .config = c,
					 .cls = &c->classes[0],
					 .node_name = "n1",
					 .entry = "a",
					 .capacity_bytes = 20 * MIB + 4096 },
		   0, NULL);
	assert_string_equal(str_at(pv, "apiVersion"), "v1");
	assert_string_equal(str_at(pv, "kind"), "PersistentVolume");
	assert_string_equal(str_at(pv, "metadata.name"), "local-pv-1e9ced44");
	assert_string_equal(pv_get_name(pv), "local-pv-1e9ced44");
	assert_string_equal(pv_get_provisioned_by(pv), "local-volume-provisioner-n1");
	/* without a cluster the one node label known is the hostname; the zone is not */
	assert_string_equal(
		json_string_value(json_object_get(at(pv, "metadata.labels"), "kubernetes.io/hostname")),
		"n1");
	assert_null(json_object_get(at(pv, "metadata.labels"), "topology.kubernetes.io/zone"));
	assert_string_equal(str_at(pv, "metadata.labels.tier"), "fast");
	/* setPVOwnerRef needs the Node's uid */
	assert_null(at(pv, "metadata.ownerReferences"));
	assert_string_equal(str_at(pv, "spec.capacity.storage"), "20Mi");
	assert_string_equal(str_at(pv, "spec.local.path"), "/mnt/disks/a");
	assert_string_equal(pv_get_path(pv), "/mnt/disks/a");
	/* fsType is for block devices only */
	assert_null(at(pv, "spec.local.fsType"));
	assert_int_equal(json_array_size(at(pv, "spec.accessModes")), 1);
	assert_string_equal(str_at(pv, "spec.accessModes.0"), "ReadWriteOnce");
	assert_string_equal(str_at(pv, "spec.persistentVolumeReclaimPolicy"), "Delete");
	assert_string_equal(str_at(pv, "spec.storageClassName"), "local-storage");
	assert_string_equal(str_at(pv, "spec.volumeMode"), "Filesystem");
	assert_null(at(pv, "spec.mountOptions"));
	assert_int_equal(json_array_size(at(pv, "spec.nodeAffinity.required.nodeSelectorTerms")), 1);
	assert_string_equal(
		str_at(pv, "spec.nodeAffinity.required.nodeSelectorTerms.0.matchExpressions.0.key"),
		"kubernetes.io/hostname");
	assert_string_equal(
		str_at(pv, "spec.nodeAffinity.required.nodeSelectorTerms.0.matchExpressions.0.operator"),
		"In");
	assert_string_equal(
		str_at(pv,
		       "spec.nodeAffinity.required.nodeSelectorTerms.0.matchExpressions.0.values.0"),
		"n1");
	assert_true(pv_on_node(pv, "n1"));
	assert_false(pv_on_node(pv, "n2"));
	json_decref(pv);

	/* a block device: fsType appears; quantities stay exact below 10 MiB */
	pv = build(&(struct pv_request){ .config = c,
					 .cls = &c->classes[0],
					 .node_name = "n1",
					 .entry = "sdb",
					 .is_block = true,
					 .capacity_bytes = 10 * MIB - 1 },
		   0, NULL);
	assert_string_equal(str_at(pv, "spec.local.fsType"), "xfs");
	assert_string_equal(str_at(pv, "spec.capacity.storage"), "10485759");
	json_decref(pv);
	provconfig_free(c);
}

static void test_pv_capacity_quantities(void **state)
{
	static const struct {
		uint64_t bytes;
		const char *want;
	} cases[] = {
		{ 10 * GIB - 1, "10239Mi" }, { 10 * GIB, "10Gi" },     { 10 * GIB + 5, "10Gi" },
		{ 11 * GIB + 3 * MIB, "11Gi" }, { 10 * MIB, "10Mi" }, { 1536 * MIB, "1536Mi" },
		{ 5000, "5000" },		{ 4096, "4Ki" },	 { 0, "0" },
	};
	struct prov_config *c = config_of("c: {hostDir: /h, mountDir: /m}", NULL, NULL, false, false);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *pv = build(&(struct pv_request){ .config = c,
							 .cls = &c->classes[0],
							 .node_name = "n",
							 .entry = "e",
							 .capacity_bytes = cases[i].bytes },
				   0, NULL);

		if (strcmp(str_at(pv, "spec.capacity.storage"), cases[i].want) != 0)
			fail_msg("%llu bytes: got %s want %s", (unsigned long long)cases[i].bytes,
				 str_at(pv, "spec.capacity.storage"), cases[i].want);
		json_decref(pv);
	}
	provconfig_free(c);
}

static void test_pv_with_cluster(void **state)
{
	struct prov_config *c;
	json_t *node, *sc, *pv;
	const char *why = NULL;

	(void)state;
	c = config_of("fast:\n  hostDir: /\n  mountDir: /mnt\n  volumeMode: Block\n"
		      "  accessMode: ReadWriteMany\n"
		      "  selector:\n  - matchExpressions:\n    - {key: zone, operator: In, values: [a]}\n",
		      "- topology.kubernetes.io/zone\n- missing-label\n", "tier: fast\n", true,
		      false);
	node = json_pack("{s:{s:s, s:s, s:{s:s, s:s, s:s}}}", "metadata", "name", "node-1", "uid",
			 "1234-abcd", "labels", "kubernetes.io/hostname", "host-1",
			 "topology.kubernetes.io/zone", "zone-a", "tier", "slow");
	sc = json_pack("{s:s, s:[s, s]}", "reclaimPolicy", "Retain", "mountOptions", "noatime",
		       "discard");
	pv = build(&(struct pv_request){ .config = c,
					 .cls = &c->classes[0],
					 .node_name = "node-1",
					 .node = node,
					 .storage_class = sc,
					 .entry = "nvme0n1",
					 .is_block = true,
					 .capacity_bytes = 100 * GIB },
		   0, NULL);
	assert_string_equal(pv_get_provisioned_by(pv), "local-volume-provisioner-node-1-1234-abcd");
	/* node labels copied, labelsForPV wins over a node label of the same name */
	assert_string_equal(str_at(pv, "metadata.labels.tier"), "fast");
	assert_string_equal(json_string_value(json_object_get(at(pv, "metadata.labels"),
							      "topology.kubernetes.io/zone")),
			    "zone-a");
	assert_null(json_object_get(at(pv, "metadata.labels"), "missing-label"));
	assert_string_equal(str_at(pv, "metadata.ownerReferences.0.kind"), "Node");
	assert_string_equal(str_at(pv, "metadata.ownerReferences.0.apiVersion"), "v1");
	assert_string_equal(str_at(pv, "metadata.ownerReferences.0.name"), "node-1");
	assert_string_equal(str_at(pv, "metadata.ownerReferences.0.uid"), "1234-abcd");
	/* hostDir "/" does not double the slash */
	assert_string_equal(pv_get_path(pv), "/nvme0n1");
	assert_string_equal(str_at(pv, "spec.persistentVolumeReclaimPolicy"), "Retain");
	assert_string_equal(str_at(pv, "spec.mountOptions.1"), "discard");
	assert_string_equal(str_at(pv, "spec.volumeMode"), "Block");
	assert_string_equal(str_at(pv, "spec.accessModes.0"), "ReadWriteMany");
	assert_string_equal(str_at(pv, "spec.capacity.storage"), "100Gi");
	/* affinity on the hostname label, not the node name, then the class's terms */
	assert_string_equal(
		str_at(pv,
		       "spec.nodeAffinity.required.nodeSelectorTerms.0.matchExpressions.0.values.0"),
		"host-1");
	assert_string_equal(
		str_at(pv, "spec.nodeAffinity.required.nodeSelectorTerms.1.matchExpressions.0.key"),
		"zone");
	assert_true(pv_on_node(pv, "host-1"));
	assert_false(pv_on_node(pv, "node-1"));
	json_decref(pv);
	provconfig_free(c);

	/* useNodeNameOnly */
	c = config_of("c: {hostDir: /h, mountDir: /m}", NULL, NULL, false, true);
	pv = build(&(struct pv_request){ .config = c,
					 .cls = &c->classes[0],
					 .node_name = "node-1",
					 .node = node,
					 .entry = "e" },
		   0, NULL);
	assert_string_equal(pv_get_provisioned_by(pv), "local-volume-provisioner-node-1");
	json_decref(pv);

	/* an unsupported reclaim policy */
	json_object_set_new(sc, "reclaimPolicy", json_string("Recycle"));
	pv = build(&(struct pv_request){ .config = c,
					 .cls = &c->classes[0],
					 .node_name = "node-1",
					 .node = node,
					 .storage_class = sc,
					 .entry = "e" },
		   -EINVAL, &why);
	assert_null(pv);
	assert_non_null(strstr(why, "reclaimPolicy"));

	/* a node without the hostname label */
	json_object_del(json_object_get(json_object_get(node, "metadata"), "labels"),
			"kubernetes.io/hostname");
	pv = build(&(struct pv_request){ .config = c,
					 .cls = &c->classes[0],
					 .node_name = "node-1",
					 .node = node,
					 .entry = "e" },
		   -ENODATA, &why);
	assert_null(pv);
	assert_non_null(strstr(why, "kubernetes.io/hostname"));
	assert_null(pv_node_hostname("node-1", node));
	assert_string_equal(pv_node_hostname("node-1", NULL), "node-1");

	/* an entry that is not UTF-8 */
	pv = build(&(struct pv_request){ .config = c,
					 .cls = &c->classes[0],
					 .node_name = "n",
					 .entry = "bad\xff" },
		   -EILSEQ, &why);
	assert_null(pv);
	assert_non_null(why);

	json_decref(node);
	json_decref(sc);
	provconfig_free(c);
}

static void test_provisioner_name(void **state)
{
	json_t *node = json_pack("{s:{s:s}}", "metadata", "uid", "u-1");
	json_t *no_uid = json_pack("{s:{s:s}}", "metadata", "name", "n");
	char *s = NULL;

	(void)state;
	assert_int_equal(pv_provisioner_name("n", NULL, false, &s), 0);
	assert_string_equal(s, "local-volume-provisioner-n");
	free(s);
	assert_int_equal(pv_provisioner_name("n", node, false, &s), 0);
	assert_string_equal(s, "local-volume-provisioner-n-u-1");
	free(s);
	assert_int_equal(pv_provisioner_name("n", node, true, &s), 0);
	assert_string_equal(s, "local-volume-provisioner-n");
	free(s);
	assert_int_equal(pv_provisioner_name("n", no_uid, false, &s), 0);
	assert_string_equal(s, "local-volume-provisioner-n");
	free(s);
	json_decref(node);
	json_decref(no_uid);
}

static void test_find(void **state)
{
	struct prov_config *c = config_of("a: {hostDir: /mnt/a, mountDir: /a}\n"
					  "b: {hostDir: /mnt/a, mountDir: /b}\n",
					  NULL, NULL, false, false);
	json_t *pvs = json_array(), *pv1, *pv2, *other;

	(void)state;
	pv1 = build(&(struct pv_request){ .config = c, .cls = &c->classes[0], .node_name = "n1",
					  .entry = "x" },
		    0, NULL);
	pv2 = build(&(struct pv_request){ .config = c, .cls = &c->classes[0], .node_name = "n2",
					  .entry = "x" },
		    0, NULL);
	other = json_pack("{s:s}", "kind", "PersistentVolume"); /* no spec: never matches */
	json_array_append_new(pvs, other);
	json_array_append_new(pvs, pv1);
	json_array_append_new(pvs, pv2);
	assert_ptr_equal(pv_find(pvs, "n1", "/mnt/a/x"), pv1);
	assert_ptr_equal(pv_find(pvs, "n2", "/mnt/a/x"), pv2);
	assert_null(pv_find(pvs, "n3", "/mnt/a/x"));
	assert_null(pv_find(pvs, "n1", "/mnt/a/y"));
	/* class b has the same hostDir: its volume matches by path, whatever its name */
	{
		json_t *pvb = build(&(struct pv_request){ .config = c, .cls = &c->classes[1],
							  .node_name = "n1", .entry = "x" },
				    0, NULL);

		assert_string_not_equal(pv_get_name(pvb), pv_get_name(pv1));
		assert_ptr_equal(pv_find(pvs, "n1", pv_get_path(pvb)), pv1);
		json_decref(pvb);
	}
	assert_null(pv_find(NULL, "n1", "/mnt/a/x"));
	json_decref(pvs);
	provconfig_free(c);
}

static void test_manifest_round_trip(void **state)
{
	struct prov_config *c = config_of("local-storage: {hostDir: /mnt/disks, mountDir: /m}",
					  NULL, "tier: fast\n", false, false);
	json_t *pv, *back = NULL;
	char *text = NULL;
	size_t len = 0;

	(void)state;
	pv = build(&(struct pv_request){ .config = c,
					 .cls = &c->classes[0],
					 .node_name = "n1",
					 .entry = "a",
					 .capacity_bytes = 20 * MIB },
		   0, NULL);
	/* values a YAML reader would take for something else */
	json_object_set_new(json_object_get(pv, "metadata"), "extra",
			    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:b, s:n, s:f, s:[], s:{}}",
				      "t", "true", "y", "yes", "num", "123", "e", "", "f", "1.5",
				      "c", "a: b", "h", "# not a comment", "int", 42, "bool", 1,
				      "null", "real", 2.5, "ea", "eo"));
	assert_int_equal(pv_manifest_format(pv, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	assert_true(len > 0 && text[len - 1] == '\n');
	assert_non_null(strstr(text, "apiVersion: v1\n"));
	assert_non_null(strstr(text, "  name: local-pv-1e9ced44\n"));
	assert_non_null(strstr(text, "storage: \"20Mi\"\n"));
	assert_non_null(strstr(text, "t: \"true\"\n"));
	assert_non_null(strstr(text, "num: \"123\"\n"));
	assert_non_null(strstr(text, "e: \"\"\n"));
	assert_non_null(strstr(text, "int: 42\n"));
	assert_non_null(strstr(text, "path: /mnt/disks/a\n"));

	assert_int_equal(pv_manifest_parse(text, len, &back), 0);
	if (!json_equal(pv, back)) {
		char *a = json_dumps(pv, JSON_SORT_KEYS), *b = json_dumps(back, JSON_SORT_KEYS);

		fail_msg("round trip differs:\n%s\n%s\n%s", text, a, b);
	}
	json_decref(back);
	free(text);
	json_decref(pv);
	provconfig_free(c);
}

static void test_manifest_parse(void **state)
{
	static const char json_text[] = "{\"kind\": \"PersistentVolume\", \"metadata\": "
					"{\"name\": \"x\"}, \"n\": -3, \"f\": 0.5, \"b\": false}";
	json_t *v = NULL;
	char deep[1024];
	size_t n = 0;

	(void)state;
	/* JSON is YAML */
	assert_int_equal(pv_manifest_parse(json_text, strlen(json_text), &v), 0);
	assert_string_equal(pv_get_name(v), "x");
	assert_int_equal(json_integer_value(json_object_get(v, "n")), -3);
	assert_true(json_is_real(json_object_get(v, "f")));
	assert_true(json_is_false(json_object_get(v, "b")));
	json_decref(v);

	v = NULL;
	{
		static const char text[] = "a: 0x1F\nb: '7'\nc: ~\nd: 1e3\ne: .inf\n"
					   "f: 0x+1\ng: 0o17\nh: 99999999999999999999\n";

		assert_int_equal(pv_manifest_parse(text, strlen(text), &v), 0);
	}
	assert_int_equal(json_integer_value(json_object_get(v, "a")), 31);
	assert_string_equal(json_string_value(json_object_get(v, "b")), "7");
	assert_true(json_is_null(json_object_get(v, "c")));
	assert_true(json_is_real(json_object_get(v, "d")));
	assert_true(json_is_string(json_object_get(v, "e")));
	assert_string_equal(json_string_value(json_object_get(v, "e")), ".inf");
	assert_string_equal(json_string_value(json_object_get(v, "f")), "0x+1");
	assert_int_equal(json_integer_value(json_object_get(v, "g")), 15);
	assert_true(json_real_value(json_object_get(v, "h")) == 1e20);
	json_decref(v);

	v = NULL;
	assert_int_equal(pv_manifest_parse("- a\n", 4, &v), -EBADMSG);
	assert_int_equal(pv_manifest_parse("", 0, &v), -EBADMSG);
	assert_int_equal(pv_manifest_parse("a: [b\n", 6, &v), -EBADMSG);
	assert_int_equal(pv_manifest_parse("? [a]\n: b\n", 10, &v), -EBADMSG);
	assert_null(v);
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{a: ");
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "}");
	assert_int_equal(pv_manifest_parse(deep, n, &v), -E2BIG);
	assert_null(v);
	assert_int_equal(pv_manifest_format(NULL, &(char *){ NULL }, &n), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_names_unpadded),
		cmocka_unit_test(test_capacity_round),
		cmocka_unit_test(test_pv_without_cluster),
		cmocka_unit_test(test_pv_capacity_quantities),
		cmocka_unit_test(test_pv_with_cluster),
		cmocka_unit_test(test_provisioner_name),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_manifest_round_trip),
		cmocka_unit_test(test_manifest_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
