/*
 * table.c - the pool's volume table; see table.h.
 *
 * The payload is JSON written with sorted keys and a fixed indent, so the
 * same table always encodes to the same bytes. Decoding is strict about what
 * version 1 defines (every field present and of its type, names valid and
 * unique) and ignores keys it does not know, so a later 1.x may add fields
 * that this one skips.
 *
 * JSON integers are signed 64-bit in jansson (and lose precision beyond 2^53
 * in many other readers), so every unsigned field is limited to INT64_MAX:
 * 8 EiB is still far beyond any disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "fileio.h"
#include "table.h"

#define TABLE_MAGIC "CARVEFS-TABLE "
/* A table is a few KiB per volume; anything this big is not one of ours. */
#define TABLE_FILE_MAX (64 * 1024 * 1024)
/* The magic, a version, a length, 16 hex digits, spaces and '\n'. */
#define TABLE_HEADER_MAX 64
#define TABLE_HASH_HEX 16

struct table {
	struct volume_record *recs; /* count used, cap allocated */
	size_t count, cap;
	uint64_t generation;
};

int table_new(struct table **ret_table)
{
	struct table *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	*ret_table = t;
	return 0;
}

struct table *table_free(struct table *t)
{
	if (t) {
		free(t->recs);
		free(t);
	}
	return NULL;
}

size_t table_count(const struct table *t)
{
	return t->count;
}

struct volume_record *table_at(struct table *t, size_t i)
{
	return i < t->count ? &t->recs[i] : NULL;
}

static ssize_t table_index(const struct table *t, const char *name)
{
	for (size_t i = 0; i < t->count; i++) {
		if (strcmp(t->recs[i].name, name) == 0)
			return (ssize_t)i;
	}
	return -1;
}

struct volume_record *table_find(struct table *t, const char *name)
{
	ssize_t i = name ? table_index(t, name) : -1;

	return i < 0 ? NULL : &t->recs[i];
}

uint64_t table_generation(const struct table *t)
{
	return t->generation;
}

/*
 * Checks that @text is "" or a JSON object and, if @ret_text is not NULL,
 * writes its canonical form there (TABLE_LABELS_MAX bytes) (compact, sorted keys): the form a
 * decoded table holds, so a record reads back exactly as it was added. The
 * canonical form can be longer than the text ("1e2" becomes "100.0"), hence
 * the length check on it. Returns 0, -EINVAL or -ENOMEM.
 */
static int labels_canonical(const char *text, char *ret_text)
{
	json_error_t err;
	json_t *obj;
	char *dump = NULL;
	int r = 0;

	if (text[0] == '\0') {
		if (ret_text)
			ret_text[0] = '\0';
		return 0;
	}
	obj = json_loads(text, JSON_REJECT_DUPLICATES, &err);
	if (!obj)
		return json_error_code(&err) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
	if (!json_is_object(obj)) {
		r = -EINVAL;
		goto out;
	}
	dump = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	if (!dump) {
		r = -ENOMEM;
		goto out;
	}
	if (strlen(dump) >= TABLE_LABELS_MAX) {
		r = -EINVAL;
		goto out;
	}
	if (ret_text)
		strcpy(ret_text, dump);
out:
	free(dump);
	json_decref(obj);
	return r;
}

/* Storage class names are DNS subdomains; printable ASCII is all we need. */
static bool storage_class_valid(const char *sc, size_t size)
{
	size_t len = strnlen(sc, size);

	if (len == size)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (sc[i] <= ' ' || sc[i] > '~')
			return false;
	}
	return true;
}

/*
 * What every record in a table satisfies, so that whatever is encoded can be
 * decoded. Writes the canonical labels to @ret_labels if not NULL. Returns
 * 0, -EINVAL or -ENOMEM.
 */
static int record_check(const struct volume_record *rec, char *ret_labels)
{
	const uint64_t u64s[] = {
		rec->capacity_bytes, rec->inode_limit, rec->limits.riops,
		rec->limits.wiops, rec->limits.rbps, rec->limits.wbps,
		rec->limits.burst_ms, rec->limits.iops_size_bytes,
		rec->used_bytes, rec->used_inodes,
	};

	if (volname_validate(rec->name, NULL) < 0)
		return -EINVAL;
	if (!storage_class_valid(rec->storage_class, sizeof(rec->storage_class)))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++) {
		if (u64s[i] > INT64_MAX)
			return -EINVAL;
	}
	if (strnlen(rec->labels, sizeof(rec->labels)) == sizeof(rec->labels))
		return -EINVAL;
	return labels_canonical(rec->labels, ret_labels);
}

