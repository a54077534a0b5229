// SPDX-License-Identifier: GPL-2.0-only
/* Where per-connection state costs least: each program below runs on every
 * inet_sock_set_state event, creating state at SYN_SENT / accept,
 * looking it up at ESTABLISHED and dropping it at CLOSE, in socket-local
 * storage (e2), a preallocated hash (e3), an LRU hash (e4) or a hash
 * without preallocation (e5); e0/e1 are the floor. Run by
 * scripts/bench/primitives/run.sh churn. */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <asm/ptrace.h>
#include "vmlinux_min.h"

char LICENSE[] SEC("license") = "GPL";
struct st { __u64 x[18]; };
struct { __uint(type, BPF_MAP_TYPE_SK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC); __type(key, int); __type(value, struct st);} s SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 16); __type(key, __u32); __type(value, __u64);} a SEC(".maps");

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(e0_empty, const struct sock *sk, int oldstate, int newstate) { return 0; }

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(e1_switch, const struct sock *sk, int oldstate, int newstate) {
	if (sk->sk_protocol != IPPROTO_TCP) return 0;
	__u32 i = newstate & 15;
	__u64 *v = bpf_map_lookup_elem(&a, &i);
	if (v) *v += 1;
	return 0;
}
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(e2_storage, const struct sock *sk, int oldstate, int newstate) {
	if (sk->sk_protocol != IPPROTO_TCP) return 0;
	if (newstate == 2 || (newstate == 1 && oldstate == 3)) {
		struct st *v = bpf_sk_storage_get(&s, (void *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (v) v->x[0] = 1;
	} else if (newstate == 7 || newstate == 1) {
		struct st *v = bpf_sk_storage_get(&s, (void *)sk, 0, 0);
		if (v) v->x[1] += 1;
	}
	return 0;
}
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 65536); __type(key, __u64); __type(value, struct st);} h SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(map_flags, BPF_F_NO_PREALLOC); __uint(max_entries, 65536); __type(key, __u64); __type(value, struct st);} n SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 65536); __type(key, __u64); __type(value, struct st);} l SEC(".maps");
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(e3_hash, const struct sock *sk, int oldstate, int newstate) {
	if (sk->sk_protocol != IPPROTO_TCP) return 0;
	__u64 k = (__u64)sk;
	if (newstate == 2 || (newstate == 1 && oldstate == 3)) {
		struct st z = {}; z.x[0] = 1;
		bpf_map_update_elem(&h, &k, &z, 0);
	} else if (newstate == 7) {
		bpf_map_delete_elem(&h, &k);
	} else if (newstate == 1) {
		struct st *v = bpf_map_lookup_elem(&h, &k);
		if (v) v->x[1] += 1;
	}
	return 0;
}
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(e4_lru, const struct sock *sk, int oldstate, int newstate) {
	if (sk->sk_protocol != IPPROTO_TCP) return 0;
	__u64 k = (__u64)sk;
	if (newstate == 2 || (newstate == 1 && oldstate == 3)) {
		struct st z = {}; z.x[0] = 1;
		bpf_map_update_elem(&l, &k, &z, 0);
	} else if (newstate == 7) {
		bpf_map_delete_elem(&l, &k);
	} else if (newstate == 1) {
		struct st *v = bpf_map_lookup_elem(&l, &k);
		if (v) v->x[1] += 1;
	}
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(e5_noprealloc, const struct sock *sk, int oldstate, int newstate) {
	if (sk->sk_protocol != IPPROTO_TCP) return 0;
	__u64 k = (__u64)sk;
	if (newstate == 2 || (newstate == 1 && oldstate == 3)) {
		struct st z = {}; z.x[0] = 1;
		bpf_map_update_elem(&n, &k, &z, 0);
	} else if (newstate == 7) {
		bpf_map_delete_elem(&n, &k);
	} else if (newstate == 1) {
		struct st *v = bpf_map_lookup_elem(&n, &k);
		if (v) v->x[1] += 1;
	}
	return 0;
}
