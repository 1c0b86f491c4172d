/*
 * volmetrics.h - the daemon's Prometheus metrics: volume snapshots
 * (volume.h) written in the text exposition format 0.0.4.
 *
 * Daemon-wide:
 *   carvefs_build_info{version}                      gauge, always 1
 *   carvefs_volumes{state}                           gauge, per state
 *   carvefs_keeper_holding                           gauge, 1 while a keeper holds
 *                                                    every volume's /dev/fuse fd
 * Per volume, labelled volume="NAME" and storage_class="CLASS" when it has one:
 *   carvefs_volume_info{mountpoint,state}            gauge, always 1
 *   carvefs_volume_capacity_bytes                    gauge
 *   carvefs_volume_used_bytes                        gauge
 *   carvefs_volume_inode_limit                       gauge, 0 = unlimited
 *   carvefs_volume_inodes_used                       gauge
 *   carvefs_volume_io_limit_iops{op}                 gauge, 0 = unlimited
 *   carvefs_volume_io_limit_bytes_per_second{op}     gauge, 0 = unlimited
 *   carvefs_volume_io_limit_burst_seconds            gauge
 *   carvefs_volume_io_limit_iops_size_bytes          gauge, 0 = off
 * and, for volumes served since the daemon started:
 *   carvefs_volume_io_ops_total{op}                  counter
 *   carvefs_volume_io_bytes_total{op}                counter
 *   carvefs_volume_io_throttled_seconds_total        counter
 *   carvefs_volume_io_queue_depth                    gauge
 *   carvefs_volume_io_request_duration_seconds{op}   histogram
 * op is "read" or "write".
 *
 * Pure: formats what it is given. Never logs.
 */
#ifndef CARVEFS_VOLMETRICS_H
#define CARVEFS_VOLMETRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "volume.h"

/*
 * The families above for @n volumes, daemon @version and whether a keeper
 * holds the volumes (@keeper_holding) into a malloc'd,
 * NUL-terminated *ret_text of *ret_len bytes, owned by the caller. Returns 0
 * or -ENOMEM.
 */
int volmetrics_format(const struct volume_stats *vols, size_t n, const char *version,
		      bool keeper_holding, char **ret_text, size_t *ret_len);

#endif
