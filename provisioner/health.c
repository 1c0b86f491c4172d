/*
 * health.c - /healthz, /readyz and /metrics over the shared HTTP server;
 * see include/health.h.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "httpd.h"
#include "metrics.h"
#include "promtext.h"

struct health {
	struct httpd *httpd;
	atomic_bool ready;
};

static void set_text(struct httpd_reply *reply, unsigned int status, const char *text)
{
	reply->status = status;
	reply->static_body = text;
}

static void handle(void *userdata, const char *path, struct httpd_reply *reply)
{
	struct health *h = userdata;

	if (strcmp(path, "/healthz") == 0) {
		set_text(reply, 200, "ok\n");
	} else if (strcmp(path, "/readyz") == 0 || strcmp(path, "/ready") == 0) {
		if (atomic_load_explicit(&h->ready, memory_order_relaxed))
			set_text(reply, 200, "ok\n");
		else
			set_text(reply, 503, "not ready\n");
	} else if (strcmp(path, "/metrics") == 0) {
		if (metrics_format(&reply->body, &reply->len) < 0) {
			set_text(reply, 500, "out of memory\n");
			return;
		}
		reply->status = 200;
		reply->content_type = PROMTEXT_CONTENT_TYPE;
	}
}

int health_start(const char *addr, struct health **ret_health)
{
	struct health *h;
	int r;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	atomic_init(&h->ready, false);
	r = httpd_start(addr, handle, h, &h->httpd);
	if (r < 0) {
		free(h);
		return r;
	}
	*ret_health = h;
	return 0;
}

void health_set_ready(struct health *h, bool ready)
{
	if (h)
		atomic_store_explicit(&h->ready, ready, memory_order_relaxed);
}

struct health *health_stop(struct health *h)
{
	if (!h)
		return NULL;
	httpd_stop(h->httpd);
	free(h);
	return NULL;
}
