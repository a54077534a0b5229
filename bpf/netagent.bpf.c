// SPDX-License-Identifier: GPL-2.0-only
/*
 * netagent kernel side: per-process TCP connects, UDP sends and send->recv
 * latency, aggregated in kernel maps that the agent reads at scrape time.
 *
 * Hooks (all stable, no kprobes/fentry):
 *   tp_btf/inet_sock_set_state  TCP CLOSE->SYN_SENT = one connect attempt
 *   cgroup/sendmsg4, sendmsg6   destination of an unconnected UDP sendto()
 *   tp_btf/sock_send_length     one message sent: UDP count, request start
 *   tp_btf/sock_recv_length     one message received: response end
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "vmlinux_min.h"
#include "netagent.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_DGRAM 2
#define TCP_SYN_SENT 2
#define TCP_ESTABLISHED 1
#define MSG_PEEK 2

char LICENSE[] SEC("license") = "GPL";

/* Set by the agent before load. */
const volatile __u8 track_all = 0; /* 1: every process, labelled by comm */
const volatile __u64 hist_bounds_ns[NA_HIST_BOUNDS] = {};

/* comm -> 1 for processes we track when !track_all. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u8[NA_COMM_LEN]);
	__type(value, __u8);
} targets SEC(".maps");

/* Connect attempts (TCP) and datagrams sent (UDP) per owner and destination.
 * Not preallocated: per-CPU values times max_entries would reserve memory
 * for series that never exist; the agent sizes max_entries from config. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct na_flow_key);
	__type(value, __u64);
} flows SEC(".maps");

/* send->recv latency histograms per owner and destination. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct na_flow_key);
	__type(value, struct na_hist);
} durations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct na_sock_state);
} sock_state SEC(".maps");

/* Events that could not be counted, by enum na_lost_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NA_LOST_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void count_lost(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&lost, &reason);

	if (v)
		*v += 1;
}

/* Is the current task one we track? Fills comm either way. */
static __always_inline bool current_is_target(__u8 comm[NA_COMM_LEN])
{
	if (bpf_get_current_comm(comm, NA_COMM_LEN))
		return false;
	if (track_all)
		return true;
	return bpf_map_lookup_elem(&targets, comm) != NULL;
}

/* Reads the socket's peer as IPv6 (IPv4 mapped to ::ffff:a.b.c.d). */
static __always_inline void read_peer(const struct sock *sk, __u8 daddr[16], __u16 *dport)
{
	__u16 family = sk->__sk_common.skc_family;

	*dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == AF_INET6) {
		__builtin_memcpy(daddr, &sk->__sk_common.skc_v6_daddr, 16);
		return;
	}
	__be32 a = sk->__sk_common.skc_daddr;
	__builtin_memset(daddr, 0, 10);
	daddr[10] = 0xff;
	daddr[11] = 0xff;
	__builtin_memcpy(daddr + 12, &a, 4);
}

static __always_inline void flow_key(struct na_flow_key *k, const struct na_sock_state *st)
{
	__builtin_memcpy(k->comm, st->comm, NA_COMM_LEN);
	__builtin_memcpy(k->daddr, st->daddr, 16);
	k->dport = st->dport;
	k->proto = st->proto;
	k->_pad = 0;
}

static __always_inline void count_flow(const struct na_sock_state *st)
{
	struct na_flow_key k;
	__u64 one = 1, *v;

	flow_key(&k, st);
	v = bpf_map_lookup_elem(&flows, &k);
	if (v) {
		*v += 1; /* per-CPU value: no atomics needed */
		return;
	}
	/* First event of this series on this CPU's view: insert. Another CPU
	 * may have inserted meanwhile (-EEXIST); then add to the existing one. */
	if (bpf_map_update_elem(&flows, &k, &one, BPF_NOEXIST) == 0)
		return;
	v = bpf_map_lookup_elem(&flows, &k);
	if (v)
		*v += 1;
	else
		count_lost(NA_LOST_FLOW_MAP_FULL);
}

static __always_inline void observe_duration(const struct na_sock_state *st, __u64 ns)
{
	struct na_flow_key k;
	struct na_hist *h;
	__u32 b = NA_HIST_BOUNDS;

	flow_key(&k, st);
	h = bpf_map_lookup_elem(&durations, &k);
	if (!h) {
		struct na_hist zero = {};

		bpf_map_update_elem(&durations, &k, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&durations, &k);
		if (!h) {
			count_lost(NA_LOST_HIST_MAP_FULL);
			return;
		}
	}
	for (__u32 i = 0; i < NA_HIST_BOUNDS; i++) {
		if (ns <= hist_bounds_ns[i]) {
			b = i;
			break;
		}
	}
	if (b <= NA_HIST_BOUNDS)
		h->buckets[b] += 1;
	h->sum_ns += ns;
}

