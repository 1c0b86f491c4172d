/*
 * sink.h - where the provisioner registers PersistentVolumes, behind one
 * interface so that the discovery pass does not care.
 *
 * Two backends: the Kubernetes API, and a directory of manifests for a node
 * without cluster credentials (dirsink_open() below). A backend is a struct
 * whose first member is a struct sink; its ops are:
 *
 *   list         every PV the backend holds, as a JSON array of PV objects
 *                (*ret_pvs, a new reference). The pass matches them to
 *                volumes by node and path (pv_find()).
 *   create       registers @pv (a full PV object). -EEXIST if a PV of that
 *                name exists already.
 *   remove       deletes the PV @name. -ENOENT if there is none.
 *   get_node     the Node object named @name (*ret_node, a new reference),
 *                or NULL in *ret_node when the backend has no cluster to ask.
 *   get_storage_class  likewise for a StorageClass: -ENOENT if the cluster
 *                has no such class, NULL in *ret_class without a cluster.
 *   free         releases the backend.
 *
 * remove_vanished says what becomes of a PV whose volume is no longer found
 * (unmounted, deleted): a directory of manifests mirrors the disks, so its
 * manifest is removed; a PV in a cluster may be bound to a claim and is left
 * to the release cycle.
 *
 * Every op returns 0 or -errno. A sink is used from one thread at a time.
 */
#ifndef CARVEFS_SINK_H
#define CARVEFS_SINK_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct sink;

struct sink_ops {
	const char *kind; /* "dir", "api": for messages */
	bool remove_vanished;
	int (*list)(struct sink *s, json_t **ret_pvs);
	int (*create)(struct sink *s, const json_t *pv);
	int (*remove)(struct sink *s, const char *name);
	/* both optional: NULL means "no cluster" */
	int (*get_node)(struct sink *s, const char *name, json_t **ret_node);
	int (*get_storage_class)(struct sink *s, const char *name, json_t **ret_class);
	void (*free)(struct sink *s);
};

struct sink {
	const struct sink_ops *ops;
};

static inline int sink_list(struct sink *s, json_t **ret_pvs)
{
	return s->ops->list(s, ret_pvs);
}

static inline int sink_create(struct sink *s, const json_t *pv)
{
	return s->ops->create(s, pv);
}

static inline int sink_remove(struct sink *s, const char *name)
{
	return s->ops->remove(s, name);
}

static inline int sink_get_node(struct sink *s, const char *name, json_t **ret_node)
{
	if (!s->ops->get_node) {
		*ret_node = NULL;
		return 0;
	}
	return s->ops->get_node(s, name, ret_node);
}

static inline int sink_get_storage_class(struct sink *s, const char *name, json_t **ret_class)
{
	if (!s->ops->get_storage_class) {
		*ret_class = NULL;
		return 0;
	}
	return s->ops->get_storage_class(s, name, ret_class);
}

/* Accepts NULL; returns NULL. */
static inline struct sink *sink_free(struct sink *s)
{
	if (s)
		s->ops->free(s);
	return NULL;
}

/* Where the directory sink writes when no path is given. */
#define DIRSINK_DEFAULT_PATH "/var/lib/carve-provisioner/pv"

/*
 * The directory sink: one manifest <pv name>.yaml per PV in @path (created
 * mode 0755 with its parents if missing), ready for `kubectl apply -f`.
 * Each manifest is written atomically (a temporary file, fsync, rename,
 * fsync of the directory), so a reader never sees half of one and a crash
 * leaves the old or the new file. Temporary files left by a crash are
 * removed here. Files that are not manifests of this sink (another name, not
 * YAML, a name that does not match its metadata.name) are ignored by list
 * and never removed. Logs what it skips. Returns 0 or -errno.
 */
int dirsink_open(const char *path, struct sink **ret_sink);

#endif
