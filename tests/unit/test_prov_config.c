/*
 * Tests for config.c: every key of the configuration directory, defaults,
 * errors that name file, line and key, warnings, and reading a directory
 * laid out as a mounted ConfigMap.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define SEC UINT64_C(1000000000)

static struct errmsg errm;
static const char *const err = errm.text;

/* Parses files given as name, text, name, text, ..., NULL. */
static int parse(struct prov_config **ret, ...)
{
	struct provconfig_snapshot *snap = NULL;
	const char *name;
	va_list ap;
	int r;

	assert_int_equal(provconfig_snapshot_new(&snap), 0);
	va_start(ap, ret);
	while ((name = va_arg(ap, const char *))) {
		const char *text = va_arg(ap, const char *);

		assert_int_equal(provconfig_snapshot_add(snap, name, text, strlen(text)), 0);
	}
	va_end(ap);
	r = provconfig_parse(snap, ret, &errm);
	provconfig_snapshot_free(snap);
	return r;
}

static struct prov_config *parse_ok(const char *name, const char *text)
{
	struct prov_config *c = NULL;
	int r = parse(&c, name, text, NULL);

	if (r != 0)
		fail_msg("parse failed: %d: %s", r, err);
	return c;
}

/* Expects @name/@text to fail with an error containing @want. */
static void expect_error(const char *name, const char *text, const char *want)
{
	struct prov_config *c = NULL;
	int r = parse(&c, name, text, NULL);

	if (r != -EINVAL || !strstr(err, want))
		fail_msg("%s: r=%d err \"%s\", want \"%s\"", name, r, err, want);
	assert_null(c);
}

static bool has_warning(const struct prov_config *c, const char *want)
{
	for (size_t i = 0; i < c->n_warnings; i++)
		if (strstr(c->warnings[i], want))
			return true;
	return false;
}

static void test_upstream_example(void **state)
{
	struct prov_config *c;
	const struct prov_class *fast, *local;

	(void)state;
	/* The upstream chart's ConfigMap, one key per file. */
	assert_int_equal(
		parse(&c, "storageClassMap",
		      "fast-disks:\n"
		      "   hostDir: /mnt/fast-disks\n"
		      "   mountDir:  /mnt/fast-disks\n"
		      "   blockCleanerCommand:\n"
		      "     - \"/scripts/shred.sh\"\n"
		      "     - \"2\"\n"
		      "   volumeMode: Block\n"
		      "   fsType: ext4\n"
		      "   namePattern: \"nvme*,sd?\"\n"
		      "   accessMode: ReadWriteOncePod\n"
		      "   selector:\n"
		      "   - matchExpressions:\n"
		      "     - key: topology.kubernetes.io/zone\n"
		      "       operator: In\n"
		      "       values: [zone-a, zone-b]\n"
		      "local-storage:\n"
		      "   hostDir: /mnt/disks\n"
		      "   mountDir: /mnt/disks\n",
		      "nodeLabelsForPV", "- kubernetes.io/hostname\n- topology.kubernetes.io/zone\n",
		      "labelsForPV", "tier: fast\nexample.com/owner: storage-team\nempty: \"\"\n",
		      "useNodeNameOnly", "true\n", "setPVOwnerRef", "True", "minResyncPeriod",
		      "1m30s\n", "useJobForCleaning", "false\n", NULL),
		0);
	assert_string_equal(err, "");
	assert_int_equal(c->n_warnings, 0);
	assert_int_equal(c->n_classes, 2);
	/* sorted by name */
	assert_string_equal(c->classes[0].name, "fast-disks");
	assert_string_equal(c->classes[1].name, "local-storage");

	fast = provconfig_class(c, "fast-disks");
	assert_non_null(fast);
	assert_string_equal(fast->host_dir, "/mnt/fast-disks");
	assert_string_equal(fast->mount_dir, "/mnt/fast-disks");
	assert_string_equal(fast->block_cleaner_command[0], "/scripts/shred.sh");
	assert_string_equal(fast->block_cleaner_command[1], "2");
	assert_null(fast->block_cleaner_command[2]);
	assert_int_equal(fast->volume_mode, PROV_MODE_BLOCK);
	assert_string_equal(provconfig_volume_mode_name(fast->volume_mode), "Block");
	assert_string_equal(fast->fs_type, "ext4");
	assert_string_equal(fast->access_mode, "ReadWriteOncePod");
	assert_string_equal(fast->name_patterns[0], "nvme*");
	assert_string_equal(fast->name_patterns[1], "sd?");
	assert_null(fast->name_patterns[2]);
	assert_non_null(fast->selector);
	assert_int_equal(json_array_size(fast->selector), 1);
	{
		json_t *expr = json_array_get(
			json_object_get(json_array_get(fast->selector, 0), "matchExpressions"), 0);

		assert_string_equal(json_string_value(json_object_get(expr, "key")),
				    "topology.kubernetes.io/zone");
		assert_string_equal(json_string_value(json_object_get(expr, "operator")), "In");
		assert_int_equal(json_array_size(json_object_get(expr, "values")), 2);
		assert_string_equal(
			json_string_value(json_array_get(json_object_get(expr, "values"), 1)),
			"zone-b");
	}

	local = provconfig_class(c, "local-storage");
	assert_non_null(local);
	assert_null(provconfig_class(c, "nope"));

	assert_int_equal(c->n_node_labels_for_pv, 2);
	assert_string_equal(c->node_labels_for_pv[1], "topology.kubernetes.io/zone");
	assert_int_equal(c->n_labels_for_pv, 3);
	/* sorted by key */
	assert_string_equal(c->labels_for_pv[0].key, "empty");
	assert_string_equal(c->labels_for_pv[0].value, "");
	assert_string_equal(c->labels_for_pv[1].key, "example.com/owner");
	assert_string_equal(c->labels_for_pv[1].value, "storage-team");
	assert_string_equal(c->labels_for_pv[2].key, "tier");
	assert_true(c->use_node_name_only);
	assert_true(c->set_pv_owner_ref);
	assert_int_equal(c->min_resync_period_ns, 90 * SEC);
	provconfig_free(c);
}

