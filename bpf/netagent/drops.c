// SPDX-License-Identifier: GPL-2.0-only
/*
 * Packet drops with the kernel's reason: tp_btf/kfree_skb, counted per
 * (reason, owner, interface, protocol) in a per-CPU hash that the agent
 * reads at scrape time. Nothing goes to user space per drop, and a drop
 * costs one hash lookup on its own CPU, so drops at line rate cost the
 * host what counting costs, nothing more. Part of netagent.bpf.c: it reads
 * the socket state of sock.h.
 *
 * The hook is the BTF-typed (raw) tracepoint skb:kfree_skb, not the
 * classic one: only tracing programs may read socket-local storage (where
 * UDP owners live), the classic tracepoint's record holds the skb as a
 * plain address that no helper takes as a socket, and attaching a classic
 * tracepoint needs tracefs mounted, which this agent needs nowhere else.
 * Its prototype by kernel:
 *   before 5.17   kfree_skb(skb, location)
 *   5.17 - 6.11   kfree_skb(skb, location, reason)
 *   6.12+         kfree_skb(skb, location, reason, rx_sk)
 * The verifier refuses a read of an argument the running kernel does not
 * pass, so each read of `reason` and `rx_sk` sits behind a CO-RE check
 * that the tracepoint's record (struct trace_event_raw_kfree_skb) has the
 * field of the same name: they came with the same commits as the
 * arguments. The loader turns each check into a constant, and the
 * verifier does not walk a branch a constant rules out. Without `reason`
 * every drop is counted as NA_DROP_REASON_UNKNOWN; `netagent probe` says
 * which case the running kernel is (src/kernel/drops.rs reads the same
 * fields from BTF).
 *
 * Since 5.17 a free that is not a drop goes to skb:consume_skb, which is
 * not hooked, so this program runs once per dropped packet, not per packet.
 * Not counted here, being no drops: SKB_NOT_DROPPED_YET, and SKB_CONSUMED
 * (kernels that have it send kfree_skb_reason(skb, SKB_CONSUMED) to
 * skb:consume_skb; checked in case a kernel does not).
 * Nor are messages of local IPC sockets (unix, netlink: drop_owner).
 *
 * Left out by default (drops.ignore_reasons, written into drop_ignore):
 * NOT_SPECIFIED and QUEUE_PURGE, which kernels also give frees in the
 * normal life of a TCP connection. The kernel matrix's scenario, a dozen
 * TCP connections that lose nothing, shows 18 NOT_SPECIFIED on 6.1, 17 on
 * 6.12 and 6 on 6.18 (a kfree_skb() without a reason on TCP's receive
 * path: tcp_v4_rcv), and 12 QUEUE_PURGE on 6.18 (a closed socket's last
 * FIN purged from its queue: sk_stream_kill_queues, 19 for 20
 * connect+close). Counted, they would read as drops at the connection rate
 * of a healthy host.
 *
 * Owner: the socket the packet belonged to, skb->sk (a packet being sent,
 * or one already queued to a socket), else rx_sk (6.12+: the socket that
 * was receiving it, e.g. a UDP socket whose buffer is full), and that
 * socket's state as the other programs keep it: UDP in socket-local
 * storage or by address (BY_ADDR, addr.h), TCP in tcp_socks, a listener
 * in `listeners`. Request and timewait sockets have no state; a packet
 * without a socket has no owner: most receive-side drops before 6.12, as
 * IP's receive path orphans every packet before the transport looks for
 * its socket (ip_rcv_core, ip6_rcv_core). Never the current task: a drop
 * runs in whatever context freed the packet, often softirq on behalf of
 * anyone.
 *
 * Interface: the device the packet arrived on or is leaving by (skb->dev;
 * before the output path sets it, the route's device), by name, read
 * here: an ifindex means something only in its own network namespace,
 * and most drops of a container happen in the container's.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "vmlinux_min.h"
#include "maps.h"
#include "addr.h"
#include "sock.h"

/* Counts per key; the agent sizes it (drops.max_series). Per CPU: no
 * atomic add and no shared cache line under a flood of drops. Preallocated:
 * a new key never needs memory in the middle of a flood. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct na_drop_key);
	__type(value, __u64);
} drops SEC(".maps");

/* Set by the agent before load (drops.ignore_reasons): this kernel's
 * values of the reasons not to count. Frozen: the verifier sees the
 * constants, and the loop below is a handful of compares. */
