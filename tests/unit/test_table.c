/*
 * Tests for table.c: records, the on-disk encoding and its integrity checks,
 * and atomic save / load with fallback to the previous copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "table.h"

static void make_record(struct volume_record *rec, const char *name, unsigned int seed)
{
	memset(rec, 0, sizeof(*rec));
	snprintf(rec->name, sizeof(rec->name), "%s", name);
	rec->capacity_bytes = (UINT64_C(1) << 30) * (seed + 1) + seed;
	rec->inode_limit = 1000 * seed;
	rec->limits.riops = 100 + seed;
	rec->limits.wiops = 200 + seed;
	rec->limits.rbps = (UINT64_C(1) << 20) * (seed + 3);
	rec->limits.wbps = (UINT64_C(1) << 20) * (seed + 5);
	rec->limits.burst_ms = 50 * seed;
	rec->limits.iops_size_bytes = seed % 2 ? 4096 : 0;
	rec->uid = 1000 + seed;
	rec->gid = 2000 + seed;
	rec->mode = 0750 + seed;
	snprintf(rec->storage_class, sizeof(rec->storage_class), "carvefs-class-%u", seed);
	rec->created_unix = 1700000000 + (int64_t)seed * 86400;
	rec->used_bytes = 4096 * (uint64_t)seed;
	rec->used_inodes = 3 * (uint64_t)seed;
	rec->clean = seed % 2 == 0;
}

static void assert_record_equal(const struct volume_record *a, const struct volume_record *b)
{
	assert_string_equal(a->name, b->name);
	assert_int_equal(a->capacity_bytes, b->capacity_bytes);
	assert_int_equal(a->inode_limit, b->inode_limit);
	assert_int_equal(a->limits.riops, b->limits.riops);
	assert_int_equal(a->limits.wiops, b->limits.wiops);
	assert_int_equal(a->limits.rbps, b->limits.rbps);
	assert_int_equal(a->limits.wbps, b->limits.wbps);
	assert_int_equal(a->limits.burst_ms, b->limits.burst_ms);
	assert_int_equal(a->limits.iops_size_bytes, b->limits.iops_size_bytes);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->gid, b->gid);
	assert_int_equal(a->mode, b->mode);
	assert_string_equal(a->storage_class, b->storage_class);
	assert_string_equal(a->labels, b->labels);
	assert_int_equal(a->created_unix, b->created_unix);
	assert_int_equal(a->used_bytes, b->used_bytes);
	assert_int_equal(a->used_inodes, b->used_inodes);
	assert_int_equal(a->clean, b->clean);
}

static void assert_tables_equal(struct table *a, struct table *b)
{
	assert_int_equal(table_count(a), table_count(b));
	assert_int_equal(table_generation(a), table_generation(b));
	for (size_t i = 0; i < table_count(a); i++)
		assert_record_equal(table_at(a, i), table_at(b, i));
}

/* Three records that between them use every field, with extreme values. */
static struct table *sample_table(void)
{
	struct volume_record rec;
	struct table *t = NULL;

	assert_int_equal(table_new(&t), 0);
	make_record(&rec, "pvc-1", 1);
	snprintf(rec.labels, sizeof(rec.labels), "{\"app\":\"db\",\"tier\":\"gold\"}");
	assert_int_equal(table_add(t, &rec), 0);
	make_record(&rec, "scratch", 2);
	rec.storage_class[0] = '\0';
	rec.created_unix = -1;
	assert_int_equal(table_add(t, &rec), 0);
	make_record(&rec, "0big", 3);
	rec.capacity_bytes = INT64_MAX;
	rec.inode_limit = INT64_MAX;
	rec.uid = UINT32_MAX;
	rec.gid = 0;
	rec.mode = 07777;
	snprintf(rec.labels, sizeof(rec.labels), "{\"n\":{\"deep\":[1,2,\"x\"]},\"u\":\"caf\xc3\xa9\"}");
	assert_int_equal(table_add(t, &rec), 0);
	return t;
}

/* A table file around @payload, with its checksum computed here. */
static char *build_file(const char *header_version, const char *payload, size_t *ret_len)
{
	size_t plen = strlen(payload);
	char *buf = malloc(plen + 128);
	int n;

	assert_non_null(buf);
	n = snprintf(buf, 128, "CARVEFS-TABLE %s %zu %016" PRIx64 "\n", header_version, plen,
		     (uint64_t)XXH64(payload, plen, 0));
	memcpy(buf + n, payload, plen);
	*ret_len = (size_t)n + plen;
	return buf;
}

static int decode_payload(const char *payload)
{
	struct table *t = NULL;
	size_t len;
	char *buf = build_file("1", payload, &len);
	int r = table_decode(buf, len, &t);

	free(buf);
	if (r == 0) {
		assert_non_null(t);
		table_free(t);
	} else {
		assert_null(t);
	}
	return r;
}