static void test_defaults(void **state)
{
	struct prov_config *c;
	const struct prov_class *k;

	(void)state;
	c = parse_ok("storageClassMap", "local-storage: {hostDir: /mnt/disks, mountDir: /mnt/disks}");
	assert_int_equal(c->n_classes, 1);
	k = &c->classes[0];
	assert_int_equal(k->volume_mode, PROV_MODE_FILESYSTEM);
	assert_string_equal(provconfig_volume_mode_name(k->volume_mode), "Filesystem");
	assert_string_equal(k->access_mode, "ReadWriteOnce");
	assert_null(k->fs_type);
	assert_null(k->selector);
	assert_string_equal(k->name_patterns[0], "*");
	assert_null(k->name_patterns[1]);
	assert_string_equal(k->block_cleaner_command[0], PROVCONFIG_DEFAULT_BLOCK_CLEANER);
	assert_null(k->block_cleaner_command[1]);
	assert_false(c->use_node_name_only);
	assert_false(c->set_pv_owner_ref);
	assert_int_equal(c->min_resync_period_ns, 5 * 60 * SEC);
	assert_int_equal(c->n_node_labels_for_pv, 0);
	assert_int_equal(c->n_labels_for_pv, 0);
	assert_int_equal(c->n_warnings, 0);
	provconfig_free(c);

	/* Empty strings mean "default", as upstream reads them. */
	c = parse_ok("storageClassMap",
		     "c: {hostDir: /a, mountDir: /b, volumeMode: \"\", accessMode: \"\", fsType: \"\", "
		     "namePattern: \"\", blockCleanerCommand: null, selector: []}");
	k = &c->classes[0];
	assert_int_equal(k->volume_mode, PROV_MODE_FILESYSTEM);
	assert_string_equal(k->access_mode, "ReadWriteOnce");
	assert_null(k->fs_type);
	assert_string_equal(k->name_patterns[0], "*");
	assert_string_equal(k->block_cleaner_command[0], PROVCONFIG_DEFAULT_BLOCK_CLEANER);
	assert_null(k->selector);
	provconfig_free(c);

	/* Empty files and null values leave keys unset. */
	c = parse_ok("useNodeNameOnly", "");
	assert_false(c->use_node_name_only);
	assert_true(has_warning(c, "storageClassMap"));
	provconfig_free(c);
	c = parse_ok("labelsForPV", "~\n");
	assert_int_equal(c->n_labels_for_pv, 0);
	provconfig_free(c);
}