const volatile __u32 drop_ignore[NA_DROP_IGNORE_MAX] = {
	NA_DROP_REASON_UNKNOWN, NA_DROP_REASON_UNKNOWN, NA_DROP_REASON_UNKNOWN,
	NA_DROP_REASON_UNKNOWN, NA_DROP_REASON_UNKNOWN, NA_DROP_REASON_UNKNOWN,
	NA_DROP_REASON_UNKNOWN, NA_DROP_REASON_UNKNOWN,
};

/* Drops that could not be counted, by enum na_drop_lost_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NA_DROP_LOST_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} drop_lost SEC(".maps");

/* Local views of the kernel types read here. The ___na_drops flavour keeps
 * them apart from any other definition in the unity build (CO-RE matches
 * them by the name before the ___). */
struct net_device___na_drops {
	char name[16];
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct dst_entry___na_drops {
	struct net_device___na_drops *dev;
} __attribute__((preserve_access_index));

struct sk_buff___na_drops {
	struct net_device___na_drops *dev;
	unsigned long _skb_refdst; /* the route, and a flag in bit 0 */
} __attribute__((preserve_access_index));

enum skb_drop_reason___na_drops {
	SKB_NOT_DROPPED_YET___na_drops = 0,
	SKB_CONSUMED___na_drops = 1,
};

/* The record of the classic tracepoint, only asked which fields it has. */
struct trace_event_raw_kfree_skb___na_drops {
	enum skb_drop_reason___na_drops reason; /* 5.17+ */
	void *rx_sk;                            /* 6.12+ */
} __attribute__((preserve_access_index));

#define DROP_TCP_LISTEN 10
#define DROP_TCP_TIME_WAIT 6
#define DROP_TCP_NEW_SYN_RECV 12
#define DROP_AF_UNIX 1
#define DROP_AF_INET 2
#define DROP_AF_NETLINK 16
#define DROP_ETH_P_IP 0x0800
#define DROP_ETH_P_IPV6 0x86DD
#define DROP_NO_HEADER 0xffff /* skb->network_header not set */

static __always_inline void drop_lose(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&drop_lost, &reason);

	if (n)
		*n += 1; /* per-CPU slot */
}

/* Not a drop, or a reason the agent was told to leave out (see the top of
 * this file). */
static __always_inline bool drop_skipped(__u32 reason)
{
	if (reason == NA_DROP_REASON_UNKNOWN)
		return false;
	for (int i = 0; i < NA_DROP_IGNORE_MAX; i++)
		if (reason == drop_ignore[i])
			return true;
	if (bpf_core_enum_value_exists(enum skb_drop_reason___na_drops,
				       SKB_NOT_DROPPED_YET___na_drops) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason___na_drops,
					  SKB_NOT_DROPPED_YET___na_drops))
		return true;
	return bpf_core_enum_value_exists(enum skb_drop_reason___na_drops, SKB_CONSUMED___na_drops) &&
	       reason == bpf_core_enum_value(enum skb_drop_reason___na_drops, SKB_CONSUMED___na_drops);
}

/* The owner of `sk` as the socket programs recorded it, into the key;
 * nothing when it has none. False for a socket of local IPC (unix,
 * netlink), whose messages are no network packets: a unix socket closed
 * with unread messages "drops" them (SOCKET_CLOSE), which on a busy host
 * outnumbers every network drop, and netlink broadcasts nobody reads. */
static __always_inline bool drop_owner(struct sock *sk, struct na_drop_key *key)
{
	__u8 state = sk->__sk_common.skc_state;
	__u16 family = sk->__sk_common.skc_family;
	struct na_sock_state *st = NULL;
	__u64 addr = (__u64)sk;

	if (family == DROP_AF_UNIX || family == DROP_AF_NETLINK)
		return false;
	if (state == DROP_TCP_TIME_WAIT || state == DROP_TCP_NEW_SYN_RECV)
		return true; /* not a full socket: no state, and no sk_protocol to read */
	if (family != AF_INET6 && family != DROP_AF_INET)
		return true; /* packet, vsock, …: sk_protocol is no IP protocol */
	key->proto = sk->sk_protocol;
	if (key->proto == IPPROTO_UDP) {
		if (BY_ADDR(true))
			st = bpf_map_lookup_elem(&sock_index, &addr);
		else
			st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
	} else if (key->proto == IPPROTO_TCP && state == DROP_TCP_LISTEN) {
		struct na_listen_key lk = {
			.netns = netns_of(sk, true),
			.port = sk->__sk_common.skc_num,
		};
		struct na_listener *l = bpf_map_lookup_elem(&listeners, &lk);

		if (l) {
			__builtin_memcpy(key->comm, l->comm, NA_COMM_LEN);
			key->cgroup_id = l->cgroup_id;
		}
		return true;
	} else if (key->proto == IPPROTO_TCP) {
		st = tcp_state(sk, true);
	}
	if (st) {
		__builtin_memcpy(key->comm, st->comm, NA_COMM_LEN);
		key->cgroup_id = st->cgroup_id;
	}
	return true;
}