static void test_records(void **state)
{
	struct volume_record rec, *p;
	struct table *t = NULL;

	(void)state;
	assert_null(table_free(NULL));
	assert_int_equal(table_new(&t), 0);
	assert_int_equal(table_count(t), 0);
	assert_int_equal(table_generation(t), 0);
	assert_null(table_find(t, "a"));
	assert_null(table_at(t, 0));

	/* Enough to grow the array a few times; order is insertion order. */
	for (unsigned int i = 0; i < 40; i++) {
		char name[16];

		snprintf(name, sizeof(name), "v%u", i);
		make_record(&rec, name, i);
		assert_int_equal(table_add(t, &rec), 0);
	}
	assert_int_equal(table_count(t), 40);
	make_record(&rec, "v7", 7);
	assert_record_equal(table_find(t, "v7"), &rec);
	assert_int_equal(table_add(t, &rec), -EEXIST);

	assert_int_equal(table_remove(t, "v7"), 0);
	assert_int_equal(table_remove(t, "v7"), -ENOENT);
	assert_null(table_find(t, "v7"));
	assert_int_equal(table_count(t), 39);
	assert_string_equal(table_at(t, 6)->name, "v6");
	assert_string_equal(table_at(t, 7)->name, "v8");
	assert_string_equal(table_at(t, 38)->name, "v39");
	assert_null(table_at(t, 39));
	assert_int_equal(table_remove(t, "v39"), 0);
	assert_int_equal(table_remove(t, "v0"), 0);
	assert_string_equal(table_at(t, 0)->name, "v1");

	/* Records are copies, and can be updated through the pointers. */
	p = table_find(t, "v1");
	p->used_bytes = 42;
	assert_int_equal(table_find(t, "v1")->used_bytes, 42);
	table_free(t);
}

static void test_add_refuses_invalid(void **state)
{
	struct volume_record rec;
	struct table *t = NULL;

	(void)state;
	assert_int_equal(table_new(&t), 0);
	make_record(&rec, "Bad_Name", 1);
	assert_int_equal(table_add(t, &rec), -EINVAL);
	make_record(&rec, "", 1);
	assert_int_equal(table_add(t, &rec), -EINVAL);
	/* A name filling the array with no terminator. */
	make_record(&rec, "a", 1);
	memset(rec.name, 'a', sizeof(rec.name));
	assert_int_equal(table_add(t, &rec), -EINVAL);

	make_record(&rec, "ok", 1);
	snprintf(rec.labels, sizeof(rec.labels), "[1]");
	assert_int_equal(table_add(t, &rec), -EINVAL);
	snprintf(rec.labels, sizeof(rec.labels), "{\"a\":");
	assert_int_equal(table_add(t, &rec), -EINVAL);
	snprintf(rec.labels, sizeof(rec.labels), "\"text\"");
	assert_int_equal(table_add(t, &rec), -EINVAL);
	snprintf(rec.labels, sizeof(rec.labels), "{\"a\":1,\"a\":2}");
	assert_int_equal(table_add(t, &rec), -EINVAL);
	snprintf(rec.labels, sizeof(rec.labels), "{} {}");
	assert_int_equal(table_add(t, &rec), -EINVAL);
	memset(rec.labels, ' ', sizeof(rec.labels));
	assert_int_equal(table_add(t, &rec), -EINVAL);

	make_record(&rec, "ok", 1);
	rec.capacity_bytes = (uint64_t)INT64_MAX + 1;
	assert_int_equal(table_add(t, &rec), -EINVAL);
	make_record(&rec, "ok", 1);
	rec.used_inodes = UINT64_MAX;
	assert_int_equal(table_add(t, &rec), -EINVAL);
	make_record(&rec, "ok", 1);
	snprintf(rec.storage_class, sizeof(rec.storage_class), "two words");
	assert_int_equal(table_add(t, &rec), -EINVAL);

	assert_int_equal(table_count(t), 0);
	make_record(&rec, "ok", 1);
	assert_int_equal(table_add(t, &rec), 0);
	table_free(t);
}

static void test_labels_canonical(void **state)
{
	struct volume_record rec;
	struct table *t = NULL;

	(void)state;
	assert_int_equal(table_new(&t), 0);
	make_record(&rec, "l", 1);
	snprintf(rec.labels, sizeof(rec.labels), " { \"b\" : \"2\",\n \"a\" : \"1\" } ");
	assert_int_equal(table_add(t, &rec), 0);
	assert_string_equal(table_find(t, "l")->labels, "{\"a\":\"1\",\"b\":\"2\"}");
	make_record(&rec, "e", 1);
	snprintf(rec.labels, sizeof(rec.labels), "{}");
	assert_int_equal(table_add(t, &rec), 0);
	assert_string_equal(table_find(t, "e")->labels, "{}");
	table_free(t);
}

