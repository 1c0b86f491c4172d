/*
 * fileio.h - reading a small file whole, or a directory's names, safely,
 * relative to a directory fd.
 *
 * For configuration, manifests and the volume table: files that someone
 * else may have replaced by a FIFO, a device or something huge. Never logs.
 */
#ifndef CARVEFS_FILEIO_H
#define CARVEFS_FILEIO_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
