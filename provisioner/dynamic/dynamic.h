/*
 * dynamic.h - dynamic provisioning: carving a carvefs volume for each claim
 * of a StorageClass whose provisioner is carvefs's (dynspec.h) once the
 * scheduler has picked this node, and deleting it when its claim is gone.
 *
 * Each pass (dynamic_pass()):
 *
 *   1. lists the StorageClasses, the daemon's volumes and the PVs, and the
 *      claims of every namespace when it needs them: when some class is
 *      carvefs's, or some volume was carved for a claim;
 *   2. provisions every claim dynspec_claim_wanted() picks: the volume
 *      pvc-<claim uid> (dynspec.h says with which limits) through the daemon's
 *      create verb with the configured overcommit, then the PV of that name
 *      pre-bound to the claim, which the PV controller then binds; an Event
 *      ProvisioningSucceeded on the claim. Without room (the daemon says
 *      no_space, or the claim asks more than the pool holds) the Event is
 *      ProvisioningFailed with the daemon's sentence and the claim's
 *      selected-node annotation is removed, so the scheduler picks again;
 *      with bad parameters it is ProvisioningFailed and nothing is carved;
 *   3. deletes the volume, then the PV, of each PV of ours on this node that
 *      is Released with reclaim policy Delete (Retain keeps both);
 *   4. reports, once, each volume carrying claim labels whose PV and claim
 *      are both gone: it is never deleted without a PV saying so.
 *
 * Every step is safe to repeat after a crash: an existing volume of the
 * right name, labels and size is reused, an existing PV pre-bound to the
 * claim is success, a volume or PV already deleted is fine. A claim whose
 * provisioning failed is tried again with a growing delay, at once when the
 * claim changes.
 *
 * Used from one thread. Logs what it does (it is not a library module).
 */
#ifndef CARVEFS_DYNAMIC_H
#define CARVEFS_DYNAMIC_H

#include <stdbool.h>

#include "kube/kube.h"

struct dynamic;

/*
 * Sets up for node @node_name (copied) with the API client @kube (borrowed:
 * it must outlive the result, and not be used by another thread during a
 * pass) and the daemon at @carvefs_socket (copied; NULL: the default).
 */
int dynamic_new(struct kube *kube, const char *node_name, const char *carvefs_socket,
		struct dynamic **ret_dynamic);

/* Accepts NULL; returns NULL. */
struct dynamic *dynamic_free(struct dynamic *d);

/*
 * One pass as above, on the node whose kubernetes.io/hostname label is
 * @hostname, checking new volumes against @overcommit. Returns the number
 * of failures (logged).
 */
unsigned dynamic_pass(struct dynamic *d, const char *hostname, double overcommit);

/*
 * True once a pass has seen a StorageClass whose provisioner is carvefs's
 * (dynspec_provisioner_ours()): claims are worth watching from then on.
 */
bool dynamic_in_use(const struct dynamic *d);

/*
 * The names of the StorageClasses whose provisioner is carvefs's, as of the
 * last pass: a JSON array, borrowed (valid until the next pass).
 */
const json_t *dynamic_classes(const struct dynamic *d);

/*
 * True if the carvefs volume @name belongs to a claim (it carries the claim
 * labels, as of the last pass), so that static discovery must not offer it
 * as a PV of its own. When the last pass could not list the daemon's
 * volumes, any name starting with "pvc-" is taken to be one.
 */
bool dynamic_owns_volume(const struct dynamic *d, const char *name);

#endif
