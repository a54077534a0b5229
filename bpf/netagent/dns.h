/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * DNS: which sockets are DNS clients, and their owner. A socket is marked
 * when its process connects or sends to a DNS port (the cgroup sock_addr
 * hooks of udp_peers.c call dns_mark, in process context, so the owner is
 * the calling task); the cgroup_skb programs of dns.c then copy the DNS
 * messages of marked sockets, and only theirs, to the agent. The maps and
 * load-time globals of DNS live here, not in maps.h: only DNS uses them.
 */
#ifndef NETAGENT_DNS_H
#define NETAGENT_DNS_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netagent.h"
#include "maps.h"
#include "sock.h"

/* Set by the agent before load: DNS on (dns.enabled), and the server
 * ports that make a socket a DNS client (dns.ports, host order; 0 = unused
 * slot). With dns_on = 0 the verifier drops everything below from the
 * sock_addr programs. */
const volatile __u8 dns_on = 0;
const volatile __u16 dns_ports[NA_DNS_PORTS] = {};

/* DNS client sockets and their owners. Freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct na_dns_owner);
} dns_socks SEC(".maps");

/* DNS messages for the agent (sized by dns.ring_bytes). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} dns_events SEC(".maps");

/* Where a record is assembled before it is copied to `dns_events` with
 * only as many message bytes as it has (a ring buffer reservation has a
 * fixed size: a 40-byte query would take all of NA_DNS_CAPTURE). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct na_dns_event);
} dns_scratch SEC(".maps");

/* Messages not seen, by enum na_dns_lost_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NA_DNS_LOST_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} dns_lost SEC(".maps");

/* Never read: puts the records' and the storage's types into the BTF for
 * the layout test (src/kernel/dns.rs). */
const volatile struct na_dns_event dns_event_layout = {};
const volatile struct na_dns_owner dns_owner_layout = {};

static __always_inline void dns_count_lost(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&dns_lost, &reason);

	if (v)
		*v += 1;
}

/* Is `port` (host order) one of dns.ports? */
static __always_inline bool dns_port(__u16 port)
{
	if (!port)
		return false;
#pragma unroll
	for (int i = 0; i < NA_DNS_PORTS; i++)
		if (dns_ports[i] == port)
			return true;
	return false;
}

/* A connect() or sendto() of the current task: a socket that talks to a
 * DNS port becomes a DNS client owned by the task (if it is a target). */
static __always_inline void dns_mark(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct na_dns_owner *o;
	__u8 comm[NA_COMM_LEN];

	if (!dns_on || !sk)
		return;
	if (ctx->protocol != IPPROTO_UDP && ctx->protocol != IPPROTO_TCP)
		return;
	if (!dns_port(bpf_ntohs((__u16)ctx->user_port)))
		return;
	if (bpf_sk_storage_get(&dns_socks, sk, NULL, 0) || !current_is_target(comm))
		return;
	o = bpf_sk_storage_get(&dns_socks, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o) {
		dns_count_lost(NA_DNS_LOST_STORAGE);
		return;
	}
	__builtin_memcpy(o->comm, comm, NA_COMM_LEN);
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->pid = bpf_get_current_pid_tgid() >> 32;
}

#endif