int table_add(struct table *t, const struct volume_record *rec)
{
	char labels[TABLE_LABELS_MAX];
	struct volume_record *recs;
	size_t cap;
	int r;

	r = record_check(rec, labels);
	if (r < 0)
		return r;
	if (table_index(t, rec->name) >= 0)
		return -EEXIST;
	if (t->count == t->cap) {
		cap = t->cap ? t->cap * 2 : 8;
		recs = reallocarray(t->recs, cap, sizeof(*recs));
		if (!recs)
			return -ENOMEM;
		t->recs = recs;
		t->cap = cap;
	}
	t->recs[t->count] = *rec;
	strcpy(t->recs[t->count].labels, labels);
	t->count++;
	return 0;
}

int table_remove(struct table *t, const char *name)
{
	ssize_t i = table_index(t, name);

	if (i < 0)
		return -ENOENT;
	memmove(&t->recs[i], &t->recs[i + 1], (t->count - (size_t)i - 1) * sizeof(*t->recs));
	t->count--;
	return 0;
}

/* Returns 0, -EINVAL (a record changed through table_at() into something invalid) or -ENOMEM. */
static int record_to_json(const struct volume_record *rec, json_t **ret_obj)
{
	json_t *obj, *labels;
	json_error_t err;
	int r;

	r = record_check(rec, NULL);
	if (r < 0)
		return r;
	obj = json_pack("{s:s, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:I,"
			" s:s, s:I, s:I, s:I, s:b}",
			"name", rec->name,
			"capacity_bytes", (json_int_t)rec->capacity_bytes,
			"inode_limit", (json_int_t)rec->inode_limit,
			"limits",
			"riops", (json_int_t)rec->limits.riops,
			"wiops", (json_int_t)rec->limits.wiops,
			"rbps", (json_int_t)rec->limits.rbps,
			"wbps", (json_int_t)rec->limits.wbps,
			"burst_ms", (json_int_t)rec->limits.burst_ms,
			"iops_size_bytes", (json_int_t)rec->limits.iops_size_bytes,
			"uid", (json_int_t)rec->uid,
			"gid", (json_int_t)rec->gid,
			"mode", (json_int_t)rec->mode,
			"storage_class", rec->storage_class,
			"created_unix", (json_int_t)rec->created_unix,
			"used_bytes", (json_int_t)rec->used_bytes,
			"used_inodes", (json_int_t)rec->used_inodes,
			"clean", (int)rec->clean);
	if (!obj)
		return -ENOMEM;
	if (rec->labels[0] != '\0') {
		/* record_check() parsed it already: only memory can fail here. */
		labels = json_loads(rec->labels, JSON_REJECT_DUPLICATES, &err);
		if (!labels || json_object_set_new(obj, "labels", labels) < 0) {
			json_decref(obj);
			return -ENOMEM;
		}
	}
	*ret_obj = obj;
	return 0;
}

