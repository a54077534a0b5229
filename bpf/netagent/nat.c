// SPDX-License-Identifier: GPL-2.0-only
/*
 * NAT: where a connection really goes. Every packet a device is about to
 * send (tp_btf/net_dev_queue, any device) carries the destination after
 * every netfilter translation of its namespace (OUTPUT, PREROUTING and
 * POSTROUTING have run), so no conntrack lookup and no kprobe is needed.
 *
 * - A SYN or datagram of a tracked socket (skb->sk) whose destination
 *   differs from the socket's: translated in the socket's own namespace
 *   (a host process calling a Service, docker's published ports); the
 *   translation goes straight into the socket's state.
 * - Unchanged: another namespace may still translate it (a pod whose node
 *   DNATs a ClusterIP). Its source is noted in `nat_flows`; when a packet
 *   of no socket (forwarded) with that source leaves with another
 *   destination, the translation waits in `nat_found` for the socket
 *   (nat.h). A translation that also rewrites the source (masquerade) is
 *   not matched; one delivered locally after DNAT never leaves a device.
 *   Unchanged and leaving by loopback: delivered in this namespace, so
 *   settled as untranslated at once (most local traffic: no note, and no
 *   lookups when the connection is established or the reply comes).
 *
 * Only TCP SYNs (without ACK) and UDP datagrams are looked at; every other
 * packet returns after the header reads. Part of netagent.bpf.c.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "vmlinux_min.h"
#include "maps.h"
#include "addr.h"
#include "series.h"
#include "sock.h"

#define NAT_ETH_P_IP 0x0800
#define NAT_ETH_P_IPV6 0x86DD
#define NAT_TCP_ESTABLISHED 1
#define NAT_TCP_SYN_SENT 2
#define NAT_TCP_CLOSE 7
#define NAT_TCP_SYN 0x02
#define NAT_TCP_ACK 0x10
#define NAT_IFF_LOOPBACK 0x8

/* Local views (CO-RE matches them by the name before the ___). */
struct net_device___na_nat {
	unsigned int flags;
} __attribute__((preserve_access_index));

struct sk_buff___na_nat {
	struct net_device___na_nat *dev;
} __attribute__((preserve_access_index));

/* Leaving by a loopback device: delivered in this namespace, so no other
 * namespace can translate it. */
static __always_inline bool on_loopback(const struct sk_buff *skb)
{
	const struct sk_buff___na_nat *s = (const void *)skb;
	struct net_device___na_nat *dev = s->dev;

	return dev && (dev->flags & NAT_IFF_LOOPBACK);
}

/* What a packet says about itself. */
struct nat_packet {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 syn; /* a TCP SYN without ACK: the first packet of a connect */
};

/* Reads the IP and TCP/UDP headers; false for anything else (and for
 * non-first fragments, which have no ports). */
static __always_inline bool read_packet(const struct sk_buff *skb, struct nat_packet *p)
{
	/* head read as a plain address: arithmetic on a BTF pointer is refused. */
	unsigned char *l3 = (unsigned char *)BPF_CORE_READ(skb, head) + skb->network_header;
	__u16 eth = bpf_ntohs(skb->protocol);
	__u8 l4[14];

	if (eth == NAT_ETH_P_IP) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), l3) || ip.version != 4 ||
		    (ip.frag_off & bpf_htons(0x1fff)))
			return false;
		p->proto = ip.protocol;
		v4_mapped(p->saddr, ip.saddr);
		v4_mapped(p->daddr, ip.daddr);
		l3 += ip.ihl * 4;
	} else if (eth == NAT_ETH_P_IPV6) {
		struct ipv6hdr ip6;

		/* Extension headers are not followed: such packets are skipped. */
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), l3))
			return false;
		p->proto = ip6.nexthdr;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		l3 += sizeof(ip6);
	} else {
		return false;
	}
	if (p->proto == IPPROTO_TCP) {
		if (bpf_probe_read_kernel(l4, sizeof(l4), l3))
			return false;
		p->syn = (l4[13] & (NAT_TCP_SYN | NAT_TCP_ACK)) == NAT_TCP_SYN;
	} else if (p->proto == IPPROTO_UDP) {
		if (bpf_probe_read_kernel(l4, 4, l3))
			return false;
		p->syn = 0;
	} else {
		return false;
	}
	p->sport = ((__u16)l4[0] << 8) | l4[1];
	p->dport = ((__u16)l4[2] << 8) | l4[3];
	return true;
}

/* The state of UDP socket `sk` whose datagram is leaving, and the
 * destination the sender meant (`orig`, `orig_port`); NULL when unknown.
 * In socket-local storage the cgroup hook has made it (unconnected) or
 * connect() did; by address (msg_index: 5.10, whose tracing programs
 * cannot use storage) the message hook makes it only after the send
 * returns, so the first datagram makes it here. A socket without state
 * sends here from its own sendmsg, so the current task is its owner: a
 * first datagram held for an unresolved neighbour leaves later, from
 * softirq, but by then a tracked sender's message hook has made the state.
 * (An untracked socket's held datagram leaving while a tracked task is
 * interrupted would be taken for that task's: rare, and only by address.)
 * The sendto() destination waits in task_pending (udp_peers.c) for the
 * message hook, which takes it. */
