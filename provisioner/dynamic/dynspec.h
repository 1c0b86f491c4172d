/*
 * dynspec.h - what a claim of a carvefs StorageClass asks for, turned into
 * the carvefs volume to carve and the PV that offers it.
 *
 * A claim is served when the scheduler has picked this node for it
 * (volume.kubernetes.io/selected-node) and the PV controller has handed it
 * to carvefs (the storage-provisioner annotation, which Kubernetes 1.20
 * sets in its beta form only once a node is selected). Its volume and its
 * PV are both named pvc-<claim uid>, so a second attempt after a crash
 * finds what the first one made.
 *
 * The volume's limits come from the StorageClass's parameters, which a claim
 * may override with annotations carvefs.io/<parameter>, within bounds the
 * class may set:
 *
 *   parameter            daemon field  bound (class only)
 *   inodes               inodes        maxInodes
 *   readIOPS             riops         maxReadIOPS
 *   writeIOPS            wiops         maxWriteIOPS
 *   readBytesPerSecond   rbps          maxReadBytesPerSecond
 *   writeBytesPerSecond  wbps          maxWriteBytesPerSecond
 *   burstSeconds         burst_ms      -
 *
 * Numbers are Kubernetes quantities ("100Mi", "2k", "5000"); burstSeconds
 * is a number of seconds as duration_parse_seconds_ms() reads it ("0.5",
 * at most a day, nothing finer than a millisecond). A negative or
 * malformed value, an unknown parameter or annotation key under carvefs.io/,
 * a bound given to a claim, or an override above its bound is an error
 * naming the key and the value; nothing is carved then.
 *
 * Pure: no I/O, no logging, no clock. Functions return 0 or -errno unless
 * they say otherwise; JSON out-parameters are new references owned by the
 * caller; the reason for a failure goes to @ret_msg (errmsg.h).
 */
#ifndef CARVEFS_DYNSPEC_H
#define CARVEFS_DYNSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "errmsg.h"

/*
 * The provisioner name of carvefs's StorageClasses. A DNS subdomain, as a
 * CSIDriver object's name must be: with one of that name and
 * storageCapacity: true, the scheduler places claims by the
 * CSIStorageCapacity objects the provisioner publishes (nodecap.h).
 */
#define DYNSPEC_PROVISIONER "local.carvefs.io"
/* The name of earlier releases, still served: a class cannot be renamed. */
#define DYNSPEC_PROVISIONER_LEGACY "carvefs.io/local"
#define DYNSPEC_ANN_PREFIX "carvefs.io/"
#define DYNSPEC_ANN_VOLUME "carvefs.io/volume"
#define DYNSPEC_LABEL_CLAIM_NAMESPACE "carvefs.io/claim-namespace"
#define DYNSPEC_LABEL_CLAIM_NAME "carvefs.io/claim-name"
#define DYNSPEC_LABEL_CLAIM_UID "carvefs.io/claim-uid"
#define DYNSPEC_ANN_SELECTED_NODE "volume.kubernetes.io/selected-node"
#define DYNSPEC_ANN_PROVISIONER "volume.kubernetes.io/storage-provisioner"
#define DYNSPEC_ANN_PROVISIONER_BETA "volume.beta.kubernetes.io/storage-provisioner"
/* Sizes are rounded up to the pool's block size. */
#define DYNSPEC_BLOCK_BYTES 4096

enum dynspec_param {
	DYNSPEC_INODES = 0,
	DYNSPEC_RIOPS,
	DYNSPEC_WIOPS,
	DYNSPEC_RBPS,
	DYNSPEC_WBPS,
	DYNSPEC_BURST_MS,
	DYNSPEC_N_PARAMS,
};

/* The limits of one volume; a value not set is left to the daemon's default. */
struct dynspec_params {
	uint64_t value[DYNSPEC_N_PARAMS];
	bool set[DYNSPEC_N_PARAMS];
};

/* True if @name (NULL allowed) is a provisioner name carvefs serves. */
bool dynspec_provisioner_ours(const char *name);

