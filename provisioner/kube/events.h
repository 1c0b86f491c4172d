/*
 * events.h - core/v1 Events about the objects the provisioner acts on, so
 * that `kubectl describe pvc` says what happened and why.
 *
 * An Event is posted in the namespace of the object it is about ("default"
 * for a cluster-scoped object such as a PV), named "<object name>.<hex
 * time>" as the apiserver's own recorders name theirs, with source
 * component "carvefs.io/local" and this node as host.
 *
 * Events are informative: a failure to post one is returned for the caller
 * to log, never a reason to undo what was done.
 */
#ifndef CARVEFS_EVENTS_H
#define CARVEFS_EVENTS_H

#include <jansson.h>

#include "kube/kube.h"

#define EVENTS_COMPONENT "carvefs.io/local"
#define EVENT_NORMAL "Normal"
#define EVENT_WARNING "Warning"

/*
 * Sets the node named as the Events' source host (copied; NULL clears it).
 * Returns 0 or -ENOMEM.
 */
int event_set_host(const char *node_name);

/*
 * Posts an Event of @type ("Normal" or "Warning") with @reason (CamelCase,
 * e.g. "ProvisioningSucceeded") and @message (one sentence) about @object,
 * a claim or a PV as the API returned it (borrowed). A list item lacks
 * kind and apiVersion: they are inferred then (a namespaced object with
 * spec.resources is a PersistentVolumeClaim, one with spec.capacity a
 * PersistentVolume). Returns 0, -EINVAL if @object has no name, or the
 * error of the request (kube.h).
 */
int event_post(struct kube *k, const json_t *object, const char *type, const char *reason,
	       const char *message);

#endif
