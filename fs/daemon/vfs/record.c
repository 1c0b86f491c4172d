/*
 * record.c - a volume's crash state (crashstate.h) kept current while the
 * volume is served, for a daemon started after a crash (recover.c), which
 * takes the kernel connection back from the keeper (keeper.h).
 *
 * What the kernel holds is recorded before the kernel learns it: a node
 * before the reply that gives its id (inode.c), an open file or directory
 * before the reply that gives its fh (file.c, dir.c). A record goes once
 * the kernel let go (the last FORGET, RELEASE). So after a crash every node
 * id and fh the kernel can send has its record, and at worst a few records
 * are of things the kernel no longer holds (a FORGET the dead daemon read
 * but did not act on): those stay until the volume is unmounted.
 *
 * Every function runs on the volume's loop thread, or before it serves.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crashstate.h"
#include "vfs.h"

#define STAGED_SUFFIX ".new"

int record_node_put(struct vfs *v, struct inode *in, uint64_t unique)
{
	struct crashstate_node n = { .nodeid = in->nodeid,
				     .generation = in->generation,
				     .type = in->type,
				     .handle_type = in->handle_type,
				     .handle_bytes = in->handle_bytes,
				     .unique = unique & ~VFS_UNIQUE_RESEND };

	if (!v->cs)
		return 0;
	memcpy(n.handle, in->handle, in->handle_bytes);
	return crashstate_put_node(v->cs, &n, &in->cs_slot);
}

int record_open_put(struct vfs *v, bool dir, uint64_t fh, struct inode *in, uint32_t flags,
		    uint64_t unique, uint32_t *ret_slot)
{
	struct crashstate_open o = { .fh = fh, .nodeid = in->nodeid, .flags = flags,
				     .unique = unique & ~VFS_UNIQUE_RESEND };

	*ret_slot = CS_SLOT_NONE;
	if (!v->cs)
		return 0;
	return crashstate_put_open(v->cs, dir ? CRASHSTATE_DIR : CRASHSTATE_FILE, &o, ret_slot);
}

int record_node_restore(struct vfs *v, const struct crashstate_node *n, uint32_t slot)
{
	struct inode_record rec = { .nodeid = n->nodeid,
				    .generation = n->generation,
				    .type = n->type,
				    .handle_type = n->handle_type,
				    .handle_bytes = n->handle_bytes,
				    .handle = n->handle,
				    .slot = slot,
				    .unique = n->unique };

	return inode_restore(v, &rec);
}

void record_release(struct vfs *v, uint32_t *slot)
{
	if (v->cs && *slot != CS_SLOT_NONE)
		(void)crashstate_release(v->cs, *slot);
	*slot = CS_SLOT_NONE;
}

/* From now on the quota's counts are kept in the state file too (crashstate_map_usage()). */
static int usage_attach(struct vfs *v)
{
	struct quota_mirror *m;
	int r = crashstate_map_usage(v->cs, &m);

	if (r == 0)
		quota_set_mirror(v->quota, m);
	return r;
}

int record_state_open(struct vfs *v, int dir_fd, bool staged)
{
	char name[sizeof(v->name) + sizeof(STAGED_SUFFIX)];
	int r;

	if (dir_fd < 0)
		return 0;
	snprintf(name, sizeof(name), "%s%s", v->name, STAGED_SUFFIX);
	/* A volume mounted anew: a successor that died before it served left this. */
	if (!staged)
		(void)unlinkat(dir_fd, name, 0);
	snprintf(name, sizeof(name), "%s%s", v->name, staged ? STAGED_SUFFIX : "");
	r = crashstate_open(dir_fd, name, true, &v->cs);
	if (r < 0)
		return r;
	v->cs_staged = staged;
	r = usage_attach(v);
	if (r < 0)
		record_state_close(v, true);
	return r;
}

void record_state_close(struct vfs *v, bool remove)
{
	if (v->cs)
		quota_set_mirror(v->quota, NULL);
	v->cs = crashstate_close(v->cs, remove);
	v->cs_staged = false;
}

int record_state_commit(struct vfs *v)
{
	if (!v->cs_staged)
		return 0;
	v->cs_staged = false;
	return crashstate_rename(v->cs, v->name);
}
