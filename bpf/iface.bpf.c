// SPDX-License-Identifier: GPL-2.0-only
/*
 * Per-interface packet and byte counters from TC (clsact / TCX) programs on
 * ingress and egress. They only count: every packet continues unchanged to
 * the next program or the stack (TC_ACT_UNSPEC, which TCX reads as "next").
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "netagent.h"

char LICENSE[] SEC("license") = "GPL";

/* Most interfaces: the agent gives each attached interface a counter slot
 * and writes it at ifindex % NA_IFACE_DIRECT, so a packet costs two array
 * lookups (the verifier inlines them) instead of a per-CPU hash lookup,
 * ~35-45 ns less a packet (docs/BENCHMARKS.md). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NA_IFACE_DIRECT);
	__type(key, __u32);
	__type(value, struct na_iface_slot);
} iface_direct SEC(".maps");

/* Per slot and direction (the agent sizes it to 2 × max_interfaces). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct na_iface_counters);
} iface_counters SEC(".maps");

/* The rest (an interface whose iface_direct entry another one holds): by
 * ifindex and direction. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct na_iface_key);
	__type(value, struct na_iface_counters);
} iface_stats SEC(".maps");

/* Packets not counted because `iface_stats` is full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} iface_lost SEC(".maps");

static __always_inline int count(struct __sk_buff *skb, __u32 direction)
{
	__u32 ifindex = skb->ifindex, at = ifindex % NA_IFACE_DIRECT;
	struct na_iface_slot *d = bpf_map_lookup_elem(&iface_direct, &at);
	struct na_iface_counters *c;

	if (d && d->ifindex == ifindex) {
		__u32 i = d->slot * 2 + direction;

		c = bpf_map_lookup_elem(&iface_counters, &i);
		if (c) {
			c->packets += 1; /* per-CPU value: no atomics needed */
			c->bytes += skb->len;
			return TC_ACT_UNSPEC;
		}
	}

	struct na_iface_key k = {
		.ifindex = ifindex,
		.direction = direction,
	};
	c = bpf_map_lookup_elem(&iface_stats, &k);
	if (!c) {
		struct na_iface_counters zero = {};
		__u32 slot = 0;
		__u64 *lost;

		bpf_map_update_elem(&iface_stats, &k, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&iface_stats, &k);
		if (!c) {
			lost = bpf_map_lookup_elem(&iface_lost, &slot);
			if (lost)
				*lost += 1;
			return TC_ACT_UNSPEC;
		}
	}
	c->packets += 1; /* per-CPU value: no atomics needed */
	c->bytes += skb->len;
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int on_tc_ingress(struct __sk_buff *skb)
{
	return count(skb, NA_IFACE_INGRESS);
}

SEC("classifier")
int on_tc_egress(struct __sk_buff *skb)
{
	return count(skb, NA_IFACE_EGRESS);
}