static void test_round_trip(void **state)
{
	struct table *t = sample_table(), *back = NULL, *again = NULL;
	char *buf = NULL, *buf2 = NULL, *buf3 = NULL;
	size_t len = 0, len2 = 0, len3 = 0;

	(void)state;
	assert_int_equal(table_encode(t, &buf, &len), 0);
	assert_int_equal(strlen(buf), len);
	assert_memory_equal(buf, "CARVEFS-TABLE 1 ", 16);
	assert_int_equal(table_decode(buf, len, &back), 0);
	assert_tables_equal(t, back);
	assert_string_equal(table_find(back, "scratch")->labels, "");

	/* Deterministic: the same table always encodes to the same bytes. */
	assert_int_equal(table_encode(t, &buf2, &len2), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	assert_int_equal(table_encode(back, &buf3, &len3), 0);
	assert_int_equal(len, len3);
	assert_memory_equal(buf, buf3, len);

	/* An empty table too. */
	free(buf);
	table_free(back);
	assert_int_equal(table_new(&again), 0);
	assert_int_equal(table_encode(again, &buf, &len), 0);
	back = NULL;
	assert_int_equal(table_decode(buf, len, &back), 0);
	assert_int_equal(table_count(back), 0);

	free(buf);
	free(buf2);
	free(buf3);
	table_free(back);
	table_free(again);
	table_free(t);
}

static void test_encode_refuses_invalid_record(void **state)
{
	struct table *t = sample_table();
	static char untouched[] = "untouched";
	char *buf = untouched;
	size_t len = 7;

	(void)state;
	/* Changed through the pointer into something no decoder would take back. */
	snprintf(table_at(t, 0)->labels, TABLE_LABELS_MAX, "not json");
	assert_int_equal(table_encode(t, &buf, &len), -EINVAL);
	assert_string_equal(buf, "untouched");
	assert_int_equal(len, 7);
	table_free(t);
}

static void test_checksum_mismatch(void **state)
{
	struct table *t = sample_table(), *back = NULL;
	char *buf = NULL;
	size_t len = 0;
	char *payload;

	(void)state;
	assert_int_equal(table_encode(t, &buf, &len), 0);
	payload = strchr(buf, '\n') + 1;

	/* One changed bit in the payload: still the same length. */
	assert_true(buf + len - len / 3 > payload);
	buf[len - len / 3] ^= 0x01;
	assert_int_equal(table_decode(buf, len, &back), -EBADMSG);
	assert_null(back);
	buf[len - len / 3] ^= 0x01;
	assert_int_equal(table_decode(buf, len, &back), 0);
	table_free(back);
	back = NULL;

	/* One changed digit in the checksum. */
	payload[-2] = payload[-2] == '0' ? '1' : '0';
	assert_int_equal(table_decode(buf, len, &back), -EBADMSG);
	assert_null(back);
	free(buf);
	table_free(t);
}

static void test_torn(void **state)
{
	struct table *t = sample_table(), *back = NULL;
	char *buf = NULL, *longer;
	size_t len = 0, header_len;

	(void)state;
	assert_int_equal(table_encode(t, &buf, &len), 0);
	header_len = (size_t)(strchr(buf, '\n') - buf) + 1;
	/* Cut anywhere: in the payload, right after the header, in the header. */
	for (size_t cut = 0; cut < len; cut += cut < header_len + 8 ? 1 : 97) {
		if (table_decode(buf, cut, &back) != -EBADMSG)
			fail_msg("cut at %zu of %zu not refused", cut, len);
		assert_null(back);
	}
	/* Bytes after the payload are not ours either. */
	longer = malloc(len + 1);
	assert_non_null(longer);
	memcpy(longer, buf, len);
	longer[len] = '\n';
	assert_int_equal(table_decode(longer, len + 1, &back), -EBADMSG);
	free(longer);
	free(buf);
	table_free(t);
}

/*
 * Writes @tmpl with '@' replaced by the payload length and '#' by its
 * checksum ('^' in capitals, '~' without its first digit), then the payload.
 */
static size_t header_variant(const char *tmpl, const char *payload, char *out, size_t size)
{
	char len[32], hash[17];
	size_t n = 0;

	snprintf(len, sizeof(len), "%zu", strlen(payload));
	snprintf(hash, sizeof(hash), "%016" PRIx64, (uint64_t)XXH64(payload, strlen(payload), 0));
	for (const char *p = tmpl; *p; p++) {
		const char *sub = NULL;

		if (*p == '@')
			sub = len;
		else if (*p == '#' || *p == '^')
			sub = hash;
		else if (*p == '~')
			sub = hash + 1;
		if (!sub) {
			out[n++] = *p;
			continue;
		}
		for (; *sub; sub++)
			out[n++] = *p == '^' && *sub >= 'a' ? (char)(*sub - 'a' + 'A') : *sub;
	}
	assert_true(n + strlen(payload) < size);
	memcpy(out + n, payload, strlen(payload));
	return n + strlen(payload);
}

static void test_bad_header(void **state)
{
	static const char payload[] = "{\"version\":1,\"generation\":0,\"volumes\":[]}";
	/* Each with the right length and checksum: only the form is wrong. */
	static const char *const bad[] = {
		"carvefs-table 1 @ #\n",
		"CARVEFS-TABLE  1 @ #\n",
		"CARVEFS-TABLE 1  @ #\n",
		"CARVEFS-TABLE 1 @  #\n",
		"CARVEFS-TABLE 1 @ # \n",
		"CARVEFS-TABLE 1 @ #\r\n",
		"CARVEFS-TABLE 1 @ ^\n",
		"CARVEFS-TABLE 1 @ ~\n",
		"CARVEFS-TABLE 1 @ 0#\n",
		"CARVEFS-TABLE 1 0@ #\n",
		"CARVEFS-TABLE 1 +@ #\n",
		"CARVEFS-TABLE 01 @ #\n",
		"CARVEFS-TABLE 0 @ #\n",
		"CARVEFS-TABLE x @ #\n",
		"CARVEFS-TABLE 1 @ #",
		"CARVEFS-TABLE 1 @\n",
		"CARVEFS-TABLE 1 #\n",
		"CARVEFS-TABLE\n",
		"\n",
		"",
	};
	struct table *t = NULL;
	char buf[256];
	size_t len;

	(void)state;
	/* The well-formed file these are variants of. */
	len = header_variant("CARVEFS-TABLE 1 @ #\n", payload, buf, sizeof(buf));
	assert_int_equal(table_decode(buf, len, &t), 0);
	table_free(t);
	t = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		len = header_variant(bad[i], payload, buf, sizeof(buf));
		if (table_decode(buf, len, &t) != -EBADMSG)
			fail_msg("header \"%s\" not refused", bad[i]);
		assert_null(t);
	}
	/* A length that overflows, and a header with no newline in sight. */
	len = (size_t)snprintf(buf, sizeof(buf), "CARVEFS-TABLE 1 %s0 0123456789abcdef\n%s",
			       "1844674407370955161", payload);
	assert_int_equal(table_decode(buf, len, &t), -EBADMSG);
	memset(buf, '1', sizeof(buf));
	memcpy(buf, "CARVEFS-TABLE ", 14);
	assert_int_equal(table_decode(buf, sizeof(buf), &t), -EBADMSG);
	assert_null(t);
}

