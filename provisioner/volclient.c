/*
 * volclient.c - what dynamic provisioning asks the carvefs daemon; see
 * include/volclient.h.
 */
#include <errno.h>

#include "daemonctl.h"
#include "volclient.h"
#include "wire.h"

int volclient_call(const char *socket_path, const json_t *request, json_t **ret_reply,
		   char *ret_msg)
{
	json_t *reply = NULL;
	int r;

	r = daemonctl_call(socket_path, request, VOLCLIENT_TIMEOUT_MS, &reply, ret_msg,
			   WIRE_MSG_MAX);
	if (r == 0 && ret_reply)
		*ret_reply = json_incref(reply);
	json_decref(reply);
	return r;
}

/* A verb without arguments whose reply carries @field: that member to *ret. */
static int call_for(const char *socket_path, const char *verb, const char *field,
		    json_t **ret, char *ret_msg)
{
	json_t *req, *reply = NULL, *v;
	int r;

	req = json_pack("{s:s}", "verb", verb);
	if (!req)
		return -ENOMEM;
	r = volclient_call(socket_path, req, &reply, ret_msg);
	json_decref(req);
	if (r < 0)
		return r;
	v = json_object_get(reply, field);
	if (!v) {
		json_decref(reply);
		return -EPROTO;
	}
	*ret = json_incref(v);
	json_decref(reply);
	return 0;
}

int volclient_list(const char *socket_path, json_t **ret_volumes, char *ret_msg)
{
	json_t *v = NULL;
	int r;

	r = call_for(socket_path, "list", "volumes", &v, ret_msg);
	if (r == 0 && !json_is_array(v)) {
		json_decref(v);
		return -EPROTO;
	}
	if (r == 0)
		*ret_volumes = v;
	return r;
}

int volclient_pool(const char *socket_path, json_t **ret_pool, char *ret_msg)
{
	json_t *v = NULL;
	int r;

	r = call_for(socket_path, "pool", "pool", &v, ret_msg);
	if (r == 0 && !json_is_object(v)) {
		json_decref(v);
		return -EPROTO;
	}
	if (r == 0)
		*ret_pool = v;
	return r;
}

int volclient_delete(const char *socket_path, const char *name, bool force, char *ret_msg)
{
	json_t *req;
	int r;

	req = json_pack("{s:s, s:s, s:b}", "verb", "delete", "name", name, "force", force);
	if (!req)
		return -EINVAL; /* a name that is not UTF-8 */
	r = volclient_call(socket_path, req, NULL, ret_msg);
	json_decref(req);
	return r;
}
