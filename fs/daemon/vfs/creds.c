/*
 * creds.c - create objects as the calling process, so that a new file,
 * directory, symlink or node belongs to the caller from its first instant
 * (never to root, not even between a create and a chown).
 *
 * The filesystem uid and gid are per thread on Linux, and each request runs
 * on one loop thread from start to end, so switching them around one
 * syscall is safe. Dropping fsuid 0 also clears the file capabilities from
 * the effective set; the kernel already checked the caller's permissions
 * (default_permissions, with all of its supplementary groups, which we do
 * not have), so DAC_OVERRIDE and DAC_READ_SEARCH are raised again for the
 * backing call. So is FSETID: the kernel has also already dropped the
 * set-gid bit from the mode of a new object in a set-gid directory whose
 * group the caller is not in (counting its supplementary groups), and the
 * backing filesystem, seeing only our fsgid, would drop it for callers who
 * are in the group through a supplementary one. Going back to fsuid 0
 * restores the full set by itself.
 */
#include <errno.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <stdbool.h>

#include "vfs.h"

static __thread bool creds_switched;

static int caps_raise_fs(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	const unsigned caps =
		(1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH) | (1u << CAP_FSETID);

	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	data[0].effective |= caps & data[0].permitted;
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -errno;
	return 0;
}

int creds_enter(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int r;

	if (ctx->uid == 0 && ctx->gid == 0)
		return 0;
	/* setfsgid first: with fsuid already non-zero it could not be changed. */
	setfsgid(ctx->gid);
	setfsuid(ctx->uid);
	creds_switched = true;
	if ((uid_t)setfsuid((uid_t)-1) != ctx->uid || (gid_t)setfsgid((gid_t)-1) != ctx->gid) {
		creds_leave();
		return -EPERM;
	}
	r = caps_raise_fs();
	if (r < 0)
		creds_leave();
	return r;
}

void creds_leave(void)
{
	if (!creds_switched)
		return;
	setfsuid(0);
	setfsgid(0);
	creds_switched = false;
}
