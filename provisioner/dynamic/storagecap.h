/*
 * storagecap.h - this node's room as CSIStorageCapacity objects, one per
 * StorageClass of carvefs's, for the scheduler.
 *
 * kube-scheduler checks an unbound WaitForFirstConsumer claim against these
 * objects when a CSIDriver object named after the class's provisioner
 * (local.carvefs.io, deploy/csidriver.yaml) says storageCapacity: true: a
 * node is a candidate only if an object for the claim's class whose
 * nodeTopology matches the node has a capacity of at least the request.
 * The provisioner is not a CSI driver; the scheduler looks at the names
 * alone.
 *
 * Each object: generated name carvefs-..., in the namespace given at
 * creation, label app.kubernetes.io/managed-by: carve-provisioner,
 * nodeTopology {matchLabels: {kubernetes.io/hostname: <this node's label>}},
 * storageClassName, capacity (bytes). The API version is the newest the
 * cluster serves, found by discovery: storage.k8s.io/v1 (Kubernetes 1.24+),
 * v1beta1 (1.21+), v1alpha1 (1.19 and 1.20, behind the CSIStorageCapacity
 * feature gate and --runtime-config=storage.k8s.io/v1alpha1=true). With
 * none, nothing is published (said once).
 *
 * Objects change only when a value does; this node's objects for classes
 * that went away are deleted. Used from the main loop's thread only. Logs,
 * and says a repeated failure once.
 */
#ifndef CARVEFS_STORAGECAP_H
#define CARVEFS_STORAGECAP_H

#include <stdint.h>

#include <jansson.h>

#include "kube/kube.h"

#define STORAGECAP_MANAGED_BY "carve-provisioner"
#define STORAGECAP_DEFAULT_NAMESPACE "default"

struct storagecap;

/*
 * A publisher into @namespace (copied). @kube is borrowed and must outlive
 * it. Returns 0 or -ENOMEM.
 */
int storagecap_new(struct kube *kube, const char *namespace, struct storagecap **ret_cap);

/* Accepts NULL; returns NULL. */
struct storagecap *storagecap_free(struct storagecap *s);

/*
 * Makes this node's objects say @room_bytes for each class named in
 * @classes (a JSON array of names; NULL when not known yet: nothing is
 * done) on the node whose kubernetes.io/hostname label is @hostname, and
 * deletes its objects of other classes. Returns 0 or -errno (logged).
 */
int storagecap_update(struct storagecap *s, const char *hostname, const json_t *classes,
		      uint64_t room_bytes);

#endif
