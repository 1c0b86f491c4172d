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

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

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

/* Sets every value back to zero. */
void metrics_reset(void);

/*
 * Writes @value escaped for a label value (\\, \" and \n) to @buf, always
 * NUL-terminated when @size > 0. Returns the length of the whole escaped
 * text, as snprintf() does: a result >= @size means it was cut short.
 */
size_t metrics_escape_label(const char *value, char *buf, size_t size);

/*
 * Every family in the text format into a malloc'd, NUL-terminated
 * *ret_text of *ret_len bytes. Returns 0 or -ENOMEM.
 */
int metrics_format(char **ret_text, size_t *ret_len);

#endif
