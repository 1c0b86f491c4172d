/*
 * pvcwatch.h - react to claims handed to this node as they happen.
 *
 * A thread of its own (with its own API client) lists the claims of every
 * namespace, then watches them from the list's resourceVersion, resuming a
 * dropped watch where it was, listing again after a 410 (in either form),
 * backing off after other failures. When a claim is selected for this node
 * (volume.kubernetes.io/selected-node) while still Pending, or a claim of
 * this node asks to grow, the fd below becomes readable and the main loop
 * runs a pass at once. Passes list the
 * claims themselves, so a missed event costs at most one period.
 *
 * The thread waits idle until pvcwatch_enable(): a node in a cluster
 * without carvefs StorageClasses keeps no watch on every claim.
 */
#ifndef CARVEFS_PVCWATCH_H
#define CARVEFS_PVCWATCH_H

#include "kubeconfig.h"

struct pvcwatch;

/* Starts watching for @node_name (copied) with the credentials of @kc. */
int pvcwatch_start(const struct kubeconfig *kc, const char *node_name,
		   struct pvcwatch **ret_watch);
/* Lets the thread start listing and watching; a second call does nothing. */
void pvcwatch_enable(struct pvcwatch *w);
/* Readable when a pass is wanted; read (drain) it before the pass. */
int pvcwatch_fd(const struct pvcwatch *w);
/* Stops the thread (within about a second) and frees. Accepts NULL; returns NULL. */
struct pvcwatch *pvcwatch_stop(struct pvcwatch *w);

#endif