static void test_newer_version(void **state)
{
	struct table *t = NULL;
	size_t len;
	char *buf;

	(void)state;
	/* A newer header is refused as such, whatever follows it. */
	buf = build_file("2", "{\"version\":2,\"whatever\":true}", &len);
	assert_int_equal(table_decode(buf, len, &t), -EPROTONOSUPPORT);
	free(buf);
	buf = build_file("17", "", &len);
	assert_int_equal(table_decode(buf, len, &t), -EPROTONOSUPPORT);
	free(buf);
	/* A version-1 header around a newer payload. */
	assert_int_equal(decode_payload("{\"version\":2,\"generation\":0,\"volumes\":[]}"),
			 -EPROTONOSUPPORT);
	assert_null(t);
}

#define VOL_PREFIX                                                                            \
	"{\"version\":1,\"generation\":3,\"volumes\":[{\"capacity_bytes\":1073741824,"       \
	"\"clean\":true,\"created_unix\":1700000000,\"gid\":0,\"inode_limit\":0,"             \
	"\"limits\":{\"burst_ms\":0,\"iops_size_bytes\":0,\"rbps\":0,\"riops\":0,\"wbps\":0," \
	"\"wiops\":0},\"mode\":493,\"storage_class\":\"\",\"uid\":0,\"used_bytes\":0,"        \
	"\"used_inodes\":0,"
#define VOL_SUFFIX "}]}"

static void test_valid_payload_by_hand(void **state)
{
	struct table *t = NULL;
	size_t len;
	char *buf;

	(void)state;
	/* Unknown fields, anywhere, are skipped: a later 1.x may add some. */
	buf = build_file("1",
			 VOL_PREFIX "\"name\":\"a\",\"future\":[1,2],\"labels\":{\"k\":\"v\"}"
				    "}],\"also_future\":{}}",
			 &len);
	assert_int_equal(table_decode(buf, len, &t), 0);
	free(buf);
	assert_int_equal(table_count(t), 1);
	assert_int_equal(table_generation(t), 3);
	assert_int_equal(table_at(t, 0)->capacity_bytes, UINT64_C(1) << 30);
	assert_int_equal(table_at(t, 0)->mode, 0755);
	assert_true(table_at(t, 0)->clean);
	assert_string_equal(table_at(t, 0)->labels, "{\"k\":\"v\"}");
	table_free(t);
}

