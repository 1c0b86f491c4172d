/*
 * Tests for dirsink.c: manifests written atomically and read back, names
 * checked, foreign files ignored, crash leftovers removed. The sink is not
 * a pure module, so it is compiled into this test directly; it works in a
 * temporary directory and needs no privilege.
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

#include "../../provisioner/sink/dirsink.c"

#include "config.h"

static char base[64];
static char dir[128];

static int setup(void **state)
{
	(void)state;
	snprintf(base, sizeof(base), "/tmp/test_prov_dirsink.XXXXXX");
	if (!mkdtemp(base))
		return -1;
	/* the sink creates missing parents */
	snprintf(dir, sizeof(dir), "%s/a/b/pv", base);
	log_init("test_prov_dirsink", LOG_LEVEL_ERROR);
	return 0;
}

static int teardown(void **state)
{
	char cmd[256];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	return system(cmd) == 0 ? 0 : -1;
}

static json_t *make_pv(const char *entry)
{
	static const char scm[] = "local: {hostDir: /mnt/disks, mountDir: /mnt/disks}";
	struct provconfig_snapshot *snap = NULL;
	struct prov_config *c = NULL;
	json_t *pv = NULL;
	struct errmsg err;

	assert_int_equal(provconfig_snapshot_new(&snap), 0);
	assert_int_equal(provconfig_snapshot_add(snap, "storageClassMap", scm, strlen(scm)), 0);
	assert_int_equal(provconfig_parse(snap, &c, &err), 0);
	assert_int_equal(pv_build(&(struct pv_request){ .config = c,
							.cls = &c->classes[0],
							.node_name = "n1",
							.entry = entry,
							.capacity_bytes = 1 << 30 },
				  &pv, NULL),
			 0);
	provconfig_free(c);
	provconfig_snapshot_free(snap);
	return pv;
}

static void put(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static bool exists(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static void test_create_list_remove(void **state)
{
	struct sink *s = NULL;
	json_t *pv = make_pv("a"), *pvs = NULL;
	char path[256], head[80];
	struct stat st;
	FILE *f;

	(void)state;
	assert_int_equal(dirsink_open(dir, &s), 0);
	assert_string_equal(s->ops->kind, "dir");
	assert_true(s->ops->remove_vanished);

	assert_int_equal(sink_list(s, &pvs), 0);
	assert_int_equal(json_array_size(pvs), 0);
	json_decref(pvs);

	assert_int_equal(sink_create(s, pv), 0);
	snprintf(path, sizeof(path), "%s/%s.yaml", dir, pv_get_name(pv));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(head, sizeof(head), f));
	assert_int_equal(head[0], '#');
	fclose(f);
	assert_int_equal(sink_create(s, pv), -EEXIST);

	assert_int_equal(sink_list(s, &pvs), 0);
	assert_int_equal(json_array_size(pvs), 1);
	assert_true(json_equal(json_array_get(pvs, 0), pv));
	json_decref(pvs);

	/* no node and no StorageClass without a cluster */
	{
		json_t *node = json_null(), *sc = json_null(); /* singletons: nothing leaks */

		assert_int_equal(sink_get_node(s, "n1", &node), 0);
		assert_null(node);
		assert_int_equal(sink_get_storage_class(s, "local", &sc), 0);
		assert_null(sc);
	}

	assert_int_equal(sink_remove(s, pv_get_name(pv)), 0);
	assert_false(exists("local-pv-1e9ced44.yaml"));
	assert_int_equal(sink_remove(s, pv_get_name(pv)), -ENOENT);
	assert_int_equal(sink_remove(s, "../escape"), -EINVAL);
	assert_int_equal(sink_remove(s, ".hidden"), -EINVAL);
	assert_int_equal(sink_remove(s, ""), -EINVAL);
	json_decref(pv);
	assert_null(sink_free(s));
	assert_null(sink_free(NULL));
}

static void test_bad_names(void **state)
{
	struct sink *s = NULL;
	json_t *pv = make_pv("a");

	(void)state;
	assert_int_equal(dirsink_open(dir, &s), 0);
	json_object_set_new(json_object_get(pv, "metadata"), "name", json_string("../x"));
	assert_int_equal(sink_create(s, pv), -EINVAL);
	json_object_set_new(json_object_get(pv, "metadata"), "name", json_string("Upper"));
	assert_int_equal(sink_create(s, pv), -EINVAL);
	/* Kubernetes refuses these PV names; so does the sink, not only "." and "/". */
	json_object_set_new(json_object_get(pv, "metadata"), "name", json_string("a..b"));
	assert_int_equal(sink_create(s, pv), -EINVAL);
	json_object_set_new(json_object_get(pv, "metadata"), "name", json_string("a-"));
	assert_int_equal(sink_create(s, pv), -EINVAL);
	json_object_set_new(json_object_get(pv, "metadata"), "name", json_string("a-.b"));
	assert_int_equal(sink_create(s, pv), -EINVAL);
	assert_int_equal(sink_remove(s, "a..b"), -EINVAL);
	json_object_del(json_object_get(pv, "metadata"), "name");
	assert_int_equal(sink_create(s, pv), -EINVAL);
	json_decref(pv);
	sink_free(s);
}

static void test_foreign_files_ignored(void **state)
{
	struct sink *s = NULL;
	json_t *pv = make_pv("b"), *pvs = NULL;

	(void)state;
	assert_int_equal(dirsink_open(dir, &s), 0);
	assert_int_equal(sink_create(s, pv), 0);
	put("junk.yaml", "{ not: [yaml\n");
	put("list.yaml", "- a\n- b\n");
	put("other.yaml", "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: different}\n");
	put("notes.txt", "hello\n");
	put(".hidden.yaml", "metadata: {name: .hidden}\n");

	assert_int_equal(sink_list(s, &pvs), 0);
	assert_int_equal(json_array_size(pvs), 1);
	assert_string_equal(pv_get_name(json_array_get(pvs, 0)), pv_get_name(pv));
	json_decref(pvs);
	/* and nothing of theirs was touched */
	assert_true(exists("junk.yaml"));
	assert_true(exists("other.yaml"));
	assert_int_equal(sink_remove(s, pv_get_name(pv)), 0);
	json_decref(pv);
	sink_free(s);
}

static void test_stale_tmp_removed(void **state)
{
	struct sink *s = NULL;

	(void)state;
	assert_int_equal(dirsink_open(dir, &s), 0);
	sink_free(s);
	put(".local-pv-1234.yaml.999.tmp", "half a manif");
	put(".keep.tmp", "not ours");
	assert_int_equal(dirsink_open(dir, &s), 0);
	assert_false(exists(".local-pv-1234.yaml.999.tmp"));
	assert_true(exists(".keep.tmp"));
	sink_free(s);
}

static void test_open_errors(void **state)
{
	struct sink *s = NULL;
	char path[256];

	(void)state;
	assert_int_equal(dirsink_open("", &s), -EINVAL);
	snprintf(path, sizeof(path), "%s/file", base);
	put("../../../file", "x"); /* base/file */
	assert_int_equal(dirsink_open(path, &s), -ENOTDIR);
	assert_null(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_list_remove),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_foreign_files_ignored),
		cmocka_unit_test(test_stale_tmp_removed),
		cmocka_unit_test(test_open_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
