/*
 * httpd.c - the read-only HTTP server for probes and scrapes; see
 * include/httpd.h.
 *
 * The listening socket is made here rather than by libmicrohttpd, so that
 * a failure to listen comes back as the errno of the call that failed
 * instead of a message on stderr.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "httpd.h"

struct httpd {
	struct MHD_Daemon *daemon;
	httpd_handler_fn handler;
	void *userdata;
	unsigned int port;
};

static enum MHD_Result queue(struct MHD_Connection *c, unsigned int status,
			     const char *content_type, char *body, const char *static_body,
			     size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (body)
		resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	else
		resp = MHD_create_response_from_buffer(strlen(static_body), (void *)static_body,
						       MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type",
				content_type ? content_type : "text/plain; charset=utf-8");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	struct httpd *h = cls;
	struct httpd_reply reply = { 0 };

	(void)version;
	(void)upload_data;
	(void)req_cls;
	if (*upload_data_size != 0)
		return MHD_NO; /* nothing here takes a body: drop the connection */
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return queue(c, MHD_HTTP_METHOD_NOT_ALLOWED, NULL, NULL, "method not allowed\n", 0);
	h->handler(h->userdata, url, &reply);
	if (reply.status == 0) {
		free(reply.body);
		return queue(c, MHD_HTTP_NOT_FOUND, NULL, NULL, "not found\n", 0);
	}
	if (!reply.body && !reply.static_body)
		reply.static_body = "";
	return queue(c, reply.status, reply.content_type, reply.body, reply.static_body, reply.len);
}

/* Splits @addr into a malloc'd host (NULL: every address) and a pointer to its port. */
static int split_addr(const char *addr, char **ret_host, const char **ret_port)
{
	const char *colon, *port;
	char *host = NULL;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');

		if (!end || end == addr + 1 || end[1] != ':')
			return -EINVAL;
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		/* An unbracketed IPv6 address would be ambiguous: "::1:80". */
		if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
			return -EINVAL;
	}
	port = colon + 1;
	if (port[0] == '\0' || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    atoi(port) > 65535)
		return -EINVAL;
	if (addr[0] == '[')
		host = strndup(addr + 1, (size_t)(colon - addr - 2));
	else if (colon > addr)
		host = strndup(addr, (size_t)(colon - addr));
	if ((addr[0] == '[' || colon > addr) && !host)
		return -ENOMEM;
	*ret_host = host;
	*ret_port = port;
	return 0;
}

int httpd_check_addr(const char *addr)
{
	const char *port;
	char *host = NULL;
	int r;

	r = split_addr(addr, &host, &port);
	free(host);
	return r;
}

/* A bound, listening socket for @ai, its port in *ret_port; or -errno. */
static int listen_one(const struct addrinfo *ai, bool dual_stack, unsigned int *ret_port)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int fd, one = 1, zero = 0, r;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	/*
	 * A restarted daemon must not wait for the old connections' TIME_WAIT,
	 * and a successor listens beside its predecessor during a hand-over.
	 */
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (dual_stack)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
						     ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/*
 * A listening socket for @host and @port. Without a host, the IPv6 wildcard
 * is tried first, accepting IPv4 too, so that ":PORT" means every address
 * (glibc lists 0.0.0.0 first); a host without IPv6 falls back to 0.0.0.0.
 * With a host, its first address.
 */
static int listen_on(const char *host, const char *port, unsigned int *ret_port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG };
	struct addrinfo *ai = NULL;
	int r = -EINVAL;

	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
		return -EINVAL;
	if (!host) {
		for (struct addrinfo *p = ai; p; p = p->ai_next) {
			if (p->ai_family != AF_INET6)
				continue;
			r = listen_one(p, true, ret_port);
			if (r != -EAFNOSUPPORT)
				goto out;
		}
		for (struct addrinfo *p = ai; p; p = p->ai_next) {
			if (p->ai_family != AF_INET)
				continue;
			r = listen_one(p, false, ret_port);
			goto out;
		}
	}
	r = listen_one(ai, false, ret_port);
out:
	freeaddrinfo(ai);
	return r;
}

int httpd_start(const char *addr, httpd_handler_fn handler, void *userdata,
		struct httpd **ret_httpd)
{
	/*
	 * poll(), not select(): the daemon holds an fd per inode, so the
	 * connections' fds are often above FD_SETSIZE.
	 */
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			     MHD_USE_POLL;
	struct httpd *h = NULL;
	const char *port;
	char *host = NULL;
	int fd = -1, r;

	r = split_addr(addr, &host, &port);
	if (r < 0)
		return r;
	h = calloc(1, sizeof(*h));
	if (!h) {
		r = -ENOMEM;
		goto out;
	}
	h->handler = handler;
	h->userdata = userdata;
	fd = listen_on(host, port, &h->port);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_LISTEN_SOCKET, fd,
				     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTPD_MAX_CONNECTIONS,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTPD_IDLE_TIMEOUT_S,
				     MHD_OPTION_END);
	if (!h->daemon) {
		r = errno > 0 ? -errno : -ENOMEM;
		goto out;
	}
	fd = -1; /* the server closes it when stopped */
	*ret_httpd = h;
	h = NULL;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(h);
	free(host);
	return r;
}

unsigned int httpd_port(const struct httpd *h)
{
	return h->port;
}

struct httpd *httpd_stop(struct httpd *h)
{
	if (!h)
		return NULL;
	MHD_stop_daemon(h->daemon);
	free(h);
	return NULL;
}
