/*
 * kwatch.h - keep a pass informed of a collection of the Kubernetes API.
 *
 * A thread of its own (with its own API client) lists the collection, then
 * watches it from the list's resourceVersion: a watch the server ends on
 * schedule is resumed where it was, a dropped one after a backoff, and a
 * 410 Gone (in either form) means listing again. Each event the caller's
 * filter wants, and every fresh list (what changed while nobody watched),
 * makes the fd below readable, and the main loop runs a pass. Passes list
 * what they need themselves, so a missed event costs at most one period.
 *
 * The provisioner runs two: PVs (to clean a released one at once) and
 * claims (to serve a claim the moment its node is picked).
 */
#ifndef CARVEFS_KWATCH_H
#define CARVEFS_KWATCH_H

#include <stdbool.h>

#include <jansson.h>

#include "kube/kubeconfig.h"

struct kwatch;

struct kwatch_spec {
	const char *what;	/* for log lines: "PV", "claim" */
	const char *collection; /* "/api/v1/persistentvolumes" */
	/*
	 * Whether an event ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") of
	 * @object calls for a pass. Runs on the watch's thread.
	 */
	bool (*wanted)(const char *type, const json_t *object, void *userdata);
	void *userdata;	   /* must outlive the watch */
	bool start_paused; /* wait for kwatch_enable() before the first list */
};

/* Starts the thread. The strings of @spec are copied. Returns 0 or -errno. */
int kwatch_start(const struct kubeconfig *kc, const struct kwatch_spec *spec,
		 struct kwatch **ret_watch);
/* Lets a watch started paused list and watch; a second call does nothing. */
void kwatch_enable(struct kwatch *w);
/* Readable when a pass is wanted; read (drain) it before the pass. */
int kwatch_fd(const struct kwatch *w);
/* Stops the thread (within about a second) and frees. Accepts NULL; returns NULL. */
struct kwatch *kwatch_stop(struct kwatch *w);

#endif
