/*
 * fhmap.c - open-handle ids; see fhmap.h.
 *
 * A chained hash table that doubles when it holds twice as many entries as
 * buckets. Ids are sequential, so a multiplicative hash spreads them well.
 */
#include <errno.h>
#include <stdlib.h>

#include "fhmap.h"

#define INITIAL_BUCKETS 64

struct fhmap_entry {
	uint64_t fh;
	void *value;
	struct fhmap_entry *next;
};

struct fhmap {
	struct fhmap_entry **buckets;
	size_t nbuckets; /* a power of two */
	size_t count;
	uint64_t next_fh;
};

static size_t bucket_of(size_t nbuckets, uint64_t fh)
{
	return (size_t)((fh * 0x9e3779b97f4a7c15ull) >> 20) & (nbuckets - 1);
}

int fhmap_new(struct fhmap **ret_map)
{
	struct fhmap *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->buckets = calloc(INITIAL_BUCKETS, sizeof(*m->buckets));
	if (!m->buckets) {
		free(m);
		return -ENOMEM;
	}
	m->nbuckets = INITIAL_BUCKETS;
	m->next_fh = 1;
	*ret_map = m;
	return 0;
}

struct fhmap *fhmap_free(struct fhmap *m)
{
	if (!m)
		return NULL;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct fhmap_entry *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(m->buckets);
	free(m);
	return NULL;
}

/* Growing is an optimisation: without memory, chains just get longer. */
static void grow(struct fhmap *m)
{
	size_t n = m->nbuckets * 2;
	struct fhmap_entry **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct fhmap_entry *e = m->buckets[i], *next;

		for (; e; e = next) {
			size_t b = bucket_of(n, e->fh);

			next = e->next;
			e->next = nb[b];
			nb[b] = e;
		}
	}
	free(m->buckets);
	m->buckets = nb;
	m->nbuckets = n;
}

static int insert(struct fhmap *m, uint64_t fh, void *value)
{
	struct fhmap_entry *e = malloc(sizeof(*e));
	size_t b;

	if (!e)
		return -ENOMEM;
	if (m->count >= m->nbuckets * 2)
		grow(m);
	b = bucket_of(m->nbuckets, fh);
	e->fh = fh;
	e->value = value;
	e->next = m->buckets[b];
	m->buckets[b] = e;
	m->count++;
	return 0;
}

int fhmap_put(struct fhmap *m, void *value, uint64_t *ret_fh)
{
	int r = insert(m, m->next_fh, value);

	if (r < 0)
		return r;
	*ret_fh = m->next_fh++;
	return 0;
}

int fhmap_put_at(struct fhmap *m, uint64_t fh, void *value)
{
	int r;

	if (fh == 0)
		return -EINVAL;
	if (fhmap_get(m, fh))
		return -EEXIST;
	r = insert(m, fh, value);
	if (r < 0)
		return r;
	if (fh >= m->next_fh)
		m->next_fh = fh + 1;
	return 0;
}

void *fhmap_get(const struct fhmap *m, uint64_t fh)
{
	for (struct fhmap_entry *e = m->buckets[bucket_of(m->nbuckets, fh)]; e; e = e->next)
		if (e->fh == fh)
			return e->value;
	return NULL;
}

void *fhmap_remove(struct fhmap *m, uint64_t fh)
{
	for (struct fhmap_entry **pp = &m->buckets[bucket_of(m->nbuckets, fh)]; *pp;
	     pp = &(*pp)->next) {
		struct fhmap_entry *e = *pp;
		void *value;

		if (e->fh != fh)
			continue;
		*pp = e->next;
		value = e->value;
		free(e);
		m->count--;
		return value;
	}
	return NULL;
}

size_t fhmap_count(const struct fhmap *m)
{
	return m->count;
}

uint64_t fhmap_next(const struct fhmap *m)
{
	return m->next_fh;
}
