/*
 * monitor.c - /healthz and /metrics of the daemon; see monitor.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "keeperlink.h"
#include "monitor.h"
#include "promtext.h"
#include "volmetrics.h"
#include "volume.h"

enum monitor_state { MONITOR_STARTING, MONITOR_SERVING, MONITOR_STOPPING, MONITOR_HANDED_OVER };

struct monitor {
	struct httpd *httpd;
	const char *version;
	/*
	 * Written under lock, so that a scrape either counts itself in
	 * scrapes before the manager goes away or sees it going; /healthz
	 * reads it without the lock.
	 */
	_Atomic int state;
	pthread_mutex_t lock;
	pthread_cond_t drained;
	unsigned scrapes; /* protected by lock: scrapes reading mgr */
	struct volmgr *mgr; /* protected by lock; set once serving */
	struct keeperlink *keeper; /* protected by lock; set once serving; NULL: none wanted */
};

static void set_text(struct httpd_reply *reply, unsigned int status, const char *text)
{
	reply->status = status;
	reply->static_body = text;
}

static void respond_metrics(struct monitor *mon, struct httpd_reply *reply, const char *why)
{
	struct volume_stats *vols = NULL;
	struct volmgr *mgr = NULL;
	size_t n = 0;
	int r;

	pthread_mutex_lock(&mon->lock);
	if (atomic_load_explicit(&mon->state, memory_order_relaxed) == MONITOR_SERVING) {
		mgr = mon->mgr;
		mon->scrapes++;
	}
	pthread_mutex_unlock(&mon->lock);
	if (!mgr) {
		set_text(reply, 503, why);
		return;
	}
	r = volmgr_snapshot(mgr, MONITOR_SCRAPE_WAIT_NS, &vols, &n);
	pthread_mutex_lock(&mon->lock);
	if (--mon->scrapes == 0)
		pthread_cond_broadcast(&mon->drained);
	pthread_mutex_unlock(&mon->lock);
	if (r == -ETIMEDOUT) {
		set_text(reply, 503, "the volume manager is busy (a wipe or delete is running); "
				     "try again\n");
		return;
	}
	if (r == 0)
		r = volmetrics_format(vols, n, mon->version, keeperlink_holding(mon->keeper),
				      &reply->body, &reply->len);
	free(vols);
	if (r < 0) {
		set_text(reply, 500, "cannot gather the metrics\n");
		return;
	}
	reply->status = 200;
	reply->content_type = PROMTEXT_CONTENT_TYPE;
}

static void handle(void *userdata, const char *path, struct httpd_reply *reply)
{
	struct monitor *mon = userdata;
	int state = atomic_load_explicit(&mon->state, memory_order_relaxed);
	const char *not_serving = state == MONITOR_STARTING ? "starting: mounting the pool's volumes\n" :
				  state == MONITOR_HANDED_OVER ?
							      "handed over: a successor serves the volumes\n" :
							      "stopping: unmounting the pool's volumes\n";

	if (strcmp(path, "/healthz") == 0) {
		struct keeperlink *keeper;

		pthread_mutex_lock(&mon->lock);
		keeper = mon->keeper;
		pthread_mutex_unlock(&mon->lock);
		/* Still 200 without a keeper: restarting carvefs then would end the mounts. */
		if (state == MONITOR_SERVING && (!keeper || keeperlink_holding(keeper)))
			set_text(reply, 200, "ok\n");
		else if (state == MONITOR_SERVING)
			set_text(reply, 200, "ok, but no keeper holds the volumes: a crash of carvefs "
					     "would end their mounts\n");
		else if (state == MONITOR_HANDED_OVER)
			set_text(reply, 200, not_serving); /* alive: not to be restarted */
		else
			set_text(reply, 503, not_serving);
	} else if (strcmp(path, "/metrics") == 0) {
		respond_metrics(mon, reply, not_serving);
	}
}

int monitor_start(const char *addr, const char *version, struct monitor **ret_monitor)
{
	struct monitor *mon;
	int r;

	mon = calloc(1, sizeof(*mon));
	if (!mon)
		return -ENOMEM;
	mon->version = version;
	atomic_init(&mon->state, MONITOR_STARTING);
	pthread_mutex_init(&mon->lock, NULL);
	pthread_cond_init(&mon->drained, NULL);
	r = httpd_start(addr, handle, mon, &mon->httpd);
	if (r < 0) {
		pthread_cond_destroy(&mon->drained);
		pthread_mutex_destroy(&mon->lock);
		free(mon);
		return r;
	}
	*ret_monitor = mon;
	return 0;
}

unsigned int monitor_port(const struct monitor *mon)
{
	return httpd_port(mon->httpd);
}

void monitor_serving(struct monitor *mon, struct volmgr *mgr, struct keeperlink *keeper)
{
	if (!mon)
		return;
	pthread_mutex_lock(&mon->lock);
	mon->mgr = mgr;
	mon->keeper = keeper;
	atomic_store_explicit(&mon->state, MONITOR_SERVING, memory_order_relaxed);
	pthread_mutex_unlock(&mon->lock);
}

static void monitor_leave(struct monitor *mon, enum monitor_state state)
{
	if (!mon)
		return;
	pthread_mutex_lock(&mon->lock);
	atomic_store_explicit(&mon->state, state, memory_order_relaxed);
	while (mon->scrapes > 0)
		pthread_cond_wait(&mon->drained, &mon->lock);
	mon->mgr = NULL;
	pthread_mutex_unlock(&mon->lock);
}

void monitor_stopping(struct monitor *mon)
{
	monitor_leave(mon, MONITOR_STOPPING);
}

void monitor_handed_over(struct monitor *mon)
{
	monitor_leave(mon, MONITOR_HANDED_OVER);
}

struct monitor *monitor_stop(struct monitor *mon)
{
	if (!mon)
		return NULL;
	httpd_stop(mon->httpd);
	pthread_cond_destroy(&mon->drained);
	pthread_mutex_destroy(&mon->lock);
	free(mon);
	return NULL;
}
