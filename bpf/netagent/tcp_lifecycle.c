// SPDX-License-Identifier: GPL-2.0-only
/*
 * TCP lifecycle, from one tracepoint that sees every state change of every
 * TCP socket: connect attempts and their outcome, accepted connections,
 * listeners, closes (lifetime, RTT). Part of netagent.bpf.c.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/errno.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "vmlinux_min.h"
#include "maps.h"
#include "lost.h"
#include "addr.h"
#include "sock.h"
#include "series.h"
#include "hist.h"
#include "nat.h"

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10

static __always_inline __u32 fail_reason(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return NA_FAIL_REFUSED;
	case ETIMEDOUT:
		return NA_FAIL_TIMEOUT;
	case EHOSTUNREACH:
	case ENETUNREACH:
		return NA_FAIL_UNREACHABLE;
	case ECONNRESET:
		return NA_FAIL_RESET;
	default:
		return NA_FAIL_OTHER;
	}
}

/* A new socket's state, built on the stack, goes into the map in one
 * update (no update-then-lookup); false when the map is full. */
static __always_inline bool insert_state(const struct sock *sk, const struct na_sock_state *st)
{
	__u64 key = (__u64)sk;

	if (!bpf_map_update_elem(TCP_SOCKS(true), &key, st, BPF_ANY))
		return true;
	count_lost(NA_LOST_SOCK_STORAGE);
	return false;
}

/* CLOSE -> SYN_SENT runs in the task calling connect(): one attempt. It
 * is counted when its outcome is known (established or failed), when the
 * SYN has crossed every namespace of this host and any translation of its
 * destination (nat.c) is known, so the attempt, its outcome and everything
 * after it land in one series. */
static __always_inline void on_connect(const struct sock *sk)
{
	struct na_sock_state st = {};

	if (!netns_ok(sk, true) || !current_is_target(st.comm))
		return;
	st.cgroup_id = bpf_get_current_cgroup_id();
	st.pid = bpf_get_current_pid_tgid() >> 32;
	st.proto = IPPROTO_TCP;
	st.direction = NA_DIR_OUTBOUND;
	read_peer_addr(sk, st.daddr, true);
	st.dport = bpf_ntohs(sk->__sk_common.skc_dport);
	st.peer_port = st.dport;
	st.syn_ts = bpf_ktime_get_ns();
	insert_state(sk, &st);
}

/* The connect attempt, counted at its outcome (see on_connect). */
static __always_inline struct na_flow_stats *count_attempt(const struct sock *sk,
							   struct na_sock_state *st)
{
	struct na_flow_stats *fs;

	nat_take(st, (__u64)sk, true);
	fs = flow_stats(st);
	if (fs)
		ADD(fs->connects, 1);
	return fs;
}

static __always_inline void open_fields(struct na_sock_state *st, __u64 now)
{
	st->open = 1;
	st->open_ts = now;
	st->rtt_ts = now;
	/* Moved on by every payload sent or received (messages.h): a
	 * connection that never carries one is idle from its handshake on. */
	st->data_ts = now;
	st->closing = 0;
}

static __always_inline void count_open(struct na_flow_stats *fs)
{
	if (fs)
		ADD(fs->opened, 1);
}

/* ESTABLISHED -> FIN_WAIT1 (we closed or shut down our side) or CLOSE_WAIT
 * (the peer did): no longer an idle established connection, though open
 * until TCP_CLOSE. One lookup per graceful close, found or not. */
static __always_inline void on_fin(const struct sock *sk)
{
	struct na_sock_state *st = tcp_state(sk, true);

	if (st)
		st->closing = 1;
}

/* SYN_SENT -> ESTABLISHED (softirq: SYN-ACK received). */
static __always_inline void on_established_out(const struct sock *sk)
{
	struct na_sock_state *st = tcp_state(sk, true);
	__u64 now;

	if (!st)
		return;
	now = bpf_ktime_get_ns();
	if (st->syn_ts) {
		count_attempt(sk, st);
		observe(st, NA_HIST_CONNECT, now - st->syn_ts);
		st->syn_ts = 0;
	}
	count_open(flow_stats(st));
	open_fields(st, now);
}

/* SYN_RECV -> ESTABLISHED on a new child socket (softirq): the owner is
 * whoever listens on the socket's local port in its network namespace. */
static __always_inline void on_established_in(const struct sock *sk)
{
	struct na_listen_key lk = {
		.netns = netns_of(sk, true),
		.port = sk->__sk_common.skc_num,
	};
	struct na_listener *l = bpf_map_lookup_elem(&listeners, &lk);
	struct na_sock_state st = {};
	struct na_flow_stats *fs;

	if (!l)
		return;
	__builtin_memcpy(st.comm, l->comm, NA_COMM_LEN);
	st.cgroup_id = l->cgroup_id;
	st.pid = l->pid;
	st.proto = IPPROTO_TCP;
	st.direction = NA_DIR_INBOUND;
	read_peer_addr(sk, st.daddr, true);
	st.dport = lk.port;
	st.peer_port = bpf_ntohs(sk->__sk_common.skc_dport);
	/* The series (its slot cached in the state) before the insert, the
	 * count after it: a connection without state is never closed. */
	fs = flow_stats(&st);
	open_fields(&st, bpf_ktime_get_ns());
	if (insert_state(sk, &st))
		count_open(fs);
}

