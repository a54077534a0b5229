/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Everything netagent.bpf.o keeps: the globals the agent sets before load
 * and every map, shared by all of its programs. The agent reaches both by
 * name (src/kernel/loader.rs: override_global, map_max_entries, take_map),
 * so a name here is part of its interface. The value types private to the
 * kernel side are defined next to their map; the shared ones are in
 * netagent.h.
 */
#ifndef NETAGENT_MAPS_H
#define NETAGENT_MAPS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "netagent.h"

/* Set by the agent before load. */
const volatile __u8 track_all = 0;  /* 1: every process, labelled by comm */
const volatile __u8 emit_spans = 0; /* 1: send request/response spans to `span_events` */
const volatile __u32 netns_only = 0; /* non-zero: only sockets of this network namespace */
const volatile __u64 hist_bounds_ns[NA_HIST_KINDS][NA_HIST_BOUNDS] = {};
const volatile __u8 msg_index = 0; /* 1: UDP state by socket address (BY_ADDR, addr.h) */
const volatile __u8 tcp_prealloc = 0; /* 1: TCP state in tcp_socks_pre (TCP_SOCKS, sock.h) */

/* comm -> 1 for processes we track when !track_all. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u8[NA_COMM_LEN]);
	__type(value, __u8);
} targets SEC(".maps");

/* Series: counters per owner and peer (`flows`), histograms per owner,
 * peer and kind (`hists`). Each index maps a key to a slot of its counter
 * array; a socket remembers its slots (na_sock_state), so after its first
 * event it reaches its counters by array index, not by hashing a 48-byte
 * key again (about 50 ns less a lookup here; docs/BENCHMARKS.md, "Kernel
 * hot path rework").
 * Slots come from a queue the agent fills with 0..max_entries-1 at load
 * (no atomic fetch-and-add needed, which older kernels lack). The agent
 * frees the slots of expired series (limits.series_ttl_seconds): it bumps
 * the slot's generation (`flow_gens`, `hist_gens`), deletes the index
 * entry, zeroes the counters and pushes the slot back. A socket caches a
 * slot with its generation (series.h), so a stale cache is noticed and
 * looked up again instead of counting into someone else's series.
 * Everything is preallocated (the
 * agent sizes max_entries from config): run-time allocation can fail under
 * a burst of new series, and a failed insert is a lost event. Shared values
 * with atomic adds, not per-CPU ones, so the memory is the same on 2 or 200
 * CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct na_flow_key);
	__type(value, __u32);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct na_flow_stats);
} flow_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16384);
	__type(value, __u32);
} flow_slots SEC(".maps");

/* By slot: its generation (the low NA_GEN_BITS bits count), bumped by the
 * agent whenever it frees the slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} flow_gens SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct na_flow_key);
	__type(value, __u32);
} hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} hist_gens SEC(".maps");

/* By flow slot: its histogram slots as slot references (series.h) per
 * kind (0 = not looked up yet). A histogram's key is its flow's key plus
 * the kind, so these only change when the agent frees the flow's slot (it
 * zeroes them); a new connection of a known flow then finds its histograms
 * without hashing. Racing writers store the same value. */
struct na_flow_hists {
	__u32 slot[NA_HIST_KINDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct na_flow_hists);
} flow_hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct na_hist);
} hist_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16384);
	__type(value, __u32);
} hist_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct na_sock_state);
} sock_state SEC(".maps");

/* TCP sockets of tracked processes, by address (the agent sizes it from
 * limits.max_sockets). A hash and not socket-local storage: creating
 * storage for every connection cost more than everything else the
 * lifecycle program does (153–227 against 67–83 ns a run over a
 * connection's state changes, measured side by side: docs/BENCHMARKS.md).
 * Entries are deleted at
 * TCP_CLOSE; an address reused after a close we missed is told apart by
 * the peer (same_socket). Not preallocated: memory follows live sockets. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct na_sock_state);
} tcp_socks SEC(".maps");

/* The same, preallocated, for the untyped message hooks (tcp_prealloc):
 * kernels 5.6 to 6.0 print a WARN_ONCE splat (and PREEMPT_RT kernels
 * refuse the program) when a kprobe program merely references a run-time
 * allocated hash, so untyped programs reach TCP state only through this
 * one (TCP_SOCKS, sock.h). The agent sizes the one it does not use to 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct na_sock_state);
} tcp_socks_pre SEC(".maps");

/* TCP sockets closed lately: an aborting close (SO_LINGER 0, unread data)
 * moves the socket to TCP_CLOSE, which deletes its state, and only then
 * sends its reset (tcp_health.c), on the same CPU a few hundred ns later.
 * Each socket has two slots (two hashes of its address pair): a close
 * takes the older entry of its two, a reset checks both. On loopback the
 * peer's own close runs in between, as a rule (the softirq that sending
 * the reset raises takes it in before the reset's tracepoint), and with
 * one slot a peer hashing to the same one (1 in 1,024) took the entry and
 * the reset was not attributed; now it takes its other slot, the older
 * one, unless both of its slots are that one (1 in ~10^6). An LRU hash
 * did the same for ~380 ns per close (the LRU's shared lists); this costs
 * two array lookups and a few stores (measured in docs/BENCHMARKS.md). */
