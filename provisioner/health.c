/*
 * health.c - /healthz, /readyz and /metrics over libmicrohttpd; see
 * include/health.h.
 */
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "health.h"
#include "metrics.h"

struct health {
	struct MHD_Daemon *daemon;
	atomic_bool ready;
};

static enum MHD_Result respond(struct MHD_Connection *c, unsigned int status, const char *text)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result respond_metrics(struct MHD_Connection *c)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	size_t len;
	char *text;

	if (metrics_format(&text, &len) < 0)
		return respond(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", METRICS_CONTENT_TYPE);
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	struct health *h = cls;

	(void)version;
	(void)upload_data;
	(void)req_cls;
	if (*upload_data_size != 0)
		return MHD_NO; /* the probes send no body */
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(url, "/healthz") == 0)
		return respond(c, MHD_HTTP_OK, "ok\n");
	if (strcmp(url, "/readyz") == 0 || strcmp(url, "/ready") == 0) {
		if (atomic_load_explicit(&h->ready, memory_order_relaxed))
			return respond(c, MHD_HTTP_OK, "ok\n");
		return respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
	}
	if (strcmp(url, "/metrics") == 0)
		return respond_metrics(c);
	return respond(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* Splits "host:port", "[v6]:port" or ":port" into a malloc'd host (NULL: any) and port. */
static int split_addr(const char *addr, char **ret_host, const char **ret_port)
{
	const char *colon;
	char *host = NULL;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		host = strndup(addr + 1, (size_t)(end - addr - 1));
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		if (colon > addr)
			host = strndup(addr, (size_t)(colon - addr));
	}
	if (colon[1] == '\0') {
		free(host);
		return -EINVAL;
	}
	if ((addr[0] == '[' || colon > addr) && !host)
		return -ENOMEM;
	*ret_host = host;
	*ret_port = colon + 1;
	return 0;
}

int health_start(const char *addr, struct health **ret_health)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	struct health *h = NULL;
	const char *port;
	char *host = NULL;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	int r;

	r = split_addr(addr, &host, &port);
	if (r < 0)
		return r;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
		r = -EINVAL;
		goto out;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		r = -ENOMEM;
		goto out;
	}
	atomic_init(&h->ready, false);
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	errno = 0;
	h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR,
				     ai->ai_addr, MHD_OPTION_END);
	if (!h->daemon) {
		r = errno > 0 ? -errno : -EADDRNOTAVAIL;
		goto out;
	}
	*ret_health = h;
	h = NULL;
	r = 0;
out:
	free(h);
	free(host);
	if (ai)
		freeaddrinfo(ai);
	return r;
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
	MHD_stop_daemon(h->daemon);
	free(h);
	return NULL;
}
