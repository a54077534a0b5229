// SPDX-License-Identifier: GPL-2.0-only
/*
 * UDP peers: the cgroup sock_addr hooks that see the address of an
 * unconnected UDP send or receive, which the socket does not hold, and
 * leave it for the message hook that follows (messages.h); and, for DNS,
 * mark sockets that connect or send to a DNS port (dns_mark, dns.h). Part
 * of netagent.bpf.c.
 */
#include <linux/types.h>
#include <linux/in.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "addr.h"
#include "sock.h"
#include "dns.h"

/* cgroup sock_addr hooks run just before the send / just after the receive
 * of an unconnected UDP socket, in the same task as the tracepoint that
 * follows; they note the peer in the socket's state for it. */
static __always_inline void remember_peer(struct bpf_sock_addr *ctx, const __u8 addr[16],
					  __u8 direction)
{
	struct bpf_sock *sk = ctx->sk;
	struct na_sock_state *st;
	__u8 comm[NA_COMM_LEN];

	if (!sk || ctx->protocol != IPPROTO_UDP)
		return;
	if (msg_index) {
		/* UDP state by address: the message hook that follows in this
		 * task takes it (BY_ADDR, addr.h). */
		struct na_pending p = { .port = bpf_ntohs((__u16)ctx->user_port) };
		__u64 task = bpf_get_current_pid_tgid();

		__builtin_memcpy(p.addr, addr, 16);
		bpf_map_update_elem(&task_pending, &task, &p, BPF_ANY);
		return;
	}
	st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
	if (!st) {
		if (!current_is_target(comm))
			return;
		st = own_socket(sk, comm, IPPROTO_UDP, direction);
		if (!st)
			return;
	}
	__builtin_memcpy(st->pending_addr, addr, 16);
	st->pending_port = bpf_ntohs((__u16)ctx->user_port);
	st->has_pending = 1;
}

static __always_inline void remember_peer4(struct bpf_sock_addr *ctx, __u8 direction)
{
	__u8 addr[16];

	v4_mapped(addr, ctx->user_ip4);
	remember_peer(ctx, addr, direction);
}

static __always_inline void remember_peer6(struct bpf_sock_addr *ctx, __u8 direction)
{
	__u32 ip[4];

	ip[0] = ctx->user_ip6[0];
	ip[1] = ctx->user_ip6[1];
	ip[2] = ctx->user_ip6[2];
	ip[3] = ctx->user_ip6[3];
	remember_peer(ctx, (__u8 *)ip, direction);
}

/* connect() on a UDP socket of a target process: its state exists before
 * its first datagram leaves, so nat.c can compare that datagram's
 * destination with the socket's. */
static __always_inline void remember_connect(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u8 comm[NA_COMM_LEN];

	if (!sk || ctx->protocol != IPPROTO_UDP || msg_index)
		return;
	if (bpf_sk_storage_get(&sock_state, sk, NULL, 0) || !current_is_target(comm))
		return;
	own_socket(sk, comm, IPPROTO_UDP, NA_DIR_OUTBOUND);
}

/* These only observe: 1 = allow, never block or rewrite. */
SEC("cgroup/sendmsg4")
int on_sendmsg4(struct bpf_sock_addr *ctx)
{
	dns_mark(ctx);
	remember_peer4(ctx, NA_DIR_OUTBOUND);
	return 1;
}

SEC("cgroup/sendmsg6")
int on_sendmsg6(struct bpf_sock_addr *ctx)
{
	dns_mark(ctx);
	remember_peer6(ctx, NA_DIR_OUTBOUND);
	return 1;
}

SEC("cgroup/recvmsg4")
int on_recvmsg4(struct bpf_sock_addr *ctx)
{
	remember_peer4(ctx, NA_DIR_INBOUND);
	return 1;
}

SEC("cgroup/recvmsg6")
int on_recvmsg6(struct bpf_sock_addr *ctx)
{
	remember_peer6(ctx, NA_DIR_INBOUND);
	return 1;
}

SEC("cgroup/connect4")
int on_connect4(struct bpf_sock_addr *ctx)
{
	dns_mark(ctx);
	remember_connect(ctx);
	return 1;
}

SEC("cgroup/connect6")
int on_connect6(struct bpf_sock_addr *ctx)
{
	dns_mark(ctx);
	remember_connect(ctx);
	return 1;
}
