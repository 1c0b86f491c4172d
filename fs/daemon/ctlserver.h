/*
 * ctlserver.h - the control socket's line server (framing in wire.h).
 *
 * Knows sockets, connections, lines and peers, not verbs: every request line
 * is handed to a dispatch callback, whose reply goes back as one line.
 *
 * Runs its own thread. The socket file is created mode 0600 in a directory
 * created mode 0700 if missing; a stale socket file left by a dead daemon is
 * replaced, a live one (connect succeeds) is refused with -EADDRINUSE. Every
 * connection's peer is checked with SO_PEERCRED: only uid 0 is served, anyone
 * else gets one "permission_denied" reply and is closed.
 */
#ifndef CARVEFS_CTLSERVER_H
#define CARVEFS_CTLSERVER_H

#include <stddef.h>

#include <jansson.h>

struct ctlserver;

/*
 * Answers one request line (@len bytes, no newline, not NUL-terminated).
 * Runs on the server's thread, one request at a time. Returns the reply, a
 * new reference the server takes over, or NULL when out of memory (the
 * connection is then dropped).
 */
typedef json_t *(*ctlserver_dispatch_fn)(void *userdata, const char *line, size_t len);

int ctlserver_start(const char *socket_path, ctlserver_dispatch_fn dispatch, void *userdata,
		    struct ctlserver **ret_server);
/* Stops the thread, closes every connection and unlinks the socket. Accepts NULL. */
struct ctlserver *ctlserver_stop(struct ctlserver *s);

/* {"error": {"code": @code, "message": @msg}} (wire.h), or NULL when out of memory. */
json_t *ctlserver_error_reply(const char *code, const char *msg);

#endif