static void test_bad_content(void **state)
{
	static const char *const bad[] = {
		"",
		"not json",
		"[]",
		"{\"version\":1,\"generation\":0,\"volumes\":[]} trailing",
		"{\"version\":\"1\",\"generation\":0,\"volumes\":[]}",
		"{\"version\":0,\"generation\":0,\"volumes\":[]}",
		"{\"generation\":0,\"volumes\":[]}",
		"{\"version\":1,\"volumes\":[]}",
		"{\"version\":1,\"generation\":-1,\"volumes\":[]}",
		"{\"version\":1,\"generation\":0}",
		"{\"version\":1,\"generation\":0,\"volumes\":{}}",
		"{\"version\":1,\"generation\":0,\"volumes\":[1]}",
		"{\"version\":1,\"version\":1,\"generation\":0,\"volumes\":[]}",
		VOL_PREFIX "\"name\":\"a\"" VOL_SUFFIX ",",
		VOL_PREFIX "\"name\":\"Bad\"" VOL_SUFFIX,
		VOL_PREFIX "\"name\":\"\"" VOL_SUFFIX,
		VOL_PREFIX "\"name\":5" VOL_SUFFIX,
		VOL_PREFIX "\"nom\":\"a\"" VOL_SUFFIX,
		VOL_PREFIX "\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"" VOL_SUFFIX,
		VOL_PREFIX "\"name\":\"a\",\"labels\":[]" VOL_SUFFIX,
		VOL_PREFIX "\"name\":\"a\",\"labels\":null" VOL_SUFFIX,
		VOL_PREFIX "\"name\":\"a\",\"labels\":\"{}\"" VOL_SUFFIX,
		VOL_PREFIX "\"name\":\"a\",\"name\":\"b\"" VOL_SUFFIX,
		"{\"version\":1,\"generation\":0,\"volumes\":[{\"name\":\"a\"}]}",
	};
	char payload[2048];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = decode_payload(bad[i]);

		if (r != -EPROTO)
			fail_msg("payload %zu \"%s\": %d, want -EPROTO", i, bad[i], r);
	}

	/* The valid record, then each field in turn given a bad value. */
	snprintf(payload, sizeof(payload), VOL_PREFIX "\"name\":\"a\"" VOL_SUFFIX);
	assert_int_equal(decode_payload(payload), 0);
	static const struct {
		const char *from, *to;
	} edits[] = {
		{ "\"capacity_bytes\":1073741824", "\"capacity_bytes\":-1" },
		{ "\"capacity_bytes\":1073741824", "\"capacity_bytes\":\"1Gi\"" },
		{ "\"capacity_bytes\":1073741824", "\"capacity_bytes\":1.5" },
		{ "\"capacity_bytes\":1073741824", "\"capacity_bytes\":null" },
		{ "\"capacity_bytes\":1073741824", "\"capacity\":1073741824" },
		{ "\"clean\":true", "\"clean\":1" },
		{ "\"clean\":true", "\"clean\":\"true\"" },
		{ "\"created_unix\":1700000000", "\"created_unix\":1.7e9" },
		{ "\"gid\":0", "\"gid\":4294967296" },
		{ "\"gid\":0", "\"gid\":-1" },
		{ "\"inode_limit\":0", "\"inodes\":0" },
		{ "\"burst_ms\":0,", "" },
		{ "\"wiops\":0", "\"wiops\":true" },
		{ "\"limits\":{", "\"limits\":[],\"x\":{" },
		{ "\"mode\":493", "\"mode\":\"0755\"" },
		{ "\"storage_class\":\"\"", "\"storage_class\":null" },
		{ "\"storage_class\":\"\"", "\"storage_class\":\"a b\"" },
		{ "\"uid\":0", "\"uid\":99999999999" },
		{ "\"used_bytes\":0", "\"used_bytes\":{}" },
		{ "\"used_inodes\":0,", "" },
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		char *at = strstr(payload, edits[i].from);
		char edited[2048];
		int r;

		assert_non_null(at);
		snprintf(edited, sizeof(edited), "%.*s%s%s", (int)(at - payload), payload, edits[i].to,
			 at + strlen(edits[i].from));
		r = decode_payload(edited);
		if (r != -EPROTO)
			fail_msg("edit %zu (%s): %d, want -EPROTO", i, edits[i].to, r);
	}

	/* Two records of the same name. */
	snprintf(payload, sizeof(payload),
		 VOL_PREFIX "\"name\":\"a\"},{\"capacity_bytes\":1,\"clean\":false,\"created_unix\":0,"
			    "\"gid\":0,\"inode_limit\":0,\"limits\":{\"burst_ms\":0,\"iops_size_bytes\":0,"
			    "\"rbps\":0,\"riops\":0,\"wbps\":0,\"wiops\":0},\"mode\":0,"
			    "\"storage_class\":\"\",\"uid\":0,\"used_bytes\":0,\"used_inodes\":0,"
			    "\"name\":\"%s\"" VOL_SUFFIX,
		 "b");
	assert_int_equal(decode_payload(payload), 0);
	*strstr(payload, "\"name\":\"b\"") = '\0';
	strcat(payload, "\"name\":\"a\"" VOL_SUFFIX);
	assert_int_equal(decode_payload(payload), -EPROTO);
}

