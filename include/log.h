/*
 * log.h - the one small logger every carvefs program uses.
 *
 * Messages go to stderr (the kubelet and journald collect it) as
 * "<level>: <message>\n", prefixed with the program name set by log_init().
 * Thread-safe: each message is formatted into a local buffer and written with
 * a single write(2), so lines from different threads never interleave.
 *
 * Library-style modules (quantity, pool, quota, wire, ...) do not log; they
 * return -errno and let their caller decide what to say.
 */
#ifndef CARVEFS_LOG_H
#define CARVEFS_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* @prog is kept by reference: pass a string literal or argv[0]. */
void log_init(const char *prog, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug". Returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *ret_level);

__attribute__((format(printf, 3, 4)))
int log_msg(enum log_level level, int err, const char *fmt, ...);
__attribute__((format(printf, 3, 0)))
int log_msgv(enum log_level level, int err, const char *fmt, va_list ap);

/*
 * The *_errno variants append ": <strerror(-r)>" and return @r, so that
 * "return log_error_errno(r, "...")" reads naturally. @r is a negative errno.
 */
#define log_error(...) ((void)log_msg(LOG_LEVEL_ERROR, 0, __VA_ARGS__))
#define log_warn(...) ((void)log_msg(LOG_LEVEL_WARN, 0, __VA_ARGS__))
#define log_info(...) ((void)log_msg(LOG_LEVEL_INFO, 0, __VA_ARGS__))
#define log_debug(...) ((void)log_msg(LOG_LEVEL_DEBUG, 0, __VA_ARGS__))
#define log_error_errno(r, ...) log_msg(LOG_LEVEL_ERROR, (r), __VA_ARGS__)
#define log_warn_errno(r, ...) log_msg(LOG_LEVEL_WARN, (r), __VA_ARGS__)
#define log_info_errno(r, ...) log_msg(LOG_LEVEL_INFO, (r), __VA_ARGS__)
#define log_debug_errno(r, ...) log_msg(LOG_LEVEL_DEBUG, (r), __VA_ARGS__)

#endif
