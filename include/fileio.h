/*
 * fileio.h - reading a small file whole, or a directory's names, safely,
 * relative to a directory fd; replacing a file atomically; creating a
 * directory and its parents.
 *
 * For configuration, manifests and the volume table: files that someone
 * else may have replaced by a FIFO, a device or something huge, and files
 * that must be either the old or the new version after a crash, never a
 * torn one. Never logs.
 */
#ifndef CARVEFS_FILEIO_H
#define CARVEFS_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h> /* RENAME_NOREPLACE */
#include <sys/types.h>

/*
 * Reads the regular file @name below @dirfd into a malloc'd buffer owned by
 * the caller, NUL-terminated (the NUL is not counted in *ret_len). Opens it
 * non-blocking, so a FIFO cannot hang the caller, and with O_NOFOLLOW unless
 * @follow (a mounted ConfigMap is made of symlinks). Returns 0, -ENOTSUP if
 * it is not a regular file, -EFBIG if it is longer than @max_bytes (also if
 * it grew past that while being read), or -errno.
 */
int fileio_read(int dirfd, const char *name, bool follow, size_t max_bytes, char **ret_buf,
		size_t *ret_len);

/*
 * Reads the names in the directory @dirfd (any fd of it, O_PATH included;
 * not consumed and its offset not moved), without "." and "..", into a
 * malloc'd array of malloc'd strings owned by the caller (free it with
 * fileio_names_free()). Order is the directory's. Returns 0, -E2BIG if there
 * are more than @max_names (0 = no limit), or -errno.
 */
int fileio_list_names(int dirfd, size_t max_names, char ***ret_names, size_t *ret_n);
/* Frees what fileio_list_names() returned; accepts NULL. */
void fileio_names_free(char **names, size_t n);

/*
 * Atomic replacement is two steps, so that a caller can act between them
 * (the volume table keeps the previous copy):
 *
 *	fileio_write_tmp(dirfd, ".x.tmp", buf, len, 0600);  write, fsync, close
 *	fileio_commit(dirfd, ".x.tmp", "x", 0);             rename, fsync the directory
 *
 * A reader sees the old file or the new one, never a part of either, and
 * after a crash the directory holds one of them (and perhaps the temporary
 * file, which the next write removes).
 */

/*
 * Writes @len bytes of @buf into a new file @tmp_name below @dirfd (any fd
 * of the directory, O_PATH included), created with @mode (the umask
 * applies), then fsyncs and closes it. A file or symlink already at
 * @tmp_name (a crashed write, or planted) is removed first, and the new one
 * is created O_EXCL|O_NOFOLLOW, so nothing outside the directory is
 * written. Returns 0 or -errno, and removes @tmp_name on failure.
 */
int fileio_write_tmp(int dirfd, const char *tmp_name, const void *buf, size_t len, mode_t mode);

/*
 * Renames @tmp_name to @name below @dirfd and fsyncs the directory, so the
 * rename survives a crash. @rename_flags: 0 replaces @name;
 * RENAME_NOREPLACE fails with -EEXIST if @name exists (also on
 * filesystems without renameat2(): there a link-and-unlink does it).
 * Returns 0 or -errno. If the rename fails, @tmp_name is removed and @name
 * is as it was; if only the fsync fails, @name is already the new file.
 */
int fileio_commit(int dirfd, const char *tmp_name, const char *name, unsigned rename_flags);

/*
 * Creates the directory @path and any missing parent, as "mkdir -p -m
 * @mode" does: the last component gets @mode, the parents it creates 0755
 * (the umask applies to both); directories that exist keep their mode, an
 * operator may have set it on purpose. Returns 0, -ENOTDIR if @path or a
 * parent exists but is not a directory, -EINVAL for an empty @path, or
 * -errno.
 */
int fileio_mkdir_p(const char *path, mode_t mode);

#endif
