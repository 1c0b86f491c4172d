/*
 * kubeconfig.h - where the Kubernetes API is and how to authenticate to it:
 * a kubeconfig file's current (or named) context, or the in-cluster
 * service account.
 *
 * Of a kubeconfig, only what a long-running agent needs is read: the
 * cluster's server, certificate-authority(-data) and
 * insecure-skip-tls-verify; the user's token, tokenFile,
 * client-certificate(-data) and client-key(-data). A user that
 * authenticates only through exec or auth-provider plugins, or with a
 * username and password, is refused: this process cannot run plugins.
 *
 * Pure: parses text it is given, reads no files, never logs. Relative paths
 * in a kubeconfig are resolved against the directory it was read from, as
 * kubectl does.
 */
#ifndef CARVEFS_KUBECONFIG_H
#define CARVEFS_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "errmsg.h"

/* Where a pod finds its service account. */
#define KUBECONFIG_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBECONFIG_SA_TOKEN KUBECONFIG_SA_DIR "/token"
#define KUBECONFIG_SA_CA KUBECONFIG_SA_DIR "/ca.crt"

/*
 * Every string is owned by the structure. A *_data member holds the decoded
 * bytes (PEM) with *_len their length, NUL-terminated as well; a *_file
 * member is an absolute or kubeconfig-relative-resolved path. Either may be
 * NULL; when a kubeconfig gives both, *_data wins, as in kubectl.
 */
struct kubeconfig {
	char *server; /* "https://host:port", without a trailing '/' */
	char *ca_data;
	size_t ca_len;
	char *ca_file;
	char *cert_data;
	size_t cert_len;
	char *cert_file;
	char *key_data;
	size_t key_len;
	char *key_file;
	char *token;	  /* a bearer token, or NULL */
	char *token_file; /* re-read by the client as it may rotate, or NULL */
	bool insecure_skip_tls_verify;
};

/*
 * Parses the kubeconfig @text (@len bytes) into a new *ret_kc. @context
 * picks a context by name; NULL means current-context. @base_dir (may be
 * NULL) is the directory relative paths are resolved against. Returns 0,
 * -EINVAL for malformed YAML, a missing context/cluster/user, no server, or
 * bad base64, -EOPNOTSUPP for a user that authenticates only in ways not
 * supported, or -ENOMEM; with the reason in @ret_msg (errmsg.h).
 */
int kubeconfig_parse(const char *text, size_t len, const char *context, const char *base_dir,
		     struct kubeconfig **ret_kc, struct errmsg *ret_msg);

/*
 * The in-cluster configuration from the values a pod is given:
 * KUBERNETES_SERVICE_HOST (@host, an IPv6 address is bracketed here),
 * KUBERNETES_SERVICE_PORT (@port), and the paths of the service account's
 * token and CA (KUBECONFIG_SA_TOKEN and KUBECONFIG_SA_CA in a pod). The
 * token is read by the client from @token_file. Returns 0, -EINVAL if @host
 * or @port is empty or @port not a port number, or -ENOMEM.
 */
int kubeconfig_in_cluster(const char *host, const char *port, const char *token_file,
			  const char *ca_file, struct kubeconfig **ret_kc);

/* Accepts NULL; returns NULL. */
struct kubeconfig *kubeconfig_free(struct kubeconfig *kc);

/*
 * Decodes standard base64 (with or without padding; whitespace is skipped)
 * into a malloc'd, NUL-terminated *ret_data of *ret_len bytes. Returns 0,
 * -EINVAL, or -ENOMEM.
 */
int kubeconfig_base64_decode(const char *s, char **ret_data, size_t *ret_len);

#endif
