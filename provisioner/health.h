/*
 * health.h - the provisioner's HTTP endpoints for the kubelet's probes and
 * for Prometheus.
 *
 *   GET /healthz  200 "ok" while the process runs its loop
 *   GET /readyz   200 "ok" once the last discovery pass went through without
 *                 an error, 503 "not ready" before and after a failed one
 *   GET /metrics  200, the metrics of metrics.h in the text format 0.0.4
 *
 * Served by httpd.h's server, on its threads; the only state shared with
 * the caller is the ready flag, an atomic (and the metrics, atomics too).
 */
#ifndef CARVEFS_HEALTH_H
#define CARVEFS_HEALTH_H

#include <stdbool.h>

struct health;

/*
 * Listens on @addr: "HOST:PORT", "[IPV6]:PORT" or ":PORT" (every address).
 * Returns 0, -EINVAL for an address that does not parse or resolve, or
 * -errno (e.g. -EADDRINUSE) if it cannot listen.
 */
int health_start(const char *addr, struct health **ret_health);

void health_set_ready(struct health *h, bool ready);

/* Stops serving. Accepts NULL; returns NULL. */
struct health *health_stop(struct health *h);

#endif
