/*
 * pvwatch.h - react to PersistentVolume changes as they happen.
 *
 * A thread of its own (with its own API client: curl handles are not shared
 * between threads) lists the PVs, then watches them from the list's
 * resourceVersion. A watch that ends or drops is resumed from the last
 * resourceVersion it saw; one answered 410 (too old, in either form) lists
 * again; other failures back off. When a PV turns Released or is deleted,
 * the fd below becomes readable: the main loop runs a pass at once instead
 * of at the end of its period. Passes themselves still list, so a missed
 * event costs at most one period, never a wrong action.
 */
#ifndef CARVEFS_PVWATCH_H
#define CARVEFS_PVWATCH_H

#include "kubeconfig.h"

struct pvwatch;

/* Starts watching with the credentials of @kc (copied as needed). */
int pvwatch_start(const struct kubeconfig *kc, struct pvwatch **ret_watch);
/* Readable when a pass is wanted; read (drain) it before the pass. */
int pvwatch_fd(const struct pvwatch *w);
/* Stops the thread (within about a second) and frees. Accepts NULL; returns NULL. */
struct pvwatch *pvwatch_stop(struct pvwatch *w);

#endif
