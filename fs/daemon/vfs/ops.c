/*
 * ops.c - the FUSE request table of a carvefs volume, and nothing else.
 *
 * Left out on purpose: copy_file_range (the kernel falls back to read and
 * write, which the quota sees), flock/getlk/setlk (the kernel keeps locks
 * locally, which is right for a volume one node serves), ioctl, poll, bmap.
 */
#include "vfs.h"

const struct fuse_lowlevel_ops vfs_ops = {
	.init = meta_init,
	.lookup = meta_lookup,
	.forget = meta_forget,
	.forget_multi = meta_forget_multi,
	.getattr = meta_getattr,
	.setattr = meta_setattr,
	.readlink = meta_readlink,
	.mknod = journal_mknod,
	.mkdir = journal_mkdir,
	.symlink = journal_symlink,
	.link = journal_link,
	.unlink = journal_unlink,
	.rmdir = journal_rmdir,
	.rename = journal_rename,
	.statfs = meta_statfs,
	.setxattr = meta_setxattr,
	.getxattr = meta_getxattr,
	.listxattr = meta_listxattr,
	.removexattr = meta_removexattr,
	.opendir = dir_opendir,
	.readdir = dir_readdir,
	.readdirplus = dir_readdirplus,
	.releasedir = dir_releasedir,
	.fsyncdir = dir_fsyncdir,
	.create = journal_create,
	.open = file_open,
	.read = file_read,
	.write_buf = file_write_buf,
	.flush = file_flush,
	.release = file_release,
	.fsync = file_fsync,
	.fallocate = file_fallocate,
	.lseek = file_lseek,
};
