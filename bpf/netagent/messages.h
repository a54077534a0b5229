/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Messages (bytes, UDP datagrams, send->recv): what one message sent or
 * received on a socket counts, shared by every message hook (messages.c,
 * kprobes.c, syscalls.c), and the call bookkeeping of the untyped ones.
 */
#ifndef NETAGENT_MESSAGES_H
#define NETAGENT_MESSAGES_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "vmlinux_min.h"
#include "maps.h"
#include "lost.h"
#include "addr.h"
#include "sock.h"
#include "span.h"
#include "series.h"
#include "hist.h"
#include "nat.h"

#define SOCK_DGRAM 2
#define MSG_PEEK 2

/* Long-lived connections get an RTT sample at most this often. */
#define RTT_SAMPLE_NS (10ULL * 1000 * 1000 * 1000)

static __always_inline bool is_udp(const struct sock *sk, bool typed)
{
	return SK_READ(typed, sk, sk_protocol) == IPPROTO_UDP &&
	       SK_READ(typed, sk, sk_type) == SOCK_DGRAM;
}

/* The explicit peer of this task's current UDP message, if a cgroup hook
 * saw one (untyped hooks; typed ones keep it in the socket state). */
static __always_inline void take_task_pending(struct na_sock_state *st)
{
	__u64 task = bpf_get_current_pid_tgid();
	struct na_pending *p = bpf_map_lookup_elem(&task_pending, &task);

	if (!p)
		return;
	__builtin_memcpy(st->pending_addr, p->addr, 16);
	st->pending_port = p->port;
	st->has_pending = 1;
	bpf_map_delete_elem(&task_pending, &task);
}

/* UDP: the series of this datagram — its peer from the cgroup hook
 * (unconnected) or the socket (connected); the server-side port. */
static __always_inline void udp_peer(const struct sock *sk, struct na_sock_state *st, bool typed)
{
	const __u64 *addr = (const __u64 *)st->daddr;
	__u64 old0 = addr[0], old1 = addr[1];
	__u16 old_dport = st->dport;
	__u16 peer_port;

	if (BY_ADDR(typed))
		take_task_pending(st);
	if (st->has_pending) {
		__builtin_memcpy(st->daddr, st->pending_addr, 16);
		peer_port = st->pending_port;
		st->has_pending = 0;
	} else {
		read_peer_addr(sk, st->daddr, typed);
		peer_port = bpf_ntohs(SK_READ(typed, sk, __sk_common.skc_dport));
	}
	st->peer_port = peer_port;
	st->dport = st->direction == NA_DIR_INBOUND ? SK_READ(typed, sk, __sk_common.skc_num)
						    : peer_port;
	if (addr[0] != old0 || addr[1] != old1 || st->dport != old_dport)
		forget_series(st);
}

/* State of a socket for a message event; UDP sockets of target processes
 * get their state here on their first message. */
static __always_inline struct na_sock_state *message_state(struct sock *sk, bool udp,
							   __u8 direction, bool typed)
{
	struct na_sock_state *st;
	__u8 comm[NA_COMM_LEN];
	__u64 key = (__u64)sk;

	/* The cgroup hooks may have created state for a socket of another
	 * namespace; it is ignored here, where the namespace is known. */
	if (!netns_ok(sk, typed))
		return NULL;
	if (!udp)
		return tcp_state(sk, typed); /* created at connect/accept only */
	if (BY_ADDR(typed))
		st = bpf_map_lookup_elem(&sock_index, &key);
	else
		st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
	if (st)
		return st;
	if (!current_is_target(comm))
		return NULL;
	if (!BY_ADDR(typed))
		return own_socket(sk, comm, IPPROTO_UDP, direction);
	return own_by_addr(key, comm, direction);
}

