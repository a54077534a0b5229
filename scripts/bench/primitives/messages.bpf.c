// SPDX-License-Identifier: GPL-2.0-only
/* What the building blocks of a message-hook program cost on this machine:
 * each program below runs on every sock_send_length event with one
 * operation in it (p0: nothing — the floor of a program run with BPF stats
 * on). Run by scripts/bench/primitives/run.sh keepalive. */
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
struct key { __u8 comm[16]; __u8 daddr[16]; __u64 cg; __u16 dport; __u8 p, d, h, pad[3]; };
struct val { __u64 a, b, c, d; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16384); __type(key, struct key); __type(value, struct val);} h SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 16384); __type(key, __u32); __type(value, struct val);} a SEC(".maps");
struct st { __u64 x[16]; };
struct { __uint(type, BPF_MAP_TYPE_SK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC); __type(key, int); __type(value, struct st);} s SEC(".maps");

SEC("tp_btf/sock_send_length")
int BPF_PROG(p0_empty, struct sock *sk, int ret, int flags) { return 0; }

SEC("tp_btf/sock_send_length")
int BPF_PROG(p1_skget, struct sock *sk, int ret, int flags) {
	struct st *v = bpf_sk_storage_get(&s, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (v) v->x[0] += ret;
	return 0;
}
SEC("tp_btf/sock_send_length")
int BPF_PROG(p2_hash, struct sock *sk, int ret, int flags) {
	struct key k = {};
	k.dport = 80; k.cg = 5; k.comm[0] = 'a';
	struct val *v = bpf_map_lookup_elem(&h, &k);
	if (!v) { struct val z = {}; bpf_map_update_elem(&h, &k, &z, 0); return 0; }
	__sync_fetch_and_add(&v->a, ret);
	return 0;
}
SEC("tp_btf/sock_send_length")
int BPF_PROG(p3_array, struct sock *sk, int ret, int flags) {
	__u32 i = 7;
	struct val *v = bpf_map_lookup_elem(&a, &i);
	if (v) __sync_fetch_and_add(&v->a, ret);
	return 0;
}
SEC("tp_btf/sock_send_length")
int BPF_PROG(p4_ktime, struct sock *sk, int ret, int flags) {
	__u32 i = 8;
	struct val *v = bpf_map_lookup_elem(&a, &i);
	if (v) v->b = bpf_ktime_get_ns();
	return 0;
}
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, __u8[16]); __type(value, __u8);} t SEC(".maps");
SEC("tp_btf/sock_send_length")
int BPF_PROG(p5_comm_target, struct sock *sk, int ret, int flags) {
	__u8 c[16] = {};
	bpf_get_current_comm(c, 16);
	return bpf_map_lookup_elem(&t, c) != 0;
}
SEC("tp_btf/sock_send_length")
int BPF_PROG(p6_cgroup, struct sock *sk, int ret, int flags) {
	__u32 i = 9;
	struct val *v = bpf_map_lookup_elem(&a, &i);
	if (v) v->c = bpf_get_current_cgroup_id();
	return 0;
}
struct { __uint(type, BPF_MAP_TYPE_QUEUE); __uint(max_entries, 1024); __type(value, __u32);} q SEC(".maps");
SEC("tp_btf/sock_send_length")
int BPF_PROG(p7_queue_pop_push, struct sock *sk, int ret, int flags) {
	__u32 s = 1;
	bpf_map_push_elem(&q, &s, 0);
	bpf_map_pop_elem(&q, &s);
	return 0;
}
