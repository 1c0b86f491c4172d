/*
 * yamlscalar.h - what a YAML scalar is, by the YAML 1.2 core schema.
 *
 * A plain (unquoted) scalar is, in this order:
 *   null   "", "~", null, Null, NULL
 *   bool   true, True, TRUE, false, False, FALSE
 *   int    [-+]?[0-9]+, 0o[0-7]+ (octal), 0x[0-9a-fA-F]+ (hex)
 *   float  [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?,
 *          [-+]?(.inf|.Inf|.INF), .nan, .NaN, .NAN
 *   string anything else.
 * A quoted or block scalar is always a string. The YAML 1.1 words (yes, no,
 * on, off) and forms (1_000, 0b1, 1:20) are strings here.
 *
 * The configuration and the PV manifests are read with these rules, so that
 * a value means the same wherever carve-provisioner reads it.
 *
 * Pure; never logs.
 */
#ifndef CARVEFS_YAMLSCALAR_H
#define CARVEFS_YAMLSCALAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum yamlscalar_type {
	YAMLSCALAR_NULL,
	YAMLSCALAR_BOOL,
	YAMLSCALAR_INT,
	YAMLSCALAR_FLOAT,
	YAMLSCALAR_STR,
};

/*
 * The type of the scalar @s of @len bytes (as libyaml gives it: NUL
 * terminated, possibly with NULs inside, which make it a string). @plain:
 * written without quotes.
 */
enum yamlscalar_type yamlscalar_type(const char *s, size_t len, bool plain);

/* The value of a plain bool scalar. -EINVAL if @s is not one. */
int yamlscalar_bool(const char *s, bool *ret_value);

/*
 * The value of a plain int scalar, in decimal, octal (0o) or hex (0x).
 * -EINVAL if @s is not one, -ERANGE if it does not fit in 64 bits.
 */
int yamlscalar_int(const char *s, int64_t *ret_value);

/*
 * The value of a plain int or float scalar as a double (.inf and .nan
 * included). -EINVAL if @s is neither, -ERANGE if a float's magnitude
 * overflows a double (then it is not taken as infinite).
 */
int yamlscalar_float(const char *s, double *ret_value);

#endif
