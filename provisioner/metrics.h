/*
 * metrics.h - the provisioner's Prometheus metrics: a fixed set of families,
 * recorded from any thread and formatted as the text exposition format
 * 0.0.4 for GET /metrics.
 *
 *   local_volume_provisioner_persistentvolume_discovery_total{mode}
 *   local_volume_provisioner_persistentvolume_discovery_duration_seconds{mode}
 *   local_volume_provisioner_persistentvolume_delete_total{mode,type}
 *   local_volume_provisioner_persistentvolume_delete_failed_total{mode,type}
 *   local_volume_provisioner_persistentvolume_delete_duration_seconds{mode,type}
 *   local_volume_provisioner_apiserver_requests_total{method}
 *   local_volume_provisioner_apiserver_requests_failed_total{method}
 *   local_volume_provisioner_apiserver_requests_duration_seconds{method}
 *   local_volume_provisioner_proctable_running
 *   local_volume_provisioner_proctable_succeeded
 *   local_volume_provisioner_proctable_failed
 *   carvefs_dynamic_provisioned_total
 *   carvefs_dynamic_provisioning_failed_total
 *   carvefs_dynamic_deleted_total
 *   carvefs_dynamic_orphaned_volumes
 *
 * mode is Filesystem or Block; type is process (volumes are cleaned by the
 * provisioner itself, never by a Job); method is GET, POST, PUT, DELETE,
 * PATCH, or other for anything else. Histograms use Prometheus' default
 * buckets. Durations are given in nanoseconds: the module reads no clock.
 *
 * The registry is process-wide; every value is an atomic, so recording
 * takes no lock and formatting may run on another thread. A scrape racing
 * a record may see a histogram's _sum one observation ahead of or behind
 * its buckets; _count always equals the +Inf bucket.
 */
#ifndef CARVEFS_METRICS_H
#define CARVEFS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A PV created for a volume (block or filesystem). */
void metrics_discovered(bool is_block);

/* A discovery pass that examined volumes of this mode took @ns. */
void metrics_discovery_pass(bool is_block, uint64_t ns);

/* A released volume's cleaning (and its PV's deletion) began. */
void metrics_delete_started(void);

/* ... and ended, successfully or not, after @ns. */
void metrics_delete_done(bool is_block, bool ok, uint64_t ns);

/* An API request @method ("GET", ...) that took @ns; @ok false if it failed. */
void metrics_api_request(const char *method, bool ok, uint64_t ns);

/* A claim provisioned (@ok), or an attempt at one that failed. */
void metrics_provisioned(bool ok);

/* A released claim's volume and PV deleted. */
void metrics_dynamic_deleted(void);

/* How many volumes of claims are left without claim and PV, as last counted. */
void metrics_orphaned_volumes(uint64_t n);

/* Sets every value back to zero. */
void metrics_reset(void);

/* Label escaping as the text format wants it: promtext_escape_label(). */
size_t metrics_escape_label(const char *value, char *buf, size_t size);

/*
 * Every family in the text format into a malloc'd, NUL-terminated
 * *ret_text of *ret_len bytes. Returns 0 or -ENOMEM.
 */
int metrics_format(char **ret_text, size_t *ret_len);

#endif
