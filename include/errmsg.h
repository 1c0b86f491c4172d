/*
 * errmsg.h - how a function says why it failed: the project's one
 * convention for a failure's one-line reason.
 *
 * A function that can fail for a reason worth telling a user returns 0 or
 * -errno as every function does, and takes a last parameter
 * `struct errmsg *ret_msg`:
 *
 *	int volname_validate(const char *name, struct errmsg *ret_msg);
 *
 *	struct errmsg msg;
 *	r = volname_validate(name, &msg);
 *	if (r < 0)
 *		return log_error_errno(r, "volume name '%s': %s", name, msg.text);
 *
 * - The caller owns the storage (on its stack, usually) and may pass NULL
 *   when it does not care why.
 * - On failure the function always fills it; on success it does not touch
 *   it, as with any ret_* parameter.
 * - The text is one line: no newline, no trailing period, no program name
 *   and no "error:" prefix; it names what was wrong (quoting user strings,
 *   `volume 'pvc-1'`) and the caller adds where it came from. Texts longer
 *   than ERRMSG_MAX - 1 bytes are cut.
 * - Functions that fill it do not log; their callers decide what to say.
 *
 * The size travels with the type, so no caller can pass a buffer shorter
 * than the callee assumes.
 */
#ifndef CARVEFS_ERRMSG_H
#define CARVEFS_ERRMSG_H

/* Room for a sentence quoting a 253-character name twice, and the daemon's replies. */
#define ERRMSG_MAX 512

struct errmsg {
	char text[ERRMSG_MAX];
};

/*
 * Formats the reason into @m (may be NULL) and returns @r, so a failure
 * reads `return errmsg_set(ret_msg, -EINVAL, "size '%s' is too large", s);`.
 */
__attribute__((format(printf, 3, 4)))
int errmsg_set(struct errmsg *m, int r, const char *fmt, ...);

#endif
