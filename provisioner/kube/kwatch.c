/*
 * kwatch.c - list-then-watch of an API collection; see include/kwatch.h.
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
#include "kube/kube.h"
#include "kube/kwatch.h"
#include "log.h"
#include "jpath.h"

#define WATCH_TIMEOUT_S 300
#define BACKOFF_BASE_NS (500ull * 1000000)
#define BACKOFF_CAP_NS (30ull * 1000000000)
#define SLEEP_STEP_NS 100000000ull

struct kwatch {
	struct kwatch_spec spec; /* what and collection owned */
	struct kube *kube;	 /* used by the thread only */
	pthread_t thread;
	int event_fd;
	atomic_bool stop;
	atomic_bool enabled;
	char *resource_version; /* thread only: where to resume */
};

static void wake_main(struct kwatch *w)
{
	uint64_t one = 1;

	(void)!write(w->event_fd, &one, sizeof(one));
}

static void remember_version(struct kwatch *w, const json_t *object)
{
	const char *rv = jpath_str(object, "metadata", "resourceVersion");
	char *copy;

	if (!rv || !(copy = strdup(rv)))
		return;
	free(w->resource_version);
	w->resource_version = copy;
}

static int on_event(const char *type, json_t *object, void *userdata)
{
	struct kwatch *w = userdata;

	remember_version(w, object);
	if (w->spec.wanted(type, object, w->spec.userdata))
		wake_main(w);
	return 0;
}

/* Lists to learn where to start watching from. */
static int relist(struct kwatch *w)
{
	json_t *items = NULL;
	char *rv = NULL;
	int r;

	r = kube_list(w->kube, w->spec.collection, &items, &rv);
	json_decref(items);
	if (r < 0)
		return r;
	free(w->resource_version);
	w->resource_version = rv;
	/* Whatever changed while we were not watching: look now. */
	wake_main(w);
	return 0;
}

static bool stopping(struct kwatch *w)
{
	return atomic_load_explicit(&w->stop, memory_order_relaxed);
}

static void sleep_ns(struct kwatch *w, uint64_t ns)
{
	/* In short steps, so that a stop is noticed at once. */
	while (ns > 0 && !stopping(w)) {
		uint64_t step = ns < SLEEP_STEP_NS ? ns : SLEEP_STEP_NS;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)step };

		nanosleep(&ts, NULL);
		ns -= step;
	}
}

static void *watch_main(void *arg)
{
	struct kwatch *w = arg;
	struct backoff b;
	bool listed = false;

	backoff_init(&b, BACKOFF_BASE_NS, BACKOFF_CAP_NS, (uint64_t)time(NULL) ^ (uintptr_t)w);
	while (!stopping(w) && !atomic_load_explicit(&w->enabled, memory_order_relaxed))
		sleep_ns(w, SLEEP_STEP_NS);
	while (!stopping(w)) {
		int r;

		if (!listed) {
			r = relist(w);
			if (r < 0) {
				log_debug("%s list for the watch failed (%s); retrying", w->spec.what,
					  strerror(-r));
				sleep_ns(w, backoff_next(&b));
				continue;
			}
			listed = true;
		}
		r = kube_watch(w->kube, w->spec.collection, w->resource_version, WATCH_TIMEOUT_S,
			       on_event, w);
		if (r == -ECANCELED)
			break;
		if (r == 0) {
			/* The server ended the watch on schedule: resume where it was. */
			backoff_reset(&b);
			continue;
		}
		if (r == -ESTALE) {
			log_info("%s watch expired (410): listing again", w->spec.what);
			listed = false;
			continue;
		}
		log_debug("%s watch dropped (%s); resuming", w->spec.what, strerror(-r));
		sleep_ns(w, backoff_next(&b));
	}
	return NULL;
}

static void kwatch_free(struct kwatch *w)
{
	kube_free(w->kube);
	if (w->event_fd >= 0)
		close(w->event_fd);
	free((char *)w->spec.what);
	free((char *)w->spec.collection);
	free(w->resource_version);
	free(w);
}

int kwatch_start(const struct kubeconfig *kc, const struct kwatch_spec *spec,
		 struct kwatch **ret_watch)
{
	struct kwatch *w = calloc(1, sizeof(*w));
	sigset_t all, old;
	int r;

	if (!w)
		return -ENOMEM;
	w->spec = *spec;
	w->spec.what = strdup(spec->what);
	w->spec.collection = strdup(spec->collection);
	atomic_store_explicit(&w->enabled, !spec->start_paused, memory_order_relaxed);
	w->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->event_fd < 0) {
		r = -errno;
		goto err;
	}
	if (!w->spec.what || !w->spec.collection) {
		r = -ENOMEM;
		goto err;
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
	kwatch_free(w);
	return r;
}

void kwatch_enable(struct kwatch *w)
{
	atomic_store_explicit(&w->enabled, true, memory_order_relaxed);
}

int kwatch_fd(const struct kwatch *w)
{
	return w->event_fd;
}

struct kwatch *kwatch_stop(struct kwatch *w)
{
	if (!w)
		return NULL;
	atomic_store_explicit(&w->stop, true, memory_order_relaxed);
	pthread_join(w->thread, NULL);
	kwatch_free(w);
	return NULL;
}
