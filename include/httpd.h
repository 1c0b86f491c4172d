/*
 * httpd.h - a small read-only HTTP server for probes and scrapes
 * (/healthz, /metrics), over libmicrohttpd.
 *
 * Only GET and HEAD are served (others get 405) and requests with a body
 * are refused: nothing sent to it can change anything. Each connection has
 * a thread of its own, so a slow handler (a scrape waiting for a lock)
 * never delays another request such as a liveness probe; connections are
 * bounded in number (HTTPD_MAX_CONNECTIONS, further ones are refused) and
 * in idle time (HTTPD_IDLE_TIMEOUT_S).
 *
 * The handler runs on those threads, several at once: whatever it reads
 * must be safe to read from any thread.
 */
#ifndef CARVEFS_HTTPD_H
#define CARVEFS_HTTPD_H

#include <stdbool.h>
#include <stddef.h>

#define HTTPD_MAX_CONNECTIONS 16
#define HTTPD_IDLE_TIMEOUT_S 10

struct httpd;

/* What a handler answers. */
struct httpd_reply {
	unsigned int status;	  /* e.g. 200; 0 leaves the default, 404 */
	const char *content_type; /* a static string; NULL is plain UTF-8 text */
	char *body;		  /* malloc'd and owned by the server once returned... */
	const char *static_body;  /* ...or a string that outlives the server */
	size_t len;		  /* of body; static_body is measured with strlen() */
};

/* Answers GET/HEAD of @path (the URL's path, without the query). */
typedef void (*httpd_handler_fn)(void *userdata, const char *path, struct httpd_reply *reply);

/*
 * Whether @addr has the form "HOST:PORT", "[IPV6]:PORT" or ":PORT" (every
 * address) with a numeric port. Checks the syntax only. Returns 0 or -EINVAL.
 */
int httpd_check_addr(const char *addr);

/*
 * Listens on @addr (forms above; HOST may be a name) and serves @handler
 * with @userdata from now on. Returns 0, -EINVAL when @addr does not parse
 * or resolve, or the -errno of socket/bind/listen (-EADDRINUSE, -EACCES,
 * -EADDRNOTAVAIL, ...).
 */
int httpd_start(const char *addr, httpd_handler_fn handler, void *userdata,
		struct httpd **ret_httpd);

/* The port listened on (useful with port 0). */
unsigned int httpd_port(const struct httpd *h);

/* Stops serving and waits for running handlers. Accepts NULL; returns NULL. */
struct httpd *httpd_stop(struct httpd *h);

#endif
