/*
 * retryset.h - what a periodic pass failed at, and when to try each again.
 *
 * A set of keys (an object's uid, a PV's name), each with its own capped
 * exponential backoff with jitter (backoff.h). A pass, for every object it
 * could act on:
 *   - asks retryset_due() whether to try the object now;
 *   - reports the outcome with retryset_failed(), which schedules the next
 *     try, or retryset_succeeded(), which makes the key due at once again
 *     and its backoff start from the first delay;
 * and ends with retryset_sweep(), which forgets the keys the pass did not
 * ask about (objects deleted, or no longer the pass's business), so the set
 * holds no more than the objects the pass still sees.
 *
 * A failure may be tied to a version of the object (its resourceVersion,
 * the size asked for). Another version may be the fix: it is due at once,
 * and if it fails too, its backoff starts from the first delay, since it
 * is a new failure, not more of the old one. A NULL version matches any.
 *
 * A key may also carry a memo of the caller's (a fixed-size struct), made
 * zeroed on first use and forgotten with the key by the sweep.
 *
 * Pure: the caller passes the monotonic time. Not thread safe.
 */
#ifndef CARVEFS_RETRYSET_H
#define CARVEFS_RETRYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct retryset;

/*
 * A new empty set whose keys back off from @base_ns up to @cap_ns (as
 * backoff_init() takes them), with memos of @memo_bytes (0 for none).
 * @seed spreads the jitter (e.g. the clock): each key draws from its own
 * sequence derived from it. Returns 0 or -ENOMEM.
 */
int retryset_new(uint64_t base_ns, uint64_t cap_ns, size_t memo_bytes, uint64_t seed,
		 struct retryset **ret_set);

/* Accepts NULL; returns NULL. */
struct retryset *retryset_free(struct retryset *rs);

/*
 * Whether @key at @version (may be NULL) may be tried at @now_ns: it has no
 * failure pending, its failure was at another version, or its next try is
 * due. Marks @key as looked at by this pass.
 */
bool retryset_due(struct retryset *rs, const char *key, const char *version,
		  uint64_t now_ns);

/*
 * Records that trying @key at @version failed at @now_ns. Returns the delay
 * before its next try, or 0 when out of memory: then nothing is recorded
 * and the key is simply due again at the next pass. Marks @key as looked at.
 */
uint64_t retryset_failed(struct retryset *rs, const char *key, const char *version,
			 uint64_t now_ns);

/* Trying @key succeeded: no failure pending, the backoff starts afresh. */
void retryset_succeeded(struct retryset *rs, const char *key);

/*
 * The memo of @key (memo_bytes, zeroed when new), owned by the set and valid
 * until the sweep that forgets @key; NULL when out of memory or the set has
 * no memos. Marks @key as looked at.
 */
void *retryset_memo(struct retryset *rs, const char *key);

/*
 * Ends a pass: forgets every key that no retryset_due(), _failed() or
 * _memo() asked about since the previous sweep.
 */
void retryset_sweep(struct retryset *rs);

/* How many keys the set holds. */
size_t retryset_size(const struct retryset *rs);

#endif
