/*
 * pvwatch.c - list-then-watch of PersistentVolumes; see include/pvwatch.h.
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
#include "kube.h"
#include "log.h"
#include "pvwatch.h"

#define WATCH_TIMEOUT_S 300
#define BACKOFF_BASE_NS (500ull * 1000000)
#define BACKOFF_CAP_NS (30ull * 1000000000)

struct pvwatch {
	struct kube *kube; /* used by the thread only */
	pthread_t thread;
	int event_fd;
	atomic_bool stop;
	char *resource_version; /* thread only: where to resume */
};

static void wake_main(struct pvwatch *w)
{
	uint64_t one = 1;

	(void)!write(w->event_fd, &one, sizeof(one));
}

static void remember_version(struct pvwatch *w, json_t *object)
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
	struct pvwatch *w = userdata;
	const char *phase;

	remember_version(w, object);
	if (strcmp(type, "DELETED") == 0) {
		wake_main(w);
		return 0;
	}
	phase = json_string_value(json_object_get(json_object_get(object, "status"), "phase"));
	if (strcmp(type, "MODIFIED") == 0 && phase && strcmp(phase, "Released") == 0)
		wake_main(w);
	return 0;
}

/* Lists to learn where to start watching from. */
static int relist(struct pvwatch *w)
{
	json_t *items = NULL;
	char *rv = NULL;
	int r;

	r = kube_list_pvs(w->kube, &items, &rv);
	json_decref(items);
	if (r < 0)
		return r;
	free(w->resource_version);
	w->resource_version = rv;
	/* Whatever changed while we were not watching: look now. */
	wake_main(w);
	return 0;
}

static void sleep_ns(struct pvwatch *w, uint64_t ns)
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
	struct pvwatch *w = arg;
	struct backoff b;
	bool listed = false;

	backoff_init(&b, BACKOFF_BASE_NS, BACKOFF_CAP_NS, (uint64_t)time(NULL) ^ (uintptr_t)w);
	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		int r;

		if (!listed) {
			r = relist(w);
			if (r < 0) {
				log_debug("PV list for the watch failed (%s); retrying", strerror(-r));
				sleep_ns(w, backoff_next(&b));
				continue;
			}
			listed = true;
		}
		r = kube_watch(w->kube, "/api/v1/persistentvolumes", w->resource_version,
			       WATCH_TIMEOUT_S, on_event, w);
		if (r == -ECANCELED)
			break;
		if (r == 0) {
			/* The server ended the watch on schedule: resume where it was. */
			backoff_reset(&b);
			continue;
		}
		if (r == -ESTALE) {
			log_info("PV watch expired (410): listing again");
			listed = false;
			continue;
		}
		log_debug("PV watch dropped (%s); resuming", strerror(-r));
		sleep_ns(w, backoff_next(&b));
	}
	return NULL;
}

int pvwatch_start(const struct kubeconfig *kc, struct pvwatch **ret_watch)
{
	struct pvwatch *w = calloc(1, sizeof(*w));
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
	r = kube_new(kc, &w->kube);
	if (r < 0)
		goto err;
	kube_set_cancel(w->kube, &w->stop);
	/*
	 * The thread starts with every signal blocked: SIGTERM and SIGHUP belong
	 * to the main loop's signalfd, and a thread that could take them would
	 * let their default action kill the process.
	 */
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
	free(w);
	return r;
}

int pvwatch_fd(const struct pvwatch *w)
{
	return w->event_fd;
}

struct pvwatch *pvwatch_stop(struct pvwatch *w)
{
	if (!w)
		return NULL;
	atomic_store_explicit(&w->stop, true, memory_order_relaxed);
	pthread_join(w->thread, NULL);
	kube_free(w->kube);
	close(w->event_fd);
	free(w->resource_version);
	free(w);
	return NULL;
}