static __always_inline struct na_sock_state *nat_udp_state(struct sock *sk, __u8 orig[16],
							   __u16 *orig_port)
{
	struct na_sock_state *st;

	if (!msg_index) {
		st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
		if (!st)
			return NULL;
		if (st->has_pending) {
			__builtin_memcpy(orig, st->pending_addr, 16);
			*orig_port = st->pending_port;
			return st;
		}
	} else {
		__u64 task = bpf_get_current_pid_tgid();
		struct na_pending *p = bpf_map_lookup_elem(&task_pending, &task);
		__u64 key = (__u64)sk;
		__u8 comm[NA_COMM_LEN];

		st = bpf_map_lookup_elem(&sock_index, &key);
		if (!st) {
			if (!netns_ok(sk, true) || !current_is_target(comm))
				return NULL;
			st = own_by_addr(key, comm, NA_DIR_OUTBOUND);
			if (!st)
				return NULL;
		}
		if (p) {
			__builtin_memcpy(orig, p->addr, 16);
			*orig_port = p->port;
			return st;
		}
	}
	*orig_port = bpf_ntohs(sk->__sk_common.skc_dport);
	if (!*orig_port)
		return NULL; /* unconnected, and no destination noted */
	read_peer_addr(sk, orig, true);
	return st;
}

/* A packet of socket `sk` leaving one of the socket's namespace's devices. */
static __always_inline void nat_own(const struct sk_buff *skb, struct sock *sk)
{
	__u8 state = sk->__sk_common.skc_state;
	struct na_sock_state *st;
	struct nat_packet p;
	__u64 key = (__u64)sk;
	__u8 orig[16];
	__u16 orig_port;

	if (state == NAT_TCP_SYN_SENT) {
		/* A full TCP socket: request and timewait sockets have other states. */
		/* In either TCP map (TCP_SOCKS, sock.h): the agent loads this
		 * program in every object mode. */
		st = bpf_map_lookup_elem(TCP_SOCKS(true), &key);
		if (!st || st->nat_state != NA_NAT_UNKNOWN)
			return;
		__builtin_memcpy(orig, st->daddr, 16);
		orig_port = st->dport;
	} else if (state == NAT_TCP_ESTABLISHED || state == NAT_TCP_CLOSE) {
		if (sk->sk_protocol != IPPROTO_UDP)
			return;
		/* This datagram's destination: sendto()'s, or the connected peer. */
		st = nat_udp_state(sk, orig, &orig_port);
		if (!st || st->direction != NA_DIR_OUTBOUND)
			return;
		if (st->nat_state != NA_NAT_UNKNOWN &&
		    same_dest(orig, orig_port, st->nat_orig, st->nat_orig_port))
			return; /* this destination is being or has been answered */
	} else {
		return;
	}
	if (!read_packet(skb, &p) || (p.proto == IPPROTO_TCP && !p.syn))
		return;
	__builtin_memcpy(st->nat_orig, orig, 16);
	st->nat_orig_port = orig_port;
	if (!same_dest(p.daddr, p.dport, orig, orig_port)) {
		__builtin_memcpy(st->nat_daddr, p.daddr, 16);
		st->nat_dport = p.dport;
		st->nat_state = NA_NAT_DONE;
		forget_series(st);
		return;
	}
	__builtin_memset(st->nat_daddr, 0, 16);
	st->nat_dport = 0;
	if (on_loopback(skb)) {
		/* Settled untranslated: no note, and nothing for nat_take
		 * to look up at the handshake's end or the first reply. */
		st->nat_state = NA_NAT_DONE;
		return;
	}
	st->nat_state = NA_NAT_PENDING;
	__builtin_memcpy(st->nat_saddr, p.saddr, 16);
	st->nat_sport = p.sport;

	struct na_nat_key k = { .sport = p.sport, .proto = p.proto };
	struct na_nat_flow f = { .sk = key, .dport = orig_port };
	struct na_nat_flow *old;

	__builtin_memcpy(k.saddr, p.saddr, 16);
	__builtin_memcpy(f.daddr, orig, 16);
	/* An unconnected UDP socket sending to a second destination before
	 * the first was answered: a forwarded packet would not say which one
	 * it was, so neither is matched (nat_take counts it). */
	old = bpf_map_lookup_elem(&nat_flows, &k);
	if (old && old->sk == key && !same_dest(old->daddr, old->dport, orig, orig_port)) {
		old->ambiguous = 1;
		return;
	}
	bpf_map_update_elem(&nat_flows, &k, &f, BPF_ANY);
}

/* A packet of no local socket (forwarded) leaving a device: the
 * translation of a flow noted by nat_own in another namespace? */
static __always_inline void nat_forwarded(const struct sk_buff *skb)
{
	struct na_nat_key k = {};
	struct na_nat_flow *f;
	struct nat_packet p;

	if (!read_packet(skb, &p) || (p.proto == IPPROTO_TCP && !p.syn))
		return;
	__builtin_memcpy(k.saddr, p.saddr, 16);
	k.sport = p.sport;
	k.proto = p.proto;
	f = bpf_map_lookup_elem(&nat_flows, &k);
	if (!f || f->ambiguous || same_dest(p.daddr, p.dport, f->daddr, f->dport))
		return; /* not ours, not matchable, or not translated (yet) */

	struct na_nat_found found = { .orig_port = f->dport, .dport = p.dport };
	__u64 sk = f->sk;

	__builtin_memcpy(found.orig, f->daddr, 16);
	__builtin_memcpy(found.daddr, p.daddr, 16);
	bpf_map_update_elem(&nat_found, &sk, &found, BPF_ANY);
	bpf_map_delete_elem(&nat_flows, &k);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(on_net_dev_queue, struct sk_buff *skb)
{
	struct sock *sk = skb->sk;

	if (sk)
		nat_own(skb, sk);
	else if (!on_loopback(skb))
		nat_forwarded(skb); /* forwarded packets never leave by loopback */
	return 0;
}