static void test_paths_and_patterns(void **state)
{
	struct prov_config *c;

	(void)state;
	c = parse_ok("storageClassMap",
		     "a:\n  hostDir: /mnt//disks/\n  mountDir: /var/./lib/../mnt/disks/\n"
		     "  namePattern: 'vol-*,,disk?,'\n"
		     "b:\n  hostDir: /\n  mountDir: /..\n");
	assert_string_equal(c->classes[0].host_dir, "/mnt/disks");
	assert_string_equal(c->classes[0].mount_dir, "/var/mnt/disks");
	assert_string_equal(c->classes[0].name_patterns[0], "vol-*");
	assert_string_equal(c->classes[0].name_patterns[1], "disk?");
	assert_null(c->classes[0].name_patterns[2]);
	assert_string_equal(c->classes[1].host_dir, "/");
	assert_string_equal(c->classes[1].mount_dir, "/");
	provconfig_free(c);
}

static void test_malformed_yaml(void **state)
{
	(void)state;
	/* The line of the problem, 1-based, is in the message. */
	expect_error("storageClassMap",
		     "local:\n"
		     "  hostDir: /mnt/disks\n"
		     "  mountDir: [/mnt/disks\n"
		     "  volumeMode: Filesystem\n",
		     "storageClassMap:");
	assert_non_null(strstr(err, "invalid YAML"));
	expect_error("storageClassMap",
		     "local:\n"
		     "  hostDir: /mnt/disks\n"
		     " mountDir: /mnt/disks\n",
		     "storageClassMap:3: storageClassMap: invalid YAML");
	expect_error("labelsForPV", "a: b\n\tc: d\n", "labelsForPV:2: labelsForPV: invalid YAML");
	expect_error("nodeLabelsForPV", "- a\n---\n- b\n", "holds more than one YAML document");
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_error("storageClassMap", "local:\n  hostDir: /mnt/disks\n  mountDir: /mnt/disks\n"
					"  volumeMode: Blok\n",
		     "storageClassMap:4: local.volumeMode: must be \"Filesystem\" or \"Block\", not \"Blok\"");
	expect_error("storageClassMap", "local:\n  hostDir: [/mnt]\n  mountDir: /mnt\n",
		     "storageClassMap:2: local.hostDir: must be a string, not a list");
	expect_error("storageClassMap", "local:\n  hostDir: mnt/disks\n  mountDir: /mnt\n",
		     "storageClassMap:2: local.hostDir: must be an absolute path");
	expect_error("storageClassMap", "local:\n  hostDir: /a\n  mountDir: /b\n  fsType: 4\n",
		     "storageClassMap:4: local.fsType: must be a string, not a number; quote it: \"4\"");
	expect_error("storageClassMap",
		     "local:\n  hostDir: /a\n  mountDir: /b\n  blockCleanerCommand: []\n",
		     "storageClassMap:4: local.blockCleanerCommand: must not be an empty list");
	expect_error("storageClassMap",
		     "local:\n  hostDir: /a\n  mountDir: /b\n  blockCleanerCommand: /bin/true\n",
		     "local.blockCleanerCommand: must be a list of strings, not a string");
	expect_error("storageClassMap",
		     "local:\n  hostDir: /a\n  mountDir: /b\n  blockCleanerCommand: [/x, 3]\n",
		     "local.blockCleanerCommand[1]: must be a string");
	expect_error("storageClassMap",
		     "local:\n  hostDir: /a\n  mountDir: /b\n  accessMode: ReadWriteSometimes\n",
		     "storageClassMap:4: local.accessMode: must be ReadWriteOnce");
	expect_error("storageClassMap", "local:\n  hostDir: /a\n  mountDir: /b\n  hostDir: /c\n",
		     "storageClassMap:4: local.hostDir: given twice");
	expect_error("storageClassMap", "- local\n",
		     "storageClassMap:1: storageClassMap: must be a mapping of storage class names, not a list");
	expect_error("storageClassMap", "local: /mnt\n",
		     "storageClassMap:1: local: must be a mapping with hostDir and mountDir, not a string");
	expect_error("storageClassMap", "Local: {hostDir: /a, mountDir: /b}\n",
		     "storageClassMap:1: storageClassMap: \"Local\" is not a valid storage class name: must contain only lowercase letters, digits, '-' and '.'");
	expect_error("storageClassMap",
		     "a: {hostDir: /a, mountDir: /b}\nb: {hostDir: /a, mountDir: /b}\n"
		     "a: {hostDir: /a, mountDir: /b}\n",
		     "storageClassMap:3: a: storage class given twice");

	/* booleans */
	expect_error("useNodeNameOnly", "yes\n",
		     "useNodeNameOnly:1: useNodeNameOnly: must be true or false, not \"yes\"");
	expect_error("setPVOwnerRef", "\"true\"\n",
		     "setPVOwnerRef:1: setPVOwnerRef: must be true or false, not \"true\"");
	expect_error("useNodeNameOnly", "[true]\n", "must be true or false, not a list");

	/* lists and maps */
	expect_error("nodeLabelsForPV", "zone: a\n",
		     "nodeLabelsForPV:1: nodeLabelsForPV: must be a list of strings, not a mapping");
	expect_error("nodeLabelsForPV", "- a\n- b c\n",
		     "nodeLabelsForPV:2: nodeLabelsForPV[1]: \"b c\" is not a valid label name: must contain only letters");
	expect_error("labelsForPV", "- a\n", "labelsForPV:1: labelsForPV: must be a mapping");
	expect_error("labelsForPV", "a: b\ntier: 1\n",
		     "labelsForPV:2: labelsForPV.tier: must be a string, not a number; quote it: \"1\"");
	expect_error("labelsForPV", "a: b\nfast: true\n",
		     "labelsForPV:2: labelsForPV.fast: must be a string, not a boolean");
	expect_error("labelsForPV", "a: -bad\n",
		     "labelsForPV:1: labelsForPV.a: \"-bad\" is not a valid label value");
	expect_error("labelsForPV", "Bad_Prefix/x: y\n",
		     "labelsForPV:1: labelsForPV: \"Bad_Prefix/x\" is not a valid label name: prefix before '/' must contain only lowercase");
	expect_error("labelsForPV", "a: b\na: c\n", "labelsForPV:2: a: label given twice");
	expect_error("storageClassMap", "a..b: {hostDir: /a, mountDir: /b}\n",
		     "\"a..b\" is not a valid storage class name: must have a letter or digit on both sides of each '.'");
	expect_error("labelsForPV", "a..b/x: y\n",
		     "\"a..b/x\" is not a valid label name: prefix before '/' must have a letter or digit");

	/* durations */
	expect_error("minResyncPeriod", "5\n",
		     "minResyncPeriod:1: minResyncPeriod: must be a duration with a unit");
	expect_error("minResyncPeriod", "5 minutes\n",
		     "minResyncPeriod:1: minResyncPeriod: \"5 minutes\" is not a duration");
	expect_error("minResyncPeriod", "-5m\n", "minResyncPeriod: \"-5m\" is negative or too long");
}

