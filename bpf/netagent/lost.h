/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Events that could not be counted (a full map, no memory, a full ring
 * buffer), by enum na_lost_reason: netagent_events_lost_total.
 */
#ifndef NETAGENT_LOST_H
#define NETAGENT_LOST_H

#include "maps.h"

static __always_inline void count_lost(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&lost, &reason);

	if (v)
		*v += 1;
}

#endif
