// SPDX-License-Identifier: GPL-2.0-only
/*
 * DNS messages of marked sockets (dns.h) to the agent: cgroup_skb programs
 * on the cgroup v2 root see every packet of every socket on the host,
 * egress in the sender's context and ingress when the packet is queued to
 * its socket, so an answer is attributed through the socket that receives
 * it, never through whatever task softirq interrupted. A connected socket
 * whose peer port is no DNS port (every TCP connection but DNS ones) costs
 * a look at that port; any other socket one socket-local storage lookup.
 *
 * Each DNS message becomes one `dns_events` record: the owner, the socket
 * cookie, both ends, the direction, a timestamp and the message's first
 * NA_DNS_CAPTURE bytes. UDP carries one message per datagram; on TCP each
 * message is preceded by its 2-byte length, so the programs follow where
 * the next one starts in each direction (several may share a segment:
 * glibc writes its A and AAAA queries in one writev). Parsing, matching
 * answers to queries and counting is the agent's (src/collect/dns/).
 * These programs only observe: they always return 1 (pass). Part of
 * netagent.bpf.c.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "addr.h"
#include "dns.h"

#define DNS_ETH_P_IP 0x0800
#define DNS_ETH_P_IPV6 0x86DD
/* DNS messages followed per TCP segment. */
#define DNS_TCP_MESSAGES 4

/* What a packet's headers say. */
struct dns_pkt {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 seq;  /* TCP */
	__u32 off;  /* payload offset from the network header */
	__u32 len;  /* payload length */
	__u16 sport;
	__u16 dport;
	__u8 proto;
};

/* Reads the IP and UDP/TCP headers (skb->data is the network header in
 * cgroup_skb programs); false for anything else. IPv6 extension headers
 * are not followed. */
static __always_inline bool dns_headers(struct __sk_buff *skb, struct dns_pkt *p)
{
	__u32 l4;

	if (skb->protocol == bpf_htons(DNS_ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.version != 4 ||
		    (ip.frag_off & bpf_htons(0x1fff)))
			return false;
		p->proto = ip.protocol;
		v4_mapped(p->saddr, ip.saddr);
		v4_mapped(p->daddr, ip.daddr);
		l4 = ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(DNS_ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return false;
		p->proto = ip6.nexthdr;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		l4 = sizeof(ip6);
	} else {
		return false;
	}
	if (p->proto == IPPROTO_UDP) {
		struct udphdr udp;

		if (bpf_skb_load_bytes(skb, l4, &udp, sizeof(udp)))
			return false;
		p->sport = bpf_ntohs(udp.source);
		p->dport = bpf_ntohs(udp.dest);
		p->seq = 0;
		p->off = l4 + sizeof(udp);
	} else if (p->proto == IPPROTO_TCP) {
		struct tcphdr tcp;

		if (bpf_skb_load_bytes(skb, l4, &tcp, sizeof(tcp)))
			return false;
		p->sport = bpf_ntohs(tcp.source);
		p->dport = bpf_ntohs(tcp.dest);
		/* Data in a SYN (TCP Fast Open) starts after the SYN's own
		 * sequence number. */
		p->seq = bpf_ntohl(tcp.seq) + tcp.syn;
		p->off = l4 + tcp.doff * 4;
	} else {
		return false;
	}
	p->len = skb->len > p->off ? skb->len - p->off : 0;
	return true;
}

/* One message: `len` bytes of it at `off` (the rest is in later segments
 * or beyond the capture), `msg_len` in all. The record goes out with only
 * the bytes it has, and wakes the agent only once the ring is a quarter
 * full: the agent polls every 50 ms anyway, and a wakeup per message (an
 * interrupt to the consumer's CPU) cost more than everything else here. */
static __always_inline void dns_emit(struct __sk_buff *skb, const struct na_dns_owner *o,
				     const struct dns_pkt *p, __u32 off, __u32 len, __u16 msg_len,
				     __u8 dir)
{
	__u32 zero = 0, cap = len;
	struct na_dns_event *ev = bpf_map_lookup_elem(&dns_scratch, &zero);
	__u64 flags;

	if (!ev)
		return;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->cgroup_id = o->cgroup_id;
	ev->sock_cookie = bpf_get_socket_cookie(skb);
	__builtin_memcpy(ev->comm, o->comm, NA_COMM_LEN);
	if (dir == NA_DNS_EGRESS) {
		__builtin_memcpy(ev->laddr, p->saddr, 16);
		__builtin_memcpy(ev->raddr, p->daddr, 16);
		ev->lport = p->sport;
		ev->rport = p->dport;
	} else {
		__builtin_memcpy(ev->laddr, p->daddr, 16);
		__builtin_memcpy(ev->raddr, p->saddr, 16);
		ev->lport = p->dport;
		ev->rport = p->sport;
	}
	ev->pid = o->pid;
	ev->msg_len = msg_len;
	ev->proto = p->proto;
	ev->direction = dir;
	ev->_pad[0] = 0;
	ev->_pad[1] = 0;
	if (cap > NA_DNS_CAPTURE)
		cap = NA_DNS_CAPTURE;
	if (cap > 0) {
		/* 1..NA_DNS_CAPTURE in a form the verifier can follow (a
		 * power-of-two capture: the mask leaves the value as it is). */
		cap = ((cap - 1) & (NA_DNS_CAPTURE - 1)) + 1;
		if (bpf_skb_load_bytes(skb, off, ev->data, cap))
			cap = 0;
	}
	ev->cap_len = cap;
	flags = bpf_ringbuf_query(&dns_events, BPF_RB_AVAIL_DATA) >=
			bpf_ringbuf_query(&dns_events, BPF_RB_RING_SIZE) / 4
		? BPF_RB_FORCE_WAKEUP
		: BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&dns_events, ev, sizeof(*ev) - NA_DNS_CAPTURE + cap, flags))
		dns_count_lost(NA_DNS_LOST_RINGBUF_FULL);
}

