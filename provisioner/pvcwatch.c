/*
 * pvcwatch.c - list-then-watch of claims; see include/pvcwatch.h.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "dynspec.h"
#include "kube.h"
#include "log.h"
#include "pvcwatch.h"

#define WATCH_TIMEOUT_S 300
#define BACKOFF_BASE_NS (500ull * 1000000)
#define BACKOFF_CAP_NS (30ull * 1000000000)
#define CLAIMS_PATH "/api/v1/persistentvolumeclaims"

struct pvcwatch {
	struct kube *kube; /* used by the thread only */
	char *node_name;
	pthread_t thread;
	int event_fd;
	atomic_bool stop;
	atomic_bool enabled;
	char *resource_version; /* thread only: where to resume */
};

static void wake_main(struct pvcwatch *w)
{
	uint64_t one = 1;

	(void)!write(w->event_fd, &one, sizeof(one));
}

static void remember_version(struct pvcwatch *w, json_t *object)
{
	const char *rv = json_string_value(
		json_object_get(json_object_get(object, "metadata"), "resourceVersion"));
	char *copy;

	if (!rv || !(copy = strdup(rv)))
		return;
	free(w->resource_version);
	w->resource_version = copy;
}

static int on_event(const char *type, json_t *object, void *userdata)
{
	struct pvcwatch *w = userdata;

	remember_version(w, object);
	/*
	 * Only claims the pass would act on: waking for every claim of a large
	 * cluster would turn the period into a busy loop.
	 */
	if (strcmp(type, "DELETED") != 0 && strcmp(type, "BOOKMARK") != 0 &&
	    (dynspec_claim_wanted(object, w->node_name) ||
	     dynspec_claim_grows(object, w->node_name)))
		wake_main(w);
	return 0;
}

/* Lists to learn where to start watching from. */
static int relist(struct pvcwatch *w)
{
	json_t *items = NULL;
	char *rv = NULL;
	int r;

	r = kube_list_pvcs(w->kube, &items, &rv);
	json_decref(items);
	if (r < 0)
		return r;
	free(w->resource_version);
	w->resource_version = rv;
	/* Whatever changed while we were not watching: look now. */
	wake_main(w);
	return 0;
}

static void sleep_ns(struct pvcwatch *w, uint64_t ns)
{
	/* In short steps, so that a stop is noticed at once. */
	while (ns > 0 && !atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		uint64_t step = ns < 100000000 ? ns : 100000000;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)step };

		nanosleep(&ts, NULL);
		ns -= step;
	}
}

static void *watch_main(void *arg)
{
	struct pvcwatch *w = arg;
	struct backoff b;
	bool listed = false;

	backoff_init(&b, BACKOFF_BASE_NS, BACKOFF_CAP_NS, (uint64_t)time(NULL) ^ (uintptr_t)w);
	while (!atomic_load_explicit(&w->stop, memory_order_relaxed) &&
	       !atomic_load_explicit(&w->enabled, memory_order_relaxed))
		sleep_ns(w, 100000000);
	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		int r;

		if (!listed) {
			r = relist(w);
			if (r < 0) {
				log_debug("claim list for the watch failed (%s); retrying",
					  strerror(-r));
				sleep_ns(w, backoff_next(&b));
				continue;
			}
			listed = true;
		}
		r = kube_watch(w->kube, CLAIMS_PATH, w->resource_version, WATCH_TIMEOUT_S,
			       on_event, w);
		if (r == -ECANCELED)
			break;
		if (r == 0) {
			backoff_reset(&b);
			continue;
		}
		if (r == -ESTALE) {
			log_info("claim watch expired (410): listing again");
			listed = false;
			continue;
		}
		log_debug("claim watch dropped (%s); resuming", strerror(-r));
		sleep_ns(w, backoff_next(&b));
	}
	return NULL;
}

int pvcwatch_start(const struct kubeconfig *kc, const char *node_name,
		   struct pvcwatch **ret_watch)
{
	struct pvcwatch *w = calloc(1, sizeof(*w));
	sigset_t all, old;
	int r;

	if (!w)
		return -ENOMEM;
	w->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->event_fd < 0) {
		r = -errno;
		free(w);
		return r;
	}
	w->node_name = strdup(node_name);
	if (!w->node_name) {
		r = -ENOMEM;
		goto err;
	}
	r = kube_new(kc, &w->kube);
	if (r < 0)
		goto err;
	kube_set_cancel(w->kube, &w->stop);
	/* Signals belong to the main loop's signalfd: see pvwatch.c. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&w->thread, NULL, watch_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0)
		goto err;
	*ret_watch = w;
	return 0;
err:
	kube_free(w->kube);
	close(w->event_fd);
	free(w->node_name);
	free(w);
	return r;
}

void pvcwatch_enable(struct pvcwatch *w)
{
	atomic_store_explicit(&w->enabled, true, memory_order_relaxed);
}

int pvcwatch_fd(const struct pvcwatch *w)
{
	return w->event_fd;
}

struct pvcwatch *pvcwatch_stop(struct pvcwatch *w)
{
	if (!w)
		return NULL;
	atomic_store_explicit(&w->stop, true, memory_order_relaxed);
	pthread_join(w->thread, NULL);
	kube_free(w->kube);
	close(w->event_fd);
	free(w->resource_version);
	free(w->node_name);
	free(w);
	return NULL;
}