static void test_selector_errors(void **state)
{
	static const char head[] = "local:\n  hostDir: /a\n  mountDir: /b\n  selector:\n";
	char text[512];

	(void)state;
#define SEL(body) (snprintf(text, sizeof(text), "%s%s", head, body), text)
	expect_error("storageClassMap", SEL("  - matchExpressions:\n    - key: zone\n      operator: Near\n      values: [a]\n"),
		     "storageClassMap:7: local.selector[0].matchExpressions[0].operator: must be In, NotIn");
	expect_error("storageClassMap", SEL("  - matchExpressions:\n    - key: zone\n      operator: In\n"),
		     "storageClassMap:6: local.selector[0].matchExpressions[0]: operator In needs at least one value");
	expect_error("storageClassMap", SEL("  - matchExpressions:\n    - key: zone\n      operator: Exists\n      values: [a]\n"),
		     "operator Exists takes no values");
	expect_error("storageClassMap", SEL("  - matchExpressions:\n    - key: gen\n      operator: Gt\n      values: [new]\n"),
		     "operator Gt needs an integer value");
	expect_error("storageClassMap", SEL("  - matchExpressions:\n    - operator: Exists\n"),
		     "local.selector[0].matchExpressions[0]: key is required");
	expect_error("storageClassMap", SEL("  - {}\n"),
		     "storageClassMap:5: local.selector[0]: needs matchExpressions or matchFields");
	expect_error("storageClassMap", SEL("    zone: a\n"),
		     "storageClassMap:5: local.selector: must be a list of node selector terms");
	expect_error("storageClassMap", SEL("  - matchFields: {key: x}\n"),
		     "local.selector[0].matchFields: must be a list, not a mapping");
#undef SEL
}