/* CLOSE -> LISTEN runs in the task calling listen(). The port is also
 * kept in the listener's socket state: by the time LISTEN -> CLOSE fires,
 * the kernel may already have released the port (skc_num = 0). */
static __always_inline void on_listen(const struct sock *sk)
{
	struct na_listen_key lk = {
		.netns = netns_of(sk, true),
		.port = sk->__sk_common.skc_num,
	};
	struct na_listener l = {};
	struct na_sock_state *st;

	if (!netns_ok(sk, true) || !current_is_target(l.comm))
		return;
	st = own_socket((void *)sk, l.comm, IPPROTO_TCP, NA_DIR_INBOUND);
	if (!st)
		return;
	st->dport = lk.port;
	l.cgroup_id = st->cgroup_id;
	l.pid = st->pid;
	if (sk->__sk_common.skc_family == AF_INET6)
		__builtin_memcpy(l.addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
	else
		v4_mapped(l.addr, sk->__sk_common.skc_rcv_saddr);
	if (bpf_map_update_elem(&listeners, &lk, &l, BPF_ANY))
		count_lost(NA_LOST_LISTENER_MAP_FULL);
}

/* LISTEN -> CLOSE. Listeners older than the agent have no socket state;
 * the agent removes those itself when sock_diag no longer lists them. */
static __always_inline void on_unlisten(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct na_sock_state *st = bpf_map_lookup_elem(TCP_SOCKS(true), &key);
	struct na_listen_key lk = {
		.netns = netns_of(sk, true),
	};

	if (!st)
		return;
	lk.port = st->dport;
	bpf_map_delete_elem(&listeners, &lk);
	bpf_map_delete_elem(TCP_SOCKS(true), &key);
}

/* Any state -> CLOSE: a failed connect, or the end of a connection. */
static __always_inline void count_close(const struct sock *sk, struct na_sock_state *st,
					int oldstate, __u64 now)
{
	struct na_flow_stats *fs;

	if (oldstate == TCP_SYN_SENT) {
		__u32 reason = fail_reason(sk->sk_err);

		st->syn_ts = 0;
		fs = count_attempt(sk, st);
		if (fs && reason < NA_FAIL_REASONS)
			ADD(fs->failed[reason], 1);
		return;
	}
	if (!st->open)
		return;
	st->open = 0;
	fs = flow_stats(st);
	if (fs)
		ADD(fs->closed, 1);
	if (st->open_ts) /* 0: seeded at start, its start is unknown (seed.c) */
		observe(st, NA_HIST_CONN_DURATION, now - st->open_ts);
	observe_rtt(sk, st, true);
}

/* The `just_closed` entry a close takes: a free one of its two slots,
 * else the older (maps.h). */
static __always_inline struct na_closed *closed_entry(const struct sock *sk)
{
	__u32 a = just_closed_slot(sk, 0), b = just_closed_slot(sk, 1);
	struct na_closed *ca = bpf_map_lookup_elem(&just_closed, &a);
	struct na_closed *cb = bpf_map_lookup_elem(&just_closed, &b);

	if (!ca || !cb)
		return ca ? ca : cb;
	return ca->sk && (!cb->sk || cb->closed_ns < ca->closed_ns) ? cb : ca;
}

static __always_inline void on_close(const struct sock *sk, int oldstate)
{
	__u64 key = (__u64)sk;
	struct na_sock_state *st = bpf_map_lookup_elem(TCP_SOCKS(true), &key);

	if (!st)
		return;
	if (same_socket(sk, st, true)) {
		__u64 now = bpf_ktime_get_ns();

		count_close(sk, st, oldstate, now);
		/* A graceful close ends in LAST_ACK -> CLOSE (no reset
		 * follows) or comes from FIN_WAIT2 (a reset may). */
		if (oldstate != TCP_LAST_ACK && oldstate != TCP_SYN_SENT && st->flow_slot) {
			struct na_closed *c = closed_entry(sk);

			if (c) {
				c->sk = 0;
				c->closed_ns = now;
				c->flow_slot = st->flow_slot;
				c->peer_port = st->peer_port;
				c->peer4 = peer4_of(st->daddr);
				c->cgroup_id = st->cgroup_id;
				__builtin_memcpy(c->comm, st->comm, NA_COMM_LEN);
				c->sk = key;
			}
		}
	}
	bpf_map_delete_elem(TCP_SOCKS(true), &key);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, const struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	switch (newstate) {
	case TCP_SYN_SENT:
		on_connect(sk);
		break;
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_SENT)
			on_established_out(sk);
		else if (oldstate == TCP_SYN_RECV)
			on_established_in(sk);
		break;
	case TCP_LISTEN:
		on_listen(sk);
		break;
	case TCP_FIN_WAIT1:
	case TCP_CLOSE_WAIT:
		if (oldstate == TCP_ESTABLISHED)
			on_fin(sk);
		break;
	case TCP_CLOSE:
		if (oldstate == TCP_LISTEN)
			on_unlisten(sk);
		else
			on_close(sk, oldstate);
		break;
	}
	return 0;
}
