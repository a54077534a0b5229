// SPDX-License-Identifier: GPL-2.0-only
/*
 * TCP health: retransmits and resets sent and received, counted in the
 * socket's series; resets sent also by the kernel's reason. Part of
 * netagent.bpf.c.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "vmlinux_min.h"
#include "maps.h"
#include "sock.h"
#include "series.h"
#include "nat.h"
#include "lost.h"

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb)
{
	struct na_sock_state *st = tcp_state(sk, true);
	struct na_flow_stats *fs;

	if (!st)
		return 0;
	/* A SYN retransmit: the first SYN has crossed this host by now. */
	nat_take(st, (__u64)sk, false);
	fs = flow_stats(st);
	if (fs)
		ADD(fs->retransmits, 1);
	return 0;
}

/* One more reset sent by this owner for this reason (see `reset_reasons`). */
static __always_inline void count_reason(const __u8 comm[NA_COMM_LEN], __u64 cgroup_id,
					 __u32 reason)
{
	struct na_reset_key k = { .cgroup_id = cgroup_id, .reason = reason };
	__u64 one = 1, *n;

	__builtin_memcpy(k.comm, comm, NA_COMM_LEN);
	n = bpf_map_lookup_elem(&reset_reasons, &k);
	if (n) {
		ADD(*n, 1);
		return;
	}
	if (!bpf_map_update_elem(&reset_reasons, &k, &one, BPF_NOEXIST))
		return;
	/* Another CPU created it meanwhile (-EEXIST), or the map is full. */
	n = bpf_map_lookup_elem(&reset_reasons, &k);
	if (n)
		ADD(*n, 1);
	else
		count_lost(NA_LOST_FLOW_MAP_FULL);
}

/* `sk`'s entry in its `which` just_closed slot, or NULL. */
static __always_inline struct na_closed *closed_match(const struct sock *sk, int which)
{
	__u32 i = just_closed_slot(sk, which);
	struct na_closed *c = bpf_map_lookup_elem(&just_closed, &i);

	if (!c || c->sk != (__u64)sk || !has_peer(sk, c->peer_port, c->peer4, true))
		return NULL;
	return c;
}

/* A reset sent on `sk` (NULL for resets answering packets that match no
 * socket): counted in the socket's series, and by reason before that, so
 * a reading of the totals and then of the reasons never finds a total the
 * reasons do not cover. */
static __always_inline void on_reset_sent(const struct sock *sk, __u32 reason)
{
	struct na_sock_state *st;
	struct na_flow_stats *fs;

	if (!sk)
		return;
	st = tcp_state(sk, true);
	if (st) {
		nat_take(st, (__u64)sk, false);
		fs = flow_stats(st);
		if (fs)
			count_reason(st->comm, st->cgroup_id, reason);
	} else {
		/* Closed just before (see just_closed): in either slot (the
		 * other may hold a stale entry of an earlier socket at this
		 * address, told apart by its peer). */
		struct na_closed *c = closed_match(sk, 0);

		if (!c)
			c = closed_match(sk, 1);
		if (!c)
			return;
		c->sk = 0; /* one reset per close */
		fs = flow_counters_of(c->flow_slot);
		if (fs)
			count_reason(c->comm, c->cgroup_id, reason);
	}
	if (fs)
		ADD(fs->resets_sent, 1);
}

/* Linux 6.10+: the tracepoint passes the kernel's reason (enum
 * sk_rst_reason). The agent loads this one where the kernel's BTF shows
 * that argument (src/kernel/hooks.rs), the one below otherwise: the
 * verifier refuses a read past the tracepoint's arguments. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_tcp_send_reset_reason, const struct sock *sk, const struct sk_buff *skb,
	     int reason)
{
	on_reset_sent(sk, (__u32)reason);
	return 0;
}

/* Older kernels: no reason. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_tcp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	on_reset_sent(sk, NA_RST_REASON_UNKNOWN);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_tcp_receive_reset, struct sock *sk)
{
	struct na_sock_state *st = tcp_state(sk, true);
	struct na_flow_stats *fs;

	if (!st)
		return 0;
	/* Possibly the answer to our SYN: its translation is known. */
	nat_take(st, (__u64)sk, false);
	fs = flow_stats(st);
	if (fs)
		ADD(fs->resets_received, 1);
	return 0;
}