static void test_required(void **state)
{
	(void)state;
	expect_error("storageClassMap", "\nlocal:\n  mountDir: /mnt/disks\n",
		     "storageClassMap:2: local: hostDir is required");
	expect_error("storageClassMap", "local:\n  hostDir: /mnt/disks\n",
		     "storageClassMap:1: local: mountDir is required");
	expect_error("storageClassMap", "local:\n", "local: hostDir is required");
	expect_error("storageClassMap", "local: {hostDir: /a, mountDir: /b, namePattern: ','}\n",
		     "local.namePattern: has no pattern");
}

static void test_use_job_for_cleaning(void **state)
{
	struct prov_config *c;

	(void)state;
	expect_error("useJobForCleaning", "true\n",
		     "useJobForCleaning is not supported: carve-provisioner cleans on the node");
	c = parse_ok("useJobForCleaning", "false\n");
	provconfig_free(c);
}

static void test_warnings(void **state)
{
	struct prov_config *c = NULL;

	(void)state;
	assert_int_equal(parse(&c, "storageClassMap",
			       "local:\n  hostDir: /a\n  mountDir: /b\n  hostdir: /typo\n"
			       "  selector:\n  - matchFields:\n    - key: metadata.name\n"
			       "      operator: In\n      values: [n1]\n      weight: 3\n",
			       "useNodeNameOnIy", "true\n", "useAlphaAPI", "true\n",
			       "jobTolerations", "- key: x\n", "removeNodeNotReadyTaint", "false\n",
			       NULL),
			 0);
	assert_true(has_warning(c, "storageClassMap:4: local.hostdir: unknown field, ignored"));
	assert_true(has_warning(
		c, "storageClassMap:10: local.selector[0].matchFields[0].weight: unknown field"));
	assert_true(has_warning(c, "useNodeNameOnIy:1: useNodeNameOnIy: unknown key, ignored"));
	assert_true(has_warning(c, "useAlphaAPI:1: useAlphaAPI: not supported by carve-provisioner"));
	assert_true(has_warning(c, "jobTolerations:1: jobTolerations: not supported"));
	/* false is what not supporting it means anyway */
	assert_false(has_warning(c, "removeNodeNotReadyTaint"));
	assert_int_equal(c->n_warnings, 5);
	assert_false(c->use_node_name_only);
	assert_string_equal(c->classes[0].host_dir, "/a");
	assert_int_equal(json_array_size(c->classes[0].selector), 1);
	provconfig_free(c);

	c = parse_ok("nodeLabelsForPV", "- kubernetes.io/hostname\n");
	assert_true(has_warning(c, "storageClassMap:1: storageClassMap: missing"));
	provconfig_free(c);
}

static void test_alias_bomb(void **state)
{
	struct prov_config *c = NULL;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	/*
	 * 100 terms, each of 100 requirements, each of 100 values: a million
	 * nodes to walk from a few kilobytes of aliases. Refused, quickly.
	 */
	f = open_memstream(&text, &len);
	assert_non_null(f);
	fprintf(f, "local:\n  hostDir: /a\n  mountDir: /b\n  xv: &v [");
	for (int i = 0; i < 100; i++)
		fprintf(f, "%sa", i ? ", " : "");
	fprintf(f, "]\n  xq: &q {key: k, operator: In, values: *v}\n  xe: &e [");
	for (int i = 0; i < 100; i++)
		fprintf(f, "%s*q", i ? ", " : "");
	fprintf(f, "]\n  xt: &t {matchExpressions: *e}\n  selector: [");
	for (int i = 0; i < 100; i++)
		fprintf(f, "%s*t", i ? ", " : "");
	fprintf(f, "]\n");
	fclose(f);
	assert_int_equal(parse(&c, "storageClassMap", text, NULL), -EINVAL);
	assert_null(c);
	assert_non_null(strstr(err, "too many nodes to walk"));
	free(text);
}

