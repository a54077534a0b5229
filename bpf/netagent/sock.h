/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Per-socket state (struct na_sock_state; where it lives is described in
 * netagent.bpf.c): whether the current task is a target, the state of a
 * TCP socket and how a reused socket address is told apart, and new state
 * owned by the current task.
 */
#ifndef NETAGENT_SOCK_H
#define NETAGENT_SOCK_H

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

/* Is the current task one we track? Fills comm either way. The buffer is
 * zeroed first: older kernels (Debian 12's 6.1) copy the comm with
 * strscpy(), which leaves the bytes after the NUL as they were, so an
 * uninitialised stack buffer made the targets lookup (and the flow keys)
 * miss (found by the kernel matrix, tests/kernel_matrix.rs). */
static __always_inline bool current_is_target(__u8 comm[NA_COMM_LEN])
{
	__builtin_memset(comm, 0, NA_COMM_LEN);
	if (bpf_get_current_comm(comm, NA_COMM_LEN))
		return false;
	if (track_all)
		return true;
	return bpf_map_lookup_elem(&targets, comm) != NULL;
}

/* Does the socket talk to this peer? A socket's address may have been
 * reused after a close we did not see: the peer's port and address tell
 * (not our port: the kernel releases it before the TCP_CLOSE event). */
static __always_inline bool has_peer(const struct sock *sk, __u16 port, __u32 peer4, bool typed)
{
	__u8 peer[16];

	if (bpf_ntohs(SK_READ(typed, sk, __sk_common.skc_dport)) != port)
		return false;
	read_peer_addr(sk, peer, typed);
	return peer4_of(peer) == peer4;
}

/* Is the TCP state `st` this socket's? */
static __always_inline bool same_socket(const struct sock *sk, const struct na_sock_state *st,
					bool typed)
{
	return has_peer(sk, st->peer_port, peer4_of(st->daddr), typed);
}

/* The `just_closed` slots of a socket (`which` 0 or 1): from two hashes
 * of its address pair (set when the kernel hashed the connection, kept
 * after; the verifier allows no arithmetic on the socket's address
 * itself). */
static __always_inline __u32 just_closed_slot(const struct sock *sk, int which)
{
	__u32 h = sk->__sk_common.skc_hash;

	return (which ? h * 0x85EBCA77U : h * 0x9E3779B1U) >> 22;
}

/* The map of TCP state (maps.h): untyped programs only ever reference the
 * preallocated one, which the agent then loads the object to use; typed
 * ones the one it chose (frozen rodata: the verifier walks one branch). */
#define TCP_SOCKS(typed)                                                                   \
	(!(typed) || tcp_prealloc ? (void *)&tcp_socks_pre : (void *)&tcp_socks)

/* The state of a TCP socket of a tracked process, or NULL. */
static __always_inline struct na_sock_state *tcp_state(const struct sock *sk, bool typed)
{
	__u64 key = (__u64)sk;
	struct na_sock_state *st = bpf_map_lookup_elem(TCP_SOCKS(typed), &key);

	if (st && !same_socket(sk, st, typed))
		return NULL;
	return st;
}

/* New per-socket state for the current (target) task, or for an accepted
 * connection (then the caller fills in the owner). */
static __always_inline struct na_sock_state *new_state(void *sk, __u8 proto)
{
	static const struct na_sock_state zero = {};
	struct na_sock_state *st;
	__u64 key = (__u64)sk;

	if (proto == IPPROTO_TCP) {
		if (bpf_map_update_elem(TCP_SOCKS(true), &key, &zero, BPF_ANY))
			st = NULL;
		else
			st = bpf_map_lookup_elem(TCP_SOCKS(true), &key);
	} else {
		/* Only called for sockets without storage: it comes zeroed. */
		st = bpf_sk_storage_get(&sock_state, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	}
	if (!st)
		count_lost(NA_LOST_SOCK_STORAGE);
	return st;
}

/* New UDP state by socket address (BY_ADDR, addr.h) for the current
 * (target) task. */
static __always_inline struct na_sock_state *own_by_addr(__u64 key, const __u8 comm[NA_COMM_LEN],
							 __u8 direction)
{
	struct na_sock_state fresh = {};
	struct na_sock_state *st;

	__builtin_memcpy(fresh.comm, comm, NA_COMM_LEN);
	fresh.cgroup_id = bpf_get_current_cgroup_id();
	fresh.pid = bpf_get_current_pid_tgid() >> 32;
	fresh.proto = IPPROTO_UDP;
	fresh.direction = direction;
	bpf_map_update_elem(&sock_index, &key, &fresh, BPF_ANY);
	st = bpf_map_lookup_elem(&sock_index, &key);
	if (!st)
		count_lost(NA_LOST_SOCK_STORAGE);
	return st;
}

static __always_inline struct na_sock_state *
own_socket(void *sk, const __u8 comm[NA_COMM_LEN], __u8 proto, __u8 direction)
{
	struct na_sock_state *st = new_state(sk, proto);

	if (!st)
		return NULL;
	__builtin_memcpy(st->comm, comm, NA_COMM_LEN);
	st->cgroup_id = bpf_get_current_cgroup_id();
	st->pid = bpf_get_current_pid_tgid() >> 32;
	st->proto = proto;
	st->direction = direction;
	return st;
}

#endif
