/*
 * provconfig.h - the provisioner's configuration: the directory format of
 * sig-storage-local-static-provisioner, so an existing ConfigMap works
 * unchanged.
 *
 * The directory holds one file per key, as a mounted ConfigMap gives it
 * (the key files are symlinks into a "..data" directory; names starting
 * with ".." are the ConfigMap's own bookkeeping and are skipped). Each file
 * holds the YAML value of its key:
 *
 *   storageClassMap   a mapping: class name -> {hostDir, mountDir,
 *                     blockCleanerCommand, volumeMode, accessMode, fsType,
 *                     namePattern, selector}
 *   nodeLabelsForPV   a list of node label names copied onto every PV
 *   labelsForPV       a mapping of labels put on every PV
 *   useNodeNameOnly   true|false: provisioned-by names the node only
 *   minResyncPeriod   a duration, e.g. "5m"
 *   setPVOwnerRef     true|false: PVs are owned by their Node
 *   useJobForCleaning false only: cleaning always runs on the node
 *   dynamicProvisioning  carvefs' own settings for the volumes it carves
 *                     for claims (StorageClasses of local.carvefs.io), a
 *                     mapping with
 *                       overcommit  a ratio > 0, at most
 *                                   PROVCONFIG_OVERCOMMIT_MAX (default 1.0):
 *                                   what all volumes may still write must
 *                                   fit in the pool's free space times it,
 *                                   so at 1.0 every volume can be filled
 *
 * The module is split in two steps so that a reload can be detected cheaply
 * and a bad one does not disturb the running configuration: a snapshot holds
 * the raw files (the only step that reads from disk), provconfig_parse()
 * turns a snapshot into a struct prov_config. Parsing is pure: no logging,
 * no clock. A malformed file is an error whose text names the file, the
 * line and the key, e.g.
 *   storageClassMap:4: fast-disks.volumeMode: must be "Filesystem" or "Block", not "Blok"
 * Things that are accepted but ignored (unknown keys or fields) are returned
 * as warnings in the configuration, for the caller to log.
 */
#ifndef CARVEFS_PROV_CONFIG_H
#define CARVEFS_PROV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "errmsg.h"

#define PROVCONFIG_DEFAULT_DIR "/etc/provisioner/config"
/* What the upstream provisioner's image runs when a class names none. */
#define PROVCONFIG_DEFAULT_BLOCK_CLEANER "/scripts/quick_reset.sh"
#define PROVCONFIG_DEFAULT_MIN_RESYNC_NS (5 * 60 * UINT64_C(1000000000))
/* Limits on what a config directory may hold. */
#define PROVCONFIG_FILE_MAX (1024 * 1024)
#define PROVCONFIG_FILES_MAX 64
#define PROVCONFIG_DEFAULT_OVERCOMMIT 1.0
/* The daemon refuses larger ratios: catch a typo (150 for 1.5) here. */
#define PROVCONFIG_OVERCOMMIT_MAX 1000.0
/* Room for one message of the parser, before its file, line and key. */
#define PROVCONFIG_ERR_MAX 512

enum prov_volume_mode {
	PROV_MODE_FILESYSTEM = 0,
	PROV_MODE_BLOCK,
};

/* One storageClassMap entry. Every string is owned by the configuration. */
struct prov_class {
	char *name;
	char *host_dir;	 /* the directory as the kubelet sees it */
	char *mount_dir; /* the same directory as this process sees it */
	/* argv of the block cleaner, NULL-terminated, at least one word */
	char **block_cleaner_command;
	enum prov_volume_mode volume_mode; /* default Filesystem */
	char *access_mode;		   /* default "ReadWriteOnce" */
	char *fs_type;			   /* NULL when unset */
	/* the globs of namePattern, NULL-terminated, at least one; default "*" */
	char **name_patterns;
	/* extra NodeSelectorTerms for the PV's node affinity: a JSON array, or NULL */
	json_t *selector;
};

struct prov_label {
	char *key;
	char *value;
};

/*
 * A parsed configuration. Read-only once returned; released with
 * provconfig_free(). Classes are sorted by name.
 */
struct prov_config {
	struct prov_class *classes;
	size_t n_classes;
	char **node_labels_for_pv;
	size_t n_node_labels_for_pv;
	struct prov_label *labels_for_pv; /* sorted by key */
	size_t n_labels_for_pv;
	bool use_node_name_only;
	bool set_pv_owner_ref;
	uint64_t min_resync_period_ns;
	double overcommit; /* dynamicProvisioning.overcommit, > 0 */
	/* things ignored while parsing, one sentence each, for the caller to log */
	char **warnings;
	size_t n_warnings;
};

struct provconfig_snapshot;

/* An empty snapshot. Returns 0 or -ENOMEM. */
int provconfig_snapshot_new(struct provconfig_snapshot **ret_snap);

/*
 * Adds the file @name holding @len bytes of @text (copied). Returns 0,
 * -EEXIST if @name is already there, -EFBIG beyond PROVCONFIG_FILE_MAX,
 * -EMFILE beyond PROVCONFIG_FILES_MAX files, or -ENOMEM.
 */
int provconfig_snapshot_add(struct provconfig_snapshot *snap, const char *name,
			    const char *text, size_t len);

/*
 * Reads every key file of the directory open at @dir_fd into a new
 * *ret_snap owned by the caller, following the ConfigMap's symlinks and
 * skipping names starting with "..", directories and anything else that is
 * not a regular file. @dir_fd stays open and its offset is not used.
 * Returns 0 or -errno: -EFBIG if a file exceeds PROVCONFIG_FILE_MAX, -EMFILE
 * if there are more than PROVCONFIG_FILES_MAX key files.
 */
int provconfig_snapshot_read(int dir_fd, struct provconfig_snapshot **ret_snap);

/* True if both hold the same files with the same contents. NULL equals only NULL. */
bool provconfig_snapshot_equal(const struct provconfig_snapshot *a,
			       const struct provconfig_snapshot *b);

/* Accepts NULL; returns NULL. */
struct provconfig_snapshot *provconfig_snapshot_free(struct provconfig_snapshot *snap);

/*
 * Parses @snap into a new *ret_config owned by the caller. On failure
 * returns -EINVAL (or -ENOMEM) with one line naming file, line and key in
 * @ret_msg (errmsg.h), and leaves *ret_config untouched.
 */
int provconfig_parse(const struct provconfig_snapshot *snap, struct prov_config **ret_config,
		     struct errmsg *ret_msg);

/* Accepts NULL; returns NULL. */
struct prov_config *provconfig_free(struct prov_config *c);

/* The class named @name, or NULL. */
const struct prov_class *provconfig_class(const struct prov_config *c, const char *name);

/*
 * The overcommit ratio dynamically provisioned volumes (and their growth)
 * are checked against: dynamicProvisioning.overcommit, or
 * PROVCONFIG_DEFAULT_OVERCOMMIT for @c NULL or without the key.
 */
double provconfig_overcommit(const struct prov_config *c);

/* "Filesystem" or "Block": the names the PV API uses. */
const char *provconfig_volume_mode_name(enum prov_volume_mode mode);

#endif
