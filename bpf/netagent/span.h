/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Request/response spans: one record in the `span_events` ring buffer per
 * interval, only when the agent exports spans (emit_spans). The agent
 * drains the ring every 50 ms (src/agent/tasks.rs) and is woken earlier
 * only when it fills.
 */
#ifndef NETAGENT_SPAN_H
#define NETAGENT_SPAN_H

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
#include "series.h"

/* Set by the agent before load: spans per second and CPU beyond which the
 * kernel drops spans before the ring (counted in `span_rate`): OTLP keeps
 * otel.max_spans_per_second anyway, and DogStatsD sends the rest's weight
 * as its lines' sample rate (statsd.max_spans_per_second), so they would
 * cost a ring record and the agent's reading for nothing. No cap (the
 * default) when DogStatsD is set to send every span. */
const volatile __u32 span_cap = 0xffffffff;

/* Per CPU: the current one-second window, spans let through in it, spans
 * dropped over the cap (all time; the agent reads this one), spans seen
 * in it, and the chance (of 2^32; 0 = all) with which a span is kept in
 * it, from the window before: the spans kept are spread over the second,
 * not its first ones (DogStatsD's distributions and the traces stand for
 * the whole second). */
struct na_span_rate {
	__u64 window_ns;
	__u64 sent;
	__u64 capped;
	__u64 seen;
	__u64 keep;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct na_span_rate);
} span_rate SEC(".maps");

#define SPAN_WINDOW_NS 1000000000ULL

/* Within the cap on this CPU? `now` is the span's end. Over the cap in
 * the window before, a span is kept with probability cap / that window's
 * spans, and never more than the cap. Spans come from the message hooks,
 * in the sending or receiving task; a task preempted here by another that
 * emits a span on this CPU may lose one count (no atomics), which moves
 * the cap and the sample rate by one span. */
static __always_inline bool span_allowed(__u64 now)
{
	__u32 zero = 0;
	struct na_span_rate *r;

	if (span_cap == 0xffffffff)
		return true;
	r = bpf_map_lookup_elem(&span_rate, &zero);
	if (!r)
		return true;
	if (now - r->window_ns >= SPAN_WINDOW_NS) {
		/* A window that just ended sets this one's chance; after a
		 * quiet second, every span until the cap. */
		r->keep = now - r->window_ns < 2 * SPAN_WINDOW_NS && r->seen > span_cap
				  ? ((__u64)span_cap << 32) / r->seen
				  : 0;
		r->window_ns = now;
		r->sent = 0;
		r->seen = 0;
	}
	r->seen++;
	if (r->sent >= span_cap || (r->keep && bpf_get_prandom_u32() >= r->keep)) {
		r->capped++;
		return false;
	}
	r->sent++;
	return true;
}

/* One request/response interval for the span exporter. */
static __always_inline void emit_span(struct sock *sk, const struct na_sock_state *st,
				      __u64 start, __u64 end, bool typed)
{
	struct na_span_event *e;

	if (!emit_spans || !span_allowed(end))
		return;
	e = bpf_ringbuf_reserve(&span_events, sizeof(*e), 0);
	if (!e) {
		count_lost(NA_LOST_RINGBUF_FULL);
		return;
	}
	e->start_ns = start;
	e->end_ns = end;
	e->cgroup_id = st->cgroup_id;
	/* Untyped hooks cannot ask for the cookie, nor can tracing programs
	 * before 5.12 (loaded BY_ADDR there); the address identifies the
	 * socket as well while it lives (the agent hashes either before use). */
	e->sock_cookie = BY_ADDR(typed) ? (__u64)sk : bpf_get_socket_cookie(sk);
	__builtin_memcpy(e->comm, st->comm, NA_COMM_LEN);
	read_local_addr(sk, e->laddr, typed);
	__builtin_memcpy(e->raddr, st->daddr, 16);
	if (nat_applies(st)) {
		__builtin_memcpy(e->nat_raddr, st->nat_daddr, 16);
		e->nat_rport = st->nat_dport;
	} else {
		__builtin_memset(e->nat_raddr, 0, 16);
		e->nat_rport = 0;
	}
	e->pid = st->pid;
	e->lport = SK_READ(typed, sk, __sk_common.skc_num);
	e->rport = st->proto == IPPROTO_TCP ? bpf_ntohs(SK_READ(typed, sk, __sk_common.skc_dport))
					    : st->peer_port;
	e->proto = st->proto;
	e->direction = st->direction;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	/* The agent drains the ring every 50 ms anyway; a wakeup per span
	 * (an interrupt to the reader's CPU, and a switch to it) cost more
	 * than the span: only wake it when the ring is a quarter full. */
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&span_events, BPF_RB_AVAIL_DATA) >=
				      bpf_ringbuf_query(&span_events, BPF_RB_RING_SIZE) / 4
			      ? BPF_RB_FORCE_WAKEUP
			      : BPF_RB_NO_WAKEUP);
}

#endif
