/*
 * fhmap.h - the ids a volume gives the kernel for its open files and
 * directories (the `fh` of OPEN, CREATE and OPENDIR), and what each names.
 *
 * The kernel keeps an fh for as long as the file is open and sends it back
 * in READ, WRITE, RELEASE, ...; an fh therefore must not be an address: a
 * successor that takes the volume over (handover.c) must map the very same
 * numbers to its own handles. Ids are counted up from 1 and never reused
 * within a map's life; a successor continues the count (fhmap_put_at()
 * raises it past every id it was given).
 *
 * Pure and single-threaded: a volume's map belongs to its loop thread.
 */
#ifndef CARVEFS_FHMAP_H
#define CARVEFS_FHMAP_H

#include <stddef.h>
#include <stdint.h>

struct fhmap;

int fhmap_new(struct fhmap **ret_map);
/* The values are not the map's: free them before. Accepts NULL; returns NULL. */
struct fhmap *fhmap_free(struct fhmap *m);
/* Files @value under a new id in *ret_fh. Returns 0 or -ENOMEM. */
int fhmap_put(struct fhmap *m, void *value, uint64_t *ret_fh);
/*
 * Files @value under @fh, an id a predecessor handed out. -EEXIST if taken,
 * -EINVAL for 0; 0 or -ENOMEM otherwise.
 */
int fhmap_put_at(struct fhmap *m, uint64_t fh, void *value);
/* What @fh names, or NULL (never handed out, or already removed). */
void *fhmap_get(const struct fhmap *m, uint64_t fh);
/* Forgets @fh and returns what it named (NULL if nothing). */
void *fhmap_remove(struct fhmap *m, uint64_t fh);
size_t fhmap_count(const struct fhmap *m);
/* The next id fhmap_put() would hand out. */
uint64_t fhmap_next(const struct fhmap *m);

#endif