/* The IP protocol of a packet without a (full) socket, from its header. */
static __always_inline __u8 drop_packet_proto(const struct sk_buff *skb)
{
	__u16 eth = bpf_ntohs(skb->protocol);
	__u16 nh = skb->network_header;
	unsigned char *l3;
	__u8 proto = 0;

	if (nh == DROP_NO_HEADER)
		return 0;
	/* A plain load: a pointer to bytes is a number to the verifier. */
	l3 = skb->head + nh;
	if (eth == DROP_ETH_P_IP)
		bpf_probe_read_kernel(&proto, 1, l3 + 9); /* iphdr.protocol */
	else if (eth == DROP_ETH_P_IPV6)
		bpf_probe_read_kernel(&proto, 1, l3 + 6); /* ipv6hdr.nexthdr (extension headers not followed) */
	return proto;
}

/* The name (into `name`) and network namespace of the device the packet
 * arrived on or is leaving by: skb->dev, or before the output path sets it
 * (netfilter's OUTPUT, a failed neighbour), the route's device. Nothing
 * when neither is known. skb->dev is read through the typed pointer (a
 * plain load); the route is a tagged address, read with the helper. */
static __always_inline __u32 drop_dev(const struct sk_buff *skb, __u8 name[16])
{
	const struct sk_buff___na_drops *s = (const void *)skb;
	struct net_device___na_drops *dev = s->dev;
	struct dst_entry___na_drops *dst;

	if (dev) {
		__builtin_memcpy(name, dev->name, 16);
		return netns_only ? dev->nd_net.net->ns.inum : 0;
	}
	dst = (void *)(s->_skb_refdst & ~1UL);
	if (!dst)
		return 0;
	dev = BPF_CORE_READ(dst, dev);
	if (!dev)
		return 0;
	bpf_core_read(name, 16, &dev->name);
	return netns_only ? BPF_CORE_READ(dev, nd_net.net, ns.inum) : 0;
}

SEC("tp_btf/kfree_skb")
int on_kfree_skb(__u64 *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx[0];
	struct na_drop_key key = { .reason = NA_DROP_REASON_UNKNOWN };
	struct sock *sk;
	__u32 dev_ns;
	__u64 *n;
	__u64 one = 1;

	if (bpf_core_field_exists(struct trace_event_raw_kfree_skb___na_drops, reason))
		key.reason = (__u32)ctx[2];
	if (drop_skipped(key.reason))
		return 0;

	dev_ns = drop_dev(skb, key.ifname);
	sk = skb->sk;
	if (!sk && bpf_core_field_exists(struct trace_event_raw_kfree_skb___na_drops, rx_sk))
		sk = (struct sock *)ctx[3];
	/* netns_only: the socket's namespace, else the device's. */
	if (netns_only && (sk ? netns_of(sk, true) : dev_ns) != netns_only)
		return 0;
	if (sk && !drop_owner(sk, &key))
		return 0;
	if (!key.proto)
		key.proto = drop_packet_proto(skb);

	n = bpf_map_lookup_elem(&drops, &key);
	if (n) {
		/* This CPU's slot, not an atomic add: tracepoints run their
		 * programs with preemption off, and newer kernels skip (and
		 * count in the program's recursion misses) a run that would
		 * nest in another on the same CPU, e.g. a softirq's drop during
		 * a process-context one. Where a kernel lets it nest, one of
		 * the two increments can be lost: rare. */
		*n += 1;
		return 0;
	}
	/* A new key: its first drop is this CPU's value, the others start at 0. */
	if (!bpf_map_update_elem(&drops, &key, &one, BPF_NOEXIST))
		return 0;
	n = bpf_map_lookup_elem(&drops, &key); /* another CPU added it meanwhile */
	if (n)
		*n += 1;
	else
		drop_lose(NA_DROP_LOST_MAP_FULL);
	return 0;
}
