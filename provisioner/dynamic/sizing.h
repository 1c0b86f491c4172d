/*
 * sizing.h - the arithmetic behind volume expansion and the node's
 * advertised capacity: when a claim asks for more, how much to grow its
 * volume to, what its status should then say, and how much room the node
 * still offers to the scheduler.
 *
 * Pure: no I/O, no logging, no clock. Functions return 0 or -errno unless
 * they say otherwise; JSON out-parameters are new references owned by the
 * caller.
 */
#ifndef CARVEFS_SIZING_H
#define CARVEFS_SIZING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* carvefs volumes grow in whole pages: the daemon accounts in 4 KiB blocks. */
#define SIZING_ALIGN_BYTES UINT64_C(4096)
#define SIZING_GIB (UINT64_C(1) << 30)
/* Room for any decimal uint64_t and its NUL. */
#define SIZING_DECIMAL_MAX 21

/* Rounds @bytes up to a multiple of @align (> 0). -ERANGE if that overflows. */
int sizing_round_up(uint64_t bytes, uint64_t align, uint64_t *ret_bytes);

/*
 * What a claim bound to a PV asks of its volume:
 *   SIZING_KEEP    the request fits in the PV's capacity: nothing to do (a
 *                  claim may well be bound to a bigger PV than it asked for);
 *   SIZING_GROW    the request is above the PV's capacity: grow the volume to
 *                  the request rounded up to SIZING_ALIGN_BYTES;
 *   SIZING_SHRINK  the request went down since @last_request_bytes (the
 *                  request seen before; 0 when none was) to below the PV's
 *                  capacity. The apiserver refuses this, so it is only seen
 *                  with an apiserver that lets a failed expansion be taken
 *                  back; carvefs never makes a volume smaller.
 */
enum sizing_verdict {
	SIZING_KEEP = 0,
	SIZING_GROW,
	SIZING_SHRINK,
};

/*
 * Judges the claim's spec.resources.requests.storage @request against the
 * PV's spec.capacity.storage @capacity (both quantity strings). On success
 * *ret_verdict says what to do, *ret_request_bytes is the parsed request and
 * *ret_target_bytes the size to grow to (the request rounded up; meaningful
 * for SIZING_GROW). Returns 0, -EINVAL if either quantity is missing or
 * malformed or the request is 0, -ERANGE if it does not fit in 64 bits.
 */
int sizing_judge(const char *request, const char *capacity, uint64_t last_request_bytes,
		 enum sizing_verdict *ret_verdict, uint64_t *ret_request_bytes,
		 uint64_t *ret_target_bytes);

/*
 * True for the claim conditions an expansion in progress leaves, which a
 * finished one removes: "Resizing" and "FileSystemResizePending".
 */
bool sizing_is_resize_condition(const char *type);

/*
 * The merge patch for a claim's /status once its volume holds @size_bytes:
 * status.capacity.storage set to the exact quantity, and status.conditions
 * replaced by @conditions (the claim's status.conditions, may be NULL)
 * without the resize conditions. A merge patch replaces a list whole, so
 * the conditions are only named when one has to go. *ret_needed is false
 * (and *ret_patch NULL) when @claim already says all this.
 */
int sizing_claim_status_patch(const json_t *claim, uint64_t size_bytes, json_t **ret_patch,
			      bool *ret_needed);

/*
 * What the node can still promise: max(0, @free_bytes * @overcommit -
 * @committed_bytes), rounded down to a byte and saturating at UINT64_MAX.
 * An @overcommit that is not a positive finite number counts as 1.
 */
uint64_t sizing_allocatable(uint64_t free_bytes, double overcommit, uint64_t committed_bytes);

/* @bytes as a decimal string into @buf (SIZING_DECIMAL_MAX suffice). -ENOSPC if short. */
int sizing_format_bytes(uint64_t bytes, char *buf, size_t len);

/*
 * @bytes in whole GiB rounded down, as a decimal string into @buf: a valid
 * label value (digits only, at most 11 of them), which node affinity can
 * compare with the operators Gt and Lt. -ENOSPC if @len is too short.
 */
int sizing_format_gib(uint64_t bytes, char *buf, size_t len);

#endif
