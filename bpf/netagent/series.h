/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Series: the slot of a socket's (owner, peer) series in the counter
 * arrays (see `flows` in maps.h for the scheme), and its flow counters.
 */
#ifndef NETAGENT_SERIES_H
#define NETAGENT_SERIES_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "lost.h"

/* Counters in `flows` and `hists` are shared between CPUs. */
#define ADD(field, n) __sync_fetch_and_add(&(field), (n))

/* The series key changes (a new owner or peer): its slots are looked up again. */
static __always_inline void forget_series(struct na_sock_state *st)
{
	st->flow_slot = 0;
	for (int i = 0; i < NA_HIST_KINDS; i++)
		st->hist_slot[i] = 0;
}

/* Is (a, ap) the same destination as (b, bp)? */
static __always_inline bool same_dest(const __u8 a[16], __u16 ap, const __u8 b[16], __u16 bp)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return ap == bp && x[0] == y[0] && x[1] == y[1];
}

/* The translated destination (nat.c) belongs to the key once it is settled
 * and is about the destination the key has (a UDP socket's peer changes). */
static __always_inline bool nat_applies(const struct na_sock_state *st)
{
	return st->nat_state == NA_NAT_DONE && st->nat_dport &&
	       same_dest(st->nat_orig, st->nat_orig_port, st->daddr, st->dport);
}

static __always_inline void flow_key(struct na_flow_key *k, const struct na_sock_state *st,
				     __u8 hist)
{
	__builtin_memcpy(k->comm, st->comm, NA_COMM_LEN);
	__builtin_memcpy(k->daddr, st->daddr, 16);
	if (nat_applies(st)) {
		__builtin_memcpy(k->nat_daddr, st->nat_daddr, 16);
		k->nat_dport = st->nat_dport;
	} else {
		__builtin_memset(k->nat_daddr, 0, 16);
		k->nat_dport = 0;
	}
	k->cgroup_id = st->cgroup_id;
	k->dport = st->dport;
	k->proto = st->proto;
	k->direction = st->direction;
	k->hist = hist;
	k->_pad = 0;
}

/* 1 + the slot of series `k` in an index, taking a free slot for a new
 * one; 0 when the index or its slots are exhausted (counted as `reason`). */
static __always_inline __u32 series_slot(void *index, void *free, const struct na_flow_key *k,
					 __u32 reason)
{
	__u32 *found = bpf_map_lookup_elem(index, k);
	__u32 slot;

	if (found)
		return *found + 1;
	if (bpf_map_pop_elem(free, &slot)) {
		count_lost(reason);
		return 0;
	}
	if (!bpf_map_update_elem(index, k, &slot, BPF_NOEXIST))
		return slot + 1;
	/* Another CPU inserted it meanwhile (-EEXIST): take its slot, give ours back. */
	bpf_map_push_elem(free, &slot, 0);
	found = bpf_map_lookup_elem(index, k);
	if (!found) {
		count_lost(reason);
		return 0;
	}
	return *found + 1;
}

/* The counters of the socket's series, created on first use. */
static __always_inline struct na_flow_stats *flow_stats(struct na_sock_state *st)
{
	struct na_flow_key k;
	__u32 slot = st->flow_slot;

	if (!slot) {
		flow_key(&k, st, 0);
		slot = series_slot(&flows, &flow_slots, &k, NA_LOST_FLOW_MAP_FULL);
		if (!slot)
			return NULL;
		st->flow_slot = slot;
	}
	slot -= 1;
	return bpf_map_lookup_elem(&flow_counters, &slot);
}

#endif
