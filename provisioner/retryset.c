/*
 * retryset.c - keyed retries with backoff for periodic passes; see
 * retryset.h.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "retryset.h"

struct entry {
	char *key;
	char *version; /* of the pending failure; NULL for any */
	struct backoff backoff;
	uint64_t next_ns; /* meaningful while failing */
	bool failing;
	bool seen; /* looked at since the last sweep */
	struct entry *next;
	max_align_t memo[]; /* memo_bytes, aligned for any struct */
};

struct retryset {
	uint64_t base_ns;
	uint64_t cap_ns;
	size_t memo_bytes;
	uint64_t seed; /* of the next key's backoff */
	size_t n;
	struct entry *entries;
};

int retryset_new(uint64_t base_ns, uint64_t cap_ns, size_t memo_bytes, uint64_t seed,
		 struct retryset **ret_set)
{
	struct retryset *rs = calloc(1, sizeof(*rs));

	if (!rs)
		return -ENOMEM;
	rs->base_ns = base_ns;
	rs->cap_ns = cap_ns;
	rs->memo_bytes = memo_bytes;
	rs->seed = seed;
	*ret_set = rs;
	return 0;
}

static void entry_free(struct entry *e)
{
	free(e->key);
	free(e->version);
	free(e);
}

struct retryset *retryset_free(struct retryset *rs)
{
	if (!rs)
		return NULL;
	while (rs->entries) {
		struct entry *e = rs->entries;

		rs->entries = e->next;
		entry_free(e);
	}
	free(rs);
	return NULL;
}

static struct entry *find(const struct retryset *rs, const char *key)
{
	struct entry *e;

	for (e = rs->entries; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

/* The entry of @key, made on first use; NULL without memory. */
static struct entry *get(struct retryset *rs, const char *key)
{
	struct entry *e = find(rs, key);

	if (e)
		return e;
	e = calloc(1, sizeof(*e) + rs->memo_bytes);
	if (!e)
		return NULL;
	e->key = strdup(key);
	if (!e->key) {
		free(e);
		return NULL;
	}
	/* Keys failing together must not retry in lock-step: a seed each. */
	rs->seed += UINT64_C(0x9e3779b97f4a7c15);
	backoff_init(&e->backoff, rs->base_ns, rs->cap_ns, rs->seed);
	e->next = rs->entries;
	rs->entries = e;
	rs->n++;
	return e;
}

static bool same_version(const char *a, const char *b)
{
	return !a || !b || strcmp(a, b) == 0;
}

bool retryset_due(struct retryset *rs, const char *key, const char *version,
		  uint64_t now_ns)
{
	struct entry *e = find(rs, key);

	if (!e)
		return true;
	e->seen = true;
	if (!e->failing || !same_version(version, e->version))
		return true;
	return now_ns >= e->next_ns;
}

uint64_t retryset_failed(struct retryset *rs, const char *key, const char *version,
			 uint64_t now_ns)
{
	struct entry *e = get(rs, key);
	char *copy = NULL;
	uint64_t delay;

	if (!e)
		return 0;
	e->seen = true;
	if (version && !(copy = strdup(version)))
		return 0;
	if (e->failing && !same_version(version, e->version))
		backoff_reset(&e->backoff);
	free(e->version);
	e->version = copy;
	e->failing = true;
	delay = backoff_next(&e->backoff);
	e->next_ns = now_ns + delay;
	return delay;
}

void retryset_succeeded(struct retryset *rs, const char *key)
{
	struct entry *e = find(rs, key);

	if (!e)
		return;
	e->failing = false;
	free(e->version);
	e->version = NULL;
	backoff_reset(&e->backoff);
}

void *retryset_memo(struct retryset *rs, const char *key)
{
	struct entry *e;

	if (rs->memo_bytes == 0)
		return NULL;
	e = get(rs, key);
	if (!e)
		return NULL;
	e->seen = true;
	return e->memo;
}

void retryset_sweep(struct retryset *rs)
{
	struct entry **pp = &rs->entries;

	while (*pp) {
		struct entry *e = *pp;

		if (e->seen) {
			e->seen = false;
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		entry_free(e);
		rs->n--;
	}
}

size_t retryset_size(const struct retryset *rs)
{
	return rs->n;
}