static void test_snapshot(void **state)
{
	struct provconfig_snapshot *a = NULL, *b = NULL;
	char big[64];

	(void)state;
	assert_int_equal(provconfig_snapshot_new(&a), 0);
	assert_int_equal(provconfig_snapshot_new(&b), 0);
	assert_true(provconfig_snapshot_equal(a, b));
	assert_false(provconfig_snapshot_equal(a, NULL));
	assert_true(provconfig_snapshot_equal(NULL, NULL));
	/* order of adding does not matter */
	assert_int_equal(provconfig_snapshot_add(a, "x", "1", 1), 0);
	assert_int_equal(provconfig_snapshot_add(a, "y", "2", 1), 0);
	assert_int_equal(provconfig_snapshot_add(b, "y", "2", 1), 0);
	assert_false(provconfig_snapshot_equal(a, b));
	assert_int_equal(provconfig_snapshot_add(b, "x", "1", 1), 0);
	assert_true(provconfig_snapshot_equal(a, b));
	assert_int_equal(provconfig_snapshot_add(b, "x", "1", 1), -EEXIST);
	assert_int_equal(provconfig_snapshot_add(a, "z", big, PROVCONFIG_FILE_MAX + 1), -EFBIG);
	provconfig_snapshot_free(b);
	assert_int_equal(provconfig_snapshot_new(&b), 0);
	assert_int_equal(provconfig_snapshot_add(b, "x", "1", 1), 0);
	assert_int_equal(provconfig_snapshot_add(b, "y", "3", 1), 0);
	assert_false(provconfig_snapshot_equal(a, b));
	for (int i = 2; i < PROVCONFIG_FILES_MAX; i++) {
		snprintf(big, sizeof(big), "k%03d", i);
		assert_int_equal(provconfig_snapshot_add(a, big, "", 0), 0);
	}
	assert_int_equal(provconfig_snapshot_add(a, "one-too-many", "", 0), -EMFILE);
	provconfig_snapshot_free(a);
	provconfig_snapshot_free(b);
	assert_null(provconfig_snapshot_free(NULL));
	assert_null(provconfig_free(NULL));
}