struct na_closed {
	__u64 sk;        /* the socket's address; 0 = free */
	__u64 closed_ns; /* when: a close takes the older of its two slots */
	__u32 flow_slot; /* as in na_sock_state */
	__u16 peer_port; /* as in na_sock_state, checked with has_peer */
	__u16 _pad;
	__u32 peer4;     /* the peer address's last 4 bytes */
	__u32 _pad2;
	__u8 comm[NA_COMM_LEN]; /* the owner, for `reset_reasons` */
	__u64 cgroup_id;
};

#define JUST_CLOSED_SLOTS 1024 /* just_closed_slot() keeps 10 bits */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, JUST_CLOSED_SLOTS);
	__type(key, __u32);
	__type(value, struct na_closed);
} just_closed SEC(".maps");

/* Resets sent, by owner and the kernel's reason (tcp_health.c): the
 * breakdown of na_flow_stats.resets_sent, counted just before it. A hash,
 * not a per-slot array: few owners ever send resets, and the reasons are
 * the running kernel's (25 on 6.18). Not preallocated; the agent sizes it
 * to limits.max_series, and a reset whose (owner, reason) finds it full
 * is counted as lost (flow_map_full) and exported as reason "unknown". */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct na_reset_key);
	__type(value, __u64);
} reset_reasons SEC(".maps");

/* UDP state by socket address, for the untyped message hooks only
 * (msg_index). LRU: UDP sockets have no close event to delete on; the
 * agent sizes it to 1 entry when unused. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct na_sock_state);
} sock_index SEC(".maps");

/* Explicit UDP peer from the cgroup hooks, by task, for the untyped
 * message hooks (which cannot reach the socket-local storage). */
struct na_pending {
	__u8 addr[16];
	__u16 port;
	__u8 _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct na_pending);
} task_pending SEC(".maps");

/* A message call in flight (entry seen, exit not yet), by task. */
struct na_msg_call {
	__u64 sk; /* socket address */
	__s32 flags;
	__u8 send;
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct na_msg_call);
} msg_calls SEC(".maps");

/* Listening ports of tracked processes, so accepted connections (created
 * in softirq context) can be attributed to the listener's owner. Filled
 * at listen() and, for listeners older than the agent, by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct na_listen_key);
	__type(value, struct na_listener);
} listeners SEC(".maps");

/* NAT (nat.c). A SYN or datagram of a tracked socket left the socket's
 * namespace with its destination unchanged; another namespace (the node
 * behind a pod) may still translate it. Keyed by the packet's source,
 * which a destination translation keeps. LRU: most flows are never
 * translated and nothing else deletes them; the agent sizes both maps
 * from nat.max_pending. */
struct na_nat_key {
	__u8 saddr[16];
	__u16 sport;
	__u8 proto;
	__u8 _pad[5];
};

struct na_nat_flow {
	__u64 sk;       /* the socket's address */
	__u8 daddr[16]; /* the destination it meant */
	__u16 dport;
	__u8 ambiguous; /* a second destination was sent from the same source
			 * before the first was answered: neither can be matched */
	__u8 _pad[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct na_nat_key);
	__type(value, struct na_nat_flow);
} nat_flows SEC(".maps");

/* A translation found in another namespace, by socket address, for the
 * socket's next event to take into its state. */
struct na_nat_found {
	__u8 orig[16];  /* the destination it was about */
	__u8 daddr[16]; /* where it went */
	__u16 orig_port;
	__u16 dport;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct na_nat_found);
} nat_found SEC(".maps");

/* Never read: it puts the ring-buffer record's type into the object's BTF
 * (records are only built through pointers, which clang does not describe),
 * so the layout test can compare it with the Rust mirror. 112 bytes of rodata. */
const volatile struct na_span_event span_event_layout = {};

/* Request/response intervals for span export (only when emit_spans). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} span_events SEC(".maps");

/* Events that could not be counted, by enum na_lost_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NA_LOST_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

#endif