/* A TCP segment of a DNS stream: the messages that start in it. */
static __always_inline void dns_tcp(struct __sk_buff *skb, struct na_dns_owner *o,
				    const struct dns_pkt *p, __u8 dir)
{
	int d = dir & 1;
	__u32 next = o->tcp_synced[d] ? o->tcp_next[d] : p->seq;

	o->tcp_synced[d] = 1;
	for (int i = 0; i < DNS_TCP_MESSAGES; i++) {
		__s32 at = (__s32)(next - p->seq);
		__u32 start, len;
		__u16 msg_len;
		__u8 prefix[2];

		if (at < 0 || (__u32)at >= p->len)
			break; /* starts before (a retransmission) or after this segment */
		if (o->tcp_body[d]) {
			/* The length came alone in the previous segment. */
			msg_len = o->tcp_body[d];
			o->tcp_body[d] = 0;
			start = at;
		} else {
			if ((__u32)at + 2 > p->len ||
			    bpf_skb_load_bytes(skb, p->off + at, prefix, 2))
				break;
			msg_len = ((__u16)prefix[0] << 8) | prefix[1];
			next += 2;
			start = at + 2;
			if (!msg_len)
				continue;
			if (start >= p->len) {
				o->tcp_body[d] = msg_len;
				break;
			}
		}
		len = p->len - start;
		if (len > msg_len)
			len = msg_len;
		dns_emit(skb, o, p, p->off + start, len, msg_len, dir);
		next += msg_len;
	}
	o->tcp_next[d] = next;
}

static __always_inline void dns_packet(struct __sk_buff *skb, __u8 dir)
{
	struct bpf_sock *sk = skb->sk;
	struct na_dns_owner *o;
	struct dns_pkt p;

	if (!sk)
		return;
	/* A connected socket (every TCP one that carries data) names its
	 * peer: a peer port that is no DNS port ends it here, before any
	 * helper. Unconnected UDP sockets (port 0) go on to the lookup. */
	if (sk->dst_port && !dns_port(bpf_ntohs(sk->dst_port)))
		return;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return;
	o = bpf_sk_storage_get(&dns_socks, sk, NULL, 0);
	if (!o || !dns_headers(skb, &p) || !p.len)
		return;
	if (!dns_port(dir == NA_DNS_EGRESS ? p.dport : p.sport))
		return;
	if (p.proto == IPPROTO_UDP)
		dns_emit(skb, o, &p, p.off, p.len, p.len > 0xffff ? 0xffff : p.len, dir);
	else
		dns_tcp(skb, o, &p, dir);
}

SEC("cgroup_skb/egress")
int on_dns_egress(struct __sk_buff *skb)
{
	dns_packet(skb, NA_DNS_EGRESS);
	return 1;
}

SEC("cgroup_skb/ingress")
int on_dns_ingress(struct __sk_buff *skb)
{
	dns_packet(skb, NA_DNS_INGRESS);
	return 1;
}