static void write_file(int dfd, const char *name, const char *text)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* A directory as the kubelet mounts a ConfigMap: keys link into ..data. */
static void test_read_configmap_dir(void **state)
{
	char tmpl[] = "/tmp/test_prov_config.XXXXXX", path[256];
	struct provconfig_snapshot *snap = NULL, *again = NULL;
	struct prov_config *c = NULL;
	int dfd, tfd;

	(void)state;
	assert_non_null(mkdtemp(tmpl));
	dfd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(mkdirat(dfd, "..2024_05_01_10_00_00.123", 0755), 0);
	tfd = openat(dfd, "..2024_05_01_10_00_00.123", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(tfd >= 0);
	write_file(tfd, "storageClassMap", "local: {hostDir: /mnt/disks, mountDir: /mnt/disks}\n");
	write_file(tfd, "useNodeNameOnly", "true");
	close(tfd);
	assert_int_equal(symlinkat("..2024_05_01_10_00_00.123", dfd, "..data"), 0);
	assert_int_equal(symlinkat("..data/storageClassMap", dfd, "storageClassMap"), 0);
	assert_int_equal(symlinkat("..data/useNodeNameOnly", dfd, "useNodeNameOnly"), 0);
	assert_int_equal(mkdirat(dfd, "subdir", 0755), 0); /* not a key: skipped */
	assert_int_equal(symlinkat("/nonexistent", dfd, "dangling"), 0); /* skipped */

	assert_int_equal(provconfig_snapshot_read(dfd, &snap), 0);
	assert_int_equal(provconfig_parse(snap, &c, &errm), 0);
	assert_int_equal(c->n_classes, 1);
	assert_string_equal(c->classes[0].name, "local");
	assert_true(c->use_node_name_only);
	assert_int_equal(c->n_warnings, 0);
	provconfig_free(c);

	/* Reading twice gives an equal snapshot; a change does not. */
	assert_int_equal(provconfig_snapshot_read(dfd, &again), 0);
	assert_true(provconfig_snapshot_equal(snap, again));
	provconfig_snapshot_free(again);
	write_file(dfd, "minResyncPeriod", "1h");
	assert_int_equal(provconfig_snapshot_read(dfd, &again), 0);
	assert_false(provconfig_snapshot_equal(snap, again));
	provconfig_snapshot_free(again);
	provconfig_snapshot_free(snap);

	/* clean up */
	unlinkat(dfd, "minResyncPeriod", 0);
	unlinkat(dfd, "dangling", 0);
	unlinkat(dfd, "subdir", AT_REMOVEDIR);
	unlinkat(dfd, "storageClassMap", 0);
	unlinkat(dfd, "useNodeNameOnly", 0);
	unlinkat(dfd, "..data", 0);
	snprintf(path, sizeof(path), "%s/..2024_05_01_10_00_00.123/storageClassMap", tmpl);
	unlink(path);
	snprintf(path, sizeof(path), "%s/..2024_05_01_10_00_00.123/useNodeNameOnly", tmpl);
	unlink(path);
	unlinkat(dfd, "..2024_05_01_10_00_00.123", AT_REMOVEDIR);
	close(dfd);
	assert_int_equal(rmdir(tmpl), 0);
}

static void test_dynamic_provisioning(void **state)
{
	struct prov_config *c;

	(void)state;
	c = parse_ok("storageClassMap", "a:\n  hostDir: /a\n  mountDir: /a\n");
	assert_true(provconfig_overcommit(c) == 1.0);
	provconfig_free(c);
	assert_true(provconfig_overcommit(NULL) == PROVCONFIG_DEFAULT_OVERCOMMIT);

	c = parse_ok("dynamicProvisioning", "overcommit: 1.5\n");
	assert_true(provconfig_overcommit(c) == 1.5);
	assert_false(has_warning(c, "dynamicProvisioning.overcommit"));
	provconfig_free(c);
	c = parse_ok("dynamicProvisioning", "overcommit: 3\n");
	assert_true(provconfig_overcommit(c) == 3.0);
	provconfig_free(c);
	c = parse_ok("dynamicProvisioning", "overcommit: 0.25\nfuture: 1\n");
	assert_true(provconfig_overcommit(c) == 0.25);
	assert_true(has_warning(c, "dynamicProvisioning:2: dynamicProvisioning.future: unknown field"));
	provconfig_free(c);
	c = parse_ok("dynamicProvisioning", "overcommit: 0o4\n");
	assert_true(provconfig_overcommit(c) == 4.0);
	provconfig_free(c);
	c = parse_ok("dynamicProvisioning", "~\n");
	assert_true(provconfig_overcommit(c) == 1.0);
	provconfig_free(c);

	expect_error("dynamicProvisioning", "overcommit: 0\n",
		     "dynamicProvisioning:1: dynamicProvisioning.overcommit: must be a ratio above 0 and at most 1000, not 0");
	expect_error("dynamicProvisioning", "overcommit: -1.5\n", "above 0 and at most 1000, not -1.5");
	expect_error("dynamicProvisioning", "overcommit: 1001\n", "not 1001");
	expect_error("dynamicProvisioning", "overcommit: .nan\n", "not .nan");
	expect_error("dynamicProvisioning", "overcommit: .inf\n", "not .inf");
	expect_error("dynamicProvisioning", "overcommit: lots\n",
		     "dynamicProvisioning.overcommit: must be a number (a ratio such as 1.5), not \"lots\"");
	expect_error("dynamicProvisioning", "overcommit: \"1.5\"\n", "must be a number (a ratio such as 1.5), not \"1.5\"");
	expect_error("dynamicProvisioning", "overcommit: [1]\n", "must be a number");
	expect_error("dynamicProvisioning", "- overcommit\n", "must be a mapping");
	expect_error("dynamicProvisioning", "? [overcommit]\n: 2\n",
		     "dynamicProvisioning:1: dynamicProvisioning: field names must be strings");
	expect_error("storageClassMap", "local:\n  ? {hostDir: /a}\n  : b\n",
		     "storageClassMap:2: local: field names must be strings");
	{
		/* Every mapping of names has the same bound on its entries. */
		static const char *const keys[] = { "labelsForPV", "dynamicProvisioning" };
		static const char *const what[] = { "labels", "fields" };
		char text[1100 * 12], want[64];
		size_t n = 0;

		for (int i = 0; i < 1025; i++)
			n += (size_t)snprintf(text + n, sizeof(text) - n, "k%d: v\n", i);
		for (int i = 0; i < 2; i++) {
			snprintf(want, sizeof(want), "has more than 1024 %s", what[i]);
			expect_error(keys[i], text, want);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upstream_example),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_paths_and_patterns),
		cmocka_unit_test(test_malformed_yaml),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_selector_errors),
		cmocka_unit_test(test_required),
		cmocka_unit_test(test_use_job_for_cleaning),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_alias_bomb),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_read_configmap_dir),
		cmocka_unit_test(test_dynamic_provisioning),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
