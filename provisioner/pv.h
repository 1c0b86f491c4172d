/*
 * pv.h - the PersistentVolume objects the provisioner registers, built as
 * jansson objects, and their manifests.
 *
 * A PV is the one sig-storage-local-static-provisioner would create for the
 * same volume, so the two provisioners are interchangeable on a node:
 *
 *   metadata.name         local-pv-<FNV-1a-32 of entry + node + class, %x>
 *   metadata.labels       nodeLabelsForPV picked from the Node, then labelsForPV
 *   metadata.annotations  pv.kubernetes.io/provisioned-by:
 *                         local-volume-provisioner-<node>[-<node uid>]
 *   metadata.ownerReferences  the Node, with setPVOwnerRef and a known Node
 *   spec.capacity.storage the measured size rounded down (pv_capacity_round)
 *   spec.local            path = hostDir/entry, fsType for a block device
 *   spec.nodeAffinity     kubernetes.io/hostname In [the node's hostname
 *                         label], then the class's selector terms
 *   spec.accessModes, storageClassName, volumeMode,
 *   persistentVolumeReclaimPolicy and mountOptions from the StorageClass
 *
 * Pure: no I/O, no logging, no clock. Every function returns 0 or -errno
 * unless it says otherwise; JSON out-parameters are new references owned
 * by the caller.
 */
#ifndef CARVEFS_PV_H
#define CARVEFS_PV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"

#define PV_ANN_PROVISIONED_BY "pv.kubernetes.io/provisioned-by"
#define PV_LABEL_HOSTNAME "kubernetes.io/hostname"
/* "local-pv-" + 8 hex digits + NUL */
#define PV_NAME_MAX 18

/* FNV-1a, 32 bits, continuing from @hash (start with PV_FNV32_OFFSET). */
#define PV_FNV32_OFFSET UINT32_C(2166136261)
uint32_t pv_fnv1a32(uint32_t hash, const void *data, size_t len);

/*
 * The PV name of @entry (a basename in the class's mountDir) on node @node
 * in class @class_name: "local-pv-" and the hash of the three strings
 * concatenated, in lowercase hex without padding.
 */
void pv_name(const char *entry, const char *node, const char *class_name,
	     char ret_name[PV_NAME_MAX]);

/*
 * Rounds a measured capacity down to a whole number of GiB once it is at
 * least 10 GiB, else to whole MiB once it is at least 10 MiB, else leaves
 * it: the upstream provisioner's rule, so PV sizes read well.
 */
uint64_t pv_capacity_round(uint64_t bytes);

/*
 * The value of the provisioned-by annotation into a malloc'd *ret_name:
 * "local-volume-provisioner-<node>-<uid>", or "...-<node>" when
 * @node_name_only or when @node (the Node object from the API) is NULL or
 * has no metadata.uid.
 */
int pv_provisioner_name(const char *node_name, const json_t *node, bool node_name_only,
			char **ret_name);

/*
 * The node's hostname label, which node affinity is written against:
 * metadata.labels["kubernetes.io/hostname"] of @node, or @node_name when
 * there is no cluster to ask (@node NULL). Returns the string (borrowed from
 * @node or @node_name), or NULL if @node lacks the label.
 */
const char *pv_node_hostname(const char *node_name, const json_t *node);

/* What pv_build() needs to know. Everything is borrowed. */
struct pv_request {
	const struct prov_config *config;
	const struct prov_class *cls;
	const char *node_name;
	const json_t *node;	     /* the Node object, or NULL without a cluster */
	const json_t *storage_class; /* the StorageClass object, or NULL */
	const char *entry;	     /* the basename in the class's mountDir */
	bool is_block;		     /* the entry is a block device */
	uint64_t capacity_bytes;     /* as measured; pv_build() rounds it */
};

/*
 * Builds the PV for @req into *ret_pv. The reclaim policy is the
 * StorageClass's reclaimPolicy (Delete without one or without a class),
 * mountOptions its mountOptions. Returns 0, -EINVAL if the StorageClass's
 * reclaim policy is neither Delete nor Retain (*ret_why then says so),
 * -ENODATA if @req->node lacks the hostname label, or -ENOMEM.
 * @ret_why may be NULL; it points at a static string.
 */
int pv_build(const struct pv_request *req, json_t **ret_pv, const char **ret_why);

/* Field accessors; each returns a string borrowed from @pv, or NULL. */
const char *pv_get_name(const json_t *pv);
const char *pv_get_path(const json_t *pv);
const char *pv_get_provisioned_by(const json_t *pv);

/*
 * True if @pv's required node affinity pins it to @hostname: some term has
 * kubernetes.io/hostname In [..., @hostname, ...].
 */
bool pv_on_node(const json_t *pv, const char *hostname);

/*
 * The PV in the JSON array @pvs that is on @hostname with spec.local.path
 * @path (borrowed from @pvs), or NULL. Existing PVs are matched this way, not
 * by name, so that a restart or a renamed class never registers a disk twice.
 */
json_t *pv_find(const json_t *pvs, const char *hostname, const char *path);

/*
 * Writes @pv as a YAML document (block style, kubectl-ready) into a
 * malloc'd, NUL-terminated *ret_text of *ret_len bytes. Strings that YAML
 * would read as anything else ("10", "true", "") are quoted, so quantities
 * stay strings.
 */
int pv_manifest_format(const json_t *pv, char **ret_text, size_t *ret_len);

/*
 * Reads a manifest written by pv_manifest_format() (or any YAML or JSON
 * holding one object) into *ret_pv. Plain scalars become numbers, booleans
 * or null as YAML 1.2 reads them. Returns 0, -EBADMSG if @text is not YAML
 * or not an object, -E2BIG if it nests too deep, or -ENOMEM.
 */
int pv_manifest_parse(const char *text, size_t len, json_t **ret_pv);

#endif
