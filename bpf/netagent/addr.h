/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Reading a socket: its fields from either kind of hook (SK_READ), its
 * local and peer addresses (IPv4 mapped into IPv6, as in every key), and
 * its network namespace (the netns_only filter).
 */
#ifndef NETAGENT_ADDR_H
#define NETAGENT_ADDR_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "vmlinux_min.h"
#include "maps.h"

#define AF_INET6 10

static __always_inline void v4_mapped(__u8 out[16], __be32 a)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &a, 4);
}

/*
 * Socket field reads. `typed`: the pointer came from a BTF-typed hook and is
 * read directly; otherwise it is an address from a kprobe or syscall hook
 * and read with bpf_probe_read_kernel. Always a constant at the call site,
 * so each program keeps only one of the two.
 */
#define SK_READ(typed, sk, field) ((typed) ? (sk)->field : BPF_CORE_READ(sk, field))

/* UDP state by socket address (`sock_index`, explicit peers in
 * `task_pending`) instead of socket-local storage: always for the untyped
 * hooks, which cannot reach socket-local storage; for the typed ones when
 * the agent loads the object so (msg_index), on kernels whose tracing
 * programs may not use socket-local storage (before 5.11) or ask for a
 * socket cookie (before 5.12). A compile-time constant for untyped hooks,
 * a load-time one (frozen rodata, so the verifier walks one branch) for
 * typed ones. */
#define BY_ADDR(typed) (!(typed) || msg_index)

/* The socket's peer address (IPv4 mapped into IPv6). */
static __always_inline void read_peer_addr(const struct sock *sk, __u8 daddr[16], bool typed)
{
	if (SK_READ(typed, sk, __sk_common.skc_family) == AF_INET6) {
		if (typed)
			__builtin_memcpy(daddr, &sk->__sk_common.skc_v6_daddr, 16);
		else
			/* All 16 bytes: BPF_CORE_READ_INTO would read
			 * sizeof(*daddr), one byte of this array parameter. */
			bpf_core_read(daddr, 16, &sk->__sk_common.skc_v6_daddr);
	} else {
		v4_mapped(daddr, SK_READ(typed, sk, __sk_common.skc_daddr));
	}
}

static __always_inline __u32 netns_of(const struct sock *sk, bool typed)
{
	if (typed)
		return sk->__sk_common.skc_net.net->ns.inum;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* With netns_only set, sockets of other network namespaces are ignored. */
static __always_inline bool netns_ok(const struct sock *sk, bool typed)
{
	return !netns_only || netns_of(sk, typed) == netns_only;
}

static __always_inline void read_local_addr(const struct sock *sk, __u8 addr[16], bool typed)
{
	if (SK_READ(typed, sk, __sk_common.skc_family) == AF_INET6) {
		if (typed)
			__builtin_memcpy(addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		else
			bpf_core_read(addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
	} else {
		v4_mapped(addr, SK_READ(typed, sk, __sk_common.skc_rcv_saddr));
	}
}

/* The last 4 bytes of a peer address (all of an IPv4 one, mapped). */
static __always_inline __u32 peer4_of(const __u8 addr[16])
{
	return *(const __u32 *)&addr[12];
}

#endif
