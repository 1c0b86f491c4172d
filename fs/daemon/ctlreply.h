/*
 * ctlreply.h - the JSON the control socket's verbs answer with (wire.h):
 * V, a volume, and P, the pool, built from the volume manager's structs.
 * Pure: no lock, no IO, so the replies' shape is tested without a daemon.
 */
#ifndef CARVEFS_CTLREPLY_H
#define CARVEFS_CTLREPLY_H

#include <stddef.h>

#include <jansson.h>

#include "volume.h"

/* One V object; a new reference, or NULL when out of memory. */
json_t *ctlreply_volume(const struct volume_stats *s);
/* An array of the @n V objects of @vols, in that order; NULL when out of memory. */
json_t *ctlreply_volumes(const struct volume_stats *vols, size_t n);
/* The P object of the pool at @path; NULL when out of memory. */
json_t *ctlreply_pool(const char *path, const struct pool_info *info);

#endif
