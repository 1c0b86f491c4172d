/*
 * control.h - the daemon's control socket: the verbs of wire.h, answered by
 * the volume manager, served by ctlserver.h (root only, one line per
 * request).
 */
#ifndef CARVEFS_CONTROL_H
#define CARVEFS_CONTROL_H

struct control;
struct volmgr;

/* Listens on @socket_path (ctlserver.h says how). Returns 0 or -errno, logged. */
int control_start(const char *socket_path, struct volmgr *m, struct control **ret_ctl);
/* Stops the thread, closes every connection and unlinks the socket. Accepts NULL. */
struct control *control_stop(struct control *c);

#endif