int table_encode(const struct table *t, char **ret_buf, size_t *ret_len)
{
	char hex[TABLE_HASH_HEX + 1], *payload = NULL, *buf = NULL;
	json_t *root, *volumes, *obj;
	size_t plen, hlen, total;
	int r, n;

	root = json_pack("{s:i, s:I, s:[]}", "version", TABLE_VERSION, "generation",
			 (json_int_t)t->generation, "volumes");
	if (!root)
		return -ENOMEM;
	volumes = json_object_get(root, "volumes");
	for (size_t i = 0; i < t->count; i++) {
		r = record_to_json(&t->recs[i], &obj);
		if (r < 0)
			goto out;
		if (json_array_append_new(volumes, obj) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	payload = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!payload) {
		r = -ENOMEM;
		goto out;
	}
	/* The payload ends in a newline, so the file reads well with cat. */
	plen = strlen(payload) + 1;
	n = snprintf(NULL, 0, TABLE_MAGIC "%d %zu ", TABLE_VERSION, plen);
	if (n < 0) {
		r = -EINVAL;
		goto out;
	}
	hlen = (size_t)n + TABLE_HASH_HEX + 1;
	total = hlen + plen;
	buf = malloc(total + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(buf + hlen, payload, plen - 1);
	buf[total - 1] = '\n';
	buf[total] = '\0';
	(void)snprintf(hex, sizeof(hex), "%016" PRIx64, (uint64_t)XXH64(buf + hlen, plen, 0));
	(void)snprintf(buf, (size_t)n + 1, TABLE_MAGIC "%d %zu ", TABLE_VERSION, plen);
	memcpy(buf + n, hex, TABLE_HASH_HEX);
	buf[hlen - 1] = '\n';
	*ret_buf = buf;
	*ret_len = total;
	buf = NULL;
	r = 0;
out:
	free(buf);
	free(payload);
	json_decref(root);
	return r;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Parses a decimal number without sign or leading zeros up to @end. */
static int parse_decimal(const char **p, const char *end, uint64_t *ret)
{
	const char *s = *p;
	uint64_t v = 0;

	if (s == end || !is_digit(*s) || (*s == '0' && s + 1 < end && is_digit(s[1])))
		return -EBADMSG;
	for (; s < end && is_digit(*s); s++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
			return -EBADMSG;
	}
	*p = s;
	*ret = v;
	return 0;
}

/*
 * Checks the header line, the length and the checksum of @buf and points
 * *ret_payload at the payload. Returns 0, -EBADMSG or -EPROTONOSUPPORT.
 */
static int table_verify(const char *buf, size_t len, const char **ret_payload, size_t *ret_plen)
{
	const char *nl, *p = buf;
	uint64_t version, plen, hash = 0;

	nl = memchr(buf, '\n', len < TABLE_HEADER_MAX ? len : TABLE_HEADER_MAX);
	if (!nl || (size_t)(nl - buf) < strlen(TABLE_MAGIC) ||
	    memcmp(buf, TABLE_MAGIC, strlen(TABLE_MAGIC)) != 0)
		return -EBADMSG;
	p += strlen(TABLE_MAGIC);
	if (parse_decimal(&p, nl, &version) < 0 || version == 0)
		return -EBADMSG;
	/* A newer format may lay out the rest of its header differently. */
	if (version > TABLE_VERSION)
		return -EPROTONOSUPPORT;
	if (p == nl || *p++ != ' ' || parse_decimal(&p, nl, &plen) < 0 || p == nl || *p++ != ' ')
		return -EBADMSG;
	if (nl - p != TABLE_HASH_HEX)
		return -EBADMSG;
	for (; p < nl; p++) {
		if (*p >= '0' && *p <= '9')
			hash = hash << 4 | (uint64_t)(*p - '0');
		else if (*p >= 'a' && *p <= 'f')
			hash = hash << 4 | (uint64_t)(*p - 'a' + 10);
		else
			return -EBADMSG;
	}
	nl++;
	if (plen != len - (size_t)(nl - buf))
		return -EBADMSG;
	if (XXH64(nl, plen, 0) != hash)
		return -EBADMSG;
	*ret_payload = nl;
	*ret_plen = plen;
	return 0;
}

/* @max bounds the value; a member that is missing, mistyped or out of range is -EPROTO. */
static int json_get_u64(json_t *obj, const char *key, uint64_t max, uint64_t *ret)
{
	json_t *v = json_object_get(obj, key);
	json_int_t i;

	if (!json_is_integer(v))
		return -EPROTO;
	i = json_integer_value(v);
	if (i < 0 || (uint64_t)i > max)
		return -EPROTO;
	*ret = (uint64_t)i;
	return 0;
}

static int json_get_u32(json_t *obj, const char *key, uint32_t *ret)
{
	uint64_t v;
	int r;

	r = json_get_u64(obj, key, UINT32_MAX, &v);
	if (r < 0)
		return r;
	*ret = (uint32_t)v;
	return 0;
}

/* Copies a string member into @dst of @size bytes; -EPROTO if it does not fit. */
static int json_get_str(json_t *obj, const char *key, char *dst, size_t size)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v) || json_string_length(v) >= size)
		return -EPROTO;
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int record_from_json(json_t *obj, struct volume_record *rec)
{
	json_t *limits, *labels, *clean, *created;
	char *dump;
	int r = 0;

	if (!json_is_object(obj))
		return -EPROTO;
	memset(rec, 0, sizeof(*rec));
	limits = json_object_get(obj, "limits");
	clean = json_object_get(obj, "clean");
	if (!json_is_object(limits) || !json_is_boolean(clean))
		return -EPROTO;
	if (json_get_str(obj, "name", rec->name, sizeof(rec->name)) < 0 ||
	    json_get_str(obj, "storage_class", rec->storage_class,
			 sizeof(rec->storage_class)) < 0 ||
	    json_get_u64(obj, "capacity_bytes", INT64_MAX, &rec->capacity_bytes) < 0 ||
	    json_get_u64(obj, "inode_limit", INT64_MAX, &rec->inode_limit) < 0 ||
	    json_get_u64(limits, "riops", INT64_MAX, &rec->limits.riops) < 0 ||
	    json_get_u64(limits, "wiops", INT64_MAX, &rec->limits.wiops) < 0 ||
	    json_get_u64(limits, "rbps", INT64_MAX, &rec->limits.rbps) < 0 ||
	    json_get_u64(limits, "wbps", INT64_MAX, &rec->limits.wbps) < 0 ||
	    json_get_u64(limits, "burst_ms", INT64_MAX, &rec->limits.burst_ms) < 0 ||
	    json_get_u64(limits, "iops_size_bytes", INT64_MAX, &rec->limits.iops_size_bytes) < 0 ||
	    json_get_u32(obj, "uid", &rec->uid) < 0 ||
	    json_get_u32(obj, "gid", &rec->gid) < 0 ||
	    json_get_u32(obj, "mode", &rec->mode) < 0 ||
	    json_get_u64(obj, "used_bytes", INT64_MAX, &rec->used_bytes) < 0 ||
	    json_get_u64(obj, "used_inodes", INT64_MAX, &rec->used_inodes) < 0)
		return -EPROTO;
	created = json_object_get(obj, "created_unix");
	if (!json_is_integer(created))
		return -EPROTO;
	rec->created_unix = json_integer_value(created);
	rec->clean = json_is_true(clean);

	labels = json_object_get(obj, "labels");
	if (labels) {
		if (!json_is_object(labels))
			return -EPROTO;
		dump = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
		if (!dump)
			return -ENOMEM;
		if (strlen(dump) >= sizeof(rec->labels))
			r = -EPROTO;
		else
			strcpy(rec->labels, dump);
		free(dump);
	}
	return r;
}

int table_decode(const char *buf, size_t len, struct table **ret_table)
{
	struct volume_record *rec = NULL;
	struct table *t = NULL;
	const char *payload;
	json_t *root, *volumes, *version;
	json_error_t err;
	uint64_t generation;
	size_t plen, i;
	json_t *v;
	int r;

	r = table_verify(buf, len, &payload, &plen);
	if (r < 0)
		return r;
	root = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		return json_error_code(&err) == json_error_out_of_memory ? -ENOMEM : -EPROTO;
	version = json_object_get(root, "version");
	if (!json_is_object(root) || !json_is_integer(version)) {
		r = -EPROTO;
		goto out;
	}
	if (json_integer_value(version) > TABLE_VERSION) {
		r = -EPROTONOSUPPORT;
		goto out;
	}
	volumes = json_object_get(root, "volumes");
	if (json_integer_value(version) != TABLE_VERSION || !json_is_array(volumes) ||
	    json_get_u64(root, "generation", INT64_MAX, &generation) < 0) {
		r = -EPROTO;
		goto out;
	}
	rec = malloc(sizeof(*rec));
	r = rec ? table_new(&t) : -ENOMEM;
	if (r < 0)
		goto out;
	t->generation = generation;
	json_array_foreach(volumes, i, v) {
		r = record_from_json(v, rec);
		if (r < 0)
			goto out;
		r = table_add(t, rec);
		/* Invalid names, limits beyond range, duplicates: not a table we wrote. */
		if (r == -EINVAL || r == -EEXIST)
			r = -EPROTO;
		if (r < 0)
			goto out;
	}
	*ret_table = t;
	t = NULL;
	r = 0;
out:
	table_free(t);
	free(rec);
	json_decref(root);
	return r;
}

/*
 * Reads @name below @dirfd into a malloc'd buffer. O_NONBLOCK so that a FIFO
 * planted under the table's name cannot hang the daemon; anything but a
 * regular file is not a table (-EBADMSG).
 */
static int read_table_file(int dirfd, const char *name, char **ret_buf, size_t *ret_len)
{
	int r = fileio_read(dirfd, name, false, TABLE_FILE_MAX, ret_buf, ret_len);

	return r == -ENOTSUP ? -EBADMSG : r;
}

static int load_one(int dirfd, const char *name, struct table **ret_table)
{
	char *buf;
	size_t len;
	int r;

	r = read_table_file(dirfd, name, &buf, &len);
	if (r < 0)
		return r;
	r = table_decode(buf, len, ret_table);
	free(buf);
	return r;
}

/*
 * Errors that mean a copy is absent or damaged. Others (no memory, no
 * permission, a table written by a newer carvefs) say nothing about the
 * copy, and going back to the previous one would silently undo the last
 * change, so table_load() stops on them.
 */
static bool copy_is_damaged(int r)
{
	return r == -ENOENT || r == -EBADMSG || r == -EPROTO || r == -EFBIG || r == -ELOOP ||
	       r == -EIO;
}

int table_load(int dirfd, struct table **ret_table, enum table_source *ret_source,
	       int *ret_current_error)
{
	struct table *t = NULL;
	enum table_source source;
	int r_cur, r_prev;

	r_cur = load_one(dirfd, TABLE_FILE, &t);
	if (r_cur == 0) {
		source = TABLE_SOURCE_CURRENT;
		goto found;
	}
	if (!copy_is_damaged(r_cur))
		return r_cur;
	r_prev = load_one(dirfd, TABLE_FILE_PREV, &t);
	if (r_prev == 0) {
		source = TABLE_SOURCE_PREVIOUS;
		goto found;
	}
	if (r_cur == -ENOENT && r_prev == -ENOENT) {
		r_prev = table_new(&t);
		if (r_prev < 0)
			return r_prev;
		source = TABLE_SOURCE_NEW;
		goto found;
	}
	/* A missing current copy says less than what is wrong with the previous one. */
	return r_cur != -ENOENT ? r_cur : r_prev;
found:
	*ret_table = t;
	*ret_source = source;
	if (ret_current_error)
		*ret_current_error = r_cur;
	return 0;
}

/* Whether carvefs.meta holds a complete, checksummed table. */
static bool current_is_intact(int dirfd)
{
	const char *payload;
	size_t len, plen;
	char *buf;
	bool ok;

	if (read_table_file(dirfd, TABLE_FILE, &buf, &len) < 0)
		return false;
	ok = table_verify(buf, len, &payload, &plen) == 0;
	free(buf);
	return ok;
}

/*
 * The current table becomes the previous one only if it is intact: after a
 * load that fell back to carvefs.meta.prev, rotating the damaged current
 * copy over it would leave, until the final rename, no good table at all.
 */
int table_save(int dirfd, struct table *t)
{
	uint64_t generation = t->generation;
	bool rotated = false;
	char *buf = NULL;
	size_t len;
	int r;

	t->generation = generation + 1;
	r = table_encode(t, &buf, &len);
	t->generation = generation;
	if (r < 0)
		return r;

	r = fileio_write_tmp(dirfd, TABLE_FILE_TMP, buf, len, 0600);
	if (r < 0)
		goto out;
	if (current_is_intact(dirfd)) {
		if (renameat(dirfd, TABLE_FILE, dirfd, TABLE_FILE_PREV) < 0) {
			r = -errno;
			(void)unlinkat(dirfd, TABLE_FILE_TMP, 0);
			goto out;
		}
		rotated = true;
	}
	r = fileio_commit(dirfd, TABLE_FILE_TMP, TABLE_FILE, 0);
	/*
	 * If the rename failed, the previous copy goes back (it never replaces
	 * a new table: when only the directory's fsync failed, the new one is
	 * in place and stays).
	 */
	if (r < 0 && rotated)
		(void)renameat2(dirfd, TABLE_FILE_PREV, dirfd, TABLE_FILE, RENAME_NOREPLACE);
	if (r == 0)
		t->generation = generation + 1;
out:
	free(buf);
	return r;
}