/* The parameter's StorageClass key ("readIOPS") and control socket field ("riops"). */
const char *dynspec_param_key(enum dynspec_param p);
const char *dynspec_param_field(enum dynspec_param p);

/*
 * The limits for a claim annotated @annotations (its metadata.annotations,
 * may be NULL) of a class with @parameters (the StorageClass's parameters,
 * may be NULL), into *ret. Returns 0 or -EINVAL with the reason in @ret_msg.
 */
int dynspec_params_resolve(const json_t *parameters, const json_t *annotations,
			   struct dynspec_params *ret, struct errmsg *ret_msg);

/*
 * True if @claim is one this node is to provision now: Pending, not bound
 * to a volume, not being deleted, selected for @node_name, handed to
 * one of carvefs's provisioner names.
 */
bool dynspec_claim_wanted(const json_t *claim, const char *node_name);

/*
 * True if @claim is a bound claim of carvefs on @node_name whose
 * request is above the capacity its status gives: it asks to grow.
 */
bool dynspec_claim_grows(const json_t *claim, const char *node_name);

/*
 * The volume size for @claim: spec.resources.requests.storage rounded up to
 * DYNSPEC_BLOCK_BYTES. -EINVAL (with @ret_msg) when missing, zero,
 * malformed or too large.
 */
int dynspec_claim_size(const json_t *claim, uint64_t *ret_bytes, struct errmsg *ret_msg);

/*
 * Anything in @claim's spec carvefs cannot honour (a Block volumeMode, a
 * selector, a dataSource): -EINVAL with the reason in @ret_msg; else 0.
 */
int dynspec_claim_supported(const json_t *claim, struct errmsg *ret_msg);

/* "pvc-<metadata.uid>" into a malloc'd *ret_name; -EINVAL without a uid. */
int dynspec_volume_name(const json_t *claim, char **ret_name);

/*
 * The control socket request creating the volume @name of @size_bytes for
 * @claim of class @class_name: limits from @params, the claim's labels
 * (namespace, name, uid), and @overcommit when > 0.
 */
int dynspec_create_request(const char *name, uint64_t size_bytes,
			   const struct dynspec_params *params, const char *class_name,
			   const json_t *claim, double overcommit, json_t **ret_request);

/*
 * True if @volume (a V object of the control socket) was made for @claim
 * with @size_bytes: its claim-uid label is the claim's uid and its capacity
 * is the size. A volume left by an earlier attempt is reused only then.
 */
bool dynspec_volume_matches(const json_t *volume, const json_t *claim, uint64_t size_bytes);

/* What dynspec_pv_build() needs; everything borrowed. */
struct dynspec_pv_request {
	const json_t *claim;
	const json_t *storage_class;
	const char *name;	/* the volume's and the PV's name */
	const char *path;	/* the volume's mountpoint */
	const char *hostname;	/* this node's kubernetes.io/hostname label */
	uint64_t capacity_bytes;
};

/*
 * The PV for a carved volume, pre-bound to the claim (claimRef with uid
 * and resourceVersion), pinned to @hostname, with the class's reclaim
 * policy (Delete by default) and mountOptions, the claim's access modes,
 * and the annotations provisioned-by (the class's provisioner name) and
 * carvefs.io/volume.
 * -EINVAL if the class's reclaim policy is neither Delete nor Retain or the
 * claim lacks what a claimRef needs, -ENOMEM; with the reason in @ret_msg.
 */
int dynspec_pv_build(const struct dynspec_pv_request *req, json_t **ret_pv,
		     struct errmsg *ret_msg);

/* True if @pv is one carvefs provisioned (provisioned-by one of its names). */
bool dynspec_pv_ours(const json_t *pv);

/* True if @pv's claimRef names the claim of uid @claim_uid. */
bool dynspec_pv_for_claim(const json_t *pv, const char *claim_uid);

/* The carvefs volume of a PV of ours (its carvefs.io/volume annotation), or NULL. */
const char *dynspec_pv_volume(const json_t *pv);

#endif
