/*
 * handover.h - passing a pool's mounted volumes from a running daemon to a
 * successor started on the same pool, without unmounting anything.
 *
 * The running daemon listens on a unix socket beside its control socket
 * (PATH.handover, mode 0600, root peers only). A successor that finds the
 * pool locked connects there; the running daemon stops reading requests,
 * lets those it read finish (throttled ones included), and sends every
 * served volume's state and fds (vfs/handoff.h). The successor builds its
 * volumes from them and says "taken"; the running daemon then drops the
 * pool's flock(); the successor takes the lock, serves, opens its control
 * socket in place of the old one's and says "serving", and the old daemon
 * exits without unmounting.
 *
 * The pool's flock() decides who serves: the successor serves only once it
 * holds the lock, and the old daemon drops it only after "taken". So a
 * hand-over that fails or is killed at any step leaves exactly one of the
 * two serving (the old one if the successor dies before it serves, the
 * successor if the old one dies after sending), and both logs say why.
 *
 * Test hook: CARVEFS_TEST_HANDOVER_STALL=sent (in the old daemon) or
 * =received (in the successor) stalls that side for a minute at that
 * point (or :SECONDS, as in sent:2), logging it first, so that a test can
 * kill it there or act meanwhile.
 */
#ifndef CARVEFS_HANDOVER_H
#define CARVEFS_HANDOVER_H

#include <stdbool.h>

struct volmgr;
struct volmgr_config;
struct handover;
struct handover_client;

/*
 * What the listening side asks of its daemon, from the hand-over thread.
 * The control socket is not stopped when the volumes go: a verb may be
 * waiting in it for the manager, which the hand-over holds. The successor
 * replaces the socket's path instead, and the manager refuses every verb
 * once it handed the volumes over (volume.h).
 */
struct handover_hooks {
	/* The successor went away before serving, after it may have replaced the
	 * control socket's path: serve the control socket again. */
	void (*take_back)(void *arg);
	/* The volumes are the successor's: exit now, without unmounting. */
	void (*done)(void *arg);
	void *arg;
};

/*
 * Listens for a successor on @control_socket's hand-over socket. Returns 0
 * or -errno (logged).
 */
int handover_listen(const char *control_socket, struct volmgr *mgr,
		    const struct handover_hooks *hooks, struct handover **ret_handover);
/* Stops listening (waits for a hand-over in progress). Accepts NULL; returns NULL. */
struct handover *handover_stop(struct handover *h);
/* Whether the volumes went to a successor. */
bool handover_done(struct handover *h);

/*
 * The successor's side: takes the volumes of the daemon that holds the pool
 * of @cfg over, through @control_socket's hand-over socket. On success the
 * volumes are served by *ret_mgr and *ret_client must be told, with
 * handover_client_serving(), once the control socket is open. Returns 0 or
 * -errno (logged; the other daemon still serves then).
 */
int handover_take(const char *control_socket, const struct volmgr_config *cfg,
		  struct volmgr **ret_mgr, struct handover_client **ret_client);
/* Tells the old daemon to exit, and frees. Accepts NULL; returns NULL. */
struct handover_client *handover_client_serving(struct handover_client *c);

#endif
