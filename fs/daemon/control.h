/*
 * control.h - the daemon's control socket server (protocol in wire.h).
 *
 * Runs its own thread. The socket file is created mode 0600 in a directory
 * created mode 0700 if missing; a stale socket file left by a dead daemon is
 * replaced, a live one (connect succeeds) is refused with -EADDRINUSE. Every
 * connection's peer is checked with SO_PEERCRED: only uid 0 is served.
 */
#ifndef CARVEFS_CONTROL_H
#define CARVEFS_CONTROL_H

struct control;
struct volmgr;

int control_start(const char *socket_path, struct volmgr *m, struct control **ret_ctl);
/* Stops the thread, closes every connection and unlinks the socket. Accepts NULL. */
struct control *control_stop(struct control *c);

#endif
