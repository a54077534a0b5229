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

/* A slot reference, as sockets cache it: 1 + slot in the low NA_SLOT_BITS
 * bits (0 = none), the slot's generation above them. The agent frees the
 * slots of expired series and bumps their generation (see `flows` in
 * maps.h); a reference of an older generation is stale. The agent keeps
 * limits.max_series below 1 << NA_SLOT_BITS (src/config/limits.rs). */
#define NA_SLOT_BITS 20
#define NA_SLOT_MASK ((1U << NA_SLOT_BITS) - 1)

static __always_inline __u32 slot_ref(void *gens, __u32 slot)
{
	__u32 *gen = bpf_map_lookup_elem(gens, &slot);

	return ((gen ? *gen : 0) << NA_SLOT_BITS) | (slot + 1);
}

/* The slot of reference `ref` while it is current; -1 for none or stale. */
static __always_inline __s64 ref_slot(void *gens, __u32 ref)
{
	__u32 slot = (ref & NA_SLOT_MASK) - 1;
	__u32 *gen;

	if (!(ref & NA_SLOT_MASK))
		return -1;
	gen = bpf_map_lookup_elem(gens, &slot);
	if (!gen || ((*gen << NA_SLOT_BITS) >> NA_SLOT_BITS) != ref >> NA_SLOT_BITS)
		return -1;
	return slot;
}

/* The reference of series `k`'s slot in an index, taking a free slot for a
 * new one; 0 when the index or its slots are exhausted (counted as
 * `reason`). */
static __always_inline __u32 series_slot(void *index, void *free, void *gens,
					 const struct na_flow_key *k, __u32 reason)
{
	__u32 *found = bpf_map_lookup_elem(index, k);
	__u32 slot;

	if (found)
		return slot_ref(gens, *found);
	if (bpf_map_pop_elem(free, &slot)) {
		count_lost(reason);
		return 0;
	}
	if (!bpf_map_update_elem(index, k, &slot, BPF_NOEXIST))
		return slot_ref(gens, slot);
	/* Another CPU inserted it meanwhile (-EEXIST): take its slot, give ours back. */
	bpf_map_push_elem(free, &slot, 0);
	found = bpf_map_lookup_elem(index, k);
	if (!found) {
		count_lost(reason);
		return 0;
	}
	return slot_ref(gens, *found);
}

/* The counters a flow slot reference points to, while it is current. */
static __always_inline struct na_flow_stats *flow_counters_of(__u32 ref)
{
	__s64 slot = ref_slot(&flow_gens, ref);
	__u32 s;

	if (slot < 0)
		return NULL;
	s = slot;
	return bpf_map_lookup_elem(&flow_counters, &s);
}

/* The counters of the socket's series, created on first use, and looked
 * up again when the agent freed the cached slot (the series expired). */
static __always_inline struct na_flow_stats *flow_stats(struct na_sock_state *st)
{
	struct na_flow_stats *fs;
	struct na_flow_key k;
	__u32 ref = st->flow_slot;

	if (ref) {
		fs = flow_counters_of(ref);
		if (fs)
			return fs;
	}
	flow_key(&k, st, 0);
	ref = series_slot(&flows, &flow_slots, &flow_gens, &k, NA_LOST_FLOW_MAP_FULL);
	if (!ref)
		return NULL;
	st->flow_slot = ref;
	return flow_counters_of(ref);
}

#endif
