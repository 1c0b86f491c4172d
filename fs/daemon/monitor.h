/*
 * monitor.h - the daemon's HTTP endpoints for the kubelet's probes and for
 * Prometheus (carvefs --listen):
 *
 *   GET /healthz  200 "ok" while the volume manager serves (200 "ok, but no
 *                 keeper holds the volumes..." while carvefs-keeper is
 *                 away: a restart then would end the mounts); 503 with the
 *                 reason while it is starting (mounting, recounting usage
 *                 after a crash) or stopping; 200 "handed over" once a
 *                 successor serves the volumes and this daemon only waits
 *                 to be stopped (--hold-after-handover), so that a
 *                 liveness probe does not restart it
 *   GET /metrics  200, volmetrics.h's families; 503 while not serving, or
 *                 when the manager is held by a long verb (wipe, delete)
 *                 for more than MONITOR_SCRAPE_WAIT_NS
 *
 * Nothing served changes anything, and the control socket stays the only
 * way to manage volumes. /healthz never waits for the manager's lock, so a
 * long wipe cannot fail the daemon's liveness probe.
 *
 * Threads: requests run on httpd.h's threads and read the manager only
 * through volmgr_snapshot(). The monitor's own lock is a leaf, never held
 * while waiting for the manager.
 */
#ifndef CARVEFS_MONITOR_H
#define CARVEFS_MONITOR_H

#include <stdint.h>

#define MONITOR_SCRAPE_WAIT_NS (2 * UINT64_C(1000000000))

struct monitor;
struct keeperlink;
struct volmgr;

/*
 * Listens on @addr (httpd.h's forms) and answers /healthz with 503
 * "starting" until monitor_serving(). @version is kept by reference.
 * Returns 0 or httpd_start()'s -errno.
 */
int monitor_start(const char *addr, const char *version, struct monitor **ret_monitor);

/* The port listened on. */
unsigned int monitor_port(const struct monitor *mon);

/*
 * @mgr serves from now on, and @keeper (NULL when none is wanted) holds its
 * volumes' fds; both must outlive monitor_stop(). Accepts a NULL @mon.
 */
void monitor_serving(struct monitor *mon, struct volmgr *mgr, struct keeperlink *keeper);

/*
 * Shutting down: /healthz and /metrics answer 503 from now on. Returns once
 * no scrape reads the manager any more (at most MONITOR_SCRAPE_WAIT_NS and
 * a formatting later), so the manager may be stopped then. Accepts NULL.
 */
void monitor_stopping(struct monitor *mon);

/*
 * As monitor_stopping(), for a daemon that handed its volumes over and
 * lingers: /healthz answers 200 "handed over", /metrics 503.
 */
void monitor_handed_over(struct monitor *mon);

/* Stops serving, waiting for requests in progress. Accepts NULL; returns NULL. */
struct monitor *monitor_stop(struct monitor *mon);

#endif