/* One message sent on `sk`: `ret` bytes, or an error. */
static __always_inline void on_message_sent(struct sock *sk, int ret, bool typed)
{
	bool udp = is_udp(sk, typed);
	struct na_sock_state *st = message_state(sk, udp, NA_DIR_OUTBOUND, typed);
	struct na_flow_stats *fs;
	__u64 now = 0;

	if (!st)
		return;
	if (ret < 0) {
		st->has_pending = 0;
		if (BY_ADDR(typed) && udp) {
			__u64 task = bpf_get_current_pid_tgid();

			bpf_map_delete_elem(&task_pending, &task);
		}
		return;
	}
	if (udp) {
		udp_peer(sk, st, typed);
		nat_take(st, (__u64)sk, false);
	}
	fs = flow_stats(st);
	if (fs) {
		if (udp)
			ADD(fs->connects, 1); /* one datagram */
		ADD(fs->bytes_sent, ret);
	}
	if (!udp && ret > 0) {
		/* A payload: the connection is not idle (the agent's
		 * netagent_tcp_connections_idle). */
		now = bpf_ktime_get_ns();
		st->data_ts = now;
	}
	if (st->direction == NA_DIR_OUTBOUND) {
		if (!st->send_ts)
			st->send_ts = now ?: bpf_ktime_get_ns();
	} else if (st->recv_ts) {
		/* A server's answer: request received -> response sent. */
		emit_span(sk, st, st->recv_ts, now ?: bpf_ktime_get_ns(), typed);
		st->recv_ts = 0;
	}
}

/* One message received on `sk`: `ret` bytes (<= 0: error or EOF). */
static __always_inline void on_message_received(struct sock *sk, int ret, int flags, bool typed)
{
	struct na_sock_state *st;
	struct na_flow_stats *fs;
	bool udp;
	__u64 now;

	/* Peeked data is read again later; errors and EOF carry no bytes. */
	if (ret <= 0 || (flags & MSG_PEEK)) {
		if (BY_ADDR(typed)) {
			__u64 task = bpf_get_current_pid_tgid();

			bpf_map_delete_elem(&task_pending, &task);
		}
		return;
	}
	udp = is_udp(sk, typed);
	st = message_state(sk, udp, NA_DIR_INBOUND, typed);
	if (!st)
		return;
	if (udp) {
		udp_peer(sk, st, typed);
		/* A reply: the request has crossed every namespace of this host. */
		nat_take(st, (__u64)sk, true);
	}
	fs = flow_stats(st);
	if (fs)
		ADD(fs->bytes_received, ret);
	now = bpf_ktime_get_ns();
	if (!udp)
		st->data_ts = now; /* not idle (see on_message_sent) */
	if (st->send_ts) {
		observe(st, NA_HIST_TX, now - st->send_ts);
		emit_span(sk, st, st->send_ts, now, typed);
		st->send_ts = 0;
	} else if (st->direction == NA_DIR_INBOUND && !st->recv_ts) {
		st->recv_ts = now;
	}
	if (!udp && st->open && now - st->rtt_ts > RTT_SAMPLE_NS) {
		st->rtt_ts = now;
		observe_rtt(sk, st, typed);
	}
}

/* Untyped hooks (kprobes.c, syscalls.c): note the call at entry, finish it
 * at exit in this task. */
static __always_inline void call_begin(__u64 sk, int flags, __u8 send)
{
	struct na_msg_call c = { .sk = sk, .flags = flags, .send = send };
	__u64 task = bpf_get_current_pid_tgid();

	if (sk)
		bpf_map_update_elem(&msg_calls, &task, &c, BPF_ANY);
}

static __always_inline void call_end(long ret)
{
	__u64 task = bpf_get_current_pid_tgid();
	struct na_msg_call *c = bpf_map_lookup_elem(&msg_calls, &task);
	struct na_msg_call call;

	if (!c)
		return;
	call = *c;
	bpf_map_delete_elem(&msg_calls, &task);
	if (call.send)
		on_message_sent((struct sock *)call.sk, ret, false);
	else
		on_message_received((struct sock *)call.sk, ret, call.flags, false);
}

#endif
