/*
 * sizing.c - expansion and node capacity arithmetic; see include/sizing.h.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quantity.h"
#include "dynamic/sizing.h"
#include "jpath.h"

int sizing_round_up(uint64_t bytes, uint64_t align, uint64_t *ret_bytes)
{
	uint64_t rem;

	if (align == 0)
		return -EINVAL;
	rem = bytes % align;
	if (rem == 0) {
		*ret_bytes = bytes;
		return 0;
	}
	if (bytes > UINT64_MAX - (align - rem))
		return -ERANGE;
	*ret_bytes = bytes + (align - rem);
	return 0;
}

int sizing_judge(const char *request, const char *capacity, uint64_t last_request_bytes,
		 enum sizing_verdict *ret_verdict, uint64_t *ret_request_bytes,
		 uint64_t *ret_target_bytes)
{
	uint64_t req, cap, target = 0;
	enum sizing_verdict v;
	int r;

	if (!request || !capacity)
		return -EINVAL;
	r = quantity_parse(request, &req);
	if (r < 0)
		return r;
	r = quantity_parse(capacity, &cap);
	if (r < 0)
		return r;
	if (req == 0)
		return -EINVAL;
	if (req > cap) {
		r = sizing_round_up(req, SIZING_ALIGN_BYTES, &target);
		if (r < 0)
			return r;
		v = SIZING_GROW;
	} else if (last_request_bytes > 0 && req < last_request_bytes && req < cap) {
		v = SIZING_SHRINK;
	} else {
		v = SIZING_KEEP;
	}
	*ret_verdict = v;
	*ret_request_bytes = req;
	*ret_target_bytes = target;
	return 0;
}

bool sizing_is_resize_condition(const char *type)
{
	return type &&
	       (strcmp(type, "Resizing") == 0 || strcmp(type, "FileSystemResizePending") == 0);
}

int sizing_claim_status_patch(const json_t *claim, uint64_t size_bytes, json_t **ret_patch,
			      bool *ret_needed)
{
	const json_t *status = json_object_get(claim, "status");
	const json_t *conditions = json_object_get(status, "conditions"), *c;
	const char *have = jpath_str(status, "capacity", "storage");
	json_t *patch = NULL, *kept = NULL, *st;
	char size[32];
	bool drop = false;
	uint64_t have_bytes;
	size_t i;
	int r;

	json_array_foreach(conditions, i, c)
	{
		if (sizing_is_resize_condition(json_string_value(json_object_get(c, "type"))))
			drop = true;
	}
	if (!drop && have && quantity_parse(have, &have_bytes) == 0 && have_bytes == size_bytes) {
		*ret_patch = NULL;
		*ret_needed = false;
		return 0;
	}
	r = quantity_format(size_bytes, size, sizeof(size));
	if (r < 0)
		return r;
	patch = json_pack("{s:{s:{s:s}}}", "status", "capacity", "storage", size);
	if (!patch)
		return -ENOMEM;
	if (drop) {
		kept = json_array();
		if (!kept) {
			r = -ENOMEM;
			goto out;
		}
		json_array_foreach(conditions, i, c)
		{
			if (sizing_is_resize_condition(
				    json_string_value(json_object_get(c, "type"))))
				continue;
			if (json_array_append(kept, (json_t *)c) < 0) {
				r = -ENOMEM;
				goto out;
			}
		}
		st = json_object_get(patch, "status");
		if (json_object_set(st, "conditions", kept) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	*ret_patch = patch;
	patch = NULL;
	*ret_needed = true;
	r = 0;
out:
	json_decref(kept);
	json_decref(patch);
	return r;
}

uint64_t sizing_allocatable(uint64_t free_bytes, double overcommit, uint64_t committed_bytes)
{
	long double limit;

	if (!(overcommit > 0) || !isfinite(overcommit))
		overcommit = 1.0;
	/*
	 * long double keeps 64 bits of mantissa on the machines carvefs runs
	 * on, so with a ratio of 1 the product is the free space to the byte.
	 * The conversion below truncates, which rounds the positive
	 * difference down.
	 */
	limit = (long double)free_bytes * (long double)overcommit;
	if (limit <= (long double)committed_bytes)
		return 0;
	limit -= (long double)committed_bytes;
	if (limit >= 18446744073709551616.0L)
		return UINT64_MAX;
	return (uint64_t)limit;
}

int sizing_format_bytes(uint64_t bytes, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%llu", (unsigned long long)bytes);

	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int sizing_format_gib(uint64_t bytes, char *buf, size_t len)
{
	return sizing_format_bytes(bytes / SIZING_GIB, buf, len);
}