/* ---- TCP connect: CLOSE -> SYN_SENT runs in the connect()ing task. ---- */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, const struct sock *sk, int oldstate, int newstate)
{
	struct na_sock_state *st;
	__u8 comm[NA_COMM_LEN];

	if (newstate != TCP_SYN_SENT || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (!current_is_target(comm))
		return 0;
	st = bpf_sk_storage_get(&sock_state, (void *)sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count_lost(NA_LOST_SOCK_STORAGE);
		return 0;
	}
	__builtin_memcpy(st->comm, comm, NA_COMM_LEN);
	read_peer(sk, st->daddr, &st->dport);
	st->proto = IPPROTO_TCP;
	st->send_ts = 0;
	count_flow(st);
	return 0;
}

/* ---- UDP sendto(): the destination exists only in the call's address. ---- */
static __always_inline void remember_sendto(struct bpf_sock_addr *ctx, const __u8 addr[16])
{
	struct na_sock_state *st;
	struct bpf_sock *sk = ctx->sk;
	__u8 comm[NA_COMM_LEN];

	if (!sk || ctx->protocol != IPPROTO_UDP)
		return;
	st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
	if (!st) {
		if (!current_is_target(comm))
			return;
		st = bpf_sk_storage_get(&sock_state, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st) {
			count_lost(NA_LOST_SOCK_STORAGE);
			return;
		}
		__builtin_memcpy(st->comm, comm, NA_COMM_LEN);
		st->proto = IPPROTO_UDP;
	}
	__builtin_memcpy(st->pending_addr, addr, 16);
	st->pending_port = bpf_ntohs((__u16)ctx->user_port);
	st->has_pending = 1;
}

SEC("cgroup/sendmsg4")
int on_sendmsg4(struct bpf_sock_addr *ctx)
{
	__u8 addr[16] = {};
	__u32 ip = ctx->user_ip4;

	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(addr + 12, &ip, 4);
	remember_sendto(ctx, addr);
	return 1; /* observe only, never block */
}

SEC("cgroup/sendmsg6")
int on_sendmsg6(struct bpf_sock_addr *ctx)
{
	__u32 ip[4];

	ip[0] = ctx->user_ip6[0];
	ip[1] = ctx->user_ip6[1];
	ip[2] = ctx->user_ip6[2];
	ip[3] = ctx->user_ip6[3];
	remember_sendto(ctx, (__u8 *)ip);
	return 1;
}

/* ---- One message sent (process context, the sending task). ---- */
SEC("tp_btf/sock_send_length")
int BPF_PROG(on_sock_send_length, struct sock *sk, int ret, int flags)
{
	struct na_sock_state *st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
	bool udp = sk->sk_protocol == IPPROTO_UDP && sk->sk_type == SOCK_DGRAM;

	if (!st) {
		__u8 comm[NA_COMM_LEN];

		/* TCP sockets get state at connect(); connected UDP sockets here. */
		if (!udp || !current_is_target(comm))
			return 0;
		st = bpf_sk_storage_get(&sock_state, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st) {
			count_lost(NA_LOST_SOCK_STORAGE);
			return 0;
		}
		__builtin_memcpy(st->comm, comm, NA_COMM_LEN);
		st->proto = IPPROTO_UDP;
	}
	if (ret < 0) {
		st->has_pending = 0;
		return 0;
	}
	if (udp) {
		if (st->has_pending) {
			__builtin_memcpy(st->daddr, st->pending_addr, 16);
			st->dport = st->pending_port;
			st->has_pending = 0;
		} else {
			read_peer(sk, st->daddr, &st->dport); /* connected socket */
		}
		count_flow(st);
	}
	if (!st->send_ts)
		st->send_ts = bpf_ktime_get_ns();
	return 0;
}

/* ---- One message received: closes the pending send->recv interval. ---- */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_sock_recv_length, struct sock *sk, int ret, int flags)
{
	struct na_sock_state *st;
	__u64 start;

	if (ret <= 0 || (flags & MSG_PEEK))
		return 0;
	st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
	if (!st || !st->send_ts)
		return 0;
	start = st->send_ts;
	st->send_ts = 0;
	observe_duration(st, bpf_ktime_get_ns() - start);
	return 0;
}
