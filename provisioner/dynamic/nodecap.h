/*
 * nodecap.h - this node's free carvefs capacity, published on its Node
 * object for the scheduler and for people:
 *
 *   annotation carvefs.io/allocatable-bytes  exact bytes a new volume (or a
 *              growing one) may still take: max(0, free * overcommit -
 *              committed), from the daemon's "pool" verb;
 *   label      carvefs.io/allocatable-gib    the same in whole GiB, rounded
 *              down, so that node affinity can say
 *              {key: carvefs.io/allocatable-gib, operator: Gt, values: ["99"]}.
 *
 * Written with a JSON merge patch on the Node, and only when a value
 * changed, so a steady node costs no writes. Used from the main loop's
 * thread only. Logs, and says a repeated failure once.
 */
#ifndef CARVEFS_NODECAP_H
#define CARVEFS_NODECAP_H

#include <stdint.h>

#include <jansson.h>

#include "kube/kube.h"

#define NODECAP_ANN_BYTES "carvefs.io/allocatable-bytes"
#define NODECAP_LABEL_GIB "carvefs.io/allocatable-gib"

struct nodecap;

/*
 * A publisher asking the daemon at @carvefs_socket (copied; NULL for
 * WIRE_DEFAULT_SOCKET). @kube is borrowed and must outlive it.
 * Returns 0 or -ENOMEM.
 */
int nodecap_new(struct kube *kube, const char *carvefs_socket, struct nodecap **ret_nodecap);

/* Accepts NULL; returns NULL. */
struct nodecap *nodecap_free(struct nodecap *n);

/* What *ret_room of nodecap_update() says when the pool could not be measured. */
#define NODECAP_UNMEASURED UINT64_MAX

/*
 * Measures the pool and patches the Node @node_name if @node (the Node as
 * read in this pass, borrowed) does not carry the values yet; the room
 * measured goes to *@ret_room, also when the patch fails (else
 * NODECAP_UNMEASURED). When the daemon cannot be asked the Node is left as
 * it is: a daemon restarting for a moment should not make pods
 * unschedulable. Returns 0 or -errno (logged).
 */
int nodecap_update(struct nodecap *n, const char *node_name, const json_t *node,
		   double overcommit, uint64_t *ret_room);

#endif
