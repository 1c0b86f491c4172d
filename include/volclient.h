/*
 * volclient.h - the questions dynamic provisioning asks the carvefs daemon,
 * over daemonctl_call() (daemonctl.h says how failures are returned).
 *
 * @ret_msg is WIRE_MSG_MAX bytes and always a string afterwards: the
 * daemon's sentence for a refusal, or what went wrong reaching it.
 */
#ifndef CARVEFS_VOLCLIENT_H
#define CARVEFS_VOLCLIENT_H

#include <stdbool.h>

#include <jansson.h>

/* Long enough for a create to mount its volume on a busy node. */
#define VOLCLIENT_TIMEOUT_MS (60 * 1000)

/* Sends @request; the whole reply (a new reference) to *ret_reply, which may be NULL. */
int volclient_call(const char *socket_path, const json_t *request, json_t **ret_reply,
		   char *ret_msg);

/* Every volume (the V objects of wire.h) as a JSON array in *ret_volumes. */
int volclient_list(const char *socket_path, json_t **ret_volumes, char *ret_msg);

/* The pool (P of wire.h) in *ret_pool. */
int volclient_pool(const char *socket_path, json_t **ret_pool, char *ret_msg);

/* Deletes the volume @name; @force deletes it even when it holds data or is in use. */
int volclient_delete(const char *socket_path, const char *name, bool force, char *ret_msg);

#endif
