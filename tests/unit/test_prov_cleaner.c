/*
 * Tests for cleaner.c: emptying a directory tree without following
 * symlinks (the walk itself, deep trees and mounts included, is
 * test_walk.c's), the block cleaner's environment and exit
 * status, and the carvefs wipe against a fake daemon on a unix socket. The
 * cleaner is not a pure module, so it is compiled into this test directly;
 * nothing here mounts anything.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../provisioner/static/cleaner.c"
#include "fake_daemon.h"

static char base[64];

static int setup(void **state)
{
	(void)state;
	snprintf(base, sizeof(base), "/tmp/test_prov_cleaner.XXXXXX");
	log_init("test_prov_cleaner", LOG_LEVEL_ERROR);
	return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[256];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s/%s", base, rel);
}

static void make_file(const char *rel, const char *text)
{
	char p[512];
	FILE *f;

	path_of(p, sizeof(p), rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void make_dir(const char *rel)
{
	char p[512];

	path_of(p, sizeof(p), rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static bool present(const char *rel)
{
	char p[512];
	struct stat st;

	path_of(p, sizeof(p), rel);
	return lstat(p, &st) == 0;
}

static int count_entries(const char *rel)
{
	char p[512];
	struct dirent *de;
	int n = 0;
	DIR *d;

	path_of(p, sizeof(p), rel);
	d = opendir(p);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void test_delete_contents(void **state)
{
	char vol[512], target[512];
	uint64_t skipped = 99;

	(void)state;
	make_dir("outside");
	make_file("outside/precious", "keep me");
	make_dir("vol");
	make_file("vol/file", "x");
	make_file("vol/.hidden", "x");
	make_dir("vol/d1");
	make_dir("vol/d1/d2");
	make_file("vol/d1/d2/f", "x");
	make_dir("vol/empty");
	make_dir("vol/ro");
	make_file("vol/ro/f", "x");
	path_of(vol, sizeof(vol), "vol/ro");
	if (geteuid() == 0)
		assert_int_equal(chmod(vol, 0555), 0); /* root removes from it anyway */
	/* symlinks are removed, never followed */
	path_of(target, sizeof(target), "outside");
	path_of(vol, sizeof(vol), "vol/link-to-dir");
	assert_int_equal(symlink(target, vol), 0);
	path_of(target, sizeof(target), "outside/precious");
	path_of(vol, sizeof(vol), "vol/d1/link-to-file");
	assert_int_equal(symlink(target, vol), 0);
	path_of(vol, sizeof(vol), "vol/fifo");
	assert_int_equal(mkfifo(vol, 0600), 0);

	path_of(vol, sizeof(vol), "vol");
	assert_int_equal(cleaner_delete_contents(vol, &skipped), 0);
	assert_int_equal(skipped, 0);
	assert_true(present("vol"));
	assert_int_equal(count_entries("vol"), 0);
	assert_true(present("outside/precious"));
	assert_int_equal(count_entries("outside"), 1);

	/* an empty volume is fine, and so is cleaning twice */
	assert_int_equal(cleaner_delete_contents(vol, NULL), 0);

	/* not a directory, or a symlink to one: refused */
	path_of(vol, sizeof(vol), "outside/precious");
	assert_int_equal(cleaner_delete_contents(vol, NULL), -ENOTDIR);
	path_of(target, sizeof(target), "outside");
	path_of(vol, sizeof(vol), "link");
	assert_int_equal(symlink(target, vol), 0);
	assert_int_equal(cleaner_delete_contents(vol, NULL), -ENOTDIR);
	assert_true(present("outside/precious"));
}