/* A scratch directory per test, removed with everything in it. */
struct dir {
	char path[64];
	int fd;
};

static int dir_setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));

	if (!d)
		return -1;
	snprintf(d->path, sizeof(d->path), "/tmp/carvefs-table-XXXXXX");
	if (!mkdtemp(d->path))
		return -1;
	d->fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	*state = d;
	return d->fd < 0 ? -1 : 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static int dir_teardown(void **state)
{
	struct dir *d = *state;
	int r;

	close(d->fd);
	r = nftw(d->path, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(d);
	return r;
}

static void write_file(int dirfd, const char *name, const void *data, size_t len)
{
	int fd = openat(dirfd, name, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static char *read_file(int dirfd, const char *name, size_t *ret_len)
{
	struct stat st;
	char *buf;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	*ret_len = (size_t)st.st_size;
	return buf;
}

static void corrupt_file(int dirfd, const char *name)
{
	size_t len;
	char *buf = read_file(dirfd, name, &len);

	buf[len - 3] ^= 0x20;
	write_file(dirfd, name, buf, len);
	free(buf);
}

static bool file_exists(int dirfd, const char *name)
{
	struct stat st;

	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Loads and expects @source; returns the table. */
static struct table *load_expect(int dirfd, enum table_source want_source, int want_error)
{
	enum table_source source = 99;
	struct table *t = NULL;
	int err = 12345;

	assert_int_equal(table_load(dirfd, &t, &source, &err), 0);
	assert_non_null(t);
	assert_int_equal(source, want_source);
	assert_int_equal(err, want_error);
	return t;
}

static void load_expect_error(int dirfd, int want)
{
	enum table_source source = 99;
	struct table *t = NULL;
	int err = 12345;

	assert_int_equal(table_load(dirfd, &t, &source, &err), want);
	assert_null(t);
	assert_int_equal(source, 99);
	assert_int_equal(err, 12345);
}

static void test_load_nothing(void **state)
{
	struct dir *d = *state;
	enum table_source source;
	struct table *t;

	t = load_expect(d->fd, TABLE_SOURCE_NEW, -ENOENT);
	assert_int_equal(table_count(t), 0);
	table_free(t);
	/* @ret_current_error may be NULL. */
	assert_int_equal(table_load(d->fd, &t, &source, NULL), 0);
	assert_int_equal(source, TABLE_SOURCE_NEW);
	table_free(t);
}

static void test_save_load(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table(), *back;
	struct stat st;

	assert_int_equal(table_save(d->fd, t), 0);
	assert_int_equal(table_generation(t), 1);
	assert_true(file_exists(d->fd, TABLE_FILE));
	assert_false(file_exists(d->fd, TABLE_FILE_PREV));
	assert_false(file_exists(d->fd, TABLE_FILE_TMP));
	assert_int_equal(fstatat(d->fd, TABLE_FILE, &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	back = load_expect(d->fd, TABLE_SOURCE_CURRENT, 0);
	assert_tables_equal(t, back);
	table_free(back);
	table_free(t);
}

static void test_save_twice_keeps_previous(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table(), *first = NULL, *prev = NULL, *back;
	struct volume_record rec;
	char *buf;
	size_t len;

	assert_int_equal(table_save(d->fd, t), 0);
	first = load_expect(d->fd, TABLE_SOURCE_CURRENT, 0);

	make_record(&rec, "added", 9);
	assert_int_equal(table_add(t, &rec), 0);
	assert_int_equal(table_remove(t, "pvc-1"), 0);
	assert_int_equal(table_save(d->fd, t), 0);
	assert_int_equal(table_generation(t), 2);

	buf = read_file(d->fd, TABLE_FILE_PREV, &len);
	assert_int_equal(table_decode(buf, len, &prev), 0);
	free(buf);
	assert_tables_equal(first, prev);
	assert_int_equal(table_generation(prev), 1);

	back = load_expect(d->fd, TABLE_SOURCE_CURRENT, 0);
	assert_tables_equal(t, back);
	assert_non_null(table_find(back, "added"));
	assert_null(table_find(back, "pvc-1"));
	table_free(back);
	table_free(prev);
	table_free(first);
	table_free(t);
}

static void test_corrupt_current_falls_back(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table(), *first, *back;
	struct volume_record rec;

	assert_int_equal(table_save(d->fd, t), 0);
	first = load_expect(d->fd, TABLE_SOURCE_CURRENT, 0);
	make_record(&rec, "later", 4);
	assert_int_equal(table_add(t, &rec), 0);
	assert_int_equal(table_save(d->fd, t), 0);

	corrupt_file(d->fd, TABLE_FILE);
	back = load_expect(d->fd, TABLE_SOURCE_PREVIOUS, -EBADMSG);
	assert_tables_equal(first, back);

	/*
	 * Saving what was loaded must not rotate the damaged copy over the
	 * good previous one.
	 */
	assert_int_equal(table_save(d->fd, back), 0);
	table_free(back);
	back = load_expect(d->fd, TABLE_SOURCE_CURRENT, 0);
	assert_int_equal(table_generation(back), 2);
	table_free(back);
	assert_int_equal(unlinkat(d->fd, TABLE_FILE, 0), 0);
	back = load_expect(d->fd, TABLE_SOURCE_PREVIOUS, -ENOENT);
	assert_tables_equal(first, back);
	table_free(back);

	table_free(first);
	table_free(t);
}

static void test_truncated_current_falls_back(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table(), *back;
	char *buf;
	size_t len;

	assert_int_equal(table_save(d->fd, t), 0);
	assert_int_equal(table_save(d->fd, t), 0);
	buf = read_file(d->fd, TABLE_FILE, &len);
	write_file(d->fd, TABLE_FILE, buf, len / 2);
	free(buf);
	back = load_expect(d->fd, TABLE_SOURCE_PREVIOUS, -EBADMSG);
	assert_int_equal(table_generation(back), 1);
	table_free(back);
	table_free(t);
}

static void test_both_corrupt(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table();

	assert_int_equal(table_save(d->fd, t), 0);
	assert_int_equal(table_save(d->fd, t), 0);
	corrupt_file(d->fd, TABLE_FILE);
	corrupt_file(d->fd, TABLE_FILE_PREV);
	/* Never an empty table in place of damaged ones. */
	load_expect_error(d->fd, -EBADMSG);

	/* The same with the current copy missing: the previous one's error. */
	assert_int_equal(unlinkat(d->fd, TABLE_FILE, 0), 0);
	load_expect_error(d->fd, -EBADMSG);

	/* And with only a damaged current copy. */
	assert_int_equal(renameat(d->fd, TABLE_FILE_PREV, d->fd, TABLE_FILE), 0);
	load_expect_error(d->fd, -EBADMSG);
	table_free(t);
}

static void test_newer_current_not_skipped(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table();
	size_t len;
	char *buf;

	assert_int_equal(table_save(d->fd, t), 0);
	assert_int_equal(table_save(d->fd, t), 0);
	/*
	 * Written by a newer carvefs: going back to the previous copy would
	 * undo its changes, so the load stops there.
	 */
	buf = build_file("2", "{\"version\":2}", &len);
	write_file(d->fd, TABLE_FILE, buf, len);
	free(buf);
	load_expect_error(d->fd, -EPROTONOSUPPORT);
	table_free(t);
}

static void test_tmp_leftover_ignored(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table(), *back;
	char *buf;
	size_t len;

	/* Even a complete, valid table under the temporary name is not trusted. */
	assert_int_equal(table_encode(t, &buf, &len), 0);
	write_file(d->fd, TABLE_FILE_TMP, buf, len);
	free(buf);
	back = load_expect(d->fd, TABLE_SOURCE_NEW, -ENOENT);
	assert_int_equal(table_count(back), 0);
	table_free(back);

	write_file(d->fd, TABLE_FILE_TMP, "garbage", 7);
	assert_int_equal(table_save(d->fd, t), 0);
	assert_false(file_exists(d->fd, TABLE_FILE_TMP));
	write_file(d->fd, TABLE_FILE_TMP, "garbage", 7);
	back = load_expect(d->fd, TABLE_SOURCE_CURRENT, 0);
	assert_tables_equal(t, back);
	table_free(back);
	table_free(t);
}

static void test_oversized_and_odd_files(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table(), *back;
	int fd;

	/* A sparse file one byte over the limit. */
	fd = openat(d->fd, TABLE_FILE, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 * 1024 * 1024 + 1), 0);
	close(fd);
	load_expect_error(d->fd, -EFBIG);

	/* A symlink is never followed; a directory is not a table. */
	assert_int_equal(unlinkat(d->fd, TABLE_FILE, 0), 0);
	assert_int_equal(symlinkat("/etc/passwd", d->fd, TABLE_FILE), 0);
	load_expect_error(d->fd, -ELOOP);
	assert_int_equal(unlinkat(d->fd, TABLE_FILE, 0), 0);
	assert_int_equal(mkdirat(d->fd, TABLE_FILE_PREV, 0700), 0);
	load_expect_error(d->fd, -EBADMSG);
	assert_int_equal(unlinkat(d->fd, TABLE_FILE_PREV, AT_REMOVEDIR), 0);

	/* With a good previous copy, each of these falls back to it. */
	assert_int_equal(table_save(d->fd, t), 0);
	assert_int_equal(table_save(d->fd, t), 0);
	fd = openat(d->fd, TABLE_FILE, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 * 1024 * 1024 + 1), 0);
	close(fd);
	back = load_expect(d->fd, TABLE_SOURCE_PREVIOUS, -EFBIG);
	assert_int_equal(table_generation(back), 1);
	table_free(back);
	table_free(t);
}

static void test_save_failure_leaves_disk_intact(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table(), *back;
	struct volume_record rec;
	char *cur, *prev, *cur2, *prev2;
	size_t cur_len, prev_len, len;

	assert_int_equal(table_save(d->fd, t), 0);
	assert_int_equal(table_save(d->fd, t), 0);
	cur = read_file(d->fd, TABLE_FILE, &cur_len);
	prev = read_file(d->fd, TABLE_FILE_PREV, &prev_len);

	/* The temporary name is taken by a directory that cannot be removed. */
	assert_int_equal(mkdirat(d->fd, TABLE_FILE_TMP, 0700), 0);
	write_file(d->fd, TABLE_FILE_TMP "/x", "x", 1);
	make_record(&rec, "new", 5);
	assert_int_equal(table_add(t, &rec), 0);
	assert_true(table_save(d->fd, t) < 0);
	assert_int_equal(table_generation(t), 2);

	/* A record that cannot be encoded fails before touching the disk. */
	assert_int_equal(unlinkat(d->fd, TABLE_FILE_TMP "/x", 0), 0);
	assert_int_equal(unlinkat(d->fd, TABLE_FILE_TMP, AT_REMOVEDIR), 0);
	table_find(t, "new")->name[0] = 'N';
	assert_int_equal(table_save(d->fd, t), -EINVAL);
	assert_false(file_exists(d->fd, TABLE_FILE_TMP));

	cur2 = read_file(d->fd, TABLE_FILE, &len);
	assert_int_equal(len, cur_len);
	assert_memory_equal(cur, cur2, len);
	prev2 = read_file(d->fd, TABLE_FILE_PREV, &len);
	assert_int_equal(len, prev_len);
	assert_memory_equal(prev, prev2, len);
	back = load_expect(d->fd, TABLE_SOURCE_CURRENT, 0);
	assert_int_equal(table_generation(back), 2);
	assert_null(table_find(back, "new"));
	table_free(back);

	free(cur);
	free(prev);
	free(cur2);
	free(prev2);
	table_free(t);
}

static void test_save_through_o_path(void **state)
{
	struct dir *d = *state;
	struct table *t = sample_table(), *back;
	int pfd = open(d->path, O_PATH | O_DIRECTORY | O_CLOEXEC);

	assert_true(pfd >= 0);
	assert_int_equal(table_save(pfd, t), 0);
	back = load_expect(pfd, TABLE_SOURCE_CURRENT, 0);
	assert_tables_equal(t, back);
	table_free(back);
	close(pfd);
	table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_add_refuses_invalid),
		cmocka_unit_test(test_labels_canonical),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_encode_refuses_invalid_record),
		cmocka_unit_test(test_checksum_mismatch),
		cmocka_unit_test(test_torn),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_newer_version),
		cmocka_unit_test(test_valid_payload_by_hand),
		cmocka_unit_test(test_bad_content),
		cmocka_unit_test_setup_teardown(test_load_nothing, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_save_load, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_save_twice_keeps_previous, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_current_falls_back, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_truncated_current_falls_back, dir_setup,
						dir_teardown),
		cmocka_unit_test_setup_teardown(test_both_corrupt, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_newer_current_not_skipped, dir_setup,
						dir_teardown),
		cmocka_unit_test_setup_teardown(test_tmp_leftover_ignored, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_oversized_and_odd_files, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_save_failure_leaves_disk_intact, dir_setup,
						dir_teardown),
		cmocka_unit_test_setup_teardown(test_save_through_o_path, dir_setup, dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
