// SPDX-License-Identifier: GPL-2.0-only
/*
 * TCP health: retransmits and resets sent and received, counted in the
 * socket's series. Part of netagent.bpf.c.
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

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_tcp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct na_sock_state *st;
	struct na_flow_stats *fs;

	/* NULL for resets answering packets that match no socket. */
	if (!sk)
		return 0;
	st = tcp_state(sk, true);
	if (st) {
		nat_take(st, (__u64)sk, false);
		fs = flow_stats(st);
	} else {
		/* Closed just before (see just_closed). */
		__u64 key = (__u64)sk;
		struct na_closed *c = bpf_map_lookup_elem(&just_closed, &key);
		__u32 slot;

		if (!c || !has_peer(sk, c->peer_port, c->peer4, true))
			return 0;
		slot = c->flow_slot - 1;
		bpf_map_delete_elem(&just_closed, &key);
		fs = bpf_map_lookup_elem(&flow_counters, &slot);
	}
	if (fs)
		ADD(fs->resets_sent, 1);
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