static void test_block_command(void **state)
{
	char out[512], script[1024];
	char *argv_ok[] = { "/bin/sh", "-c", script, NULL };
	char *argv_fail[] = { "sh", "-c", "exit 3", NULL };
	char *argv_kill[] = { "sh", "-c", "kill -KILL $$", NULL };
	char *argv_missing[] = { "/nonexistent/cleaner", NULL };
	FILE *f;
	char line[128] = "";

	(void)state;
	path_of(out, sizeof(out), "env-seen");
	setenv(CLEANER_BLOCK_ENV, "/dev/stale", 1); /* replaced, not duplicated */
	snprintf(script, sizeof(script),
		 "printf '%%s %%s\\n' \"$LOCAL_PV_BLKDEVICE\" \"$(env | grep -c ^LOCAL_PV_BLKDEVICE=)\" > '%s'; "
		 "read x && exit 9; exit 0",
		 out);
	assert_int_equal(cleaner_run_block_command(argv_ok, "/dev/fake0"), 0);
	unsetenv(CLEANER_BLOCK_ENV);
	f = fopen(out, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_string_equal(line, "/dev/fake0 1\n");

	assert_int_equal(cleaner_run_block_command(argv_fail, "/dev/fake0"), -EIO);
	assert_int_equal(cleaner_run_block_command(argv_kill, "/dev/fake0"), -EIO);
	assert_int_equal(cleaner_run_block_command(argv_missing, "/dev/fake0"), -ENOENT);
	assert_int_equal(cleaner_run_block_command((char *[]){ NULL }, "/dev/fake0"), -EINVAL);
}

/* ---- a fake carvefs daemon ---------------------------------------------- */

static int fake_wipe(const char *sock, const char *reply, const char *name, char *ret_request)
{
	struct fake_daemon f = { .reply = reply };
	int r;

	fake_daemon_start(&f, sock);
	r = cleaner_wipe_carvefs(sock, name, 5000);
	fake_daemon_stop(&f);
	strcpy(ret_request, f.request);
	return r;
}

static void test_wipe_carvefs(void **state)
{
	char sock[512], req[512];
	json_t *j;

	(void)state;
	path_of(sock, sizeof(sock), "carvefs.sock");
	assert_int_equal(fake_wipe(sock, "{\"ok\": true}\n", "vol-1", req), 0);
	j = json_loads(req, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "verb")), "wipe");
	assert_string_equal(json_string_value(json_object_get(j, "name")), "vol-1");
	assert_int_equal(json_object_size(j), 2);
	json_decref(j);

	assert_int_equal(fake_wipe(sock,
				   "{\"error\": {\"code\": \"busy\", \"message\": \"in use\"}}\n",
				   "vol-1", req),
			 -EBUSY);
	assert_int_equal(fake_wipe(sock,
				   "{\"error\": {\"code\": \"not_found\", \"message\": \"no\"}}\n",
				   "vol-1", req),
			 -ENOENT);
	assert_int_equal(fake_wipe(sock, "{\"error\": {\"code\": \"internal\"}}\n", "v", req),
			 -EIO);
	assert_int_equal(fake_wipe(sock, "not json\n", "v", req), -EPROTO);
	assert_int_equal(fake_wipe(sock, "[1]\n", "v", req), -EPROTO);
	unlink(sock);

	/* no daemon */
	assert_int_equal(cleaner_wipe_carvefs(sock, "v", 1000), -ECONNREFUSED);
}

static void test_carvefs_name(void **state)
{
	(void)state;
	assert_string_equal(cleaner_carvefs_name("carvefs:pvc-1", "/mnt/disks/other"), "pvc-1");
	assert_string_equal(cleaner_carvefs_name(NULL, "/mnt/disks/vol-2"), "vol-2");
	assert_string_equal(cleaner_carvefs_name("carvefs:", "/mnt/disks/vol-2"), "vol-2");
	assert_string_equal(cleaner_carvefs_name("/dev/sda1", "/mnt/disks/vol-3"), "vol-3");
	assert_string_equal(cleaner_carvefs_name(NULL, "vol-4"), "vol-4");
}

static void test_dispatch(void **state)
{
	char vol[512];

	(void)state;
	make_dir("plain");
	make_file("plain/f", "x");
	path_of(vol, sizeof(vol), "plain");
	assert_int_equal(cleaner_clean(&(struct cleaner_target){ .mount_path = vol,
								  .fstype = "ext4" }),
			 0);
	assert_int_equal(count_entries("plain"), 0);
	/* a carvefs volume goes to the daemon, here absent: its contents stay */
	make_file("plain/g", "x");
	{
		char sock[512];

		path_of(sock, sizeof(sock), "no-daemon.sock");
		assert_int_equal(cleaner_clean(&(struct cleaner_target){
					 .mount_path = vol,
					 .fstype = DISCOVERY_FSTYPE_CARVEFS,
					 .carvefs_socket = sock }),
				 -ECONNREFUSED);
	}
	assert_int_equal(count_entries("plain"), 1);
	assert_int_equal(cleaner_clean(&(struct cleaner_target){
				 .mount_path = "/dev/fake1",
				 .is_block = true,
				 .block_cleaner_command = (char *[]){ "true", NULL } }),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delete_contents),
		cmocka_unit_test(test_block_command),
		cmocka_unit_test(test_wipe_carvefs),
		cmocka_unit_test(test_carvefs_name),
		cmocka_unit_test(test_dispatch),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
