/*
 * expand.h - growing carvefs volumes when their claims ask for more.
 *
 * A claim bound to a PV of this node whose volume is a carvefs volume, in a
 * StorageClass with allowVolumeExpansion: true, may have its
 * spec.resources.requests.storage raised above the PV's capacity. A pass
 * then, in this order:
 *   1. grows the carvefs volume live through the daemon's "resize" (to the
 *      request rounded up to 4 KiB, with the configured overcommit ratio);
 *      a volume that is already at least that big is left as it is;
 *   2. sets the PV's spec.capacity.storage to the volume's new size;
 *   3. sets the claim's status.capacity.storage (the /status subresource)
 *      and drops its Resizing and FileSystemResizePending conditions;
 *   4. posts a VolumeResizeSuccessful Event on the claim.
 * Each step is checked before it is done, so a pass that died halfway is
 * finished by the next one (a claim whose status lags behind its PV is
 * brought up to date). A refusal (no room in the pool, ...) posts one
 * VolumeResizeFailed Warning with the daemon's sentence per distinct failure
 * and is retried with capped backoff (10 s, doubling, up to 5 min).
 * A request lowered below the PV's capacity is never acted on: the volume
 * is not made smaller, and the claim gets one Warning.
 *
 * kube-controller-manager's expand controller leaves such claims alone: a
 * local PV has no expandable volume plugin, so it posts an
 * ExternalExpanding Event ("waiting for an external controller") and writes
 * nothing.
 *
 * PVs of ours are those annotated pv.kubernetes.io/provisioned-by: one of
 * carvefs's names (dynspec.h) with carvefs.io/volume naming the volume
 * (dynamic ones),
 * and those registered by this node's discovery for a mounted carvefs
 * volume (static ones).
 *
 * Used from the main loop's thread only. Logs what it does.
 */
#ifndef CARVEFS_EXPAND_H
#define CARVEFS_EXPAND_H

#include <jansson.h>

#include "static/discovery.h"
#include "kube/kube.h"

#define EXPAND_ANN_VOLUME "carvefs.io/volume"

struct expand;

/*
 * A new expander asking the daemon at @carvefs_socket (copied; NULL for
 * WIRE_DEFAULT_SOCKET). @kube is borrowed and must outlive it.
 * Returns 0 or -ENOMEM.
 */
int expand_new(struct kube *kube, const char *carvefs_socket, struct expand **ret_expand);

/* Accepts NULL; returns NULL. */
struct expand *expand_free(struct expand *e);

/* What one pass looks at; everything borrowed. */
struct expand_input {
	const json_t *pvs;	      /* the PVs on this node, as the sink listed them */
	const char *hostname;	      /* this node's kubernetes.io/hostname label */
	const char *provisioner;      /* provisioned-by of this node's static PVs */
	const struct disc_result *res; /* this pass's discovery: which paths are carvefs */
	double overcommit;	      /* passed to the daemon's resize */
};

/*
 * One pass over the claims of our PVs: lists claims only when some PV of
 * ours is bound. Returns the number of claims whose expansion failed in
 * this pass (each logged), or -errno if the pass could not look at all
 * (logged).
 */
int expand_pass(struct expand *e, const struct expand_input *in);

#endif
