/*
 * k8sname.h - the Kubernetes name rules, as Kubernetes' own validation
 * (k8s.io/apimachinery/pkg/util/validation) defines them:
 *
 *   DNS-1123 label      1 to 63 of a-z, 0-9 and '-', starting and ending
 *                       with a letter or digit: namespaces, carvefs volume
 *                       names.
 *   DNS-1123 subdomain  1 to 253 characters, DNS-1123 labels joined by '.'
 *                       (so no "..", ".a", "a-.b"), each part as long as the
 *                       whole allows: PV, StorageClass and most object
 *                       names, label key prefixes.
 *   label key           [prefix/]name: the prefix a DNS-1123 subdomain, the
 *                       name 1 to 63 of A-Z, a-z, 0-9, '-', '_' and '.',
 *                       starting and ending with a letter or digit.
 *   label value         empty, or as the name part of a key.
 *
 * Pure, never logs. Each returns 0, or -EINVAL with the first rule broken
 * in @ret_msg (errmsg.h; may be NULL), worded to follow the name, as in
 * "volume name 'Data': must contain only lowercase letters, digits and
 * '-'". Rules are checked in the order a user reads the name: length,
 * characters, then ends. NULL is refused like "".
 */
#ifndef CARVEFS_K8SNAME_H
#define CARVEFS_K8SNAME_H

#include "errmsg.h"

#define K8SNAME_LABEL_MAX 63
#define K8SNAME_SUBDOMAIN_MAX 253

int k8sname_dns_label(const char *s, struct errmsg *ret_msg);
int k8sname_dns_subdomain(const char *s, struct errmsg *ret_msg);
int k8sname_label_key(const char *s, struct errmsg *ret_msg);
int k8sname_label_value(const char *s, struct errmsg *ret_msg);

#endif
